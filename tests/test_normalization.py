"""Batch and layer normalization: kernels against nanonet.reference and the scalar C++
specification, float64 finite differences, the moving statistics, masks, threads and bad input."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

# N around the 64-row reduction block, F from 1 to past a SIMD width; the last shapes are large
# enough (N * F >= 2^15) to take the multithreaded path.
BN_SHAPES = [(1, 1), (2, 3), (7, 1), (63, 5), (64, 17), (65, 16), (130, 7), (3, 4, 5),
             (1, 1, 9), (1200, 33), (40, 30, 33)]
LN_SHAPES = [(1, 1), (1, 7), (5, 1), (2, 3), (65, 17), (3, 4, 5), (2, 1, 64), (1100, 33)]


def _close(got, want, dtype, key="normalization"):
    tol = TOL[np.dtype(dtype).name][key]
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * (np.abs(want).max(initial=0) + 1))


def _params(rng, F, dtype):
    gamma = rng.uniform(0.5, 1.5, F).astype(dtype) * rng.choice([-1, 1], F).astype(dtype)
    beta = rng.standard_normal(F).astype(dtype)
    return gamma, beta


def _moving(rng, F, dtype):
    return rng.standard_normal(F).astype(dtype), rng.uniform(0.5, 2.0, F).astype(dtype)


def _mask(rng, shape, p=0.7):
    m = rng.random(shape) < p
    m.reshape(-1)[0] = True  # at least one row counts
    return m


def _fd(f, arrays, R, h=1e-6):
    """Central differences of sum(f() * R) with respect to each array (changed in place)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            up = np.sum(f() * R)
            a[i] = old - h
            down = np.sum(f() * R)
            a[i] = old
            g[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


def _fd_close(got, want):
    tol = TOL["float64"]["grad_fd"]
    assert np.abs(got - want).max() <= tol * (np.linalg.norm(want) + 1e-3), \
        (np.abs(got - want).max(), np.linalg.norm(want))


# ---------------------------------------------------------------------------------------------
# batch normalization

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_matches_reference(shape, masked, training, dtype):
    rng = np.random.default_rng(sum(shape) * 7 + masked)
    F = shape[-1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma, beta = _params(rng, F, dtype)
    mm, mv = _moving(rng, F, dtype)
    mask = _mask(rng, shape[:-1]) if masked else None
    x64, g64, b64 = (a.astype(np.float64) for a in (x, gamma, beta))
    mm_want, mv_want = mm.astype(np.float64), mv.astype(np.float64)
    want = reference.batch_norm_forward(x64, g64, b64, mm_want, mv_want, training, 0.9, 1e-3,
                                        mask)
    for ref in (False, True):
        mm_got, mv_got = mm.copy(), mv.copy()
        got = ops.batch_norm_forward(x, gamma, beta, mm_got, mv_got, training, 0.9, 1e-3, mask,
                                     _ref=ref)
        assert [g.dtype for g in got] == [dtype] * 3
        assert got[0].shape == shape and got[1].shape == (F,) and got[2].shape == (F,)
        for g, w in zip(got, want):
            _close(g, w, dtype)
        _close(mm_got, mm_want, dtype)
        _close(mv_got, mv_want, dtype)
    # backward from the forward's own statistics
    y, mean, inv_std = got
    dy = rng.standard_normal(shape).astype(dtype)
    want = reference.batch_norm_backward(dy.astype(np.float64), x64, mean.astype(np.float64),
                                         inv_std.astype(np.float64), g64, training, mask)
    for ref in (False, True):
        got = ops.batch_norm_backward(dy, x, mean, inv_std, gamma, training, mask, _ref=ref)
        assert got[0].shape == shape and got[1].shape == (F,) and got[2].shape == (F,)
        for g, w in zip(got, want):
            _close(g, w, dtype)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(1, 3), (5, 4), (3, 4, 2), (2, 1, 3)])
def test_batch_norm_finite_differences(shape, training, masked):
    rng = np.random.default_rng(11 + len(shape))
    F = shape[-1]
    x = rng.standard_normal(shape) * 2 + 0.5
    gamma, beta = _params(rng, F, np.float64)
    mm, mv = _moving(rng, F, np.float64)
    mask = _mask(rng, shape[:-1], 0.6) if masked else None
    R = rng.standard_normal(shape)

    def f():  # moving statistics are not updated here (None) so every call sees the same state
        if training:
            return ops.batch_norm_forward(x, gamma, beta, None, None, True, mask=mask)[0]
        return ops.batch_norm_forward(x, gamma, beta, mm, mv, False, mask=mask)[0]

    _, mean, inv_std = (ops.batch_norm_forward(x, gamma, beta, None, None, True, mask=mask)
                        if training else ops.batch_norm_forward(x, gamma, beta, mm, mv, False))
    dx, dgamma, dbeta = ops.batch_norm_backward(R, x, mean, inv_std, gamma, training, mask)
    fx, fg, fb = _fd(f, [x, gamma, beta], R)
    _fd_close(dx, fx)
    _fd_close(dgamma, fg)
    _fd_close(dbeta, fb)


def test_batch_norm_without_scale_and_center():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 4))
    R = rng.standard_normal((9, 4))
    y, mean, inv_std = ops.batch_norm_forward(x, None, None, None, None, True)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), atol=1e-12)
    dx, dgamma, dbeta = ops.batch_norm_backward(R, x, mean, inv_std, None, True)
    want = reference.batch_norm_backward(R, x, mean, inv_std, None, True)
    for g, w in zip((dx, dgamma, dbeta), want):
        _close(g, w, np.float64)
    (fx,) = _fd(lambda: ops.batch_norm_forward(x, None, None, None, None, True)[0], [x], R)
    _fd_close(dx, fx)


def test_batch_norm_moving_statistics_keras_rule():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 3)).astype(np.float32)
    mm = np.array([0.5, -1.0, 2.0], np.float32)
    mv = np.array([1.0, 2.0, 0.5], np.float32)
    mm0, mv0 = mm.copy(), mv.copy()
    y, mean, inv_std = ops.batch_norm_forward(x, None, None, mm, mv, training=True)
    bm, bv = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)  # biased variance
    np.testing.assert_allclose(mean, bm, rtol=1e-6)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(bv + 1e-3), rtol=1e-6)
    # Keras defaults: momentum 0.99, epsilon 1e-3
    np.testing.assert_allclose(mm, mm0 * 0.99 + bm * 0.01, rtol=1e-6)
    np.testing.assert_allclose(mv, mv0 * 0.99 + bv * 0.01, rtol=1e-6)
    # inference reads them and changes nothing
    mm1, mv1 = mm.copy(), mv.copy()
    y, mean, inv_std = ops.batch_norm_forward(x, None, None, mm, mv)
    assert np.array_equal(mm, mm1) and np.array_equal(mv, mv1)
    np.testing.assert_allclose(y, (x - mm) / np.sqrt(mv + 1e-3), rtol=1e-5, atol=1e-6)


def test_batch_norm_fully_masked_batch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4))
    gamma, beta = _params(rng, 4, np.float64)
    mm, mv = _moving(rng, 4, np.float64)
    mm0, mv0 = mm.copy(), mv.copy()
    mask = np.zeros((2, 3), bool)
    y, mean, inv_std = ops.batch_norm_forward(x, gamma, beta, mm, mv, True, mask=mask)
    assert np.array_equal(mm, mm0) and np.array_equal(mv, mv0)   # moving statistics unchanged
    assert np.array_equal(mean, np.zeros(4))
    np.testing.assert_allclose(y, x / np.sqrt(1e-3) * gamma + beta, rtol=1e-12)
    dy = rng.standard_normal(x.shape)
    dx, _, _ = ops.batch_norm_backward(dy, x, mean, inv_std, gamma, True, mask)
    np.testing.assert_allclose(dx, dy * gamma * inv_std, rtol=1e-12)
    # an empty batch behaves the same way
    e = np.zeros((0, 4))
    y, mean, _ = ops.batch_norm_forward(e, gamma, beta, mm, mv, True)
    assert y.shape == (0, 4) and np.array_equal(mm, mm0)


def test_batch_norm_mask_matches_dropping_rows_for_statistics():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 6, 3))
    mask = _mask(rng, (4, 6), 0.5)
    _, mean, inv_std = ops.batch_norm_forward(x, None, None, None, None, True, mask=mask)
    _, mean_kept, inv_kept = ops.batch_norm_forward(x[mask], None, None, None, None, True)
    np.testing.assert_allclose(mean, mean_kept, rtol=1e-12)
    np.testing.assert_allclose(inv_std, inv_kept, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# layer normalization

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layer_norm_matches_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape) * 5)
    F = shape[-1]
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    gamma, beta = _params(rng, F, dtype)
    x64, g64, b64 = (a.astype(np.float64) for a in (x, gamma, beta))
    want = reference.layer_norm_forward(x64, g64, b64, 1e-3)
    for ref in (False, True):
        got = ops.layer_norm_forward(x, gamma, beta, 1e-3, _ref=ref)
        assert got[0].shape == shape and got[1].shape == shape[:-1] and got[1].dtype == dtype
        for g, w in zip(got, want):
            _close(g, w, dtype)
    _, mean, inv_std = got
    dy = rng.standard_normal(shape).astype(dtype)
    want = reference.layer_norm_backward(dy.astype(np.float64), x64, mean.astype(np.float64),
                                         inv_std.astype(np.float64), g64)
    for ref in (False, True):
        got = ops.layer_norm_backward(dy, x, mean, inv_std, gamma, _ref=ref)
        assert got[0].shape == shape and got[1].shape == (F,)
        for g, w in zip(got, want):
            _close(g, w, dtype)


@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("shape", [(1, 4), (3, 5), (2, 3, 4), (4, 1)])
def test_layer_norm_finite_differences(shape, scaled):
    rng = np.random.default_rng(21 + len(shape))
    F = shape[-1]
    x = rng.standard_normal(shape) * 2 + 0.3
    gamma, beta = _params(rng, F, np.float64)
    if not scaled:
        gamma, beta = None, None
    R = rng.standard_normal(shape)
    _, mean, inv_std = ops.layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = ops.layer_norm_backward(R, x, mean, inv_std, gamma)
    params = [x] + ([gamma, beta] if scaled else [])
    fd = _fd(lambda: ops.layer_norm_forward(x, gamma, beta)[0], params, R)
    _fd_close(dx, fd[0])
    if scaled:
        _fd_close(dgamma, fd[1])
        _fd_close(dbeta, fd[2])


def test_layer_norm_keras_default_epsilon():
    x = np.array([[1.0, 2.0, 4.0]])
    y, mean, inv_std = ops.layer_norm_forward(x, None, None)
    np.testing.assert_allclose(y, (x - x.mean()) / np.sqrt(x.var() + 1e-3), rtol=1e-14)
    assert mean.shape == (1,) and inv_std.shape == (1,)


# ---------------------------------------------------------------------------------------------
# threads, layout, errors

def test_threads_agree_bitwise():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1500, 40)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = _params(rng, 40, np.float32)
    mask = _mask(rng, (1500,))
    before = nn.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            nn.set_num_threads(n)
            mm, mv = np.zeros(40, np.float32), np.ones(40, np.float32)
            bn = ops.batch_norm_forward(x, gamma, beta, mm, mv, True, mask=mask)
            bnb = ops.batch_norm_backward(dy, x, bn[1], bn[2], gamma, True, mask)
            ln = ops.layer_norm_forward(x, gamma, beta)
            lnb = ops.layer_norm_backward(dy, x, ln[1], ln[2], gamma)
            out.append(list(bn) + [mm, mv] + list(bnb) + list(ln) + list(lnb))
    finally:
        nn.set_num_threads(before)
    for a, b in zip(*out):
        assert np.array_equal(a, b)


def test_noncontiguous_input_is_copied():
    rng = np.random.default_rng(8)
    big = rng.standard_normal((20, 12))
    x = big[::2, ::3]
    y, mean, inv_std = ops.batch_norm_forward(x, None, None, None, None, True)
    want = reference.batch_norm_forward(np.ascontiguousarray(x), None, None, None, None, True)
    _close(y, want[0], np.float64)
    y, _, _ = ops.layer_norm_forward(x.T, None, None)
    _close(y, reference.layer_norm_forward(x.T, None, None)[0], np.float64)


def test_errors_name_argument_and_shapes():
    x = np.zeros((5, 3), np.float32)
    g = np.ones(3, np.float32)
    mm, mv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm_forward: x must be \(N, F\) or \(B, T, F\)"):
        ops.batch_norm_forward(np.zeros(3, np.float32), g, g, mm, mv)
    with pytest.raises(TypeError, match="x must be float32 or float64; got int64"):
        ops.batch_norm_forward(np.zeros((5, 3), np.int64), g, g, mm, mv)
    with pytest.raises(TypeError, match=r"gamma must have the dtype of x \(float32\); got float64"):
        ops.batch_norm_forward(x, np.ones(3), None, mm, mv)
    with pytest.raises(ValueError, match=r"gamma must be \(F,\) = \(3,\); got \(4,\)"):
        ops.batch_norm_forward(x, np.ones(4, np.float32), None, mm, mv)
    with pytest.raises(ValueError, match="moving_mean and moving_var are required"):
        ops.batch_norm_forward(x, g, g, None, None, training=False)
    with pytest.raises(TypeError, match="moving_mean must be a numpy.ndarray updated in place"):
        ops.batch_norm_forward(x, g, g, [0.0, 0.0, 0.0], mv, training=True)
    with pytest.raises(TypeError, match=r"moving_var must have the dtype of x"):
        ops.batch_norm_forward(x, g, g, mm, np.ones(3), training=True)
    with pytest.raises(ValueError, match="moving_mean must be C-contiguous"):
        ops.batch_norm_forward(x, g, g, np.zeros(6, np.float32)[::2], mv, training=True)
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="moving_mean must be writeable"):
        ops.batch_norm_forward(x, g, g, ro, mv, training=True)
    with pytest.raises(ValueError, match=r"mask must have shape \(5,\); got \(4,\)"):
        ops.batch_norm_forward(x, g, g, mm, mv, True, mask=np.ones(4, bool))
    with pytest.raises(TypeError, match="mask must be bool; got float64"):
        ops.batch_norm_forward(x, g, g, mm, mv, True, mask=np.ones(5))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        ops.batch_norm_forward(x, g, g, mm, mv, epsilon=0.0)
    with pytest.raises(ValueError, match=r"batch_norm_backward: dy must have the shape of x"):
        ops.batch_norm_backward(np.zeros((5, 4), np.float32), x, mm, mv, g)
    with pytest.raises(ValueError, match=r"inv_std must be \(F,\) = \(3,\); got \(2,\)"):
        ops.batch_norm_backward(x, x, mm, np.ones(2, np.float32), g)
    with pytest.raises(ValueError, match=r"layer_norm_forward: gamma must be \(F,\)"):
        ops.layer_norm_forward(x, np.ones(5, np.float32), None)
    with pytest.raises(ValueError, match=r"layer_norm_backward: mean must have shape"):
        ops.layer_norm_backward(x, x, np.zeros(3, np.float32), np.zeros(5, np.float32), g)
    with pytest.raises(TypeError, match="dy must have the dtype of x"):
        ops.layer_norm_backward(x.astype(np.float64), x, np.zeros(5, np.float32),
                                np.zeros(5, np.float32), g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", ["neither", "gamma only", "beta only"])
def test_layer_norm_without_gamma_or_beta_matches_reference(which, dtype):
    """scale=False / center=False layers pass None: the fast rows' branch-free loops read ones
    (backward) or take the general loop (forward); both against the NumPy twin and _ref."""
    rng = np.random.default_rng(11)
    F = 37  # not a multiple of the vector width
    x = (rng.standard_normal((45, F)) * 3).astype(dtype)
    gamma, beta = _params(rng, F, dtype)
    gamma = gamma if which == "gamma only" else None
    beta = beta if which == "beta only" else None
    as64 = (lambda a: None if a is None else a.astype(np.float64))
    want = reference.layer_norm_forward(x.astype(np.float64), as64(gamma), as64(beta), 1e-3)
    for ref in (False, True):
        got = ops.layer_norm_forward(x, gamma, beta, 1e-3, _ref=ref)
        for g, w in zip(got, want):
            _close(g, w, dtype)
    _, mean, inv_std = got
    dy = rng.standard_normal(x.shape).astype(dtype)
    want = reference.layer_norm_backward(dy.astype(np.float64), x.astype(np.float64),
                                         mean.astype(np.float64), inv_std.astype(np.float64),
                                         as64(gamma))
    for ref in (False, True):
        got = ops.layer_norm_backward(dy, x, mean, inv_std, gamma, _ref=ref)
        for g, w in zip(got, want):
            _close(g, w, dtype)
