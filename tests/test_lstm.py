"""LSTM over whole sequences: nanonet.ops.lstm_forward / lstm_backward against nanonet.reference,
float64 central finite differences, the scalar C++ specification (_ref), 1 vs 2 threads, Keras
semantics of masks / go_backwards / states / dropout, torch.nn.LSTM (optional) and bad input."""
import zlib

import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

GRAD_NAMES = ("dx", "dkernel", "drecurrent_kernel", "dbias", "dh0", "dc0")



def _seed(*key):
    """A seed fixed across processes (hash() of a str changes with PYTHONHASHSEED)."""
    return zlib.crc32(repr(key).encode())

def _problem(rng, B, T, I, H, dtype=np.float64, bias=True, states=True, mask=None, dropout=False):
    """Random weights, biases, states and upstream gradients; options as forward kwargs."""
    p = dict(
        x=rng.standard_normal((B, T, I)),
        # ~unit pre-activations, so relu / linear cells do not explode over the steps
        kernel=rng.standard_normal((I, 4 * H)) / np.sqrt(max(I, 1)),
        recurrent_kernel=rng.standard_normal((H, 4 * H)) / np.sqrt(H),
        bias=rng.standard_normal(4 * H) * 0.5 if bias else None,
        h0=rng.standard_normal((B, H)) * 0.5 if states else None,
        c0=rng.standard_normal((B, H)) if states else None,
    )
    if mask is not None:
        p["mask"] = _mask(rng, B, T, mask)
    if dropout:
        p["input_dropout_mask"] = (rng.random((B, I)) >= 0.3) / 0.7
        p["recurrent_dropout_mask"] = (rng.random((B, H)) >= 0.4) / 0.6
    return {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype != bool else v)
            for k, v in p.items()}


def _mask(rng, B, T, kind):
    """(B, T) bool mask: 'post' (valid steps first), 'pre' (padding first), 'random'; row 0 is
    fully padded when B > 1."""
    lengths = rng.integers(1, T + 1, size=B)
    steps = np.arange(T)[None, :]
    if kind == "post":
        m = steps < lengths[:, None]
    elif kind == "pre":
        m = steps >= (T - lengths)[:, None]
    else:
        m = rng.random((B, T)) < 0.6
    if B > 1:
        m[0] = False
    return m


CONFIGS = {  # name: (problem kwargs, forward kwargs)
    "plain": (dict(states=False), {}),
    "states": ({}, {}),
    "no_bias": (dict(bias=False), {}),
    "last_only": ({}, dict(return_sequences=False)),
    "go_backwards": ({}, dict(go_backwards=True)),
    "mask_post": (dict(mask="post"), {}),
    "mask_pre": (dict(mask="pre"), {}),
    "mask_random_backwards": (dict(mask="random"), dict(go_backwards=True)),
    "mask_pre_last_only": (dict(mask="pre"), dict(return_sequences=False)),
    "dropout": (dict(dropout=True), {}),
    "dropout_mask_backwards": (dict(dropout=True, mask="post"), dict(go_backwards=True)),
    "act_relu_hard": ({}, dict(activation="relu", recurrent_activation="sigmoid")),
    "act_sigmoid_tanh": ({}, dict(activation="sigmoid", recurrent_activation="tanh")),
    "act_linear_relu": ({}, dict(activation="linear", recurrent_activation="relu")),
    "act_tanh_linear": ({}, dict(activation="tanh", recurrent_activation="linear")),
}
SHAPES = [(2, 3, 3, 4), (1, 1, 2, 3), (3, 5, 4, 6), (1, 4, 1, 1)]


def _run(mod, p, fw, dtype, rng_seed=0, **extra):
    y, h_n, c_n, cache = mod.lstm_forward(**p, **fw, **extra)
    rng = np.random.default_rng(rng_seed)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh_n = rng.standard_normal(h_n.shape).astype(dtype)
    dc_n = rng.standard_normal(c_n.shape).astype(dtype)
    grads = mod.lstm_backward(dy, cache, dh_n, dc_n, **extra)
    return (y, h_n, c_n), grads


def _close(got, want, dtype, what):
    if want is None:
        assert got is None, what
        return
    scale = np.abs(want).max() + 1.0 if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[np.dtype(dtype).name]["lstm"] * scale,
                               err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%dT%dI%dH%d" % s)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_forward_backward_match_reference(config, shape, dtype):
    pk, fw = CONFIGS[config]
    rng = np.random.default_rng(_seed(config, shape))
    p64 = _problem(rng, *shape, **pk)
    p = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype != bool else v)
         for k, v in p64.items()}
    outs, grads = _run(ops, p, fw, dtype)
    want_outs, want_grads = _run(reference, p64, fw, np.float64)
    for name, got, want in zip(("y", "h_n", "c_n"), outs, want_outs):
        assert got.dtype == dtype
        _close(got, want, dtype, name)
    for name, got, want in zip(GRAD_NAMES, grads, want_grads):
        _close(got, want, dtype, name)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (1, 1, 2, 3)], ids=lambda s: "B%dT%dI%dH%d" % s)
def test_gradients_match_finite_differences(config, shape):
    pk, fw = CONFIGS[config]
    rng = np.random.default_rng(_seed(config, shape, "fd"))
    p = _problem(rng, *shape, **pk)
    y, h_n, c_n, cache = ops.lstm_forward(**p, **fw)
    R, Rh, Rc = (rng.standard_normal(a.shape) for a in (y, h_n, c_n))
    grads = dict(zip(GRAD_NAMES, ops.lstm_backward(R, cache, Rh, Rc)))

    def loss():
        y, h_n, c_n, _ = ops.lstm_forward(**p, **fw, training=False)
        return np.sum(y * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    h = 1e-6
    for arg, gname in (("x", "dx"), ("kernel", "dkernel"), ("recurrent_kernel",
                       "drecurrent_kernel"), ("bias", "dbias"), ("h0", "dh0"), ("c0", "dc0")):
        if p[arg] is None:
            if arg == "bias":
                assert grads["dbias"] is None
            continue
        a = p[arg]
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            lp = loss()
            a[idx] = old - h
            lm = loss()
            a[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        g = grads[gname]
        err = np.linalg.norm(g - num)
        assert err <= TOL["float64"]["grad_fd"] * max(np.linalg.norm(g), 1e-3), (gname, err)


PARALLEL_SHAPES = [(5, 7, 9, 40), (1, 6, 5, 64), (33, 4, 3, 17), (2, 9, 16, 50)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", PARALLEL_SHAPES, ids=lambda s: "B%dT%dI%dH%d" % s)
@pytest.mark.parametrize("config", ["states", "mask_random_backwards", "dropout_mask_backwards",
                                    "act_relu_hard"])
def test_fast_path_matches_scalar_specification(config, shape, dtype):
    pk, fw = CONFIGS[config]
    rng = np.random.default_rng(sum(shape))
    p = _problem(rng, *shape, dtype=dtype, **pk)
    fast = _run(ops, p, fw, dtype)
    slow = _run(ops, p, fw, dtype, _ref=True)
    for got, want in zip(fast[0] + fast[1], slow[0] + slow[1]):
        _close(got, want.astype(np.float64) if want is not None else None, dtype, config)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# Calls below kLstmParallelFlops (2 B T (I + H) 4H < 1.2e8) run on one thread; above it:
# (64, 20, 96, 96) two row groups; (43, 100, 40, 45) two row groups of 21 and 22 rows (fused
# products: row tiles of 3 and 1, a narrow last unit block); (40, 60, 132, 37) two row groups of
# 20 rows (row tiles of 3 and 2; backward unit blocks of 4 vectors and a narrow last one of 1 float
# / 2 double vectors); (1, 48, 8, 600) one row, steps above kLstmBarrierStepFlops: two unit groups
# with a barrier per step.
@pytest.mark.parametrize("shape", PARALLEL_SHAPES + [(64, 5, 8, 32), (64, 20, 96, 96),
                                                     (43, 100, 40, 45), (40, 60, 132, 37),
                                                     (1, 48, 8, 600)],
                         ids=lambda s: "B%dT%dI%dH%d" % s)
def test_one_and_two_threads_agree(shape, dtype):
    rng = np.random.default_rng(11)
    p = _problem(rng, *shape, dtype=dtype, mask="random", dropout=True)
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        one = _run(ops, p, {}, dtype)
        nn.set_num_threads(2)
        two = _run(ops, p, {}, dtype)
    finally:
        nn.set_num_threads(before)
    for name, a, b in zip(("y", "h_n", "c_n") + GRAD_NAMES, one[0] + one[1], two[0] + two[1]):
        if name == "dbias":  # per-thread partial sums: rounding may differ
            _close(b, a.astype(np.float64), dtype, name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_inference_forward_keeps_nothing_and_agrees():
    rng = np.random.default_rng(3)
    p = _problem(rng, 4, 6, 5, 8, mask="pre")
    y, h, c, cache = ops.lstm_forward(**p)
    yi, hi, ci, none = ops.lstm_forward(**p, training=False)
    assert none is None
    np.testing.assert_array_equal(y, yi)
    np.testing.assert_array_equal(h, hi)
    np.testing.assert_array_equal(c, ci)
    y2, h2, _, _ = ops.lstm_forward(**p, return_sequences=False, training=False)
    assert y2.shape == (4, 8)
    np.testing.assert_array_equal(y2, h)
    np.testing.assert_array_equal(h2, h)


# ---- Keras semantics ------------------------------------------------------------------------

def test_masked_steps_carry_state_and_output_it():
    rng = np.random.default_rng(4)
    p = _problem(rng, 3, 6, 2, 5)
    mask = np.ones((3, 6), bool)
    mask[0, 2:4] = False  # a hole
    mask[1] = False       # fully padded
    y, h, c, _ = ops.lstm_forward(**p, mask=mask)
    np.testing.assert_array_equal(y[0, 2], y[0, 1])
    np.testing.assert_array_equal(y[0, 3], y[0, 1])
    np.testing.assert_array_equal(h[1], p["h0"][1])   # fully padded row: the initial state
    np.testing.assert_array_equal(c[1], p["c0"][1])
    np.testing.assert_array_equal(y[1], np.broadcast_to(p["h0"][1], (6, 5)))


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_padding_is_invisible(padding, go_backwards):
    """A padded, masked sequence gives the final state of the unpadded one, and the same
    gradients for the real steps (zero for padded inputs)."""
    rng = np.random.default_rng(5)
    B, L, T, I, H = 2, 3, 7, 4, 5
    p = _problem(rng, B, L, I, H)
    x_pad = np.zeros((B, T, I))
    mask = np.zeros((B, T), bool)
    real = slice(T - L, T) if padding == "pre" else slice(0, L)
    x_pad[:, real] = p["x"]
    mask[:, real] = True
    q = dict(p, x=x_pad)
    _, h, c, cache = ops.lstm_forward(**p, go_backwards=go_backwards, return_sequences=False)
    _, hp, cp, cache_p = ops.lstm_forward(**q, mask=mask, go_backwards=go_backwards,
                                          return_sequences=False)
    np.testing.assert_allclose(hp, h, rtol=0, atol=1e-14)
    np.testing.assert_allclose(cp, c, rtol=0, atol=1e-14)
    dh = rng.standard_normal((B, H))
    g = ops.lstm_backward(dh, cache)
    gp = ops.lstm_backward(dh, cache_p)
    np.testing.assert_allclose(gp[0][:, real], g[0], rtol=0, atol=1e-13)
    assert not gp[0][:, np.logical_not(mask[0])].any()
    for a, b in zip(gp[1:], g[1:]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


def test_go_backwards_is_the_reversed_sequence_in_processing_order():
    rng = np.random.default_rng(6)
    p = _problem(rng, 2, 5, 3, 4)
    y, h, c, _ = ops.lstm_forward(**p, go_backwards=True)
    yr, hr, cr, _ = ops.lstm_forward(**dict(p, x=p["x"][:, ::-1]))
    np.testing.assert_allclose(y, yr, rtol=0, atol=1e-14)  # Keras: outputs in processing order
    np.testing.assert_allclose(h, hr, rtol=0, atol=1e-14)


def test_dropout_masks_scale_inputs_and_recurrent_state():
    """Dropping input features equals zeroing them in x; masks are reused at every step."""
    rng = np.random.default_rng(7)
    p = _problem(rng, 3, 4, 5, 4)
    idm = (rng.random((3, 5)) > 0.5) * 2.0
    y, _, _, _ = ops.lstm_forward(**p, input_dropout_mask=idm)
    y2, _, _, _ = ops.lstm_forward(**dict(p, x=p["x"] * idm[:, None, :]))
    np.testing.assert_allclose(y, y2, rtol=0, atol=1e-14)
    ones_r = np.ones((3, 4))
    y3, _, _, _ = ops.lstm_forward(**p, recurrent_dropout_mask=ones_r)
    y4, _, _, _ = ops.lstm_forward(**p)
    np.testing.assert_allclose(y3, y4, rtol=0, atol=1e-14)


def test_zero_length_sequence_returns_initial_state():
    rng = np.random.default_rng(8)
    p = _problem(rng, 2, 0, 3, 4)
    y, h, c, cache = ops.lstm_forward(**p)
    assert y.shape == (2, 0, 4)
    np.testing.assert_array_equal(h, p["h0"])
    np.testing.assert_array_equal(c, p["c0"])
    dh = rng.standard_normal((2, 4))
    dx, dk, drk, db, dh0, dc0 = ops.lstm_backward(None, cache, dh, None)
    assert dx.shape == (2, 0, 3) and not dk.any() and not drk.any() and not db.any()
    np.testing.assert_array_equal(dh0, dh)
    assert not dc0.any()


def test_matches_torch_lstm():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    B, T, I, H = 3, 6, 5, 7
    p = _problem(rng, B, T, I, H)
    lstm = torch.nn.LSTM(I, H, batch_first=True).double()
    with torch.no_grad():  # torch: weight_ih (4H, I), gates i, f, g, o; two biases
        lstm.weight_ih_l0.copy_(torch.from_numpy(p["kernel"].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(p["recurrent_kernel"].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(p["bias"]))
        lstm.bias_hh_l0.zero_()
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    h0 = torch.from_numpy(p["h0"])[None].requires_grad_(True)
    c0 = torch.from_numpy(p["c0"])[None].requires_grad_(True)
    out, (hn, cn) = lstm(x, (h0, c0))
    R = rng.standard_normal((B, T, H))
    (out * torch.from_numpy(R)).sum().backward()
    y, h, c, cache = ops.lstm_forward(**p)
    np.testing.assert_allclose(y, out.detach().numpy(), atol=1e-12)
    dx, dk, drk, db, dh0, dc0 = ops.lstm_backward(R, cache)
    np.testing.assert_allclose(dx, x.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dk, lstm.weight_ih_l0.grad.numpy().T, atol=1e-12)
    np.testing.assert_allclose(drk, lstm.weight_hh_l0.grad.numpy().T, atol=1e-12)
    np.testing.assert_allclose(db, lstm.bias_ih_l0.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dh0, h0.grad.numpy()[0], atol=1e-12)
    np.testing.assert_allclose(dc0, c0.grad.numpy()[0], atol=1e-12)


# ---- bad input ------------------------------------------------------------------------------

def test_errors_name_the_argument_and_shapes():
    rng = np.random.default_rng(10)
    p = _problem(rng, 2, 3, 4, 5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"lstm_forward: x must be 3-D; got shape \(2, 3\)"):
        ops.lstm_forward(**dict(p, x=p["x"][:, :, 0]))
    with pytest.raises(ValueError, match=r"kernel must be \(I, 4H\) = \(4, 20\); got \(5, 20\)"):
        ops.lstm_forward(**dict(p, kernel=np.zeros((5, 20), np.float32)))
    with pytest.raises(ValueError, match=r"recurrent_kernel must be \(H, 4H\) = \(5, 20\)"):
        ops.lstm_forward(**dict(p, recurrent_kernel=np.zeros((5, 21), np.float32)))
    with pytest.raises(ValueError, match=r"bias must be \(4H,\) = \(20,\); got \(5,\)"):
        ops.lstm_forward(**dict(p, bias=np.zeros(5, np.float32)))
    with pytest.raises(ValueError, match=r"h0 must be \(B, H\) = \(2, 5\); got \(3, 5\)"):
        ops.lstm_forward(**dict(p, h0=np.zeros((3, 5), np.float32)))
    with pytest.raises(ValueError, match=r"mask must be \(B, T\) = \(2, 3\); got \(2, 4\)"):
        ops.lstm_forward(**p, mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"input_dropout_mask must be \(B, I\) = \(2, 4\)"):
        ops.lstm_forward(**p, input_dropout_mask=np.ones((2, 5), np.float32))
    with pytest.raises(TypeError, match=r"kernel must have the dtype of x \(float32\); got float64"):
        ops.lstm_forward(**dict(p, kernel=p["kernel"].astype(np.float64)))
    with pytest.raises(TypeError, match="x must be float32 or float64; got int64"):
        ops.lstm_forward(**dict(p, x=np.zeros((2, 3, 4), np.int64)))
    with pytest.raises(ValueError, match="activation must be one of tanh, sigmoid, relu, linear; "
                                         "got 'softmax'"):
        ops.lstm_forward(**p, activation="softmax")
    with pytest.raises(ValueError, match="recurrent_activation must be one of"):
        ops.lstm_forward(**p, recurrent_activation="gelu")
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        ops.lstm_forward(**p, mask=np.array([["a"] * 3] * 2))
    y, h, c, cache = ops.lstm_forward(**p)
    with pytest.raises(ValueError, match=r"dy must be \(B, T, H\) = \(2, 3, 5\); got \(2, 5\)"):
        ops.lstm_backward(np.zeros((2, 5), np.float32), cache)
    with pytest.raises(TypeError, match=r"dy must have the forward's dtype \(float32\)"):
        ops.lstm_backward(np.zeros((2, 3, 5)), cache)
    with pytest.raises(TypeError, match="cache must be the LSTMCache"):
        ops.lstm_backward(y, None)
    _, _, _, cache_last = ops.lstm_forward(**p, return_sequences=False)
    with pytest.raises(ValueError, match=r"dy must be \(B, H\) = \(2, 5\)"):
        ops.lstm_backward(y, cache_last)
    # A non-contiguous x is copied, not rejected.
    xt = np.ascontiguousarray(p["x"].transpose(1, 0, 2)).transpose(1, 0, 2)
    np.testing.assert_array_equal(ops.lstm_forward(**dict(p, x=xt))[0], y)


@pytest.mark.parametrize("_ref", [False, True])
def test_need_dx_false_skips_only_dx(_ref):
    rng = np.random.default_rng(12)
    p = _problem(rng, 3, 4, 5, 6, mask="post", dropout=True)
    y, _, _, cache = ops.lstm_forward(**p)
    full = ops.lstm_backward(y, cache, _ref=_ref)
    part = ops.lstm_backward(y, cache, need_dx=False, _ref=_ref)
    assert part[0] is None
    for a, b in zip(full[1:], part[1:]):
        np.testing.assert_array_equal(a, b)
    _, _, _, rcache = reference.lstm_forward(**p)
    assert reference.lstm_backward(y, rcache, need_dx=False)[0] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# row tiles of 4 / 3 and remainders, narrow last column blocks, two row groups at 2 threads
@pytest.mark.parametrize("shape", [(7, 5, 6, 37), (3, 4, 5, 16), (33, 6, 9, 70)],
                         ids=lambda s: "B%dT%dI%dH%d" % s)
def test_fused_recurrent_products_agree_across_isas(shape, dtype):
    """The fused products give the same bits with the lstm family on AVX-512 and on AVX2, and
    match the GEMM-driver path (lstm family at ref) to rounding."""
    order = ("avx512", "avx2", "ref")
    paths = list(order[order.index(ops.detect_isa()):])
    if len(paths) < 2:
        pytest.skip("no SIMD path on this CPU")
    rng = np.random.default_rng(_seed("isa", shape))
    p = _problem(rng, *shape, dtype=dtype, mask="random", dropout=True)
    got = {}
    try:
        for isa in paths:
            ops.set_family_cap("lstm", isa)
            out, grads = _run(ops, p, {}, dtype)
            got[isa] = list(out) + list(grads)
    finally:
        ops.set_family_cap("lstm", ops.detect_isa())
    names = ("y", "h_n", "c_n") + GRAD_NAMES
    simd = [isa for isa in paths if isa != "ref"]
    for isa in simd[1:]:
        for name, a, b in zip(names, got[simd[0]], got[isa]):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: {simd[0]} vs {isa}")
    for isa in simd:
        for name, a, b in zip(names, got[isa], got["ref"]):
            _close(a, None if b is None else b.astype(np.float64), dtype, f"{name} {isa}")
