"""Activations forward, float32, (B, F) = (3200, 512): nanonet vs the NumPy expression."""
import numpy as np
import pytest

import nanonet as nn

from conftest import record

SHAPE = (3200, 512)


def _numpy(x, name):
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "gelu_approximate":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("side", ["numpy", "nanonet"])
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "softmax", "silu",
                                  "gelu_approximate"])
def test_activation_forward(benchmark, threads, name, side):
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32) * 3
    benchmark.group = f"activation {name} f32 {SHAPE[0]}x{SHAPE[1]} t{threads}"
    record(benchmark, side, threads, shape=str(SHAPE))
    if side == "numpy":
        out = benchmark(_numpy, x, name)
    else:
        out = benchmark(nn.ops.activation_forward, x, name)
    np.testing.assert_allclose(out, _numpy(x.astype(np.float64), name), rtol=1e-5, atol=1e-6)
