"""GEMM: nanonet.ops.matmul against NumPy's BLAS (float32), same inputs, same thread count.

Each group holds the NumPy baseline and nanonet for one shape and thread count; nanonet's answer
is checked against NumPy's, so --benchmark-disable turns this file into a test.
"""
import numpy as np
import pytest

import nanonet as nn

from conftest import record

SQUARE = [128, 256, 512, 1024, 2048]
# (label, M, N, K, transpose_a, transpose_b): the sequence-model shapes
SEQ = [
    ("32x128@128x512", 32, 512, 128, False, False),
    ("32x256@256x512", 32, 512, 256, False, False),
    ("3200x128@128x512", 3200, 512, 128, False, False),
    ("(3200x128)^T@3200x512", 128, 512, 3200, True, False),
    ("3200x512@(128x512)^T", 3200, 128, 512, False, True),
]
CASES = [(f"{n}^3", n, n, n, False, False) for n in SQUARE] + SEQ


def _operands(m, n, k, ta, tb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    return a, b


def _numpy(a, b, ta, tb):
    return (a.T if ta else a) @ (b.T if tb else b)


@pytest.mark.parametrize("side", ["numpy", "nanonet"])
@pytest.mark.parametrize("label,m,n,k,ta,tb", CASES, ids=[c[0] for c in CASES])
def test_gemm(benchmark, threads, side, label, m, n, k, ta, tb):
    a, b = _operands(m, n, k, ta, tb)
    benchmark.group = f"gemm f32 {label} t{threads}"
    record(benchmark, side, threads, flops=2.0 * m * n * k, shape=label)
    if side == "numpy":
        out = benchmark(_numpy, a, b, ta, tb)
    else:
        out = benchmark(nn.ops.matmul, a, b, ta, tb)
    want = _numpy(a.astype(np.float64), b.astype(np.float64), ta, tb)
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-6 * np.sqrt(k) * (np.abs(want).max() + 1))
