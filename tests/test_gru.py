"""GRU and SimpleRNN over whole sequences: nanonet.ops.gru_* / simple_rnn_* against
nanonet.reference, float64 central finite differences, 1 vs 2 threads, Keras semantics of masks /
go_backwards / states / dropout, the layers (config, saving, resume), torch.nn.GRU (optional) and
bad input."""
import zlib

import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

GRAD_NAMES = ("dx", "dkernel", "drecurrent_kernel", "dbias", "dh0")
CELLS = ("gru", "gru_v1", "simple")  # gru_v1: reset_after=False


def _seed(*key):
    return zlib.crc32(repr(key).encode())


def _problem(rng, cell, B, T, I, H, dtype=np.float64, bias=True, states=True, mask=None,
             dropout=False):
    """Random weights, biases, state and options as forward kwargs for `cell`."""
    G = H if cell == "simple" else 3 * H
    bias_shape = (2, G) if cell == "gru" else (G,)
    p = dict(
        x=rng.standard_normal((B, T, I)),
        kernel=rng.standard_normal((I, G)) / np.sqrt(max(I, 1)),
        recurrent_kernel=rng.standard_normal((H, G)) / np.sqrt(H),
        bias=rng.standard_normal(bias_shape) * 0.5 if bias else None,
        h0=rng.standard_normal((B, H)) * 0.5 if states else None,
    )
    if cell != "simple":
        p["reset_after"] = cell == "gru"
    if mask is not None:
        p["mask"] = _mask(rng, B, T, mask)
    if dropout:
        p["input_dropout_mask"] = (rng.random((B, I)) >= 0.3) / 0.7
        p["recurrent_dropout_mask"] = (rng.random((B, H)) >= 0.4) / 0.6
    return {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype != bool else v)
            for k, v in p.items()}


def _mask(rng, B, T, kind):
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


def _fns(mod, cell):
    if cell == "simple":
        return mod.simple_rnn_forward, mod.simple_rnn_backward
    return mod.gru_forward, mod.gru_backward


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
    "act_relu": ({}, dict(activation="relu")),
    "act_sigmoid": ({}, dict(activation="sigmoid")),
    "act_linear": ({}, dict(activation="linear")),
}
GRU_ONLY = {"ract_tanh": ({}, dict(recurrent_activation="tanh")),
            "ract_linear": ({}, dict(recurrent_activation="linear"))}
CASES = [(c, n) for c in CELLS for n in CONFIGS] + [(c, n) for c in CELLS[:2] for n in GRU_ONLY]
SHAPES = [(2, 3, 3, 4), (1, 1, 2, 3), (3, 5, 4, 7), (1, 4, 1, 1)]


def _config(name):
    return CONFIGS.get(name) or GRU_ONLY[name]


def _run(mod, cell, p, fw, dtype, rng_seed=0):
    fwd, bwd = _fns(mod, cell)
    y, h_n, cache = fwd(**p, **fw)
    rng = np.random.default_rng(rng_seed)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh_n = rng.standard_normal(h_n.shape).astype(dtype)
    return (y, h_n), bwd(dy, cache, dh_n)


def _close(got, want, dtype, what):
    if want is None:
        assert got is None, what
        return
    scale = np.abs(want).max() + 1.0 if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[np.dtype(dtype).name]["gru"] * scale,
                               err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%dT%dI%dH%d" % s)
@pytest.mark.parametrize("cell,config", CASES)
def test_forward_backward_match_reference(cell, config, shape, dtype):
    pk, fw = _config(config)
    rng = np.random.default_rng(_seed(cell, config, shape))
    p64 = _problem(rng, cell, *shape, **pk)
    p = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype != bool else v)
         for k, v in p64.items()}
    outs, grads = _run(ops, cell, p, fw, dtype)
    want_outs, want_grads = _run(reference, cell, p64, fw, np.float64)
    for name, got, want in zip(("y", "h_n"), outs, want_outs):
        assert got.dtype == dtype
        _close(got, want, dtype, name)
    for name, got, want in zip(GRAD_NAMES, grads, want_grads):
        _close(got, want, dtype, name)


FD_CASES = [(c, n) for c in CELLS for n in ("states", "no_bias", "last_only", "go_backwards",
                                              "mask_random_backwards", "mask_pre", "dropout",
                                              "act_relu")]


@pytest.mark.parametrize("cell,config", FD_CASES)
@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (1, 1, 2, 3), (3, 4, 5, 3)],
                         ids=lambda s: "B%dT%dI%dH%d" % s)
def test_gradients_match_finite_differences(cell, config, shape):
    pk, fw = _config(config)
    rng = np.random.default_rng(_seed(cell, config, shape, "fd"))
    p = _problem(rng, cell, *shape, **pk)
    fwd, bwd = _fns(ops, cell)
    y, h_n, cache = fwd(**p, **fw)
    R, Rh = rng.standard_normal(y.shape), rng.standard_normal(h_n.shape)
    grads = dict(zip(GRAD_NAMES, bwd(R, cache, Rh)))

    def loss():
        y, h_n, _ = fwd(**p, **fw, training=False)
        return np.sum(y * R) + np.sum(h_n * Rh)

    h = 1e-6
    for arg, gname in (("x", "dx"), ("kernel", "dkernel"), ("recurrent_kernel",
                       "drecurrent_kernel"), ("bias", "dbias"), ("h0", "dh0")):
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
        assert g.shape == a.shape, gname
        err = np.linalg.norm(g - num)
        assert err <= TOL["float64"]["grad_fd"] * max(np.linalg.norm(g), 1e-3), (gname, err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
# (33, 40, 30, 70) and (64, 20, 96, 96) are above kLstmParallelFlops: two row groups (17/16 and
# 32/32 rows); (1, 6, 5, 64) one row on one thread.
@pytest.mark.parametrize("shape", [(5, 7, 9, 40), (1, 6, 5, 64), (33, 40, 30, 70),
                                   (64, 20, 96, 96)], ids=lambda s: "B%dT%dI%dH%d" % s)
def test_one_and_two_threads_agree(shape, cell, dtype):
    rng = np.random.default_rng(11)
    p = _problem(rng, cell, *shape, dtype=dtype, mask="random", dropout=True)
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        one = _run(ops, cell, p, {}, dtype)
        nn.set_num_threads(2)
        two = _run(ops, cell, p, {}, dtype)
    finally:
        nn.set_num_threads(before)
    for name, a, b in zip(("y", "h_n") + GRAD_NAMES, one[0] + one[1], two[0] + two[1]):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_inference_forward_keeps_nothing_and_agrees(cell):
    rng = np.random.default_rng(3)
    p = _problem(rng, cell, 4, 6, 5, 8, mask="pre", dropout=True)
    fwd, _ = _fns(ops, cell)
    y, h, cache = fwd(**p)
    yi, hi, none = fwd(**p, training=False)
    assert none is None and cache is not None
    np.testing.assert_array_equal(y, yi)
    np.testing.assert_array_equal(h, hi)
    y2, h2, _ = fwd(**p, return_sequences=False, training=False)
    assert y2.shape == (4, 8)
    np.testing.assert_array_equal(y2, h)


# ---- Keras semantics ------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_masked_steps_carry_state_and_output_it(cell):
    rng = np.random.default_rng(4)
    p = _problem(rng, cell, 3, 6, 2, 5)
    mask = np.ones((3, 6), bool)
    mask[0, 2:4] = False
    mask[1] = False
    fwd, _ = _fns(ops, cell)
    y, h, _ = fwd(**p, mask=mask)
    np.testing.assert_array_equal(y[0, 2], y[0, 1])
    np.testing.assert_array_equal(y[0, 3], y[0, 1])
    np.testing.assert_array_equal(h[1], p["h0"][1])
    np.testing.assert_array_equal(y[1], np.broadcast_to(p["h0"][1], (6, 5)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_padding_is_invisible(cell, padding, go_backwards):
    rng = np.random.default_rng(5)
    B, L, T, I, H = 2, 3, 7, 4, 5
    p = _problem(rng, cell, B, L, I, H)
    x_pad = np.zeros((B, T, I))
    mask = np.zeros((B, T), bool)
    real = slice(T - L, T) if padding == "pre" else slice(0, L)
    x_pad[:, real] = p["x"]
    mask[:, real] = True
    q = dict(p, x=x_pad)
    fwd, bwd = _fns(ops, cell)
    _, h, cache = fwd(**p, go_backwards=go_backwards, return_sequences=False)
    _, hp, cache_p = fwd(**q, mask=mask, go_backwards=go_backwards, return_sequences=False)
    np.testing.assert_allclose(hp, h, rtol=0, atol=1e-14)
    dh = rng.standard_normal((B, H))
    g, gp = bwd(dh, cache), bwd(dh, cache_p)
    np.testing.assert_allclose(gp[0][:, real], g[0], rtol=0, atol=1e-13)
    assert not gp[0][:, np.logical_not(mask[0])].any()
    for a, b in zip(gp[1:], g[1:]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("cell", CELLS)
def test_go_backwards_is_the_reversed_sequence_in_processing_order(cell):
    rng = np.random.default_rng(6)
    p = _problem(rng, cell, 2, 5, 3, 4)
    fwd, _ = _fns(ops, cell)
    y, h, _ = fwd(**p, go_backwards=True)
    yr, hr, _ = fwd(**dict(p, x=p["x"][:, ::-1]))
    np.testing.assert_allclose(y, yr, rtol=0, atol=1e-14)
    np.testing.assert_allclose(h, hr, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
def test_input_dropout_equals_zeroed_inputs(cell):
    rng = np.random.default_rng(7)
    p = _problem(rng, cell, 3, 4, 5, 4)
    fwd, _ = _fns(ops, cell)
    idm = (rng.random((3, 5)) > 0.5) * 2.0
    y, _, _ = fwd(**p, input_dropout_mask=idm)
    y2, _, _ = fwd(**dict(p, x=p["x"] * idm[:, None, :]))
    np.testing.assert_allclose(y, y2, rtol=0, atol=1e-14)
    y3, _, _ = fwd(**p, recurrent_dropout_mask=np.ones((3, 4)))
    np.testing.assert_allclose(y3, fwd(**p)[0], rtol=0, atol=1e-14)


def test_gru_matches_torch_gru():
    """torch.nn.GRU is reset_after with gate order r, z, n and weights (3H, I)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    B, T, I, H = 3, 6, 5, 7
    p = _problem(rng, "gru", B, T, I, H)
    gru = torch.nn.GRU(I, H, batch_first=True).double()

    def to_torch(w):  # Keras columns z, r, h -> torch rows r, z, n
        z, r, h = np.split(w, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1).T.copy()

    with torch.no_grad():
        gru.weight_ih_l0.copy_(torch.from_numpy(to_torch(p["kernel"])))
        gru.weight_hh_l0.copy_(torch.from_numpy(to_torch(p["recurrent_kernel"])))
        gru.bias_ih_l0.copy_(torch.from_numpy(to_torch(p["bias"][0])))
        gru.bias_hh_l0.copy_(torch.from_numpy(to_torch(p["bias"][1])))
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    h0 = torch.from_numpy(p["h0"])[None].requires_grad_(True)
    out, hn = gru(x, h0)
    R = rng.standard_normal((B, T, H))
    (out * torch.from_numpy(R)).sum().backward()
    y, h, cache = ops.gru_forward(**p)
    np.testing.assert_allclose(y, out.detach().numpy(), atol=1e-12)
    dx, dk, drk, db, dh0 = ops.gru_backward(R, cache)
    np.testing.assert_allclose(dx, x.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(to_torch(dk), gru.weight_ih_l0.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(to_torch(drk), gru.weight_hh_l0.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(to_torch(db[0]), gru.bias_ih_l0.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(to_torch(db[1]), gru.bias_hh_l0.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dh0, h0.grad.numpy()[0], atol=1e-12)


def test_simple_rnn_matches_torch_rnn():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    B, T, I, H = 2, 5, 4, 6
    p = _problem(rng, "simple", B, T, I, H)
    rnn = torch.nn.RNN(I, H, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["kernel"].T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["recurrent_kernel"].T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p["bias"]))
        rnn.bias_hh_l0.zero_()
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    out, _ = rnn(x, torch.from_numpy(p["h0"])[None])
    R = rng.standard_normal((B, T, H))
    (out * torch.from_numpy(R)).sum().backward()
    y, _, cache = ops.simple_rnn_forward(**p)
    np.testing.assert_allclose(y, out.detach().numpy(), atol=1e-12)
    dx, dk, drk, db, _ = ops.simple_rnn_backward(R, cache)
    np.testing.assert_allclose(dx, x.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dk, rnn.weight_ih_l0.grad.numpy().T, atol=1e-12)
    np.testing.assert_allclose(drk, rnn.weight_hh_l0.grad.numpy().T, atol=1e-12)
    np.testing.assert_allclose(db, rnn.bias_ih_l0.grad.numpy(), atol=1e-12)


# ---- bad input ------------------------------------------------------------------------------

def test_errors_name_the_argument_and_shapes():
    rng = np.random.default_rng(10)
    p = _problem(rng, "gru", 2, 3, 4, 5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"gru_forward: x must be 3-D; got shape \(2, 3\)"):
        ops.gru_forward(**dict(p, x=p["x"][:, :, 0]))
    with pytest.raises(ValueError, match=r"kernel must be \(I, 3H\) = \(4, 15\); got \(5, 15\)"):
        ops.gru_forward(**dict(p, kernel=np.zeros((5, 15), np.float32)))
    with pytest.raises(ValueError, match=r"recurrent_kernel must be \(H, 3H\) = \(5, 15\)"):
        ops.gru_forward(**dict(p, recurrent_kernel=np.zeros((5, 16), np.float32)))
    with pytest.raises(ValueError, match=r"bias must be \(2, G\) = \(2, 15\); got \(15,\)"):
        ops.gru_forward(**dict(p, bias=np.zeros(15, np.float32)))
    with pytest.raises(ValueError, match=r"bias must be \(G,\) = \(15,\); got \(2, 15\)"):
        ops.gru_forward(**dict(p, reset_after=False))
    with pytest.raises(ValueError, match=r"h0 must be \(B, H\) = \(2, 5\); got \(3, 5\)"):
        ops.gru_forward(**dict(p, h0=np.zeros((3, 5), np.float32)))
    with pytest.raises(ValueError, match=r"mask must be \(B, T\) = \(2, 3\); got \(2, 4\)"):
        ops.gru_forward(**p, mask=np.ones((2, 4), bool))
    with pytest.raises(TypeError, match=r"kernel must have the dtype of x \(float32\); got float64"):
        ops.gru_forward(**dict(p, kernel=p["kernel"].astype(np.float64)))
    with pytest.raises(ValueError, match="activation must be one of tanh, sigmoid, relu, linear; "
                                         "got 'softmax'"):
        ops.gru_forward(**p, activation="softmax")
    with pytest.raises(ValueError, match=r"simple_rnn_forward: kernel must be \(I, H\) = \(4, 5\)"):
        ops.simple_rnn_forward(p["x"], np.zeros((4, 6), np.float32), np.zeros((5, 5), np.float32))
    y, h, cache = ops.gru_forward(**p)
    with pytest.raises(ValueError, match=r"dy must be \(B, T, H\) = \(2, 3, 5\); got \(2, 5\)"):
        ops.gru_backward(np.zeros((2, 5), np.float32), cache)
    with pytest.raises(TypeError, match=r"dy must have the forward's dtype \(float32\)"):
        ops.gru_backward(np.zeros((2, 3, 5)), cache)
    with pytest.raises(TypeError, match="cache must be the RNNCache of a training gru_forward"):
        ops.gru_backward(y, None)
    _, _, scache = ops.simple_rnn_forward(p["x"], np.zeros((4, 5), np.float32),
                                          np.zeros((5, 5), np.float32))
    with pytest.raises(TypeError, match="cache must be the RNNCache of a training gru_forward"):
        ops.gru_backward(y, scache)


def test_need_dx_false_skips_only_dx():
    rng = np.random.default_rng(12)
    p = _problem(rng, "gru", 3, 4, 5, 6, mask="post", dropout=True)
    y, _, cache = ops.gru_forward(**p)
    full = ops.gru_backward(y, cache)
    part = ops.gru_backward(y, cache, need_dx=False)
    assert part[0] is None
    for a, b in zip(full[1:], part[1:]):
        np.testing.assert_array_equal(a, b)


def _lstm_family_paths():
    """The lstm family's paths this CPU has, best first (the fused recurrent products)."""
    order = ("avx512", "avx2", "ref")
    return list(order[order.index(ops.detect_isa()):])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
# row tiles of 4 / 3 and their remainders, a narrow last column block (H = 37, 3H = 111), K = H,
# 2H and 3H in the backward products, and two row groups at 2 threads
@pytest.mark.parametrize("shape", [(7, 5, 6, 37), (3, 4, 5, 16), (33, 6, 9, 70)],
                         ids=lambda s: "B%dT%dI%dH%d" % s)
def test_fused_recurrent_products_agree_across_isas(shape, cell, dtype):
    """The fused products (rnn_detail) give the same bits on AVX-512 and AVX2 (one FMA chain per
    element) and match the GEMM-driver path (lstm family at ref) to rounding."""
    rng = np.random.default_rng(_seed("isa", shape, cell))
    p = _problem(rng, cell, *shape, dtype=dtype, mask="random", dropout=True)
    paths = _lstm_family_paths()
    if len(paths) < 2:
        pytest.skip("no SIMD path on this CPU")
    got = {}
    try:
        for isa in paths:
            ops.set_family_cap("lstm", isa)
            out, grads = _run(ops, cell, p, {}, dtype)
            got[isa] = list(out) + list(grads)
    finally:
        ops.set_family_cap("lstm", ops.detect_isa())
    names = ("y", "h_n") + GRAD_NAMES
    simd = [isa for isa in paths if isa != "ref"]
    for isa in simd[1:]:
        for name, a, b in zip(names, got[simd[0]], got[isa]):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: {simd[0]} vs {isa}")
    for isa in simd:
        for name, a, b in zip(names, got[isa], got["ref"]):
            _close(a, b.astype(np.float64) if b is not None else None, dtype, f"{name} {isa}")
