"""Fused optimizer updates vs the NumPy expressions, float32, on the showcase's largest
parameter: the (20000, 128) embedding (2.56M values, updated densely every step as in Keras)."""
import numpy as np
import pytest

import nanonet as nn

from conftest import record

SHAPE = (20000, 128)


def _state():
    rng = np.random.default_rng(0)
    p, g = (rng.standard_normal(SHAPE).astype(np.float32) for _ in range(2))
    return p, g * 1e-3, np.zeros_like(p), np.zeros_like(p)


def _numpy_adam(p, g, m, v, lr, step, b1=0.9, b2=0.999, eps=1e-7):
    alpha = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    m += (g - m) * (1 - b1)
    v += (g * g - v) * (1 - b2)
    p -= alpha * m / (np.sqrt(v) + eps)


def _numpy_sgd_momentum(p, g, vel, lr, momentum=0.9):
    vel *= momentum
    vel -= lr * g
    p += vel


def _numpy_lion(p, g, m, lr, b1=0.9, b2=0.99):
    p -= lr * np.sign(m * b1 + g * (1 - b1))
    m *= b2
    m += g * (1 - b2)


@pytest.mark.parametrize("side", ["numpy", "nanonet"])
@pytest.mark.parametrize("opt", ["adam", "sgd-momentum", "lion"])
def test_update(benchmark, threads, opt, side):
    p, g, m, v = _state()
    p0 = p.copy()
    benchmark.group = f"optimizer {opt} f32 {SHAPE[0]}x{SHAPE[1]} t{threads}"
    record(benchmark, side, threads, shape=str(SHAPE))
    if opt == "adam":
        fn = _numpy_adam if side == "numpy" else nn.ops.adam_update
        benchmark(fn, p, g, m, v, 1e-3, 1)
    elif opt == "lion":
        fn = _numpy_lion if side == "numpy" else nn.ops.lion_update
        benchmark(fn, p, g, m, 1e-3)
    else:
        if side == "numpy":
            benchmark(_numpy_sgd_momentum, p, g, m, 1e-2)
        else:
            benchmark(nn.ops.sgd_update, p, g, m, 1e-2, momentum=0.9)
    # one more step from a fresh state agrees with the NumPy expression
    q, gq, mq, vq = _state()
    r, gr, mr, vr = _state()
    if opt == "adam":
        nn.ops.adam_update(q, gq, mq, vq, 1e-3, 1)
        _numpy_adam(r, gr, mr, vr, 1e-3, 1)
    elif opt == "lion":
        mq += gq
        mr += gr  # a nonzero momentum, so the sign is not the gradient's alone
        nn.ops.lion_update(q, gq, mq, 1e-3)
        _numpy_lion(r, gr, mr, 1e-3)
    else:
        nn.ops.sgd_update(q, gq, mq, 1e-2, momentum=0.9)
        _numpy_sgd_momentum(r, gr, mr, 1e-2)
    np.testing.assert_allclose(q, r, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(p, p0)
