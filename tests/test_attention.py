"""Scaled dot-product attention: the flash kernel against nanonet.reference (full score matrix)
and the scalar C++ specification, masks (key padding, full (B, Tq, Tk), causal, fully masked
rows), float64 finite differences, threads and bad input."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

# (B, H, Tq, Tk, D, Dv): T = 1, heads = 1, D not a multiple of 8, sizes around the 32-row query
# and 64-row key tiles, Tq != Tk; the last ones take the multithreaded paths.
SHAPES = [(1, 1, 1, 1, 1, 1), (1, 1, 1, 5, 3, 2), (2, 1, 5, 1, 7, 4), (1, 2, 7, 7, 8, 8),
          (2, 3, 33, 65, 13, 5), (1, 1, 31, 63, 16, 17), (3, 2, 64, 64, 32, 32),
          (1, 1, 97, 130, 9, 11), (4, 4, 40, 40, 24, 24)]
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


def test_core_rejects_non_contiguous():
    from nanonet import _core
    rng = np.random.default_rng(5)
    q, k, v, _ = _inputs(rng, (1, 2, 3, 4, 5, 6), np.float32)
    with pytest.raises(ValueError, match="q must be C-contiguous"):
        _core.attention_forward(q.transpose(0, 2, 1, 3).copy().transpose(0, 2, 1, 3), k, v, None,
                                False, 1.0)
    # ops copies a non-contiguous view once
    qt = q.transpose(0, 2, 1, 3).copy().transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(ops.attention_forward(qt, k, v)[0],
                                  ops.attention_forward(q, k, v)[0])
