"""DP-SGD's Gaussian noise, float32, on the showcase's largest parameter (the (20000, 128)
embedding, 2.56M values noised every DP step): NumPy's Generator (PCG64, ziggurat,
``standard_normal(dtype=float32)`` plus ``g += std * z; g /= B``, what privatize did before) vs
nanonet.ops.gaussian_noise_acc (Philox4x32-10 + Box-Muller, the same result in one pass).
Run: cd benchmarks && PYTHONPATH=../python python -m pytest bench_random.py --benchmark-only"""
import math

import numpy as np
import pytest

import nanonet as nn

from conftest import record

SHAPE = (20000, 128)
STD, B = 1.1, 32


def _numpy_privatize(rng, g):
    z = rng.standard_normal(g.shape, dtype=np.float32)
    z *= STD
    z += g
    z *= np.float32(1.0 / B)
    return z


@pytest.mark.parametrize("side", ["numpy", "nanonet"])
def test_noise_acc(benchmark, threads, side):
    g = np.zeros(SHAPE, np.float32)
    benchmark.group = f"dp noise f32 {SHAPE[0]}x{SHAPE[1]} t{threads}"
    record(benchmark, side, threads, shape=str(SHAPE))
    if side == "numpy":
        rng = np.random.default_rng(0)
        out = benchmark(_numpy_privatize, rng, g)
    else:
        counter = [0]

        def step():
            counter[0] += nn.ops.noise_counters(g.size)
            return nn.ops.gaussian_noise_acc(g, 12345, counter[0], STD, 1.0 / B)
        out = benchmark(step)
        g[...] = 0.0
        out = nn.ops.gaussian_noise_acc(g, 12345, 0, STD, 1.0 / B)
    # both sides: mean 0 and std STD / B over 2.56M values
    want = STD / B
    assert abs(float(out.std(dtype=np.float64)) / want - 1) < 5 * math.sqrt(0.5 / out.size)
    assert abs(float(out.mean(dtype=np.float64))) < 5 * want / math.sqrt(out.size)
