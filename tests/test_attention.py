"""Scaled dot-product attention: the flash kernel against nanonet.reference (full score matrix)
and the scalar C++ specification, masks (key padding, full (B, Tq, Tk), causal, fully masked
rows), float64 finite differences, threads and bad input."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

# (B, H, Tq, Tk, D, Dv): T = 1, heads = 1, D not a multiple of 8, sizes around the 16-row query
# and 128-row key tiles (and the 4 x 16 register blocks), Tq != Tk; the last ones take the
# multithreaded paths.
SHAPES = [(1, 1, 1, 1, 1, 1), (1, 1, 1, 5, 3, 2), (2, 1, 5, 1, 7, 4), (1, 2, 7, 7, 8, 8),
          (2, 3, 17, 33, 13, 5), (1, 1, 15, 127, 16, 17), (1, 2, 33, 129, 9, 16),
          (3, 2, 64, 64, 32, 32), (1, 1, 97, 257, 9, 11), (4, 4, 40, 40, 24, 24)]
MASKS = ["none", "keys", "full", "causal", "keys+causal"]


def _close(got, want, dtype):
    tol = TOL[np.dtype(dtype).name]["attention"]
    want = np.asarray(want, np.float64)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * (np.abs(want).max(initial=0) + 1))


def _inputs(rng, shape, dtype):
    B, H, Tq, Tk, D, Dv = shape
    q = rng.standard_normal((B, H, Tq, D)).astype(dtype)
    k = rng.standard_normal((B, H, Tk, D)).astype(dtype)
    v = rng.standard_normal((B, H, Tk, Dv)).astype(dtype)
    dout = rng.standard_normal((B, H, Tq, Dv)).astype(dtype)
    return q, k, v, dout


def _mask(rng, kind, B, Tq, Tk):
    """(mask, causal) for a mask kind; row 0 of the batch is fully masked where it can be."""
    causal = "causal" in kind
    if kind.startswith("keys"):
        m = rng.random((B, Tk)) < 0.7
        m[0] = False  # a fully masked batch row
        return m, causal
    if kind == "full":
        m = rng.random((B, Tq, Tk)) < 0.6
        m[0, 0] = False  # one fully masked query row
        return m, causal
    return None, causal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(shape, kind, dtype):
    rng = np.random.default_rng(abs(hash((shape, kind))) % 2**32)
    B, H, Tq, Tk, D, Dv = shape
    q, k, v, dout = _inputs(rng, shape, dtype)
    mask, causal = _mask(rng, kind, B, Tq, Tk)
    f64 = [a.astype(np.float64) for a in (q, k, v, dout)]
    want_out, want_lse = reference.attention_forward(*f64[:3], mask, causal)
    want = reference.attention_backward(f64[3], *f64[:3], want_out, want_lse, mask, causal)
    for ref in (False, True):
        out, lse = ops.attention_forward(q, k, v, mask, causal, _ref=ref)
        assert out.dtype == dtype and out.shape == (B, H, Tq, Dv) and lse.shape == (B, H, Tq)
        _close(out, want_out, dtype)
        dead = np.isneginf(want_lse)
        assert np.array_equal(np.isneginf(lse), dead)
        _close(np.where(dead, 0, lse), np.where(dead, 0, want_lse), dtype)
        grads = ops.attention_backward(dout, q, k, v, out, lse, mask, causal, _ref=ref)
        for g, w, a in zip(grads, want, (q, k, v)):
            assert g.dtype == dtype and g.shape == a.shape
            _close(g, w, dtype)
    if kind == "keys":  # batch row 0 has no valid key: zeros out, zero gradients, no NaN
        assert not out[0].any() and not grads[0][0].any()
        assert not grads[1][0].any() and not grads[2][0].any()


def test_reference_matches_naive_softmax():
    """The twin itself: plain softmax over a (Tq, Tk) score matrix, no mask."""
    rng = np.random.default_rng(0)
    q, k, v, _ = _inputs(rng, (2, 3, 5, 6, 4, 3), np.float64)
    s = q @ k.transpose(0, 1, 3, 2) / 2.0
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out, lse = reference.attention_forward(q, k, v)
    np.testing.assert_allclose(out, p @ v, rtol=1e-13)
    np.testing.assert_allclose(lse, np.log(np.exp(s).sum(-1)), rtol=1e-13)


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1, 1), (2, 2, 3, 4, 3, 2), (1, 1, 5, 5, 2, 3),
                                   (2, 1, 4, 3, 5, 1)])
def test_gradients_match_finite_differences(shape, kind):
    rng = np.random.default_rng(7)
    B, H, Tq, Tk, D, Dv = shape
    q, k, v, R = _inputs(rng, shape, np.float64)
    mask, causal = _mask(rng, kind, B, Tq, Tk)
    scale = 0.7

    def loss():
        return float(np.sum(ops.attention_forward(q, k, v, mask, causal, scale)[0] * R))

    out, lse = ops.attention_forward(q, k, v, mask, causal, scale)
    grads = ops.attention_backward(R, q, k, v, out, lse, mask, causal, scale)
    h = 1e-6
    for a, g in zip((q, k, v), grads):
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            up = loss()
            a[idx] = old - h
            down = loss()
            a[idx] = old
            num[idx] = (up - down) / (2 * h)
        err = np.abs(num - g).max() / (np.abs(num).max() + 1e-12)
        assert err < TOL["float64"]["grad_fd"] * 10 or np.abs(num - g).max() < 1e-9, err


@pytest.mark.parametrize("shape", [(1, 1, 200, 150, 16, 8), (2, 1, 70, 70, 8, 8),
                                   (8, 2, 64, 64, 16, 16)])
@pytest.mark.parametrize("kind", ["none", "keys+causal"])
def test_one_and_two_threads_agree(shape, kind):
    """B * H below the thread count takes the two-sweep backward; results match 1 thread."""
    rng = np.random.default_rng(3)
    B, H, Tq, Tk, D, Dv = shape
    q, k, v, dout = _inputs(rng, shape, np.float32)
    mask, causal = _mask(rng, kind, B, Tq, Tk)
    old = nn.get_num_threads()
    try:
        res = []
        for n in (1, 2):
            nn.set_num_threads(n)
            out, lse = ops.attention_forward(q, k, v, mask, causal)
            res.append((out, lse) + ops.attention_backward(dout, q, k, v, out, lse, mask, causal))
    finally:
        nn.set_num_threads(old)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)  # same tile sums in the same order


def test_large_scores_do_not_overflow():
    rng = np.random.default_rng(1)
    q, k, v, dout = _inputs(rng, (1, 1, 40, 70, 4, 3), np.float32)
    q *= 60.0  # scores of several hundred: exp would overflow without the running max
    out, lse = ops.attention_forward(q, k, v)
    want, _ = reference.attention_forward(*(a.astype(np.float64) for a in (q, k, v)))
    assert np.all(np.isfinite(lse))
    _close(out, want, np.float32)


def test_default_scale_is_inverse_sqrt_d():
    rng = np.random.default_rng(2)
    q, k, v, _ = _inputs(rng, (1, 2, 3, 4, 9, 2), np.float64)
    a, _ = ops.attention_forward(q, k, v)
    b, _ = ops.attention_forward(q, k, v, scale=1 / 3)
    np.testing.assert_allclose(a, b, rtol=1e-14)


# -- bad input --------------------------------------------------------------------------------
def test_bad_input():
    rng = np.random.default_rng(4)
    q, k, v, dout = _inputs(rng, (2, 2, 3, 4, 5, 6), np.float32)
    with pytest.raises(TypeError, match="v must have the dtype of q"):
        ops.attention_forward(q, k, v.astype(np.float64))
    with pytest.raises(TypeError, match="q must be float32 or float64"):
        ops.attention_forward(q.astype(np.int32), k, v)
    with pytest.raises(ValueError, match=r"q must be 4-D; got shape \(2, 2, 15\)"):
        ops.attention_forward(q.reshape(2, 2, 15), k, v)
    with pytest.raises(ValueError, match=r"k must be \(B, H, Tk, D\) = \(2, 2, 4, 5\)"):
        ops.attention_forward(q, k[..., :4], v)
    with pytest.raises(ValueError, match=r"v must be \(B, H, Tk, Dv\)"):
        ops.attention_forward(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match=r"mask must be \(B, Tk\) = \(2, 4\)"):
        ops.attention_forward(q, k, v, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"mask must be \(B, Tq, Tk\) = \(2, 3, 4\)"):
        ops.attention_forward(q, k, v, np.ones((2, 4, 4), bool))
    with pytest.raises(ValueError, match="scale must be finite"):
        ops.attention_forward(q, k, v, scale=float("nan"))
    out, lse = ops.attention_forward(q, k, v)
    with pytest.raises(ValueError, match=r"lse must be \(B, H, Tq\)"):
        ops.attention_backward(dout, q, k, v, out, lse[..., :2])
    with pytest.raises(ValueError, match=r"dout must be \(B, H, Tq, Dv\)"):
        ops.attention_backward(dout[..., :2], q, k, v, out, lse)
    with pytest.raises(TypeError, match="dout must have the dtype of q"):
        ops.attention_backward(dout.astype(np.float64), q, k, v, out, lse)


def test_core_takes_head_views_and_rejects_a_strided_last_axis():
    from nanonet import _core
    rng = np.random.default_rng(5)
    q, k, v, _ = _inputs(rng, (1, 2, 3, 4, 5, 6), np.float32)
    qt = q.transpose(0, 2, 1, 3).copy().transpose(0, 2, 1, 3)  # (B, T, H, D) memory
    np.testing.assert_array_equal(_core.attention_forward(qt, k, v, None, False, 1.0)[0],
                                  _core.attention_forward(q, k, v, None, False, 1.0)[0])
    with pytest.raises(ValueError, match="q's last axis must be contiguous"):
        _core.attention_forward(np.repeat(q, 2, axis=3)[..., ::2], k, v, None, False, 1.0)
    with pytest.raises(ValueError, match="q must be C-contiguous"):  # the scalar twin
        _core.attention_forward_ref(qt, k, v, None, False, 1.0)
    # ops copies what the core does not take, once
    qs = np.repeat(q, 2, axis=3)[..., ::2]
    np.testing.assert_array_equal(ops.attention_forward(qs, k, v)[0],
                                  ops.attention_forward(q, k, v)[0])


@pytest.mark.parametrize("masked", [False, True])
def test_head_views_of_a_projection_give_the_contiguous_results(masked):
    """q, k, v as views of one (B, T, 3 H D) projection and dout as a (B, T, H, D) view (what
    MultiHeadAttention passes): forward and backward equal, bit for bit, those of the
    contiguous copies."""
    rng = np.random.default_rng(8)
    B, T, H, D = 3, 37, 2, 20
    y = rng.standard_normal((B, T, 3 * H * D)).astype(np.float32)
    heads = [y[..., i * H * D:(i + 1) * H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3)
             for i in range(3)]
    dout = rng.standard_normal((B, T, H * D)).astype(np.float32)
    dview = dout.reshape(B, T, H, D).transpose(0, 2, 1, 3)
    mask = (rng.random((B, T)) > 0.3) if masked else None
    copies = [np.ascontiguousarray(h) for h in heads]
    out_v, lse_v = ops.attention_forward(*heads, mask=mask)
    out_c, lse_c = ops.attention_forward(*copies, mask=mask)
    assert np.array_equal(out_v, out_c) and np.array_equal(lse_v, lse_c)
    grads_v = ops.attention_backward(dview, *heads, out_v, lse_v, mask=mask)
    grads_c = ops.attention_backward(np.ascontiguousarray(dview), *copies, out_c, lse_c,
                                     mask=mask)
    for gv, gc in zip(grads_v, grads_c):
        assert np.array_equal(gv, gc)


# -- the MultiHeadAttention layer -----------------------------------------------------------------
L = nn.layers


def _randomize(layer, rng, scale=0.5):
    layer.set_weights([scale * rng.standard_normal(w.shape) for w in layer.weights])


def _mha_numpy(layer, query, value, key=None, mask=None, causal=False):
    """The layer's equations written out with the NumPy twin (mask: (B, Tq, Tv) or None)."""
    key = value if key is None else key
    ws = layer.get_weights()
    if layer.use_bias:
        wq, bq, wk, bk, wv, bv, wo, bo = ws
    else:
        (wq, wk, wv, wo), bq, bk, bv, bo = ws, 0, 0, 0, 0
    Q = np.einsum("btd,dhk->bhtk", query, wq) + np.asarray(bq)[..., None, :] \
        if layer.use_bias else np.einsum("btd,dhk->bhtk", query, wq)
    K = np.einsum("btd,dhk->bhtk", key, wk) + (np.asarray(bk)[..., None, :] if layer.use_bias
                                               else 0)
    V = np.einsum("btd,dhk->bhtk", value, wv) + (np.asarray(bv)[..., None, :] if layer.use_bias
                                                 else 0)
    O, _ = reference.attention_forward(Q, K, V, mask, causal, 1 / np.sqrt(layer.key_dim))
    return np.einsum("bhtv,hvo->bto", O, wo) + bo


@pytest.mark.parametrize("use_bias", [True, False])
def test_layer_matches_equations(use_bias):
    rng = np.random.default_rng(10)
    B, Tq, Tv = 3, 5, 7
    q = rng.standard_normal((B, Tq, 6))
    v = rng.standard_normal((B, Tv, 4))
    k = rng.standard_normal((B, Tv, 3))
    mha = L.MultiHeadAttention(2, 3, value_dim=5, use_bias=use_bias, output_shape=4,
                               dtype="float64")
    qm = rng.random((B, Tq)) < 0.8
    vm = rng.random((B, Tv)) < 0.7
    am = rng.random((B, Tq, Tv)) < 0.8
    y = mha(q, v, key=k, attention_mask=am, use_causal_mask=True, query_mask=qm, value_mask=vm)
    assert y.shape == (B, Tq, 4)
    assert [w.shape for w in mha.weights] == (
        [(6, 2, 3), (2, 3), (3, 2, 3), (2, 3), (4, 2, 5), (2, 5), (2, 5, 4), (4,)] if use_bias
        else [(6, 2, 3), (3, 2, 3), (4, 2, 5), (2, 5, 4)])
    _randomize(mha, rng)
    y = mha(q, v, key=k, attention_mask=am, use_causal_mask=True, query_mask=qm, value_mask=vm)
    full = am & qm[:, :, None] & vm[:, None, :]
    np.testing.assert_allclose(y, _mha_numpy(mha, q, v, k, full, True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", ["self", "key+masks", "causal+attention_mask"])
def test_layer_gradients_match_finite_differences(config):
    rng = np.random.default_rng(11)
    B, Tq, Tv, F = 2, 4, 3, 3
    mha = L.MultiHeadAttention(2, 2, value_dim=3, dtype="float64")
    q = rng.standard_normal((B, Tq, F))
    v = q if config == "self" else rng.standard_normal((B, Tv, 4))
    kwargs = {}
    args = [q, v]
    if config == "key+masks":
        kwargs["key"] = rng.standard_normal((B, Tv, 2))
        kwargs["value_mask"] = np.array([[True, False, True], [False, False, False]])
        kwargs["query_mask"] = np.array([[True, True, False, True], [True] * 4])
    if config == "causal+attention_mask":
        kwargs["use_causal_mask"] = True
        kwargs["attention_mask"] = rng.random((B, Tq, Tv)) < 0.7
    mha(*args, **kwargs)
    _randomize(mha, rng)
    R = rng.standard_normal((B, Tq, F))
    arrays = [q] if config == "self" else [q, v] + ([kwargs["key"]] if "key" in kwargs else [])

    def run(training=False):
        call_args = [arrays[0], arrays[0] if config == "self" else arrays[1]]
        kw = dict(kwargs)
        if "key" in kw:
            kw["key"] = arrays[2]
        return mha(*call_args, training=training, **kw)

    y = run(training=True)
    dx = mha.backward(R)
    grads = mha.grads
    loss = lambda: float(np.sum(run() * R))  # noqa: E731
    h = 1e-6
    wanted = [(w, g) for w, g in zip(mha.trainable_weights, grads)]
    if config == "self":
        wanted.append((arrays[0], dx[0] + dx[1]))  # query and value are the same array
    else:
        wanted += list(zip(arrays, dx))
    assert np.all(np.isfinite(y))
    for a, g in wanted:
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            up = loss()
            a[idx] = old - h
            down = loss()
            a[idx] = old
            num[idx] = (up - down) / (2 * h)
        assert g.shape == a.shape
        np.testing.assert_allclose(g, num, rtol=0, atol=1e-7 * (np.abs(num).max() + 1))


def test_layer_in_functional_graph_matches_eager_and_trains():
    rng = np.random.default_rng(12)
    ids = nn.Input((6,), dtype="int32")
    emb = L.Embedding(9, 8, mask_zero=True)
    x = emb(ids)
    mha = L.MultiHeadAttention(2, 4)
    h = L.Add()([x, mha(x, x, use_causal_mask=True)])
    out = L.Dense(1)(L.GlobalAveragePooling1D()(h))
    model = nn.Model(ids, out)
    xi = rng.integers(1, 9, size=(5, 6)).astype(np.int32)
    xi[:, -2:] = 0
    e = emb(xi)
    want = mha(e, e, use_causal_mask=True, query_mask=xi != 0, value_mask=xi != 0)
    got = nn.Model(ids, mha._inbound_nodes[0].outputs[0]).predict(xi, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    model.compile("adam", "mse")
    y = rng.standard_normal((5, 1)).astype(np.float32)
    first = model.train_on_batch(xi, y)
    for _ in range(30):
        last = model.train_on_batch(xi, y)
    assert last < first


def test_graph_attention_mask_as_input():
    rng = np.random.default_rng(13)
    q_in, v_in = nn.Input((4, 3)), nn.Input((5, 2))
    m_in = nn.Input((4, 5), dtype="bool")
    mha = L.MultiHeadAttention(1, 3, dtype="float32")
    model = nn.Model([q_in, v_in, m_in], mha(q_in, v_in, attention_mask=m_in))
    q = rng.standard_normal((2, 4, 3)).astype(np.float32)
    v = rng.standard_normal((2, 5, 2)).astype(np.float32)
    m = rng.random((2, 4, 5)) < 0.6
    np.testing.assert_allclose(model.predict([q, v, m], verbose=0),
                               mha(q, v, attention_mask=m), rtol=1e-6, atol=1e-6)


def test_layer_dropout_in_training():
    """Dropout on the probabilities: identity at inference; in training the (seeded) mask is
    repeatable, about the right fraction is dropped, and gradients match finite differences."""
    rng = np.random.default_rng(19)
    B, Tq, Tv = 2, 4, 5
    q = rng.standard_normal((B, Tq, 3))
    v = rng.standard_normal((B, Tv, 2))
    vm = np.array([[True, True, True, False, True], [True] * 5])
    mha = L.MultiHeadAttention(2, 3, dropout=0.4, seed=5, dtype="float64")
    plain = L.MultiHeadAttention(2, 3, dtype="float64")
    mha(q, v)
    plain(q, v)
    _randomize(mha, rng)
    plain.set_weights(mha.get_weights())
    np.testing.assert_allclose(mha(q, v, value_mask=vm), plain(q, v, value_mask=vm), rtol=1e-13)
    state = mha.get_rng_state()
    y1 = mha(q, v, value_mask=vm, training=True)
    assert not np.allclose(y1, plain(q, v, value_mask=vm))
    mha.set_rng_state(state)
    np.testing.assert_array_equal(mha(q, v, value_mask=vm, training=True), y1)
    R = rng.standard_normal(y1.shape)
    mha.set_rng_state(state)
    mha(q, v, value_mask=vm, training=True)
    kept = mha._ctx[-1][1] != 0  # the keep mask of that call (B, H, Tq, Tv)
    assert 0.3 < 1 - kept.mean() < 0.5  # 40% dropped, 80 draws
    dq, dv = mha.backward(R)
    grads = mha.grads

    def loss():
        mha.set_rng_state(state)  # the same dropout mask at every evaluation
        return float(np.sum(mha(q, v, value_mask=vm, training=True) * R))
    h = 1e-6
    for a, g in list(zip(mha.trainable_weights, grads)) + [(q, dq), (v, dv)]:
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            up = loss()
            a[idx] = old - h
            down = loss()
            a[idx] = old
            num[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=0, atol=1e-7 * (np.abs(num).max() + 1))


def test_return_attention_scores():
    rng = np.random.default_rng(14)
    mha = L.MultiHeadAttention(3, 2, dtype="float64")
    q = rng.standard_normal((2, 4, 5))
    v = rng.standard_normal((2, 5, 3))
    vm = np.array([[True, True, False, True, False], [False] * 5])
    y, s = mha(q, v, return_attention_scores=True, value_mask=vm)
    assert s.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(s[0].sum(-1), 1.0, rtol=1e-12)
    assert not s[1].any() and not s[0][..., ~vm[0]].any()
    np.testing.assert_allclose(y, mha(q, v, value_mask=vm), rtol=1e-12)


def test_layer_bad_input():
    for kw, match in (({"num_heads": 0, "key_dim": 2}, "num_heads must be a positive int"),
                      ({"num_heads": 2, "key_dim": -1}, "key_dim must be a positive int"),
                      ({"num_heads": 2, "key_dim": 2, "dropout": 1.0}, "dropout must be"),
                      ({"num_heads": 2, "key_dim": 2, "output_shape": (2, 3)}, "output_shape")):
        with pytest.raises(ValueError, match=match):
            L.MultiHeadAttention(**kw)
    rng = np.random.default_rng(15)
    mha = L.MultiHeadAttention(2, 2)
    q = rng.standard_normal((2, 4, 3)).astype(np.float32)
    mha(q, q)
    with pytest.raises(ValueError, match=r"query must be \(batch, steps, 3\)"):
        mha(q[..., :2], q)
    with pytest.raises(ValueError, match="attention_mask must broadcast"):
        mha(q, q, attention_mask=np.ones((2, 3, 4), bool))


def test_shared_layer_keeps_options_per_call_site_and_saves_them(tmp_path):
    # The options live on the node: one layer, causal at one site, not at the other, and the
    # scores returned at a third; all survive get_config / from_config and a saved file.
    rng = np.random.default_rng(17)
    x = nn.Input((5, 3))
    shared = L.MultiHeadAttention(2, 2, name="shared")
    plain = shared(x, x)
    causal = shared(x, x, use_causal_mask=True)
    out, scores = shared(causal, x, return_attention_scores=True)
    model = nn.Model(x, [plain, causal, out, scores])
    xv = rng.standard_normal((3, 5, 3)).astype(np.float32)
    got = model.predict(xv, verbose=0)
    np.testing.assert_allclose(got[0], shared(xv, xv), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[1], shared(xv, xv, use_causal_mask=True), rtol=1e-6,
                               atol=1e-6)
    assert not np.allclose(got[0], got[1])
    assert got[3].shape == (3, 2, 5, 5)
    config = model.get_config()
    nodes = [lc for lc in config["layers"] if lc["name"] == "shared"][0]["inbound_nodes"]
    assert [n.get("kwargs", {}) for n in nodes] == [
        {}, {"use_causal_mask": True}, {"return_attention_scores": True}]
    assert "call_options" not in shared.get_config()
    clone = nn.Model.from_config(config)
    clone.set_weights(model.get_weights())
    for a, b in zip(clone.predict(xv, verbose=0), got):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "m.nnet")
    for a, b in zip(nn.load_model(tmp_path / "m.nnet").predict(xv, verbose=0), got):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="kwargs must be a dict of the call options"):
        bad = model.get_config()
        [lc for lc in bad["layers"] if lc["name"] == "shared"][0]["inbound_nodes"][1][
            "kwargs"] = {"causal": True}
        nn.Model.from_config(bad)


def test_config_of_earlier_files_with_call_options_still_loads():
    # Files written before node options kept the options on the layer ("call_options") and
    # none on the nodes.
    rng = np.random.default_rng(18)
    x = nn.Input((4, 3))
    k = L.Dense(2)(x)
    model = nn.Model(x, L.MultiHeadAttention(2, 2, name="att")(x, x, key=k,
                                                                use_causal_mask=True))
    config = model.get_config()
    for lc in config["layers"]:
        if lc["name"] == "att":
            lc["config"]["call_options"] = {"key": True, "attention_mask": False,
                                            "use_causal_mask": True,
                                            "return_attention_scores": False}
            for n in lc["inbound_nodes"]:
                del n["kwargs"]
    clone = nn.Model.from_config(config)
    clone.set_weights(model.get_weights())
    xv = rng.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(clone.predict(xv, verbose=0), model.predict(xv, verbose=0),
                               rtol=1e-6, atol=1e-6)


# -- optional: Keras 3 with copied weights ------------------------------------------------------
def test_layer_matches_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(16)
    B, Tq, Tv = 3, 6, 5
    q = rng.standard_normal((B, Tq, 8)).astype(np.float32)
    v = rng.standard_normal((B, Tv, 4)).astype(np.float32)
    k = rng.standard_normal((B, Tv, 7)).astype(np.float32)
    am = rng.random((B, Tq, Tv)) < 0.7
    am[:, :, 0] = True  # no fully masked row: Keras's fused path (torch SDPA) and its explicit
    # one (return_attention_scores) disagree there; see test_layer_fully_masked_rows_match_keras
    km = keras.layers.MultiHeadAttention(num_heads=3, key_dim=5, value_dim=2)
    ky = keras.ops.convert_to_numpy(km(q, v, key=k, attention_mask=am, use_causal_mask=True))
    weights = [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in km.get_weights()]
    km.set_weights(weights)
    ky = keras.ops.convert_to_numpy(km(q, v, key=k, attention_mask=am, use_causal_mask=True))
    ks = keras.ops.convert_to_numpy(km(q, v, key=k, attention_mask=am, use_causal_mask=True,
                                       return_attention_scores=True)[1])
    nm = L.MultiHeadAttention(num_heads=3, key_dim=5, value_dim=2)
    nm(q, v, key=k)
    assert [w.shape for w in nm.get_weights()] == [w.shape for w in weights]
    nm.set_weights(weights)
    y, s = nm(q, v, key=k, attention_mask=am, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_allclose(y, ky, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, ks, rtol=1e-5, atol=1e-6)

    # Gradients of sum(out * R) with respect to the inputs and weights, through torch autograd.
    import torch
    R = rng.standard_normal(ky.shape).astype(np.float32)
    tq, tv, tk = (torch.tensor(a, requires_grad=True) for a in (q, v, k))
    out = km(tq, tv, key=tk, attention_mask=torch.tensor(am), use_causal_mask=True)
    (out * torch.tensor(R)).sum().backward()
    nm(q, v, key=k, attention_mask=am, use_causal_mask=True, training=True)
    dq, dv, dk = nm.backward(R)
    for got, t in ((dq, tq), (dv, tv), (dk, tk)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-4, atol=1e-4)
    kgrads = [w.value.grad.numpy() for w in km.trainable_weights]
    for got, want in zip(nm.grads, kgrads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_layer_fully_masked_rows_match_keras():
    """Keras's explicit path (taken with return_attention_scores) zeroes the probabilities of a
    row with no visible key, as the kernel does; the output there is the output bias."""
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(18)
    q = rng.standard_normal((2, 4, 6)).astype(np.float32)
    am = rng.random((2, 4, 5)) < 0.6
    am[0, 1] = False
    am[1, 3] = False
    km = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    km(q, q[:, :1].repeat(5, 1), attention_mask=am)
    weights = [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in km.get_weights()]
    km.set_weights(weights)
    v = rng.standard_normal((2, 5, 6)).astype(np.float32)
    ky, ks = (keras.ops.convert_to_numpy(t) for t in
              km(q, v, attention_mask=am, return_attention_scores=True))
    nm = L.MultiHeadAttention(num_heads=2, key_dim=3)
    nm(q, v)
    nm.set_weights(weights)
    y, s = nm(q, v, attention_mask=am, return_attention_scores=True)
    np.testing.assert_allclose(y, ky, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, ks, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[0, 1], weights[-1], rtol=1e-6)


def test_layer_embedding_masks_match_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(17)
    ids = rng.integers(1, 10, size=(4, 6)).astype(np.int32)
    ids[0, -3:] = 0
    ids[1, -1:] = 0

    def build(lib, layers):
        inp = lib.Input((6,), dtype="int32")
        x = layers.Embedding(10, 8, mask_zero=True)(inp)
        y = layers.MultiHeadAttention(2, 4)(x, x)
        return lib.Model(inp, layers.GlobalAveragePooling1D()(y))
    km = build(keras, keras.layers)
    nm = build(nn, L)
    weights = [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in km.get_weights()]
    km.set_weights(weights)
    nm.set_weights(weights)
    np.testing.assert_allclose(nm.predict(ids, verbose=0), km.predict(ids, verbose=0),
                               rtol=1e-5, atol=1e-5)


# -- optional: the core against torch's scaled_dot_product_attention -----------------------------
@pytest.mark.parametrize("kind", ["none", "keys", "full", "causal"])
def test_core_matches_torch_sdpa(kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(20)
    B, H, Tq, Tk, D, Dv = 2, 3, 19, 19, 12, 7
    q, k, v, dout = _inputs(rng, (B, H, Tq, Tk, D, Dv), np.float64)
    mask, causal = _mask(rng, kind, B, Tq, Tk)
    if mask is not None:  # torch gives NaN for a fully masked row; keep one key visible
        mask = mask.copy()
        mask[..., 0] = True
    out, lse = ops.attention_forward(q, k, v, mask, causal)
    grads = ops.attention_backward(dout, q, k, v, out, lse, mask, causal)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tmask = None
    if mask is not None:
        tmask = torch.tensor(mask[:, None, None, :] if mask.ndim == 2 else mask[:, None])
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tmask,
                                                            is_causal=causal)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    for g, t in zip(grads, (tq, tk, tv)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-11, atol=1e-11)


# -- Attention (Luong) and AdditiveAttention (Bahdanau) ------------------------------------------
LUONG = {"dot": dict(cls="Attention"), "dot+scale": dict(cls="Attention", use_scale=True),
         "concat": dict(cls="Attention", score_mode="concat"),
         "concat+scale": dict(cls="Attention", score_mode="concat", use_scale=True),
         "additive": dict(cls="AdditiveAttention"),
         "additive-noscale": dict(cls="AdditiveAttention", use_scale=False)}


def _luong(kind, **kw):
    args = dict(LUONG[kind])
    return getattr(L, args.pop("cls"))(**args, **kw)


def _luong_spec(kind, layer, q, v, k, qm, vm, causal):
    """The layer's equations, written out with loops over the score entries."""
    B, Tq, d = q.shape
    Tv = v.shape[1]
    w = {n: np.asarray(a, np.float64) for n, a in zip(layer.weight_names, layer.get_weights())}
    s = np.zeros((B, Tq, Tv))
    for b, i, j in np.ndindex(B, Tq, Tv):
        if kind.startswith("dot"):
            s[b, i, j] = w.get("scale", 1.0) * q[b, i] @ k[b, j]
        elif kind.startswith("concat"):
            s[b, i, j] = w["concat_score_weight"] * np.tanh(w.get("scale", 1.0) *
                                                            (q[b, i] + k[b, j])).sum()
        else:
            s[b, i, j] = (w.get("scale", np.ones(d)) * np.tanh(q[b, i] + k[b, j])).sum()
    out = np.zeros((B, Tq, v.shape[2]))
    P = np.zeros_like(s)
    for b, i in np.ndindex(B, Tq):
        ok = [(vm is None or vm[b, j]) and (not causal or j <= i) for j in range(Tv)]
        if any(ok):
            e = np.where(ok, np.exp(s[b, i] - s[b, i][ok].max()), 0)
            P[b, i] = e / e.sum()
        out[b, i] = P[b, i] @ v[b] if qm is None or qm[b, i] else 0
    return out, P


def _luong_inputs(rng, dtype, with_key, B=2, Tq=5, Tv=4, d=3, dv=2):
    q = rng.standard_normal((B, Tq, d)).astype(dtype)
    v = rng.standard_normal((B, Tv, dv if with_key else d)).astype(dtype)
    k = rng.standard_normal((B, Tv, d)).astype(dtype) if with_key else v
    return q, v, k


def _randomize_luong(layer, rng):
    layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])


@pytest.mark.parametrize("kind", list(LUONG))
@pytest.mark.parametrize("masks", ["none", "query+value", "causal", "value+causal"])
def test_luong_forward_matches_the_equations(kind, masks):
    rng = np.random.default_rng(30)
    q, v, k = _luong_inputs(rng, np.float64, with_key=True)
    qm = vm = None
    if "query" in masks:
        qm = np.array([[1, 1, 0, 1, 0], [1] * 5], bool)
    if "value" in masks:
        vm = np.array([[1, 0, 1, 1], [0, 0, 0, 0]], bool)  # batch 1: every row fully masked
    causal = "causal" in masks
    layer = _luong(kind, dtype="float64")
    layer([q, v, k])
    _randomize_luong(layer, rng)
    out, P = layer([q, v, k], mask=[qm, vm], use_causal_mask=causal,
                   return_attention_scores=True)
    want_out, want_p = _luong_spec(kind, layer, q, v, k, qm, vm, causal)
    np.testing.assert_allclose(out, want_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(P, want_p, rtol=1e-10, atol=1e-12)
    plain = layer([q, v, k], mask=[qm, vm], use_causal_mask=causal)
    np.testing.assert_allclose(plain, want_out, rtol=1e-10, atol=1e-12)
    # float32: the same within float32 rounding (the flash kernel for "dot")
    layer32 = _luong(kind)
    layer32([q, v, k])
    layer32.set_weights(layer.get_weights())
    got32 = layer32([a.astype(np.float32) for a in (q, v, k)], mask=[qm, vm],
                    use_causal_mask=causal)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want_out, rtol=0, atol=1e-5)


def _fd_check(loss, pairs, h=1e-6):
    for a, g in pairs:
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            up = loss()
            a[idx] = old - h
            down = loss()
            a[idx] = old
            num[idx] = (up - down) / (2 * h)
        assert g.shape == a.shape
        np.testing.assert_allclose(g, num, rtol=0, atol=1e-7 * (np.abs(num).max() + 1))


@pytest.mark.parametrize("kind", list(LUONG))
@pytest.mark.parametrize("config", ["self", "key+masks+causal", "dropout"])
def test_luong_gradients_match_finite_differences(kind, config):
    rng = np.random.default_rng(31)
    with_key = config != "self"
    q, v, k = _luong_inputs(rng, np.float64, with_key, B=2, Tq=3, Tv=4)
    layer = _luong(kind, dtype="float64", dropout=0.3 if config == "dropout" else 0.0, seed=3)
    layer([q, v, k] if with_key else [q, q])
    _randomize_luong(layer, rng)
    kw = {}
    if config == "key+masks+causal":
        kw = dict(mask=[np.array([[1, 0, 1], [1, 1, 1]], bool),
                        np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool)], use_causal_mask=True)
    arrays = [q, v, k] if with_key else [q]
    R = rng.standard_normal((2, 3, v.shape[2] if with_key else q.shape[2]))
    state = layer.get_rng_state()

    def run(training):
        layer.set_rng_state(state)  # the same dropout mask at every evaluation
        return layer(arrays if with_key else [q, q], training=training, **kw)

    y = run(True)
    assert np.all(np.isfinite(y))
    dx = layer.backward(R)
    grads = layer.grads
    pairs = list(zip(layer.trainable_weights, grads))
    pairs += list(zip(arrays, dx)) if with_key else [(q, dx[0] + dx[1])]
    # with dropout the loss must see the same mask: evaluate in training mode
    _fd_check(lambda: float(np.sum(run(config == "dropout") * R)), pairs)


def test_luong_dropout_drops_and_rescales_weights():
    rng = np.random.default_rng(32)
    q, v, k = _luong_inputs(rng, np.float64, True, B=4, Tq=8, Tv=9)
    layer = L.Attention(dropout=0.5, seed=1, dtype="float64")
    _, P = layer([q, v, k], return_attention_scores=True)
    out, W = layer([q, v, k], training=True, return_attention_scores=True)
    kept = W != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(W[kept], 2 * P[kept], rtol=1e-12)
    np.testing.assert_allclose(out, W @ v, rtol=1e-12)
    np.testing.assert_allclose(layer([q, v, k]), P @ v, rtol=1e-12)  # inference: no dropout


def test_luong_in_a_graph_trains_saves_and_takes_the_embedding_mask(tmp_path):
    rng = np.random.default_rng(33)
    ids = nn.Input((6,), dtype="int32")
    x = L.Embedding(9, 4, mask_zero=True)(ids)
    att = L.Attention(use_scale=True, name="luong")
    h = L.Add()([x, att([x, x], use_causal_mask=True)])
    h = L.AdditiveAttention(name="bahdanau")([h, x])
    model = nn.Model(ids, L.Dense(1)(L.GlobalAveragePooling1D()(h)))
    xi = rng.integers(1, 9, size=(5, 6)).astype(np.int32)
    xi[:, -2:] = 0
    sub = nn.Model(ids, att._inbound_nodes[0].outputs[0])
    e = model.get_layer(index=1)(xi)
    want = att([e, e], mask=[xi != 0, xi != 0], use_causal_mask=True)
    np.testing.assert_allclose(sub.predict(xi, verbose=0), want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(want, att([e, e], use_causal_mask=True))  # the mask matters
    model.compile("adam", "mse")
    y = rng.standard_normal((5, 1)).astype(np.float32)
    first = model.train_on_batch(xi, y)
    for _ in range(30):
        last = model.train_on_batch(xi, y)
    assert last < first
    model.save(tmp_path / "m.nnet")
    np.testing.assert_allclose(nn.load_model(tmp_path / "m.nnet").predict(xi, verbose=0),
                               model.predict(xi, verbose=0), rtol=1e-6, atol=1e-6)


def test_luong_bad_input():
    with pytest.raises(ValueError, match="score_mode must be one of"):
        L.Attention(score_mode="general")
    with pytest.raises(ValueError, match="dropout must be a float in"):
        L.AdditiveAttention(dropout=1.0)
    with pytest.raises(ValueError, match="use_scale must be True or False"):
        L.Attention(use_scale="yes")
    rng = np.random.default_rng(34)
    q = rng.standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"inputs must be a list \[query, value\]"):
        L.Attention()(q)
    with pytest.raises(ValueError, match="query and key must have the same features"):
        L.Attention()([q, q[..., :3]])
    layer = L.Attention()
    layer([q, q])
    with pytest.raises(ValueError, match=r"value mask must be \(batch, steps\) = \(2, 3\)"):
        layer([q, q], mask=[None, np.ones((2, 4), bool)])
    with pytest.raises(ValueError, match="share the batch size"):
        layer([q, q[:1]])
    with pytest.raises(TypeError, match="unexpected call argument 'causal'"):
        x = nn.Input((3, 4))
        layer([x, x], causal=True)


def test_luong_matches_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(35)
    q, v, k = _luong_inputs(rng, np.float32, True, B=3, Tq=6, Tv=5, d=4, dv=3)
    qm = rng.random((3, 6)) < 0.7
    vm = rng.random((3, 5)) < 0.7
    vm[:, 0] = True  # no fully masked row (Keras averages all values there; we give zeros)
    R = rng.standard_normal((3, 6, 3)).astype(np.float32)
    for kind in LUONG:
        args = dict(LUONG[kind])
        cls = args.pop("cls")
        km = getattr(keras.layers, cls)(**args)
        km([q, v, k])
        weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in km.get_weights()]
        km.set_weights(weights)
        tq, tv, tk = (torch.tensor(a, requires_grad=True) for a in (q, v, k))
        kout, kp = km([tq, tv, tk], mask=[torch.tensor(qm), torch.tensor(vm)],
                      use_causal_mask=True, return_attention_scores=True)
        (kout * torch.tensor(R)).sum().backward()
        nm = getattr(L, cls)(**args)
        nm([q, v, k])
        assert nm.weight_names == [w.path.split("/")[-1] for w in km.weights]
        nm.set_weights(weights)
        out, p = nm([q, v, k], mask=[qm, vm], use_causal_mask=True,
                    return_attention_scores=True, training=True)
        np.testing.assert_allclose(out, kout.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(p, kp.detach().numpy(), rtol=1e-5, atol=1e-6)
        dq, dv, dk = nm.backward(R)
        for got, t in ((dq, tq), (dv, tv), (dk, tk)):
            np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-4, atol=1e-4)
        for got, w in zip(nm.grads, km.trainable_weights):
            np.testing.assert_allclose(got, w.value.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_self_attention_one_projection_gemm_matches_three():
    # query, key and value one array: the three projections run as one GEMM (and one in
    # backward); a copy of the array takes the three-GEMM path, with the same results.
    rng = np.random.default_rng(19)
    x = rng.standard_normal((3, 7, 6))
    mha = L.MultiHeadAttention(2, 3, value_dim=4, dtype="float64")
    mha(x, x)
    _randomize(mha, rng)
    R = rng.standard_normal((3, 7, 6))
    y1 = mha(x, x, training=True, use_causal_mask=True)
    assert mha._ctx[-2] is True  # fused
    dx1 = mha.backward(R)
    g1 = mha.grads
    xc = x.copy()
    y2 = mha(x, xc, training=True, use_causal_mask=True)
    assert mha._ctx[-2] is False
    dx2 = mha.backward(R)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx1[0] + dx1[1], dx2[0] + dx2[1], rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, mha.grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_demo_transformer_builds_trains_and_round_trips(tmp_path):
    from nanonet.demo import MODELS
    rng = np.random.default_rng(36)
    model = MODELS["transformer"](30, 3, 16, sequence_length=12)
    x = rng.integers(1, 30, size=(24, 10)).astype(np.int32)
    x[:, :3] = 0
    y = np.eye(3, dtype=np.float32)[x[:, -1] % 3]
    first = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0)[0] < first
    model.save(tmp_path / "t.nnet")
    np.testing.assert_allclose(nn.load_model(tmp_path / "t.nnet").predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
