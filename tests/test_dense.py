"""Dense: nanonet.ops.dense_forward / dense_backward against nanonet.reference and the scalar C++
twin (_ref), float64 finite differences for every activation, edge shapes around the GEMM blocks
(the fused epilogue must run once per element, after the last K block), thread-count
independence and every error."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

DTYPES = [np.float32, np.float64]
ACTS = ["linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax", "gelu", "gelu_approximate",
        "silu", "elu", "selu", "leaky_relu", "softplus", "softsign", "hard_sigmoid", "exponential"]
# activations whose backward reads the pre-activation z (ops.INPUT_ACTIVATIONS)
INPUT_ACTS = ["gelu", "gelu_approximate", "silu"]
# where the derivative jumps: finite differences keep pre-activations away from these
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "selu": (0.0,), "hard_sigmoid": (-3.0, 3.0)}
# (B, I, H): 1, primes, 16/17, around MR (6/12), NR (8/16/32), MC (72/144), KC (256).
SHAPES = [(1, 1, 1), (1, 7, 16), (7, 1, 17), (17, 16, 1), (13, 33, 8), (145, 17, 33),
          (3, 257, 5), (16, 255, 17), (2, 3, 256), (257, 2, 3), (6, 0, 4)]


def _params(rng, B, I, H, dtype, act="linear"):
    x = rng.standard_normal((B, I)).astype(dtype)
    kernel = (rng.standard_normal((I, H)) / np.sqrt(max(I, 1))).astype(dtype)
    bias = rng.standard_normal(H).astype(dtype)  # random biases, never zeros
    return x, kernel, bias


def _close(got, want, dtype, K):
    # GEMM error grows like sqrt(K) * eps * scale; the activations add a few ulp.
    tol = TOL[np.dtype(dtype).name]
    want = np.asarray(want, np.float64)
    scale = np.abs(want).max(initial=0.0) + 1.0
    atol = tol["gemm"] * np.sqrt(max(K, 1)) * scale * 4
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol["elementwise"],
                               atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_reference(act, dtype):
    rng = np.random.default_rng(1)
    for B, I, H in SHAPES:
        x, kernel, bias = _params(rng, B, I, H, dtype)
        for b in (bias, None):
            want = reference.dense_forward(x.astype(np.float64), kernel.astype(np.float64),
                                           None if b is None else b.astype(np.float64), act)
            for ref in (False, True):
                y = ops.dense_forward(x, kernel, b, act, _ref=ref)
                assert y.dtype == dtype and y.shape == (B, H)
                _close(y, want, dtype, I)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_backward_matches_reference(act, dtype):
    rng = np.random.default_rng(2)
    for B, I, H in SHAPES + [(0, 3, 4)]:
        x, kernel, bias = _params(rng, B, I, H, dtype)
        y, z = ops.dense_forward(x, kernel, bias, act, return_z=True)
        dy = rng.standard_normal((B, H)).astype(dtype)
        f64 = [a.astype(np.float64) for a in (dy, x, kernel, y)]
        z64 = f64[1] @ f64[2] + bias.astype(np.float64)
        want = reference.dense_backward(*f64, act, z=z64)
        for ref in (False, True):
            for need_dx in (True, False):
                dx, dkernel, dbias = ops.dense_backward(dy, x, kernel, y, act, need_dx, z=z,
                                                        _ref=ref)
                assert dkernel.shape == (I, H) and dbias.shape == (H,)
                assert dkernel.dtype == dtype and dbias.dtype == dtype
                if need_dx:
                    assert dx.shape == (B, I) and dx.dtype == dtype
                    _close(dx, want[0], dtype, H)
                else:
                    assert dx is None
                _close(dkernel, want[1], dtype, B)
                _close(dbias, want[2], dtype, B)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("B,I,H", [(1, 1, 1), (3, 4, 5), (2, 7, 3)])
def test_backward_finite_differences(act, B, I, H):
    rng = np.random.default_rng(3)
    x, kernel, bias = _params(rng, B, I, H, np.float64)
    for kink in KINKS.get(act, ()):  # keep every pre-activation away from the kinks
        z = x @ kernel + bias
        bias = bias + np.where(np.abs(z - kink) < 1e-2, 0.05, 0.0).max(axis=0)
    for kink in KINKS.get(act, ()):
        assert (np.abs(x @ kernel + bias - kink) > 1e-3).all()
    r = rng.standard_normal((B, H))  # loss = sum(y * R)

    def loss(x_, k_, b_):
        return np.sum(ops.dense_forward(x_, k_, b_, act) * r)

    y, z = ops.dense_forward(x, kernel, bias, act, return_z=True)
    dx, dkernel, dbias = ops.dense_backward(r, x, kernel, y, act, z=z)
    h = 1e-6
    tol = TOL["float64"]["grad_fd"]
    for name, param, grad in (("x", x, dx), ("kernel", kernel, dkernel), ("bias", bias, dbias)):
        fd = np.empty_like(param)
        for i in np.ndindex(param.shape):
            saved = param[i]
            param[i] = saved + h
            up = loss(x, kernel, bias)
            param[i] = saved - h
            down = loss(x, kernel, bias)
            param[i] = saved
            fd[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=0, atol=tol * (np.abs(fd).max() + 1e-3),
                                   err_msg=f"d{name}")


def test_linear_backward_accepts_y_none():
    rng = np.random.default_rng(4)
    x, kernel, _ = _params(rng, 5, 3, 4, np.float64)
    dy = rng.standard_normal((5, 4))
    got = ops.dense_backward(dy, x, kernel, None)
    want = reference.dense_backward(dy, x, kernel, None)
    for g, w in zip(got, want):
        _close(g, w, np.float64, 5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_and_nan_inputs(dtype):
    x = np.array([[1e4, -1e4], [0.0, 1.0], [np.nan, 1.0]], dtype)
    kernel = np.array([[1.0, -1.0, 2.0], [0.5, 0.0, -3.0]], dtype)
    bias = np.array([0.1, -0.2, 0.3], dtype)
    for act in ACTS:
        if act == "exponential":  # exp(3e4) is inf, rightly
            continue
        y, z = ops.dense_forward(x, kernel, bias, act, return_z=True)
        assert np.isfinite(y[:2]).all(), act
        assert np.isnan(y[2]).any(), act  # NaN propagates, no crash
        dx, dk, db = ops.dense_backward(np.ones_like(y), x, kernel, y, act, z=z)
        assert np.isfinite(dx[:2]).all(), act
    p = ops.dense_forward(x[:2], kernel, bias, "softmax")
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,I,H", [(300, 40, 200), (700, 30, 50)])  # column split / row split
def test_threads_identical(B, I, H, dtype):
    rng = np.random.default_rng(5)
    x, kernel, bias = _params(rng, B, I, H, dtype)
    dy = rng.standard_normal((B, H)).astype(dtype)
    before = nn.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            nn.set_num_threads(n)
            res = []
            for act in ACTS:
                y, z = ops.dense_forward(x, kernel, bias, act, return_z=True)
                res += [y, *ops.dense_backward(dy, x, kernel, y, act, z=z)]
            out[n] = res
    finally:
        nn.set_num_threads(before)
    for a, b in zip(out[1], out[2]):
        assert np.array_equal(a, b)


def test_noncontiguous_inputs_are_copied():
    rng = np.random.default_rng(6)
    big = rng.standard_normal((12, 20))
    x = big[::2, ::3]                      # (6, 7), strided
    kernel = np.asfortranarray(rng.standard_normal((7, 5)))
    bias = rng.standard_normal(10)[::2]
    y = ops.dense_forward(x, kernel, bias, "tanh")
    _close(y, reference.dense_forward(x, kernel, bias, "tanh"), np.float64, 7)
    dy = rng.standard_normal((5, 6)).T      # (6, 5), transposed view
    got = ops.dense_backward(dy, x, kernel, y, "tanh")
    for g, w in zip(got, reference.dense_backward(dy, x, kernel, y, "tanh")):
        _close(g, w, np.float64, 7)


def test_errors():
    x = np.zeros((4, 3), np.float32)
    k = np.zeros((3, 5), np.float32)
    b = np.zeros(5, np.float32)
    y = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"dense_forward: kernel must be \(I, H\) with I = 3 "
                                         r"\(x is \(4, 3\)\); got \(5, 3\)"):
        ops.dense_forward(x, k.T.copy())
    with pytest.raises(ValueError, match=r"dense_forward: bias must be \(H,\) = \(5,\); got \(4,\)"):
        ops.dense_forward(x, k, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"x must be 2-D; got shape \(3,\)"):
        ops.dense_forward(np.zeros(3, np.float32), k)
    with pytest.raises(ValueError, match=r"kernel must be 2-D; got shape \(3, 5, 1\)"):
        ops.dense_forward(x, k[..., None])
    with pytest.raises(ValueError, match="activation must be one of linear, sigmoid"):
        ops.dense_forward(x, k, b, "mish")
    with pytest.raises(TypeError, match=r"kernel must have the dtype of x \(float32\); got float64"):
        ops.dense_forward(x, k.astype(np.float64))
    with pytest.raises(TypeError, match=r"bias must have the dtype of x"):
        ops.dense_forward(x, k, b.astype(np.float64))
    with pytest.raises(TypeError, match="x must be float32 or float64; got int32"):
        ops.dense_forward(x.astype(np.int32), k)
    with pytest.raises(ValueError, match=r"dense_backward: dy must be \(B, H\) = \(4, 5\); "
                                         r"got \(4, 4\)"):
        ops.dense_backward(np.zeros((4, 4), np.float32), x, k, y, "relu")
    with pytest.raises(ValueError, match=r"dense_backward: y must be \(B, H\) = \(4, 5\); "
                                         r"got \(5, 4\)"):
        ops.dense_backward(y, x, k, y.T.copy(), "relu")
    with pytest.raises(ValueError, match="y \\(the forward output\\) is needed for activation "
                                         "'sigmoid'; got None"):
        ops.dense_backward(y, x, k, None, "sigmoid")
    with pytest.raises(TypeError, match="dy must have the dtype of x"):
        ops.dense_backward(y.astype(np.float64), x, k, y, "relu")
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.dense_backward(y, x, k, y, "mish")
    with pytest.raises(ValueError, match="activation must be one of"):
        reference.dense_backward(y, x, k, y, "mish")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", INPUT_ACTS)
def test_input_activations_keep_the_preactivation(act, dtype):
    """gelu / silu: dense_forward(return_z=True) gives z = x @ kernel + bias (written by the
    epilogue, for every GEMM block shape) beside y; dense_backward takes it as z=, and without it
    raises."""
    rng = np.random.default_rng(7)
    for B, I, H in SHAPES:
        x, kernel, bias = _params(rng, B, I, H, dtype)
        for ref in (False, True):
            y, z = ops.dense_forward(x, kernel, bias, act, return_z=True, _ref=ref)
            assert z is not None and z.shape == (B, H) and z.dtype == dtype
            np.testing.assert_array_equal(y, ops.dense_forward(x, kernel, bias, act, _ref=ref))
            _close(z, x.astype(np.float64) @ kernel + bias, dtype, I)
            dy = rng.standard_normal((B, H)).astype(dtype)
            got = ops.dense_backward(dy, x, kernel, y, act, z=z, _ref=ref)
            explicit = ops.dense_backward(dy, x, kernel, y.copy(), act, z=z.copy(), _ref=ref)
            for g, e in zip(got, explicit):
                assert np.array_equal(g, e)
    y = ops.dense_forward(x, kernel, bias, act)
    with pytest.raises(ValueError, match=f"dense_backward: activation '{act}' needs the forward "
                                         "pre-activation z; pass z="):
        ops.dense_backward(y, x, kernel, y.copy(), act)
    with pytest.raises(ValueError, match=r"z \(the forward pre-activation\) is needed for "
                                         f"activation '{act}'; got None"):
        nn._core.dense_backward(y, x, kernel, y.copy(), act)
    with pytest.raises(ValueError, match=r"dense_backward: z must be \(B, H\)"):
        ops.dense_backward(y, x, kernel, y, act, z=np.zeros((1, 1), dtype))
