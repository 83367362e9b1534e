"""Losses: nanonet.ops.loss / softmax_cross_entropy against nanonet.reference (Keras 3 semantics)
and float64 finite differences for every loss, both from_logits values and sample weights;
extreme inputs, Keras's shape conventions, thread-count independence and every error."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

DTYPES = [np.float32, np.float64]
LOSSES = ["mse", "mae", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy"]
# (..., C): 1, primes, 16/17, 255-257, batch 1, a 3-D (B, T, C) and a 1-D (one sample).
SHAPES = [(1, 1), (1, 7), (5, 1), (16, 17), (3, 255), (2, 256), (257, 3), (2, 3, 5), (7,)]


def _tol(dtype, key="elementwise"):
    return TOL[np.dtype(dtype).name][key]


def _data(rng, name, shape, dtype, from_logits, weighted=True):
    """(y_true, y_pred, sample_weight) of the kind the loss expects."""
    lead, C = shape[:-1], shape[-1]
    if from_logits or name in ("mse", "mae"):
        y_pred = rng.standard_normal(shape) * 3
    else:
        y_pred = rng.uniform(0.05, 0.95, shape)  # probabilities, rows not normalised
    if name == "sparse_categorical_crossentropy":
        y_true = rng.integers(0, C, lead)
    elif name == "categorical_crossentropy":
        y_true = rng.dirichlet(np.ones(C), lead) if C > 1 else np.ones(shape)  # soft labels
    elif name == "binary_crossentropy":
        y_true = rng.uniform(0, 1, shape)
    else:
        y_true = rng.standard_normal(shape)
    w = rng.uniform(0.2, 2.0, lead) if weighted else None
    cast = (lambda a: a if a is None else np.asarray(a, dtype))
    return (y_true if name.startswith("sparse") else cast(y_true)), cast(y_pred), cast(w)


def _check(got, want, dtype):
    (v, g), (wv, wg) = got, want
    tol = _tol(dtype)
    assert v == pytest.approx(wv, rel=tol, abs=tol * 1e-3)
    if wg is None:
        assert g is None
        return
    assert g.dtype == dtype and g.shape == wg.shape
    scale = np.abs(wg).max(initial=0.0)
    np.testing.assert_allclose(g, wg, rtol=tol, atol=tol * scale + np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("name", LOSSES)
def test_matches_reference(name, from_logits, dtype):
    rng = np.random.default_rng(1)
    for shape in SHAPES:
        for weighted in (False, True):
            y_true, y_pred, w = _data(rng, name, shape, dtype, from_logits, weighted)
            got = ops.loss(name, y_true, y_pred, from_logits, w)
            _check(got, reference.loss(name, y_true, y_pred, from_logits, w), dtype)
            value, grad = ops.loss(name, y_true, y_pred, from_logits, w, compute_grad=False)
            assert grad is None and value == got[0]


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (2, 3, 2)])
def test_finite_differences(name, from_logits, shape):
    rng = np.random.default_rng(2)
    y_true, y_pred, w = _data(rng, name, shape, np.float64, from_logits)
    if name == "mae":  # keep |y_pred - y_true| away from the kink
        y_pred = y_true + np.where(rng.random(shape) < 0.5, -1, 1) * rng.uniform(0.1, 1, shape)
    if len(shape) == 3:
        w = w[:, 0]  # (B,) weights broadcast over T
    value, grad = ops.loss(name, y_true, y_pred, from_logits, w)
    h = 1e-6
    fd = np.empty_like(y_pred)
    for i in np.ndindex(shape):
        yp, ym = y_pred.copy(), y_pred.copy()
        yp[i] += h
        ym[i] -= h
        fd[i] = (ops.loss(name, y_true, yp, from_logits, w, compute_grad=False)[0]
                 - ops.loss(name, y_true, ym, from_logits, w, compute_grad=False)[0]) / (2 * h)
    tol = _tol(np.float64, "grad_fd")
    np.testing.assert_allclose(grad, fd, rtol=0, atol=tol * (np.abs(fd).max() + 1e-3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sparse", [False, True])
def test_softmax_cross_entropy(sparse, dtype):
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (5, 3), (17, 16), (4, 257), (2, 3, 7)]:
        name = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
        y_true, logits, w = _data(rng, name, shape, dtype, True)
        value, dlogits = ops.softmax_cross_entropy(y_true, logits, sparse, w)
        # the same fused kernel as loss(..., from_logits=True)
        same = ops.loss(name, y_true, logits, True, w)
        assert value == same[0] and np.array_equal(dlogits, same[1])
        _check((value, dlogits), reference.softmax_cross_entropy(y_true, logits, sparse, w), dtype)
        # dlogits = (softmax - onehot) * w / count for one-hot labels
        onehot = (np.asarray(y_true)[..., None] == np.arange(shape[-1])) if sparse else None
        if sparse:
            p = reference.activation_forward(logits.astype(np.float64), "softmax")
            count = int(np.prod(shape[:-1]))
            want = (p - onehot) * (w.astype(np.float64) / count)[..., None]
            np.testing.assert_allclose(dlogits, want, rtol=_tol(dtype),
                                       atol=_tol(dtype) * np.abs(want).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_inputs(dtype):
    # exact 0/1 probabilities: clipped like Keras, finite value, zero gradient where clipped
    p = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype)
    y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype)
    for name, t in (("binary_crossentropy", y), ("categorical_crossentropy", y),
                    ("sparse_categorical_crossentropy", np.array([0, 1, 2]))):
        got = ops.loss(name, t, p)
        assert np.isfinite(got[0]) and np.isfinite(got[1]).all(), name
        _check(got, reference.loss(name, t, p), dtype)
    v, g = ops.loss("binary_crossentropy", y, p)
    assert g[0, 0] == 0 and g[0, 1] == 0  # p = 0 and p = 1 are clipped
    # perfect one-hot predictions: -log(1 - 1e-7) in the dtype, as Keras
    v, _ = ops.loss("categorical_crossentropy", np.eye(3, dtype=dtype), np.eye(3, dtype=dtype))
    assert v == pytest.approx(-np.log(np.asarray(1 - 1e-7, dtype)), rel=1e-6)
    # logits of size 1e4: stable, finite, and the reference agrees
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [0.0, 0.0, 0.0]], dtype)
    for name, t in (("binary_crossentropy", y), ("categorical_crossentropy", y),
                    ("sparse_categorical_crossentropy", np.array([1, 2, 0]))):
        got = ops.loss(name, t, z, from_logits=True)
        assert np.isfinite(got[0]) and np.isfinite(got[1]).all(), name
        _check(got, reference.loss(name, t, z, from_logits=True), dtype)
    v, g = ops.softmax_cross_entropy(np.array([1, 2, 0]), z, sparse=True)
    assert v == pytest.approx((2e4 + 0.0 + np.log(3.0)) / 3, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_never_crashes(dtype):
    p = np.array([[0.2, np.nan, 0.5], [0.2, 0.3, 0.5]], dtype)
    y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype)
    for name in LOSSES:
        t = np.array([0, 1]) if name.startswith("sparse") else y
        for from_logits in (False, True):
            v, g = ops.loss(name, t, p, from_logits)
            assert np.isnan(v), name
            assert np.isfinite(g[1]).all() or name in ("mse", "mae"), name


def test_shape_conventions():
    rng = np.random.default_rng(4)
    yp = rng.uniform(0.1, 0.9, (6, 1))
    yt = rng.integers(0, 2, 6)
    # y_true (N,) for y_pred (N, 1), integer labels cast to y_pred's dtype
    for name in ("mse", "mae", "binary_crossentropy"):
        assert ops.loss(name, yt, yp)[0] == pytest.approx(
            reference.loss(name, yt[:, None].astype(float), yp)[0], rel=1e-12)
    # sparse ids (N,), (N, 1), whole floats, bool
    probs = rng.uniform(0.1, 0.9, (6, 4))
    ids = rng.integers(0, 4, 6)
    want = ops.loss("sparse_categorical_crossentropy", ids, probs)
    for alt in (ids[:, None], ids.astype(np.float32), ids.astype(np.int32), ids.astype(np.uint8)):
        got = ops.loss("sparse_categorical_crossentropy", alt, probs)
        assert got[0] == want[0] and np.array_equal(got[1], want[1])
    # sample_weight (N,), (N, 1), scalar; (B,) broadcast over T for (B, T, C)
    w = rng.uniform(0.5, 1.5, 6)
    a = ops.loss("categorical_crossentropy", np.eye(4)[ids], probs, sample_weight=w)
    b = ops.loss("categorical_crossentropy", np.eye(4)[ids], probs, sample_weight=w[:, None])
    assert a[0] == b[0]
    c = ops.loss("mse", probs, probs * 0.5, sample_weight=2.0)
    assert c[0] == pytest.approx(2 * ops.loss("mse", probs, probs * 0.5)[0], rel=1e-12)
    seq = rng.standard_normal((2, 3, 4))
    wb = np.array([1.0, 3.0])
    v, g = ops.loss("mse", seq * 0, seq, sample_weight=wb)
    assert v == pytest.approx(reference.loss("mse", seq * 0, seq, sample_weight=wb)[0], rel=1e-12)
    assert g.shape == seq.shape
    # a 1-D y_pred is one sample over its last axis (Keras): mean over all
    v, g = ops.loss("mse", np.zeros(5), np.arange(5.0))
    assert v == pytest.approx(np.mean(np.arange(5.0) ** 2)) and g.shape == (5,)
    # no positions: 0 (Keras divides with divide_no_nan), empty gradient
    v, g = ops.loss("categorical_crossentropy", np.zeros((0, 3)), np.zeros((0, 3)))
    assert v == 0.0 and g.shape == (0, 3)
    # no classes: a mean over an empty axis is NaN (NumPy, Keras), a sum is 0
    v, g = ops.loss("mse", np.zeros((2, 0)), np.zeros((2, 0)))
    assert np.isnan(v) and g.shape == (2, 0)
    v, g = ops.softmax_cross_entropy(np.zeros((2, 3, 0)), np.zeros((2, 3, 0)))
    assert v == 0.0 and g.shape == (2, 3, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_identical(dtype):
    shape = (700, 64)  # 44800 >= kLossParallelElems
    before = nn.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            nn.set_num_threads(n)
            res = []
            for name in LOSSES:
                for from_logits in (False, True):
                    y_true, y_pred, w = _data(np.random.default_rng(6), name, shape, dtype,
                                              from_logits)
                    res.append(ops.loss(name, y_true, y_pred, from_logits, w))
            out[n] = res
    finally:
        nn.set_num_threads(before)
    for (v1, g1), (v2, g2) in zip(out[1], out[2]):
        assert v1 == v2 and np.array_equal(g1, g2)


def test_errors():
    p = np.full((4, 3), 0.3, np.float32)
    y = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="loss: loss must be one of mse, mae, binary_crossentropy, "
                                         "categorical_crossentropy, sparse_categorical_crossentropy"
                                         "; got 'hinge'"):
        ops.loss("hinge", y, p)
    with pytest.raises(ValueError, match="loss must be one of"):
        reference.loss("hinge", y, p)
    with pytest.raises(TypeError, match="name must be a str"):
        ops.loss(None, y, p)
    with pytest.raises(TypeError, match="y_pred must be float32 or float64; got int64"):
        ops.loss("mse", y, np.zeros((4, 3), np.int64))
    with pytest.raises(TypeError, match="y_true must be numeric; got <U1"):
        ops.loss("mse", np.full((4, 3), "a"), p)
    with pytest.raises(ValueError, match=r"y_true must have the shape of y_pred \(4, 3\); "
                                         r"got \(4, 2\)"):
        ops.loss("mse", np.zeros((4, 2)), p)
    with pytest.raises(ValueError, match="y_pred must be at least 1-D"):
        ops.loss("mse", 0.0, np.float32(1.0))
    with pytest.raises(ValueError, match=r"class id 3 at \(flat\) position 2; ids must be in "
                                         r"\[0, C\) = \[0, 3\)"):
        ops.loss("sparse_categorical_crossentropy", np.array([0, 1, 3, 0]), p)
    with pytest.raises(ValueError, match=r"class id -1 at \(flat\) position 0"):
        ops.loss("sparse_categorical_crossentropy", np.array([-1, 1, 2, 0]), p, from_logits=True)
    with pytest.raises(ValueError, match="class id 7"):
        ops.softmax_cross_entropy(np.array([0, 7, 1, 0]), p, sparse=True)
    with pytest.raises(ValueError, match=r"must hold integer class ids in \[0, C\) = \[0, 3\); "
                                         r"got 1.5 at position \(1,\)"):
        ops.loss("sparse_categorical_crossentropy", np.array([0.0, 1.5, 2.0, 0.0]), p)
    with pytest.raises(ValueError, match=r"got 300 at position \(3,\)"):
        ops.loss("sparse_categorical_crossentropy", np.array([0, 1, 2, 300], np.uint16), p)
    with pytest.raises(ValueError, match=r"one class id per row of y_pred \(4, 3\): shape \(4,\) "
                                         r"or \(4, 1\); got \(4, 3\)"):
        ops.loss("sparse_categorical_crossentropy", y, p)
    with pytest.raises(TypeError, match="sparse y_true must be integer class ids; got <U1"):
        ops.loss("sparse_categorical_crossentropy", np.array(["a"] * 4), p)
    with pytest.raises(ValueError, match=r"sample_weight must have the leading shape \(4,\) of "
                                         r"y_pred \(4, 3\) \(or a leading part of it\); got \(3,\)"):
        ops.loss("mse", y, p, sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="sample_weight must be numeric"):
        ops.loss("mse", y, p, sample_weight=np.array(["x"] * 4))
    with pytest.raises(ValueError, match="softmax_cross_entropy: y_true must have the shape"):
        ops.softmax_cross_entropy(np.zeros((4, 2)), p)
