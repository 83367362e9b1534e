"""Convolution and windowed pooling kernels: the packed-GEMM conv against nanonet.reference and
the direct C++ loops (odd sizes, strides, dilation, groups, valid / same / causal padding, fused
activations), float64 finite differences, 1 vs 2 threads, bad input; the layers (Conv1D,
Conv2D, DepthwiseConv2D, SeparableConv2D, pooling, padding / cropping / upsampling) with their
Keras layouts, training, saving and errors."""
import os

import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL


def _close(got, want, dtype, op="conv"):
    tol = TOL[np.dtype(dtype).name][op]
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * (np.abs(want).max(initial=0) + 1))


# (B, H, W, C, F, KH, KW, strides, padding, dilation, groups)
CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, "valid", 1, 1),
    (2, 5, 7, 3, 4, 3, 3, 1, "valid", 1, 1),
    (2, 5, 7, 3, 4, 3, 3, 1, "same", 1, 1),
    (1, 8, 9, 2, 5, 3, 2, (2, 3), "same", 1, 1),
    (3, 7, 7, 4, 6, 3, 3, 2, "valid", 1, 2),
    (2, 9, 8, 3, 3, 3, 3, 1, "same", 2, 1),
    (2, 6, 6, 4, 8, 2, 2, 1, "same", 1, 4),         # depthwise-like, even kernel
    (1, 1, 13, 3, 4, 1, 5, 1, "causal", (1, 2), 1),  # Conv1D causal, dilated
    (2, 4, 4, 17, 15, 1, 1, 1, "valid", 1, 1),      # pointwise: x read as A directly
    (2, 12, 12, 16, 17, 3, 3, 1, "same", 1, 1),     # more than one row tile
    (5, 28, 28, 1, 32, 3, 3, 1, "valid", 1, 1),     # the showcase's first layer (threads)
]
ACTS = ["linear", "relu", "tanh", "silu"]


def _inputs(case, dtype, seed=0):
    B, H, W, C, F, KH, KW, s, pad, d, G = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, H, W, C)).astype(dtype)
    k = (rng.standard_normal((KH, KW, C // G, F)) / np.sqrt(KH * KW * C // G)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, k, b, dict(strides=s, padding=pad, dilation_rate=d, groups=G)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", CASES)
def test_conv_matches_reference(case, act, dtype):
    x, k, b, geo = _inputs(case, dtype)
    want = reference.conv2d_forward(x.astype(np.float64), k.astype(np.float64),
                                    b.astype(np.float64), activation=act, **geo)
    y, z = ops.conv2d_forward(x, k, b, activation=act, return_z=True, **geo)
    assert y.dtype == dtype
    _close(y, want, dtype)
    _close(ops.conv2d_forward(x, k, b, activation=act, _ref=True, **geo), want, dtype)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    zw = reference.conv2d_forward(x.astype(np.float64), k.astype(np.float64),
                                  b.astype(np.float64), **geo)
    wants = reference.conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                                      k.astype(np.float64), want, activation=act, z=zw, **geo)
    for ref in (False, True):
        got = ops.conv2d_backward(dy, x, k, y, activation=act, z=z, _ref=ref, **geo)
        for g, w in zip(got, wants):
            _close(g, w, dtype)


def test_conv_softmax_activation_normalises_channels():
    x, k, b, geo = _inputs(CASES[2], np.float64)
    y = ops.conv2d_forward(x, k, b, activation="softmax", **geo)
    np.testing.assert_allclose(y.sum(axis=-1), 1, atol=1e-12)
    _close(y, reference.conv2d_forward(x, k, b, activation="softmax", **geo), np.float64)


@pytest.mark.parametrize("case", [CASES[3], CASES[4], CASES[5], CASES[7], CASES[8]])
def test_conv_gradients_finite_differences(case):
    x, k, b, geo = _inputs(case, np.float64, seed=3)
    act = "tanh"
    y = ops.conv2d_forward(x, k, b, activation=act, **geo)
    R = np.random.default_rng(4).standard_normal(y.shape)
    dx, dk, db = ops.conv2d_backward(R, x, k, y, activation=act, **geo)
    h = 1e-6

    def loss(x_, k_, b_):
        return float(np.sum(ops.conv2d_forward(x_, k_, b_, activation=act, **geo) * R))

    for arr, grad, name in ((x, dx, "x"), (k, dk, "kernel"), (b, db, "bias")):
        num = np.zeros_like(arr)
        it = np.nditer(arr, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = arr[i]
            arr[i] = old + h
            up = loss(x, k, b)
            arr[i] = old - h
            down = loss(x, k, b)
            arr[i] = old
            num[i] = (up - down) / (2 * h)
        err = np.linalg.norm(num - grad) / max(np.linalg.norm(num), 1e-12)
        assert err < TOL["float64"]["grad_fd"] * 10, (name, err)


ISAS = ["ref", "avx2", "avx512"]

# The direct kernels (float, G = 1; the dkernel for C <= 4): filter counts around the register blocks (8 / 16 / 32 float
# columns a block for baseline / AVX2 / AVX-512, 4 double; a last block of one vector or less
# takes 12 pixels), rows narrower than the 6-pixel block,
# edge pixels ('same', strides, dilation), windows wider than the row, 1x1 and 5x5 kernels.
# (B, H, W, C, F, KH, KW, strides, padding, dilation, groups)
DIRECT = [
    (1, 1, 1, 1, 1, 1, 1, 1, "valid", 1, 1),
    (2, 5, 4, 1, 5, 3, 3, 1, "same", 1, 1),        # OW = 4 < 6: pixel by pixel
    (2, 7, 13, 2, 17, 3, 3, 1, "same", 1, 1),      # 17 filters: a partial block
    (1, 9, 11, 3, 33, 3, 3, 2, "same", 1, 1),      # strides 2, 33 = 32 + 1 filters
    (2, 10, 15, 4, 40, 3, 3, 1, "valid", 2, 1),    # dilated
    (1, 6, 19, 1, 8, 5, 5, 1, "same", 1, 1),       # 5x5: two edge pixels a side
    (1, 8, 9, 3, 16, 2, 3, (2, 1), "same", (1, 1), 1),
    (3, 4, 20, 2, 31, 1, 1, 1, "valid", 1, 1),     # 1x1 with few channels
    (1, 3, 7, 4, 64, 3, 7, 1, "same", 1, 1),       # window as wide as the row
    (2, 12, 14, 1, 32, 3, 3, 1, "valid", 1, 1),    # the first layer's shape, smaller
    (2, 9, 10, 17, 33, 3, 3, 2, "same", 1, 1),     # more channels: direct forward, GEMM dkernel
    (1, 13, 13, 32, 64, 3, 3, 1, "valid", 1, 1),   # the second layer's shape
    (2, 6, 7, 9, 12, 1, 1, 1, "valid", 1, 1),      # pointwise
    (1, 6, 7, 64, 40, 3, 3, 1, "same", 1, 1),      # 64 channels: direct on AVX-512 only
    (1, 5, 28, 8, 96, 3, 3, 1, "same", 1, 1),      # AVX-512: a 4-vector x 6 and a 2 x 12 block
    (1, 4, 17, 5, 80, 3, 3, 1, "valid", 1, 1),     # 4 x 6, then 1 vector x 12 for the last 16
    (2, 3, 25, 3, 50, 3, 3, 1, "same", 1, 1),      # 2 x 12 blocks, the second partial (18)
    # a last block of at most one vector: 1 vector x 12 pixels, then 6-pixel blocks
    (2, 8, 28, 3, 16, 3, 3, 1, "same", 1, 1),      # 26 interior columns: 12 + 12 + 6 shifted
    (1, 7, 13, 5, 48, 3, 3, 1, "valid", 1, 1),     # 48 = 32 + 16; 11 columns: 6 + 6 shifted
    (1, 5, 16, 2, 8, 3, 3, 1, "same", 1, 1),       # 8 filters (a vector under AVX2); 14: 12 + 6
]


def _available(isa):
    return ISAS.index(isa) <= ISAS.index(ops.detect_isa())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", DIRECT)
def test_direct_conv_few_channels_every_isa(case, isa, dtype):
    if not _available(isa):
        pytest.skip(f"CPU lacks {isa}")
    x, k, b, geo = _inputs(case, dtype, seed=7)
    x64, k64, b64 = x.astype(np.float64), k.astype(np.float64), b.astype(np.float64)
    before = ops.active_isa()
    try:
        ops.set_isa(isa)
        for act in ("linear", "relu", "silu"):
            want = reference.conv2d_forward(x64, k64, b64, activation=act, **geo)
            y, z = ops.conv2d_forward(x, k, b, activation=act, return_z=True, **geo)
            _close(y, want, dtype)
            if act == "silu":
                _close(z, reference.conv2d_forward(x64, k64, b64, **geo), dtype)
            _close(ops.conv2d_forward(x, k, None, activation=act, **geo),
                   reference.conv2d_forward(x64, k64, None, activation=act, **geo), dtype)
            dy = np.random.default_rng(8).standard_normal(y.shape).astype(dtype)
            zw = reference.conv2d_forward(x64, k64, b64, **geo)
            wants = reference.conv2d_backward(dy.astype(np.float64), x64, k64, want,
                                              activation=act, z=zw, **geo)
            got = ops.conv2d_backward(dy, x, k, y, activation=act, z=z, **geo)
            for g, w in zip(got, wants):
                _close(g, w, dtype)
    finally:
        ops.set_isa(before)


@pytest.mark.parametrize("case", [DIRECT[1], DIRECT[3], DIRECT[4], DIRECT[6]])
def test_direct_conv_gradients_finite_differences(case):
    x, k, b, geo = _inputs(case, np.float64, seed=9)
    act = "tanh"
    R = np.random.default_rng(10).standard_normal(
        ops.conv2d_forward(x, k, b, activation=act, **geo).shape)

    def loss(x_, k_, b_):
        return float(np.sum(ops.conv2d_forward(x_, k_, b_, activation=act, **geo) * R))

    y = ops.conv2d_forward(x, k, b, activation=act, **geo)
    dx, dk, db = ops.conv2d_backward(R, x, k, y, activation=act, **geo)
    h = 1e-6
    for arr, grad, name in ((x, dx, "x"), (k, dk, "kernel"), (b, db, "bias")):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = loss(x, k, b)
            arr[i] = old - h
            down = loss(x, k, b)
            arr[i] = old
            num[i] = (up - down) / (2 * h)
        err = np.linalg.norm(num - grad) / max(np.linalg.norm(num), 1e-12)
        assert err < TOL["float64"]["grad_fd"] * 10, (name, err)


# big enough for two threads (over 2 MFLOP): the direct kernel (C = 1), the GEMM path with a
# fused activation that needs z, a grouped one, a pointwise one
THREAD_CASES = [(8, 28, 28, 1, 32, 3, 3, 1, "valid", 1, 1),
                (3, 12, 12, 16, 24, 3, 3, 1, "same", 1, 1),
                (8, 14, 14, 8, 32, 3, 3, 1, "same", 1, 2),
                (16, 12, 12, 32, 40, 1, 1, 1, "valid", 1, 1)]


@pytest.mark.parametrize("act", ["relu", "silu"])
@pytest.mark.parametrize("case", THREAD_CASES)
def test_conv_threads_agree(case, act):
    x, k, b, geo = _inputs(case, np.float32)
    dy = np.random.default_rng(2).standard_normal(
        ops.conv2d_forward(x, k, b, **geo).shape).astype(np.float32)
    old = nn.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            nn.set_num_threads(n)
            y, z = ops.conv2d_forward(x, k, b, activation=act, return_z=True, **geo)
            out.append((y, *ops.conv2d_backward(dy, x, k, y, activation=act, z=z, **geo)))
    finally:
        nn.set_num_threads(old)
    # every result is the same for any thread count: the forward splits output rows, the
    # backward fixed chunks of images (each with its dx and partial weight gradients)
    for a, c in zip(*out):
        np.testing.assert_array_equal(a, c)


def test_conv_bad_input():
    x = np.zeros((2, 5, 5, 3), np.float32)
    k = np.zeros((3, 3, 3, 4), np.float32)
    with pytest.raises(TypeError, match="kernel must have the dtype of x"):
        ops.conv2d_forward(x, k.astype(np.float64))
    with pytest.raises(ValueError, match="x must be"):
        ops.conv2d_forward(x[0], k)
    with pytest.raises(ValueError, match=r"kernel must be \(KH, KW, C / groups, F\)"):
        ops.conv2d_forward(x, np.zeros((3, 3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="larger than the input"):
        ops.conv2d_forward(x, np.zeros((7, 7, 3, 4), np.float32))
    with pytest.raises(ValueError, match="strides must be a positive int"):
        ops.conv2d_forward(x, k, strides=0)
    with pytest.raises(ValueError, match="groups = 2 must divide"):
        ops.conv2d_forward(x, np.zeros((3, 3, 1, 4), np.float32), groups=2)
    with pytest.raises(ValueError, match=r"bias must be \(F,\)"):
        ops.conv2d_forward(x, k, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="padding must be one of"):
        ops.conv2d_forward(x, k, padding="full")
    with pytest.raises(ValueError, match="needs the forward pre-activation z"):
        y = ops.conv2d_forward(x, k, activation="silu")
        ops.conv2d_backward(y, x, k, y, activation="silu")
    with pytest.raises(ValueError, match=r"dy must be \(B, OH, OW, F\)"):
        ops.conv2d_backward(np.zeros((2, 4, 4, 4), np.float32), x, k, None)


# ---- windowed pooling ---------------------------------------------------------------------

POOLS = [((2, 5, 7, 3), 2, None, "valid"), ((2, 5, 7, 3), 2, None, "same"),
         ((1, 7, 7, 4), 3, 2, "valid"), ((1, 7, 8, 4), 3, 2, "same"), ((3, 6, 6, 2), (2, 3), 1,
                                                                        "same"),
         ((2, 1, 11, 5), (1, 3), (1, 2), "same"), ((8, 26, 26, 32), 2, None, "valid"),
         ((2, 7, 9, 13), 3, 2, "same"), ((1, 6, 6, 8), 2, 1, "valid"),
         ((2, 5, 5, 24), (2, 3), (2, 2), "same")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [8, 13, 16, 50])
def test_max_pool2d_ties_and_nan_take_the_first(C, dtype):
    # register blocks (8 channels; float under AVX-512: 32, then 16) and the channels after
    # them: ties keep the first position, the first NaN wins (as numpy.argmax in the
    # reference), with and without argmax
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, (2, 6, 7, C)).astype(dtype)
    x[0, 1, 2, 0] = x[1, 4, 4, C - 1] = x[1, 4, 5, C - 1] = x[0, 0, 0, 5] = np.nan
    if C > 40:  # NaNs in the 16-channel block and the tail, a NaN that meets a later NaN
        x[0, 2, 2, 33] = x[0, 2, 3, 33] = x[1, 0, 1, 47] = x[1, 3, 3, 49] = np.nan
    for pool, strides, padding in ((2, None, "valid"), (3, 2, "same"), ((2, 3), 1, "same")):
        y, am = ops.max_pool2d_forward(x, pool, strides, padding, return_argmax=True)
        wy, wam = reference.max_pool2d_forward(x, pool, strides, padding, return_argmax=True)
        np.testing.assert_array_equal(y, wy)
        np.testing.assert_array_equal(am, wam)
        np.testing.assert_array_equal(ops.max_pool2d_forward(x, pool, strides, padding), wy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, pool, strides, padding", POOLS)
def test_pool2d_matches_reference(shape, pool, strides, padding, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    y, am = ops.max_pool2d_forward(x, pool, strides, padding, return_argmax=True)
    wy, wam = reference.max_pool2d_forward(x, pool, strides, padding, return_argmax=True)
    np.testing.assert_array_equal(y, wy)
    np.testing.assert_array_equal(am, wam)
    np.testing.assert_array_equal(ops.max_pool2d_forward(x, pool, strides, padding), y)
    dy = rng.standard_normal(y.shape).astype(dtype)
    _close(ops.max_pool2d_backward(dy, am, shape[1:3], pool, strides, padding),
           reference.max_pool2d_backward(dy, wam, shape[1:3], pool, strides, padding), dtype,
           "pooling")
    a = ops.avg_pool2d_forward(x, pool, strides, padding)
    _close(a, reference.avg_pool2d_forward(x, pool, strides, padding), dtype, "pooling")
    _close(ops.avg_pool2d_backward(dy, shape[1:3], pool, strides, padding),
           reference.avg_pool2d_backward(dy, shape[1:3], pool, strides, padding), dtype,
           "pooling")


def test_avg_pool2d_gradient_finite_differences():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 6, 3))
    geo = ((3, 2), (2, 1), "same")
    R = rng.standard_normal(ops.avg_pool2d_forward(x, *geo).shape)
    dx = ops.avg_pool2d_backward(R, x.shape[1:3], *geo)
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = 1e-6
        num[i] = (np.sum(ops.avg_pool2d_forward(x + e, *geo) * R) -
                  np.sum(ops.avg_pool2d_forward(x - e, *geo) * R)) / 2e-6
    np.testing.assert_allclose(dx, num, atol=1e-8)


def test_pool2d_bad_input():
    x = np.zeros((1, 3, 3, 2), np.float32)
    with pytest.raises(ValueError, match="larger than the input"):
        ops.max_pool2d_forward(x, 4)
    with pytest.raises(ValueError, match="pool_size must be a positive int"):
        ops.avg_pool2d_forward(x, 0)
    with pytest.raises(ValueError, match=r"argmax must be in \[-1, H\*W\)"):
        ops.max_pool2d_backward(np.zeros((1, 1, 1, 2), np.float32),
                                np.full((1, 1, 1, 2), 9), (3, 3), 2)
    with pytest.raises(ValueError, match="must be .B, H, W, C."):
        ops.max_pool2d_forward(x[0], 2)


# ---- layers -------------------------------------------------------------------------------

def _fd_layer_check(layer, x, seed=0):
    """Layer forward/backprop in float64 against central differences of sum(y * R)."""
    y, ctx = layer.forward(x, training=True)
    R = np.random.default_rng(seed).standard_normal(y.shape)
    dx, grads = layer.backprop(ctx, R)

    def loss():
        return float(np.sum(layer.forward(x, training=False)[0] * R))

    for arr, g in [(x, dx)] + list(zip(layer.trainable_weights, grads)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + 1e-6
            up = loss()
            arr[i] = old - 1e-6
            down = loss()
            arr[i] = old
            num[i] = (up - down) / 2e-6
        assert np.linalg.norm(num - g) <= 1e-6 * max(np.linalg.norm(num), 1e-9) + 1e-9


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.layers.Conv2D(3, 3, padding="same", activation="tanh", dtype="float64"),
     (2, 5, 4, 2)),
    (lambda: nn.layers.Conv2D(4, (2, 3), strides=(2, 1), groups=2, dtype="float64"),
     (1, 6, 5, 4)),
    (lambda: nn.layers.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu",
                              dtype="float64"), (2, 9, 2)),
    (lambda: nn.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                       dtype="float64"), (2, 5, 5, 3)),
    (lambda: nn.layers.SeparableConv2D(4, 3, depth_multiplier=2, dtype="float64"), (1, 5, 6, 3)),
    (lambda: nn.layers.MaxPooling2D(2, padding="same", dtype="float64"), (2, 5, 5, 3)),
    (lambda: nn.layers.AveragePooling1D(3, strides=2, dtype="float64"), (2, 9, 3)),
    (lambda: nn.layers.MaxPooling1D(dtype="float64"), (2, 8, 3)),
    (lambda: nn.layers.GlobalAveragePooling2D(dtype="float64"), (2, 3, 4, 5)),
    (lambda: nn.layers.GlobalMaxPooling2D(keepdims=True, dtype="float64"), (2, 3, 4, 5)),
    (lambda: nn.layers.ZeroPadding2D(((1, 2), (0, 1)), dtype="float64"), (2, 3, 4, 2)),
    (lambda: nn.layers.Cropping2D(((1, 0), (1, 2)), dtype="float64"), (2, 4, 5, 2)),
    (lambda: nn.layers.UpSampling2D((2, 3), dtype="float64"), (2, 2, 3, 2)),
])
def test_layer_gradients_and_output_shape(make, shape):
    layer = make()
    x = np.random.default_rng(1).standard_normal(shape)
    y = layer(x)
    assert y.shape[1:] == tuple(layer.compute_output_shape((None,) + shape[1:]))[1:]
    rng = np.random.default_rng(2)
    for w in layer.weights:  # random weights, biases included
        w[...] = rng.standard_normal(w.shape) * 0.5
    _fd_layer_check(layer, x)


def test_keras_layouts_and_conv1d_is_conv2d_with_h1():
    nn.set_seed(0)
    c1 = nn.layers.Conv1D(5, 3, padding="same")
    c1.build((None, 10, 4))
    assert c1.kernel.shape == (3, 4, 5) and c1.bias.shape == (5,)
    c2 = nn.layers.Conv2D(5, (1, 3), padding="same")
    c2.build((None, 1, 10, 4))
    c2.set_weights([c1.kernel[None], c1.bias + 0.5])
    c1.set_weights([c1.kernel, c1.bias + 0.5])
    x = np.random.default_rng(0).standard_normal((2, 10, 4)).astype(np.float32)
    np.testing.assert_allclose(c1(x), c2(x[:, None])[:, 0], rtol=1e-6)
    d = nn.layers.DepthwiseConv2D(3, depth_multiplier=2)
    d.build((None, 6, 6, 3))
    assert d.weight_names == ["depthwise_kernel", "bias"] and d.kernel.shape == (3, 3, 3, 2)
    s = nn.layers.SeparableConv2D(7, 3)
    s.build((None, 6, 6, 3))
    assert s.weight_names == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert [w.shape for w in s.weights] == [(3, 3, 3, 1), (1, 1, 3, 7), (7,)]


def test_depthwise_matches_per_channel_convolution():
    d = nn.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False, dtype="float64")
    x = np.random.default_rng(2).standard_normal((2, 6, 7, 3))
    y = d(x)
    for c in range(3):
        for m in range(2):
            want = reference.conv2d_forward(x[..., c:c + 1], d.kernel[:, :, c:c + 1, m:m + 1])
            np.testing.assert_allclose(y[..., c * 2 + m], want[..., 0], atol=1e-12)


def test_layer_errors():
    with pytest.raises(ValueError, match="data_format must be 'channels_last'"):
        nn.layers.Conv2D(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="strides must be a positive int"):
        nn.layers.Conv2D(4, 3, strides=0)
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        nn.layers.Conv1D(4, (3, 3))
    with pytest.raises(ValueError, match="padding must be one of"):
        nn.layers.Conv2D(4, 3, padding="causal")
    with pytest.raises(ValueError, match="dilation_rate > 1"):
        nn.layers.Conv2D(4, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="data_format must be 'channels_last'"):
        nn.layers.MaxPooling2D(data_format="channels_first")
    conv = nn.layers.Conv2D(4, 3)
    with pytest.raises(ValueError, match="input must be 4-D"):
        conv(np.zeros((2, 5, 3), np.float32))
    conv(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"input must be \(batch, height, width, 3\)"):
        conv(np.zeros((1, 5, 5, 2), np.float32))
    with pytest.raises(ValueError, match="larger than the input"):
        conv(np.zeros((1, 2, 5, 3), np.float32))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.layers.Conv2D(4, 3, groups=2)(np.zeros((1, 5, 5, 3), np.float32))


def _small_cnn():
    return nn.Sequential([
        nn.layers.Input((8, 8, 1)),
        nn.layers.Conv2D(4, 3, activation="relu"),
        nn.layers.MaxPooling2D(),
        nn.layers.DepthwiseConv2D(2, padding="same"),
        nn.layers.SeparableConv2D(3, 1, activation="relu"),
        nn.layers.ZeroPadding2D(1),
        nn.layers.Cropping2D(1),
        nn.layers.UpSampling2D(),
        nn.layers.AveragePooling2D(),
        nn.layers.BatchNormalization(),
        nn.layers.GlobalAveragePooling2D(),
        nn.layers.Dense(3, activation="softmax"),
    ])


def test_cnn_trains_saves_loads_and_resumes(tmp_path):
    nn.set_seed(1)
    rng = np.random.default_rng(0)
    x = rng.random((48, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) * 3).astype(np.int64) % 3
    model = _small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    path = tmp_path / "cnn.nnet"
    model.save(path)
    loaded = nn.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # resume: one more epoch on each gives the same weights
    model.fit(x, y, epochs=4, initial_epoch=3, batch_size=16, verbose=0)
    loaded.fit(x, y, epochs=4, initial_epoch=3, batch_size=16, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_batch_normalization_over_the_channels_of_images():
    bn = nn.layers.BatchNormalization(momentum=0.5, dtype="float64")
    x = np.random.default_rng(3).standard_normal((4, 5, 6, 3)) * [1, 2, 3] + [0, 1, -1]
    bn.build((None, 5, 6, 3))
    y, ctx = bn.forward(x, training=True)
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), atol=1e-12)
    np.testing.assert_allclose(bn.moving_mean, mean * 0.5, atol=1e-12)
    dx = bn.backprop(ctx, np.ones_like(y))[0]
    np.testing.assert_allclose(dx, 0, atol=1e-10)  # sum(y) does not depend on x


def test_text_cnn_of_the_demo_trains():
    from nanonet import demo
    nn.set_seed(0)
    model = demo.MODELS["cnn"](40, 3, 16)
    ids = np.random.default_rng(0).integers(1, 40, (30, 12))
    y = np.eye(3)[ids[:, 0] % 3].astype(np.float32)
    h = model.fit(ids, y, epochs=3, batch_size=10, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert model.predict(ids, verbose=0).shape == (30, 3)


def test_serving_a_28x28_image_as_nested_lists():
    import http.client
    import json
    from nanonet.serving import ModelServer
    nn.set_seed(0)
    model = nn.Sequential([nn.layers.Input((28, 28, 1)), nn.layers.Conv2D(4, 3, activation="relu"),
                           nn.layers.MaxPooling2D(), nn.layers.Flatten(),
                           nn.layers.Dense(10, activation="softmax")])
    x = np.random.default_rng(0).random((28, 28, 1)).astype(np.float32)
    server = ModelServer(model, port=0).start()
    try:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
        conn.request("POST", "/predict", body=json.dumps({"inputs": x.tolist()}))
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
    finally:
        server.shutdown(timeout=20)
    assert resp.status == 200
    np.testing.assert_allclose(body["outputs"], model.predict(x[None], verbose=0)[0],
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("geo", [dict(strides=1, padding=1, dilation=1, groups=1),
                                 dict(strides=2, padding=0, dilation=1, groups=1),
                                 dict(strides=1, padding=2, dilation=2, groups=3)])
def test_conv2d_matches_torch(geo):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 8, 6))
    k = rng.standard_normal((3, 3, 6 // geo["groups"], 9))
    b = rng.standard_normal(9)
    pad = {1: "same", 0: "valid", 2: "same"}[geo["padding"]]
    y = ops.conv2d_forward(x, k, b, geo["strides"], pad, geo["dilation"], geo["groups"])
    tx = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    tk = torch.tensor(k.transpose(3, 2, 0, 1).copy(), requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tk, tb, geo["strides"], geo["padding"],
                                    geo["dilation"], geo["groups"])
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), atol=1e-12)
    R = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(R.transpose(0, 3, 1, 2).copy()))
    dx, dk, db = ops.conv2d_backward(R, x, k, y, geo["strides"], pad, geo["dilation"],
                                     geo["groups"])
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), atol=1e-12)
    np.testing.assert_allclose(dk, tk.grad.numpy().transpose(2, 3, 1, 0), atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), atol=1e-12)


def test_fashion_mnist_demo_runs_end_to_end(tmp_path, capsys):
    from nanonet import datasets
    from nanonet.__main__ import main
    if not os.path.isdir(datasets.FASHION_MNIST_DIR):
        pytest.skip("apt-get install dataset-fashion-mnist")
    path = tmp_path / "cnn.nnet"
    assert main(["demo", "--dataset", "fashion_mnist", "--max-samples", "640", "--epochs", "1",
                 "--save", str(path)]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert 0.2 < acc <= 1.0  # one epoch on 576 images: above chance (0.1)
    assert nn.load_model(path).predict(np.zeros((1, 28, 28, 1), np.float32),
                                       verbose=0).shape == (1, 10)
