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


# ---- the NumPy losses (Keras 3's huber, kl_divergence, poisson, log_cosh, hinges, cosine) ----

NEW_LOSSES = ["huber", "kl_divergence", "poisson", "log_cosh", "hinge", "squared_hinge",
              "categorical_hinge", "cosine_similarity"]


def _new_data(rng, name, shape):
    """(y_true, y_pred) of the kind each loss expects, float64."""
    C = shape[-1]
    if name in ("kl_divergence", "poisson"):
        return rng.dirichlet(np.ones(C), shape[:-1]), rng.uniform(0.05, 1.5, shape)
    if name in ("hinge", "squared_hinge"):
        return rng.integers(0, 2, shape).astype(float), rng.standard_normal(shape)
    if name == "categorical_hinge":
        return np.eye(C)[rng.integers(0, C, shape[:-1])], rng.standard_normal(shape) * 0.7
    return rng.standard_normal(shape), rng.standard_normal(shape) * 1.5


def _formula(name, t, p):
    """Per-sample losses written out from Keras 3's definitions, one sample at a time."""
    lead = t.shape[:-1]
    out = np.zeros(lead)
    for i in np.ndindex(lead):
        a, b = t[i], p[i]
        if name == "huber":
            e = b - a
            out[i] = np.mean([0.5 * v * v if abs(v) <= 1 else abs(v) - 0.5 for v in e])
        elif name == "kl_divergence":
            a, b = np.clip(a, 1e-7, 1), np.clip(b, 1e-7, 1)
            out[i] = sum(u * np.log(u / v) for u, v in zip(a, b))
        elif name == "poisson":
            out[i] = np.mean(b - a * np.log(b + 1e-7))
        elif name == "log_cosh":
            out[i] = np.mean(np.log(np.cosh(b - a)))
        elif name in ("hinge", "squared_hinge"):
            s = 2 * t - 1 if np.isin(t, (0, 1)).all() else t  # Keras's {0,1} -> {-1,1}, batch-wide
            m = np.maximum(1 - s[i] * b, 0)
            out[i] = np.mean(m if name == "hinge" else m * m)
        elif name == "categorical_hinge":
            out[i] = max(np.max((1 - a) * b) - np.sum(a * b) + 1, 0)
        elif name == "cosine_similarity":
            out[i] = -np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return out


@pytest.mark.parametrize("name", NEW_LOSSES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (2, 3, 4), (6,)])
def test_new_losses_match_formulas(name, shape):
    rng = np.random.default_rng(11)
    t, p = _new_data(rng, name, shape)
    loss = nn.losses.get(name)
    want = _formula(name, t, p)
    per = getattr(nn.losses, name)(t, p)
    assert per.shape == shape[:-1] and per.dtype == np.float64
    np.testing.assert_allclose(per, want, rtol=1e-12, atol=1e-14)
    assert loss(t, p) == pytest.approx(want.mean(), rel=1e-12, abs=1e-14)
    w = rng.uniform(0.2, 2.0, shape[:-1])
    value, grad = loss.value_and_grad(t, p, sample_weight=w)
    assert value == pytest.approx(np.sum(w * want) / max(want.size, 1), rel=1e-12, abs=1e-14)
    assert grad.shape == p.shape and grad.dtype == np.float64
    v32, g32 = loss.value_and_grad(t.astype(np.float32), p.astype(np.float32), sample_weight=w)
    assert g32.dtype == np.float32 and v32 == pytest.approx(value, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", NEW_LOSSES)
@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (2, 3, 2)])
def test_new_losses_finite_differences(name, shape):
    rng = np.random.default_rng(12)
    t, p = _new_data(rng, name, shape)
    if name == "huber":  # keep |e| away from the kink at delta = 1
        e = p - t
        p = np.where(np.abs(np.abs(e) - 1) < 1e-3, p + 0.01, p)
    if name in ("hinge", "squared_hinge"):  # keep 1 - y p away from 0
        s = 2 * t - 1
        p = np.where(np.abs(1 - s * p) < 1e-3, p + 0.01, p)
    w = rng.uniform(0.2, 2.0, shape[:-1])
    loss = nn.losses.get(name)
    _, grad = loss.value_and_grad(t, p, sample_weight=w)
    h = 1e-6
    fd = np.empty_like(p)
    for i in np.ndindex(p.shape):
        pp, pm = p.copy(), p.copy()
        pp[i] += h
        pm[i] -= h
        fd[i] = (loss(t, pp, sample_weight=w) - loss(t, pm, sample_weight=w)) / (2 * h)
    tol = _tol(np.float64, "grad_fd")
    np.testing.assert_allclose(grad, fd, rtol=0, atol=tol * (np.abs(fd).max() + 1e-3))


def test_new_losses_edges_and_config():
    # huber: delta moves the kink; quadratic inside, linear outside
    h = nn.losses.Huber(delta=2.0)
    assert h(np.zeros((1, 2)), np.array([[1.0, 3.0]])) == pytest.approx((0.5 + 2 * 3 - 2) / 2)
    assert nn.losses.huber(np.zeros((1, 1)), np.array([[3.0]]), delta=0.5)[0] == \
        pytest.approx(0.5 * 3 - 0.125)
    # log_cosh does not overflow where cosh does
    assert nn.losses.log_cosh(np.zeros((1, 1)), np.array([[1000.0]]))[0] == \
        pytest.approx(1000 - np.log(2))
    # cosine similarity: parallel -1, opposite +1, a zero vector 0 (the epsilon floor)
    cs = nn.losses.cosine_similarity(np.array([[1.0, 2], [1, 2], [1, 2]]),
                                     np.array([[2.0, 4], [-1, -2], [0, 0]]))
    np.testing.assert_allclose(cs, [-1, 1, 0], atol=1e-12)
    _, g = nn.losses.CosineSimilarity().value_and_grad([[1.0, 0]], [[0.0, 0]])
    assert np.isfinite(g).all()
    # hinge labels in {-1, 1} are used as they are
    assert nn.losses.hinge([[-1.0, 1.0]], [[0.5, 0.5]])[0] == pytest.approx((1.5 + 0.5) / 2)
    # configs, names and the registry
    for name in NEW_LOSSES:
        loss = nn.losses.get(name)
        again = nn.losses.deserialize(nn.losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
        assert nn.losses.get(getattr(nn.losses, name)).__class__ is type(loss)
    assert nn.losses.get("huber").name == "huber_loss"
    assert nn.losses.deserialize(nn.losses.serialize(h)).delta == 2.0
    with pytest.raises(ValueError, match="delta must be a finite number >= 0; got -1"):
        nn.losses.Huber(delta=-1)
    with pytest.raises(ValueError, match="only axis=-1 is supported"):
        nn.losses.CosineSimilarity(axis=0)
    with pytest.raises(ValueError, match=r"y_true must have the shape of y_pred \(2, 3\)"):
        nn.losses.huber(np.zeros((3, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("name", LOSSES)
def test_function_forms_are_per_sample(name, from_logits):
    """keras.losses.<name>(y_true, y_pred) returns per-sample losses whose mean is the class's
    value (the C++ kernel's)."""
    if from_logits and name in ("mse", "mae"):
        return
    rng = np.random.default_rng(13)
    for shape in [(5, 3), (2, 3, 4), (1, 1), (4,)]:
        y_true, y_pred, _ = _data(rng, name, shape, np.float64, from_logits)
        kw = {} if name in ("mse", "mae") else {"from_logits": from_logits}
        per = getattr(nn.losses, name)(y_true, y_pred, **kw)
        assert per.shape == shape[:-1] and per.dtype == np.float64
        value, _ = ops.loss(name, y_true, y_pred, from_logits=from_logits)
        assert float(np.mean(per)) == pytest.approx(value, rel=1e-12, abs=1e-14)
        per32 = getattr(nn.losses, name)(y_true, y_pred.astype(np.float32), **kw)
        assert per32.dtype == np.float32
    assert nn.losses.mse is nn.losses.mean_squared_error


def test_function_forms_label_smoothing_and_errors():
    rng = np.random.default_rng(14)
    t = np.eye(4)[rng.integers(0, 4, 6)]
    p = rng.uniform(0.1, 1.0, (6, 4))
    for fn, cls in ((nn.losses.categorical_crossentropy, nn.losses.CategoricalCrossentropy),
                    (nn.losses.binary_crossentropy, nn.losses.BinaryCrossentropy)):
        per = fn(t, p, label_smoothing=0.2)
        assert float(per.mean()) == pytest.approx(cls(label_smoothing=0.2)(t, p), rel=1e-12)
    with pytest.raises(ValueError, match=r"class ids in \[0, C\) = \[0, 4\); got 4"):
        nn.losses.sparse_categorical_crossentropy([0, 4], p[:2])
    with pytest.raises(ValueError, match="ignore_class is not supported"):
        nn.losses.sparse_categorical_crossentropy([0, 1], p[:2], ignore_class=0)


def test_model_trains_with_huber_and_function_form():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 3 * (rng.random((64, 1)) < 0.05)).astype(
        np.float32)
    nn.set_seed(1)
    model = nn.Sequential([nn.layers.Input((3,)), nn.layers.Dense(1)])
    model.compile(optimizer=nn.optimizers.SGD(learning_rate=0.1), loss=nn.losses.huber)
    assert isinstance(model.loss, nn.losses.Huber)
    hist = model.fit(x, y, epochs=20, batch_size=16, verbose=0).history["loss"]
    assert hist[-1] < 0.5 * hist[0]


def test_against_keras():
    """Optional: per-sample values equal keras.losses.* (Keras 3, float32)."""
    from .peers import keras_or_skip
    keras = keras_or_skip()
    L = keras.losses
    rng = np.random.default_rng(16)
    t = rng.random((8, 5)).astype(np.float32)
    p = rng.random((8, 5)).astype(np.float32)
    onehot = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 8)]
    binary = (rng.random((8, 5)) > 0.5).astype(np.float32)
    ids = rng.integers(0, 5, 8)
    cases = [("huber", (t, p)), ("kl_divergence", (t, p)), ("poisson", (t, p)),
             ("log_cosh", (t, p)), ("hinge", (binary, p - 0.5)),
             ("squared_hinge", (binary, p - 0.5)), ("categorical_hinge", (onehot, p)),
             ("cosine_similarity", (t, p - 0.5)), ("mean_squared_error", (t, p)),
             ("binary_crossentropy", (binary, p)), ("categorical_crossentropy", (onehot, p)),
             ("sparse_categorical_crossentropy", (ids, p))]
    for name, args in cases:
        np.testing.assert_allclose(getattr(nn.losses, name)(*args),
                                   np.asarray(getattr(L, name)(*args)), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
