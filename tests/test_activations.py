"""Activations: nanonet.ops.activation_forward / activation_backward against nanonet.reference,
the scalar C++ twin (_ref), float64 finite differences, extreme inputs, the accuracy of vecmath's
exp / sigmoid / tanh, thread-count independence and every error."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

DTYPES = [np.float32, np.float64]
ACTS = ["linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax"]
ELEMENTWISE = ["linear", "sigmoid", "tanh", "relu"]
# 1, primes, around 16 and 256 (the row width matters for softmax), batch 1, 3-D.
SHAPES = [(1,), (7,), (1, 1), (1, 17), (3, 16), (16, 17), (2, 255), (5, 256), (3, 257), (257, 3),
          (2, 3, 5), (0, 4), (4, 0)]


def _tol(dtype, key="elementwise"):
    return TOL[np.dtype(dtype).name][key]


def _want_forward(x, act):
    """The reference in float64 (longdouble for float64 inputs where it matters)."""
    return reference.activation_forward(x.astype(np.float64), act)


def _close(got, want, dtype, act, scale=None):
    tol = _tol(dtype)
    want = np.asarray(want, np.float64)
    if scale is None:
        scale = np.abs(want).max(initial=0.0) + 1.0 if act == "log_softmax" else 1.0
    # relative per element; an absolute floor at the dtype's smallest normal (subnormal results
    # of sigmoid are kept by nanonet and flushed by some references) and, for log_softmax, at
    # the row scale (x - max - log(sum) subtracts numbers of that size).
    atol = np.finfo(dtype).tiny + (tol * scale if act == "log_softmax" else 0.0)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=atol)


def _inputs(rng, shape, dtype, act):
    x = rng.standard_normal(shape) * 3.0
    if act == "relu":  # keep away from the kink so the FD / comparisons are well defined
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_reference(act, dtype):
    rng = np.random.default_rng(1)
    for shape in SHAPES + ([()] if act in ELEMENTWISE else []):
        x = _inputs(rng, shape, dtype, act)
        for ref in (False, True):
            y = ops.activation_forward(x, act, _ref=ref)
            assert y.dtype == dtype and y.shape == x.shape
            _close(y, _want_forward(x, act), dtype, act)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_backward_matches_reference(act, dtype):
    rng = np.random.default_rng(2)
    for shape in SHAPES:
        x = _inputs(rng, shape, dtype, act)
        y = ops.activation_forward(x, act)
        dy = rng.standard_normal(shape).astype(dtype)
        want = reference.activation_backward(dy.astype(np.float64), y.astype(np.float64), act)
        scale = np.abs(dy).max(initial=0.0) + 1.0  # softmax subtracts sums of dy * y
        for ref in (False, True):
            dx = ops.activation_backward(dy, y, act, _ref=ref)
            assert dx.dtype == dtype and dx.shape == shape
            np.testing.assert_allclose(dx, want, rtol=_tol(dtype), atol=_tol(dtype) * scale)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (3, 7), (2, 3, 4)])
def test_backward_finite_differences(act, shape):
    rng = np.random.default_rng(3)
    x = _inputs(rng, shape, np.float64, act)
    r = rng.standard_normal(shape)  # loss = sum(f(x) * R), R random (never ones)
    grad = ops.activation_backward(r, ops.activation_forward(x, act), act)
    h = 1e-6
    fd = np.empty_like(x)
    for i in np.ndindex(shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fd[i] = (np.sum(ops.activation_forward(xp, act) * r)
                 - np.sum(ops.activation_forward(xm, act) * r)) / (2 * h)
    tol = _tol(np.float64, "grad_fd")
    np.testing.assert_allclose(grad, fd, rtol=0, atol=tol * (np.abs(fd).max() + 1e-3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_inputs_saturate(dtype):
    big = [1e4, -1e4, 1e3, -1e3, 0.0, -0.0, 88.7, -88.7, 100.0, -104.0, 709.0, -745.0, 1e-30]
    x = np.array([big, big[::-1]], dtype)
    with np.errstate(over="ignore"):
        s = ops.activation_forward(x, "sigmoid")
        t = ops.activation_forward(x, "tanh")
    assert np.isfinite(s).all() and np.isfinite(t).all()
    assert s[0, 0] == 1 and s[0, 1] == 0 and t[0, 0] == 1 and t[0, 1] == -1
    assert s[0, 4] == 0.5 and t[0, 4] == 0
    _close(s, _want_forward(x, "sigmoid"), dtype, "sigmoid")
    _close(t, _want_forward(x, "tanh"), dtype, "tanh")
    for act in ("softmax", "log_softmax"):
        y = ops.activation_forward(x, act)
        assert np.isfinite(y).all(), act
        _close(y, _want_forward(x, act), dtype, act)
    p = ops.activation_forward(x, "softmax")
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=4 * _tol(dtype))
    # one-hot-like rows: the winner gets (almost exactly) 1 and everything else underflows
    assert p[0, 0] == pytest.approx(1.0) and p[0, 1] == 0.0
    # backward of saturated outputs is finite (and exactly zero for saturated sigmoid/tanh)
    dy = np.ones_like(x)
    for act in ACTS:
        dx = ops.activation_backward(dy, ops.activation_forward(x, act), act)
        assert np.isfinite(dx).all(), act
    assert ops.activation_backward(dy, s, "sigmoid")[0, 0] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates_without_crashing(dtype):
    x = np.array([[1.0, np.nan, -2.0], [0.5, 1.0, 2.0]], dtype)
    for act in ELEMENTWISE:
        y = ops.activation_forward(x, act)
        assert np.isnan(y[0, 1]) and np.isfinite(np.delete(y.ravel(), 1)).all(), act
    for act in ("softmax", "log_softmax"):
        y = ops.activation_forward(x, act)
        assert np.isnan(y[0]).all() and np.isfinite(y[1]).all(), act
    inf_row = np.array([[np.inf, 0.0], [np.inf, -np.inf]], dtype)
    assert ops.activation_forward(inf_row, "sigmoid").tolist() == [[1.0, 0.5], [1.0, 0.0]]
    assert ops.activation_forward(inf_row, "tanh").tolist() == [[1.0, 0.0], [1.0, -1.0]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_vecmath_accuracy(dtype):
    """sigmoid, tanh (and exp, through softmax) against a wider reference, over the whole range:
    the maximum relative error is a few ulp (reported in the message)."""
    rng = np.random.default_rng(4)
    lim = 110.0 if dtype == np.float32 else 750.0
    x = np.concatenate([rng.uniform(-lim, lim, 40000), rng.uniform(-2, 2, 40000),
                        rng.uniform(-1e-3, 1e-3, 2000), np.linspace(-1, 1, 2001)]).astype(dtype)
    wide = np.longdouble if dtype == np.float64 else np.float64
    xw = x.astype(wide)
    tol = _tol(dtype, "vecmath")
    with np.errstate(over="ignore", under="ignore"):
        wants = {"sigmoid": 1 / (1 + np.exp(-xw)), "tanh": np.tanh(xw)}
    for act, want in wants.items():
        got = ops.activation_forward(x, act).astype(wide)
        normal = np.abs(want) >= np.finfo(dtype).tiny
        rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
        assert rel.max() <= tol, f"{act}: max relative error {float(rel.max()):.3g}"
    # exp through softmax over two entries: softmax([x, 0])[0] = exp(x) / (exp(x) + 1) = sigmoid
    pair = np.stack([x, np.zeros_like(x)], axis=1)
    got = ops.activation_forward(pair, "softmax")[:, 0].astype(wide)
    want = wants["sigmoid"]
    normal = np.abs(want) >= np.finfo(dtype).tiny
    rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
    assert rel.max() <= 2 * tol, f"softmax: max relative error {float(rel.max()):.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_identical(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((301, 257)) * 4).astype(dtype)  # 77357 > kActivationParallelElems
    dy = rng.standard_normal(x.shape).astype(dtype)
    before = nn.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            nn.set_num_threads(n)
            res = []
            for act in ACTS:
                y = ops.activation_forward(x, act)
                res += [y, ops.activation_backward(dy, y, act)]
            out[n] = res
    finally:
        nn.set_num_threads(before)
    for a, b in zip(out[1], out[2]):
        assert np.array_equal(a, b, equal_nan=True)


def test_noncontiguous_and_list_inputs():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((6, 10))
    for x in (base[:, ::2], base.T, np.asfortranarray(base)):
        for act in ACTS:
            _close(ops.activation_forward(x, act), reference.activation_forward(x, act),
                   np.float64, act)
    y = ops.activation_forward([[0, 1]], "softmax")  # a list of ints becomes float32
    assert y.dtype == np.float32 and y[0, 1] == pytest.approx(1 / (1 + np.exp(-1)))
    assert ops.activation_forward(base, None).tolist() == base.tolist()  # None = linear


def test_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="activation must be one of linear, sigmoid, tanh, relu, "
                                         "softmax, log_softmax; got 'gelu'"):
        ops.activation_forward(x, "gelu")
    with pytest.raises(ValueError, match="activation_backward: activation must be one of"):
        ops.activation_backward(x, x, "Relu")
    with pytest.raises(ValueError, match="activation must be one of"):
        reference.activation_forward(x, "gelu")
    with pytest.raises(TypeError, match="activation must be a str or None; got int"):
        ops.activation_forward(x, 3)
    with pytest.raises(TypeError, match="x must be float32 or float64; got int64"):
        ops.activation_forward(np.zeros((2, 3), np.int64), "relu")
    with pytest.raises(TypeError, match=r"y must have the dtype of dy \(float32\); got float64"):
        ops.activation_backward(x, x.astype(np.float64), "tanh")
    with pytest.raises(ValueError, match=r"y must have the shape of dy \(2, 3\); got \(3, 2\)"):
        ops.activation_backward(x, x.T.copy(), "tanh")
    with pytest.raises(ValueError, match="softmax normalises the last axis, so x must be at least "
                                         "1-D; got a 0-d array"):
        ops.activation_forward(np.float32(1.0), "softmax")
    # an elementwise activation of a 0-d array is fine
    assert ops.activation_forward(np.float64(-2.0), "relu") == 0.0
