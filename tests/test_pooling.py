"""Global average / max pooling over time: kernels against nanonet.reference and the scalar C++
specification, masks (fully masked rows), float64 finite differences, threads and bad input."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

# B = 1, T = 1, F around the 64-feature block; the last ones take the multithreaded path.
SHAPES = [(1, 1, 1), (2, 1, 3), (1, 7, 1), (3, 5, 63), (2, 4, 64), (3, 6, 65), (4, 13, 129),
          (1, 300, 129), (40, 30, 33)]


def _close(got, want, dtype):
    tol = TOL[np.dtype(dtype).name]["pooling"]
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * (np.abs(want).max(initial=0) + 1))


def _mask(rng, B, T):
    m = rng.random((B, T)) < 0.6
    m[0] = False  # a fully masked row
    if B > 1:
        m[1] = True  # and a full one
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_avg_pool_matches_reference(shape, masked, dtype):
    B, T, F = shape
    rng = np.random.default_rng(B * 100 + T * 10 + F)
    x = rng.standard_normal(shape).astype(dtype)
    mask = _mask(rng, B, T) if masked else None
    dy = rng.standard_normal((B, F)).astype(dtype)
    want_y = reference.global_avg_pool1d_forward(x.astype(np.float64), mask)
    want_dx = reference.global_avg_pool1d_backward(dy.astype(np.float64), T, mask)
    for ref in (False, True):
        y = ops.global_avg_pool1d_forward(x, mask, _ref=ref)
        assert y.dtype == dtype and y.shape == (B, F)
        _close(y, want_y, dtype)
        dx = ops.global_avg_pool1d_backward(dy, T, mask, _ref=ref)
        assert dx.dtype == dtype and dx.shape == shape
        _close(dx, want_dx, dtype)
    if masked:
        assert np.array_equal(y[0], np.zeros(F)) and not dx[0].any()  # fully masked row: 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_max_pool_matches_reference(shape, masked, dtype):
    B, T, F = shape
    rng = np.random.default_rng(B * 100 + T * 10 + F + 1)
    x = rng.standard_normal(shape).astype(dtype)
    x[:, T // 2, :: 3] = 5.0  # ties: the first max wins
    x[:, -1, :: 3] = 5.0
    mask = _mask(rng, B, T) if masked else None
    dy = rng.standard_normal((B, F)).astype(dtype)
    want_y, want_arg = reference.global_max_pool1d_forward(x, mask)
    if not masked:
        assert np.array_equal(want_y, x.max(axis=1)) and np.array_equal(want_arg, x.argmax(1))
    want_dx = reference.global_max_pool1d_backward(dy, want_arg, T)
    for ref in (False, True):
        y, arg = ops.global_max_pool1d_forward(x, mask, _ref=ref)
        assert y.dtype == dtype and arg.dtype == np.int64 and arg.shape == (B, F)
        assert np.array_equal(y, want_y) and np.array_equal(arg, want_arg)
        dx = ops.global_max_pool1d_backward(dy, arg, T, _ref=ref)
        assert np.array_equal(dx, want_dx)
    if masked:
        assert np.array_equal(y[0], np.zeros(F)) and (arg[0] == -1).all() and not dx[0].any()
        on = np.broadcast_to(mask[:, :, None], x.shape)
        assert np.array_equal(y[1:], np.where(on, x, -np.inf).max(axis=1)[1:])


def test_max_pool_nan_and_inf():
    x = np.array([[[1.0, -np.inf], [np.nan, -np.inf], [3.0, -np.inf], [np.nan, -5.0]]])
    y, arg = ops.global_max_pool1d_forward(x)
    assert np.isnan(y[0, 0]) and arg[0, 0] == 1          # the first NaN wins, as numpy.argmax
    assert y[0, 1] == -5.0 and arg[0, 1] == 3
    mask = np.array([[False, True, True, False]])
    y, arg = ops.global_max_pool1d_forward(x, mask)
    assert np.isnan(y[0, 0]) and arg[0, 0] == 1
    assert y[0, 1] == -np.inf and arg[0, 1] == 1          # all -inf: the first unmasked step
    ry, rarg = reference.global_max_pool1d_forward(x, mask)
    assert np.array_equal(arg, rarg) and np.array_equal(y, ry, equal_nan=True)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 2), (3, 4, 2), (2, 5, 3)])
def test_finite_differences(shape, masked):
    B, T, F = shape
    rng = np.random.default_rng(B + T + F)
    x = rng.standard_normal(shape)
    mask = _mask(rng, B, T) if masked else None
    R = rng.standard_normal((B, F))
    h = 1e-6
    for kind in ("avg", "max"):
        if kind == "avg":
            f = lambda: ops.global_avg_pool1d_forward(x, mask)  # noqa: E731
            dx = ops.global_avg_pool1d_backward(R, T, mask)
        else:
            f = lambda: ops.global_max_pool1d_forward(x, mask)[0]  # noqa: E731
            dx = ops.global_max_pool1d_backward(R, ops.global_max_pool1d_forward(x, mask)[1], T)
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + h
            up = np.sum(f() * R)
            x[i] = old - h
            down = np.sum(f() * R)
            x[i] = old
            fd[i] = (up - down) / (2 * h)
        assert np.abs(dx - fd).max() <= TOL["float64"]["grad_fd"] * (np.linalg.norm(fd) + 1e-3)


def test_empty_time_axis():
    x = np.zeros((2, 0, 3))
    assert np.array_equal(ops.global_avg_pool1d_forward(x), np.zeros((2, 3)))
    y, arg = ops.global_max_pool1d_forward(x)
    assert np.array_equal(y, np.zeros((2, 3))) and (arg == -1).all()
    assert ops.global_avg_pool1d_backward(np.ones((2, 3)), 0).shape == (2, 0, 3)
    assert ops.global_max_pool1d_backward(np.ones((2, 3)), arg, 0).shape == (2, 0, 3)


def test_threads_agree_bitwise():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((30, 50, 70)).astype(np.float32)
    mask = rng.random((30, 50)) < 0.7
    dy = rng.standard_normal((30, 70)).astype(np.float32)
    before = nn.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            nn.set_num_threads(n)
            y, arg = ops.global_max_pool1d_forward(x, mask)
            out.append([ops.global_avg_pool1d_forward(x, mask),
                        ops.global_avg_pool1d_backward(dy, 50, mask), y, arg,
                        ops.global_max_pool1d_backward(dy, arg, 50)])
    finally:
        nn.set_num_threads(before)
    for a, b in zip(*out):
        assert np.array_equal(a, b)


def test_mask_conversion_and_noncontiguous_input():
    rng = np.random.default_rng(10)
    big = rng.standard_normal((3, 8, 10))
    x = big[:, ::2, 1::3]
    m_int = (rng.random((3, 4)) < 0.5).astype(np.int32)
    want = reference.global_avg_pool1d_forward(np.ascontiguousarray(x), m_int.astype(bool))
    _close(ops.global_avg_pool1d_forward(x, m_int), want, np.float64)


def test_errors_name_argument_and_shapes():
    x = np.zeros((2, 3, 4), np.float32)
    dy = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"global_avg_pool1d_forward: x must be 3-D; got shape"):
        ops.global_avg_pool1d_forward(np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="x must be float32 or float64; got int64"):
        ops.global_max_pool1d_forward(np.zeros((2, 3, 4), np.int64))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\); got \(3, 2\)"):
        ops.global_avg_pool1d_forward(x, np.ones((3, 2), bool))
    with pytest.raises(TypeError, match="mask must be bool; got float64"):
        ops.global_max_pool1d_forward(x, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"global_avg_pool1d_backward: dy must be 2-D"):
        ops.global_avg_pool1d_backward(x, 3)
    with pytest.raises(ValueError, match="steps must be >= 0; got -1"):
        ops.global_avg_pool1d_backward(dy, -1)
    with pytest.raises(TypeError, match="steps must be an int"):
        ops.global_avg_pool1d_backward(dy, 2.5)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 5\)"):
        ops.global_avg_pool1d_backward(dy, 5, np.ones((2, 3), bool))
    arg = np.zeros((2, 4), np.int64)
    arg[1, 2] = 3
    with pytest.raises(ValueError, match=r"argmax must be in \[-1, steps\) = \[-1, 3\); got 3"):
        ops.global_max_pool1d_backward(dy, arg, 3)
    with pytest.raises(ValueError, match=r"argmax must be \(B, F\) = \(2, 4\); got \(4, 2\)"):
        ops.global_max_pool1d_backward(dy, arg.T, 3)
    with pytest.raises(TypeError, match="argmax must be an integer array; got float64"):
        ops.global_max_pool1d_backward(dy, np.zeros((2, 4)), 3)
