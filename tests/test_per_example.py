"""Per-example gradient norms for DP-SGD: nanonet.ops.per_example_matmul_sq_norms,
embedding_per_example_sq_norms and lstm_backward_dz against nanonet.reference (which forms
every per-example gradient), the scalar C++ specification (_ref), 1 vs 2 threads, and bad input."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

# (B, T, K, N): T = 1 (2-D Dense), shapes where the direct K x N product is cheaper
# (T large against K, N) and where the T x T Gram trick is, B = 1, primes.
MATMUL_SHAPES = [(5, 1, 7, 3), (1, 4, 3, 2), (3, 7, 5, 4), (4, 3, 17, 16), (6, 13, 11, 5),
                 (2, 31, 2, 3), (7, 2, 33, 64),
                 # the Gram by strips of 24 rows: one full and one 1-row strip, exactly two
                 # strips, three strips with a 1-row last one
                 (3, 25, 64, 64), (2, 48, 80, 90), (2, 49, 96, 96)]


def _close(got, want, dtype, what=""):
    tol = TOL[np.dtype(dtype).name]["gemm"] * 50  # sums of squares of K * T-term sums
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * (np.abs(want).max() + 1e-30),
                               err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=lambda s: "B%dT%dK%dN%d" % s)
def test_matmul_norms_match_reference(shape, time_major, bias, dtype):
    B, T, K, N = shape
    rng = np.random.default_rng(B * 1000 + T * 100 + K)
    lead = (T, B) if time_major else (B, T)
    a = rng.standard_normal(lead + (K,)).astype(dtype)
    d = rng.standard_normal(lead + (N,)).astype(dtype) + 0.3  # a bias gradient far from 0
    want = reference.per_example_matmul_sq_norms(a, d, time_major, bias)
    got = ops.per_example_matmul_sq_norms(a, d, time_major, bias)
    assert got.shape == (B,) and got.dtype == dtype
    _close(got, want, dtype, "fast")
    _close(ops.per_example_matmul_sq_norms(a, d, time_major, bias, _ref=True), want, dtype, "ref")
    if bias:  # the bias term is the norm of the row sums (written out independently)
        dd = d.astype(np.float64).transpose(1, 0, 2) if time_major else d.astype(np.float64)
        extra = np.square(dd.sum(axis=1)).sum(axis=1)
        _close(got - ops.per_example_matmul_sq_norms(a, d, time_major), extra, dtype, "bias")


def test_matmul_norms_zero_rows_contribute_nothing():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 6, 8))
    d = rng.standard_normal((4, 6, 5))
    d[:, 2:] = 0.0  # the LSTM's masked steps: zero gate gradients
    got = ops.per_example_matmul_sq_norms(a, d)
    want = ops.per_example_matmul_sq_norms(a[:, :2].copy(), d[:, :2].copy())
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 3), (4, 9, 5), (3, 40, 2), (7, 5, 17)],
                         ids=lambda s: "B%dT%dE%d" % s)
def test_embedding_norms_match_reference(shape, dtype):
    B, T, E = shape
    rng = np.random.default_rng(T * 10 + E)
    ids = rng.integers(0, 4, size=(B, T))  # few ids: many repeats within an example
    dy = rng.standard_normal((B, T, E)).astype(dtype)
    want = reference.embedding_per_example_sq_norms(ids, dy)
    _close(ops.embedding_per_example_sq_norms(ids, dy), want, dtype, "fast")
    _close(ops.embedding_per_example_sq_norms(ids.astype(np.int32), dy, _ref=True), want, dtype,
           "ref")


def _lstm_problem(rng, B, T, I, H, mask):
    p = dict(x=rng.standard_normal((B, T, I)), kernel=rng.standard_normal((I, 4 * H)) / 2,
             recurrent_kernel=rng.standard_normal((H, 4 * H)) / 3,
             bias=rng.standard_normal(4 * H) * 0.5, h0=rng.standard_normal((B, H)) * 0.5,
             c0=rng.standard_normal((B, H)))
    if mask:
        m = rng.random((B, T)) < 0.7
        m[0] = False
        p["mask"] = m
    return p


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (3, 5, 4, 2), (5, 7, 3, 9)],
                         ids=lambda s: "B%dT%dI%dH%d" % s)
def test_lstm_backward_dz_matches_reference(shape, go_backwards, mask):
    rng = np.random.default_rng(sum(shape))
    p = _lstm_problem(rng, *shape, mask)
    fw = dict(go_backwards=go_backwards)
    y, h_n, c_n, cache = ops.lstm_forward(**p, **fw)
    ry, rh, rc, rcache = reference.lstm_forward(**p, **fw)
    dy = rng.standard_normal(y.shape)
    dh_n = rng.standard_normal(h_n.shape)
    dx, dz, dh0, dc0 = ops.lstm_backward_dz(dy, cache, dh_n, None)
    rdx, rdz, rdh0, rdc0 = reference.lstm_backward_dz(dy, rcache, dh_n, None)
    tol = TOL["float64"]["lstm"]
    for name, got, want in (("dx", dx, rdx), ("dz", dz, rdz), ("dh0", dh0, rdh0),
                            ("dc0", dc0, rdc0)):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * (np.abs(want).max() + 1),
                                   err_msg=name)
    # the weight gradients lstm_backward forms are xh^T dz and the row sum of dz
    _, dk, drk, db, _, _ = ops.lstm_backward(dy, cache, dh_n, None)
    xh = cache.arrays[0]
    I = p["kernel"].shape[0]
    dw = xh.reshape(-1, xh.shape[2]).T @ dz.reshape(-1, dz.shape[2])
    np.testing.assert_allclose(dw[:I], dk, rtol=0, atol=1e-12 * (np.abs(dk).max() + 1))
    np.testing.assert_allclose(dw[I:], drk, rtol=0, atol=1e-12 * (np.abs(drk).max() + 1))
    np.testing.assert_allclose(dz.sum(axis=(0, 1)), db, rtol=0, atol=1e-12 * (abs(db).max() + 1))
    assert ops.lstm_backward_dz(dy, cache, dh_n, None, need_dx=False)[0] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_and_two_threads_agree(dtype):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((64, 20, 40)).astype(dtype)  # above the parallel threshold
    d = rng.standard_normal((64, 20, 48)).astype(dtype)
    ids = rng.integers(0, 30, size=(64, 200))
    dy = rng.standard_normal((64, 200, 16)).astype(dtype)
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        one = (ops.per_example_matmul_sq_norms(a, d), ops.embedding_per_example_sq_norms(ids, dy))
        nn.set_num_threads(2)
        two = (ops.per_example_matmul_sq_norms(a, d), ops.embedding_per_example_sq_norms(ids, dy))
    finally:
        nn.set_num_threads(before)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)


def test_bad_input_raises():
    a = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="a must be 3-D|ndim"):
        ops.per_example_matmul_sq_norms(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="dtype"):
        ops.per_example_matmul_sq_norms(a, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        ops.per_example_matmul_sq_norms(a, np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="dy must be"):
        ops.embedding_per_example_sq_norms(np.zeros((2, 3), np.int64), np.zeros((2, 4, 5)))
    with pytest.raises(TypeError, match="ids"):
        ops.embedding_per_example_sq_norms(np.zeros((2, 3), object), np.zeros((2, 3, 5)))
    with pytest.raises(TypeError, match="LSTMCache"):
        ops.lstm_backward_dz(np.zeros((1, 1, 1)), "not a cache")
