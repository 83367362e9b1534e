"""Activations: nanonet.ops.activation_forward / activation_backward against nanonet.reference,
the scalar C++ twin (_ref), float64 finite differences, extreme inputs, the accuracy of vecmath's
exp / sigmoid / tanh, thread-count independence and every error."""
import math

import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

DTYPES = [np.float32, np.float64]
# Keras 3's newer ones, with their default arguments; INPUT_ACTS' backward reads the input x.
NEW_ACTS = ["gelu", "gelu_approximate", "silu", "swish", "elu", "selu", "leaky_relu", "softplus",
            "softsign", "hard_sigmoid", "exponential"]
INPUT_ACTS = ["gelu", "gelu_approximate", "silu", "swish"]
ACTS = ["linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax"] + NEW_ACTS
ELEMENTWISE = ["linear", "sigmoid", "tanh", "relu"] + NEW_ACTS
# where the derivative jumps: finite differences and comparisons keep inputs away from these
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "selu": (0.0,), "hard_sigmoid": (-3.0, 3.0)}
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
    for kink in KINKS.get(act, ()):  # keep away from kinks so the FD / comparisons are defined
        x = np.where(np.abs(x - kink) < 1e-3, kink + 0.5, x)
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
        want = reference.activation_backward(dy.astype(np.float64), y.astype(np.float64), act,
                                             x.astype(np.float64))
        scale = np.abs(dy).max(initial=0.0) + 1.0  # softmax subtracts sums of dy * y
        for ref in (False, True):
            dx = ops.activation_backward(dy, y, act, x=x, _ref=ref)
            assert dx.dtype == dtype and dx.shape == shape
            np.testing.assert_allclose(dx, want, rtol=_tol(dtype), atol=_tol(dtype) * scale)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (3, 7), (2, 3, 4)])
def test_backward_finite_differences(act, shape):
    rng = np.random.default_rng(3)
    x = _inputs(rng, shape, np.float64, act)
    r = rng.standard_normal(shape)  # loss = sum(f(x) * R), R random (never ones)
    grad = ops.activation_backward(r, ops.activation_forward(x, act), act, x=x)
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
        if act == "exponential":  # exp(1e4) is inf, rightly
            continue
        with np.errstate(over="ignore"):
            dx = ops.activation_backward(dy, ops.activation_forward(x, act), act, x=x)
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
                res += [y, ops.activation_backward(dy, y, act, x=x)]
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
                                         "softmax, log_softmax, gelu, gelu_approximate, silu "
                                         r"\(swish\), elu, selu, leaky_relu, softplus, softsign, "
                                         "hard_sigmoid, exponential; got 'mish'"):
        ops.activation_forward(x, "mish")
    with pytest.raises(ValueError, match="activation_backward: activation must be one of"):
        ops.activation_backward(x, x, "Relu")
    with pytest.raises(ValueError, match="activation must be one of"):
        reference.activation_forward(x, "mish")
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



# ---- the newer activations (Keras 3 names and defaults) -------------------------------------

def _keras_formula(x, act):
    """The textbook definitions, as Keras 3 writes them (float64; math.erf per element)."""
    erf = np.vectorize(math.erf)
    if act == "gelu":
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    if act == "gelu_approximate":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if act in ("silu", "swish"):
        return x / (1 + np.exp(-x))
    if act == "elu":
        return np.where(x > 0, x, np.exp(x) - 1)
    if act == "selu":
        return 1.05070098 * np.where(x > 0, x, 1.67326324 * (np.exp(x) - 1))
    if act == "leaky_relu":
        return np.where(x > 0, x, 0.2 * x)
    if act == "softplus":
        return np.log(1 + np.exp(x))
    if act == "softsign":
        return x / (np.abs(x) + 1)
    if act == "hard_sigmoid":
        return np.minimum(np.maximum(x + 3, 0), 6) / 6
    if act == "exponential":
        return np.exp(x)
    raise AssertionError(act)


@pytest.mark.parametrize("act", NEW_ACTS)
def test_new_activations_match_keras_formulas(act):
    """Moderate inputs (no cancellation in the textbook forms): the kernels equal Keras's
    definitions to float64 rounding."""
    x = np.linspace(-6, 6, 241)
    want = _keras_formula(x, act)
    for ref in (False, True):
        np.testing.assert_allclose(ops.activation_forward(x, act, _ref=ref), want, rtol=1e-13,
                                   atol=1e-15)
    assert ops.activation_forward(np.float64(1.0), "hard_sigmoid") == pytest.approx(4 / 6)
    assert ops.activation_forward(np.float64(-1.0), "leaky_relu") == pytest.approx(-0.2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_new_activations_tails_are_precise(dtype):
    """Where the textbook forms cancel (1 + erf(x) for x << 0, exp(x) - 1 near 0, log(1 + e^x)
    for x << 0), the kernels keep full relative precision, forward and backward."""
    x = np.array([-30.0, -12.0, -8.0, -1e-5, 1e-8, -1e-8], dtype)
    big = np.array([-1e4, -1e3, -150.0, 150.0, 1e3, 1e4, -np.inf, np.inf], dtype)
    tol = _tol(dtype)
    for act in ("gelu", "gelu_approximate", "silu", "elu", "selu", "softplus"):
        got = ops.activation_forward(x, act).astype(np.float64)
        want = reference.activation_forward(x.astype(np.float64), act)
        normal = np.abs(want) >= np.finfo(dtype).tiny
        np.testing.assert_allclose(got[normal], want[normal], rtol=4 * tol, err_msg=act)
        dx = ops.activation_backward(np.ones_like(x), ops.activation_forward(x, act), act, x=x)
        dwant = reference.activation_backward(np.ones(x.shape), want, act, x.astype(np.float64))
        normal = np.abs(dwant) >= np.finfo(dtype).tiny
        # elu / selu differentiate from y: exp(x) = y + 1 cancels as y -> -1, so their slope is
        # exact to an absolute eps only (as PyTorch's in-place ELU backward); the rest relative
        atol = 2 * np.finfo(dtype).eps if act in ("elu", "selu") else 0.0
        np.testing.assert_allclose(dx[normal], dwant[normal], rtol=8 * tol, atol=atol,
                                   err_msg=act)
        # saturated inputs (inf included): finite, 0 / x / 1 as the limits say
        y = ops.activation_forward(big, act)
        d = ops.activation_backward(np.ones_like(big), y, act, x=big)
        assert not np.isnan(y).any() and not np.isnan(d).any(), act
    y = ops.activation_forward(big, "gelu")
    assert y[0] == 0 and y[-1] == np.inf and y[3] == 150
    sp = ops.activation_forward(np.array([-100.0, 100.0], dtype), "softplus")
    assert sp[0] > 0 and sp[1] == 100  # log1p(exp(-100)) kept, not flushed to 0


def test_input_activations_need_x():
    """gelu / silu backward reads the input x, passed as x= (the Activation layer keeps it in its
    ctx); without it the call raises, naming the fix."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5))
    dy = rng.standard_normal((3, 5))
    for act in INPUT_ACTS:
        y = ops.activation_forward(x, act)
        assert y.base is None or y.base.shape == y.shape  # y is a plain array: nothing carried
        b = ops.activation_backward(dy, y, act, x=x)
        c = ops.activation_backward(dy, y, act, x=x, _ref=True)
        np.testing.assert_allclose(b, c, rtol=1e-14)
        np.testing.assert_allclose(b, reference.activation_backward(dy, y, act, x), rtol=1e-12)
        with pytest.raises(ValueError, match=f"activation_backward: activation '{act}' needs the "
                                             "forward input x; pass x="):
            ops.activation_backward(dy, y, act)
        with pytest.raises(ValueError, match="needs the forward input x"):
            reference.activation_backward(dy, y, act)
    y = ops.activation_forward(x, "gelu")
    with pytest.raises(ValueError, match=r"x must have the shape of dy \(3, 5\); got \(5, 3\)"):
        ops.activation_backward(dy, y, "gelu", x=x.T.copy())
    with pytest.raises(TypeError, match=r"x must have the dtype of dy \(float64\); got float32"):
        ops.activation_backward(dy, y, "gelu", x=x.astype(np.float32))
    with pytest.raises(ValueError, match=r"x \(the forward input\) is needed for activation "
                                         "'gelu'; got None"):
        nn._core.activation_backward(dy, y, "gelu")


def test_layers_train_with_new_activations(tmp_path):
    """Dense(activation=...) and Activation(...) by the new names, forward and backward, in a
    model that fits (loss goes down) and survives save / load."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, :1] * 0.5 - x[:, 1:2]).astype(np.float32)
    nn.set_seed(0)
    model = nn.Sequential([nn.layers.Input((4,)), nn.layers.Dense(16, activation="silu"),
                           nn.layers.Activation("gelu"), nn.layers.Dense(8, activation="selu"),
                           nn.layers.Dense(1, activation="linear")])
    model.compile(optimizer="adam", loss="mse")
    hist = model.fit(x, y, epochs=30, batch_size=16, verbose=0).history["loss"]
    assert hist[-1] < 0.5 * hist[0]
    path = str(tmp_path / "m.nanonet")
    model.save(path)
    again = nn.load_model(path)
    assert [layer.activation for layer in again.layers] == ["silu", "gelu", "selu", "linear"]
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_expm1_side_of_elu_is_a_few_ulp(dtype):
    """elu's x <= 0 side (and selu's, softplus's slope) uses expm1(x) = 2t / (1 - t),
    t = tanh(x / 2): relative error within a few ulp of a wider expm1 over the whole range."""
    rng = np.random.default_rng(10)
    x = -np.concatenate([rng.uniform(0, 110, 20000), rng.uniform(0, 1, 20000),
                         10.0 ** rng.uniform(-30, 0, 5000)]).astype(dtype)
    wide = np.longdouble if dtype == np.float64 else np.float64
    want = np.expm1(x.astype(wide))
    got = ops.activation_forward(x, "elu").astype(wide)
    rel = np.abs(got - want) / np.abs(want)
    assert rel.max() <= 4 * _tol(dtype, "vecmath"), f"max relative error {float(rel.max()):.3g}"


def test_against_keras():
    """Optional: the newer activations equal keras.activations.* (Keras 3, float32)."""
    from .peers import keras_or_skip
    keras = keras_or_skip()
    K = keras.activations
    peers = {"gelu": lambda v: K.gelu(v, approximate=False),
             "gelu_approximate": lambda v: K.gelu(v, approximate=True), "silu": K.silu,
             "swish": K.silu, "elu": K.elu, "selu": K.selu, "leaky_relu": K.leaky_relu,
             "softplus": K.softplus, "softsign": K.softsign, "hard_sigmoid": K.hard_sigmoid,
             "exponential": K.exponential}
    x = (np.random.default_rng(11).standard_normal((6, 7)) * 3).astype(np.float32)
    for name, f in peers.items():
        np.testing.assert_allclose(ops.activation_forward(x, name), np.asarray(f(x)), rtol=2e-6,
                                   atol=1e-6, err_msg=name)


@pytest.mark.parametrize("isa", ["ref", "avx2", "avx512"])
def test_sigmoid_tanh_spans_on_every_path(isa):
    """The span functions (vm::sigmoid_span / tanh_span: AVX-512 intrinsics on that path, the
    vectorised loop elsewhere) over every remainder length and the special values, through the
    activation and the Dense epilogue (bias + activation), against the twin. (The recurrent
    gate passes call the same spans: tests/test_lstm.py and test_gru.py.)"""
    order = ["ref", "avx2", "avx512"]
    if order.index(isa) > order.index(ops.detect_isa()):
        pytest.skip(f"CPU lacks {isa}")
    before = ops.active_isa()
    rng = np.random.default_rng(21)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -100.0, 100.0, 1e-30, -1e-30, 9.5,
                        -9.5, 10.5, -10.5, 0.624, 0.626, -87.5, 88.5], np.float32)
    try:
        ops.set_isa(isa)
        for n in list(range(1, 34)) + [257]:
            x = np.concatenate([special, (rng.standard_normal(n) * 6).astype(np.float32)])[:, None]
            x = np.ascontiguousarray(x.reshape(1, -1))
            for act in ("sigmoid", "tanh"):
                got = ops.activation_forward(x, act)
                want = reference.activation_forward(x.astype(np.float64), act)
                assert np.array_equal(np.isnan(got), np.isnan(want)), (isa, act, n)
                ok = ~np.isnan(want)
                np.testing.assert_allclose(got[ok], want[ok], rtol=4e-7, atol=1e-38)
        xd = (rng.standard_normal((9, 13)) * 3).astype(np.float32)
        k = (rng.standard_normal((13, 21)) * 0.5).astype(np.float32)
        b = rng.standard_normal(21).astype(np.float32)
        for act in ("sigmoid", "tanh"):
            got = ops.dense_forward(xd, k, b, act)
            want = reference.dense_forward(xd.astype(np.float64), k.astype(np.float64),
                                           b.astype(np.float64), act)
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    finally:
        ops.set_isa(before)
