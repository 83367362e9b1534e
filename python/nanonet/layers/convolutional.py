"""Convolution layers with Keras 3 names, arguments, defaults and kernel layouts, channels_last:
Conv1D (kernel (k, C / groups, filters)), Conv2D (kernel (kh, kw, C / groups, filters)),
DepthwiseConv2D (kernel (kh, kw, C, depth_multiplier)) and SeparableConv2D (a depthwise kernel
then a pointwise (1, 1, C * depth_multiplier, filters) kernel).

Inputs: (B, T, C) for Conv1D, (B, H, W, C) for the 2-D layers. padding "valid" or "same" (out =
ceil(in / stride), the extra zero at the end), Conv1D also "causal" (dilation * (k - 1) zeros
before the sequence). As in Keras, strides > 1 cannot be combined with dilation_rate > 1, and
convolutions neither consume nor pass on a mask. Kernels: ``nanonet.ops.conv2d_forward`` /
``conv2d_backward`` (cpp/nanonet/conv.hpp); Conv1D is the H = 1 case.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from .base import Layer
from .core import _activation_name, _serialize

__all__ = ["Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Convolution1D",
           "Convolution2D"]


def normalize_tuple(value: Any, n: int, name: str | None, cls, allow_zero: Any = False) -> Any:
    """An int or a sequence of n ints -> a tuple of n ints (> 0, or >= 0 with allow_zero)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * n
    try:
        value = tuple(value)
    except TypeError:
        raise ValueError(f"{cls}: {name} must be an int or a tuple of {n} ints; got "
                         f"{value!r}") from None
    lo = 0 if allow_zero else 1
    if len(value) != n or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or
                              v < lo for v in value):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{cls}: {name} must be a {kind} int or a tuple of {n} {kind} ints; "
                         f"got {value!r}")
    return tuple(int(v) for v in value)


def check_data_format(data_format: Any, cls) -> Any:
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{cls}: data_format must be 'channels_last' (the only layout "
                         f"supported); got {data_format!r}")
    return "channels_last"


def check_padding(padding: str, allowed: Any, cls) -> Any:
    p = padding.lower() if isinstance(padding, str) else padding
    if p not in allowed:
        raise ValueError(f"{cls}: padding must be one of {allowed}; got {padding!r}")
    return p


def out_size(size: Any, window: Any, stride: Any, dilation: Any, padding: str) -> Any:
    """Output length along one axis (None when the input length is unknown)."""
    if size is None:
        return None
    if padding == "valid" and size < dilation * (window - 1) + 1:
        return 0
    return ops.conv_geometry(size, window, stride, dilation, padding)[0]


def _patches(x4, window, strides, dilation, padding):
    """im2col per example: x (B, H, W, C) -> (B, OH * OW, KH, KW, C), the input under each
    output position (rows in the output's order, taps in the kernel's)."""
    B, H, W, C = x4.shape
    geo = []
    for n, k, s, d in zip((H, W), window, strides, dilation):
        out, before = ops.conv_geometry(n, k, s, d, padding)
        geo.append((out, before, max((out - 1) * s + d * (k - 1) + 1 - n - before, 0)))
    (OH, ph, ph1), (OW, pw, pw1) = geo
    xp = np.pad(x4, ((0, 0), (ph, ph1), (pw, pw1), (0, 0)))
    (KH, KW), (sh, sw), (dh, dw) = window, strides, dilation
    cols = np.empty((B, OH, OW, KH, KW, C), x4.dtype)
    for i in range(KH):
        for j in range(KW):
            cols[:, :, :, i, j] = xp[:, i * dh:i * dh + (OH - 1) * sh + 1:sh,
                                     j * dw:j * dw + (OW - 1) * sw + 1:sw]
    return cols.reshape(B, OH * OW, KH, KW, C)


class _Conv(Layer):
    """Shared by Conv1D and Conv2D: ``rank`` spatial axes, the kernel (*kernel_size, C / groups,
    filters), a bias (filters,) and an activation fused into the kernel's epilogue."""
    rank = 2
    paddings = ("valid", "same")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        if isinstance(filters, bool) or not isinstance(filters, numbers.Integral) or filters < 1:
            raise ValueError(f"{cls}: filters must be a positive int; got {filters!r}")
        if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
            raise ValueError(f"{cls}: groups must be a positive int; got {groups!r}")
        if filters % groups:
            raise ValueError(f"{cls}: filters ({filters}) must be divisible by groups "
                             f"({groups})")
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(f"{cls}: use_bias must be True or False; got {use_bias!r}")
        self.filters = int(filters)
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", cls)
        self.strides = normalize_tuple(strides, self.rank, "strides", cls)
        self.padding = check_padding(padding, self.paddings, cls)
        self.data_format = check_data_format(data_format, cls)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", cls)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{cls}: strides > 1 is not supported together with dilation_rate "
                             f"> 1; got strides={self.strides}, "
                             f"dilation_rate={self.dilation_rate}")
        self.groups = int(groups)
        self.activation = _activation_name(activation, cls)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel = None
        self.bias = None

    # -- shapes ------------------------------------------------------------------------------
    def _channels(self, input_shape):
        input_shape = tuple(input_shape)
        cls = type(self).__name__
        if len(input_shape) != self.rank + 2:
            what = "(batch, steps, channels)" if self.rank == 1 else \
                "(batch, height, width, channels)"
            raise ValueError(f"{cls} {self.name!r}: input must be {self.rank + 2}-D {what}; got "
                             f"shape {input_shape}")
        C = input_shape[-1]
        if C is None:
            raise ValueError(f"{cls} {self.name!r}: the channel axis must be known; got input "
                             f"shape {input_shape}")
        return int(C)

    def build(self, input_shape):
        C = self._channels(input_shape)
        if C % self.groups:
            raise ValueError(f"{type(self).__name__} {self.name!r}: the input channels ({C}) "
                             f"must be divisible by groups ({self.groups})")
        self.kernel = self.add_weight(shape=self.kernel_size + (C // self.groups, self.filters),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, name="bias")
        self.built = True

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        self._channels(input_shape)
        spatial = tuple(out_size(n, k, s, d, self.padding) for n, k, s, d in zip(
            input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate))
        return (input_shape[0],) + spatial + (self.filters,)

    def compute_mask(self, x, mask=None):
        return None

    # -- forward / backward ------------------------------------------------------------------
    def _geometry(self):
        """(kernel as 4-D, strides, dilation) for the 2-D kernel (Conv1D: H = 1)."""
        if self.rank == 2:
            return self.kernel, self.strides, self.dilation_rate
        return self.kernel[None], (1,) + self.strides, (1,) + self.dilation_rate

    def _nhwc(self, x):
        if type(x) is not np.ndarray or x.dtype != self.kernel.dtype:
            x = self._float_input(x)
        C = self._in_channels()
        if x.ndim != self.rank + 2 or x.shape[-1] != C:
            what = "(batch, steps, " if self.rank == 1 else "(batch, height, width, "
            raise ValueError(f"{type(self).__name__} {self.name!r}: input must be {what}{C}); "
                             f"got shape {x.shape}")
        for n, k, d in zip(x.shape[1:-1], self.kernel_size, self.dilation_rate):
            if self.padding == "valid" and n < d * (k - 1) + 1:
                raise ValueError(f"{type(self).__name__} {self.name!r}: the kernel "
                                 f"{self.kernel_size} (dilation {self.dilation_rate}) is larger "
                                 f"than the input {x.shape[1:-1]} with padding='valid'")
        return x if self.rank == 2 else x[:, None]

    def _in_channels(self):
        return self.kernel.shape[-2] * self.groups

    def _forward(self, x, training, activation):
        x4 = self._nhwc(x)
        kernel, strides, dilation = self._geometry()
        y, z = ops.conv2d_forward(x4, kernel, self.bias, strides, self.padding, dilation,
                                  self.groups, activation, return_z=True)
        ctx = (x4, y, z, activation) if training else None
        return (y if self.rank == 2 else y[:, 0]), ctx

    def forward(self, x, training=False, mask=None):
        return self._forward(x, training, self.activation)

    @property
    def fused_activation(self):
        return self.activation

    def forward_logits(self, x, training=False, mask=None):
        """The forward pass without the activation; see Layer."""
        return self._forward(x, training, "linear")

    def backprop(self, ctx, dy, need_dx=True):
        x4, y, z, activation = ctx
        dy = np.asarray(dy, dtype=self.dtype)
        dy4 = dy if self.rank == 2 else dy[:, None]
        if dy4.shape != y.shape:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {y.shape if self.rank == 2 else y[:, 0].shape}; got "
                             f"{dy.shape}")
        kernel, strides, dilation = self._geometry()
        dx, dkernel, dbias = ops.conv2d_backward(dy4, x4, kernel, y, strides, self.padding,
                                                 dilation, self.groups, activation,
                                                 need_dx=need_dx, z=z)
        if self.rank == 1:
            dkernel = dkernel[0]
            dx = None if dx is None else dx[:, 0]
        grads = self._trainable_grads([dkernel, dbias] if self.use_bias else [dkernel])
        return dx, grads

    # DP-SGD (nanonet.privacy): example b's kernel gradient is, per group, P_b^T dz_b with P_b
    # its im2col patches (output positions as rows); its norm by the Gram trick in C++.
    def dp_backprop(self, ctx, dy, need_dx=True):
        x4, y, z, activation = ctx
        dy = np.asarray(dy, dtype=self.dtype)
        dy4 = dy if self.rank == 2 else dy[:, None]
        if dy4.shape != y.shape:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {y.shape if self.rank == 2 else y[:, 0].shape}; got "
                             f"{dy.shape}")
        dz = np.ascontiguousarray(ops.activation_backward(dy4, y, activation, x=z),
                                  dtype=self.dtype)
        kernel, strides, dilation = self._geometry()
        dx = None
        if need_dx:
            dx = ops.conv2d_backward(dz, x4, kernel, None, strides, self.padding, dilation,
                                     self.groups, "linear", need_dx=True)[0]
            dx = dx if self.rank == 2 else dx[:, 0]
        patches = _patches(x4, kernel.shape[:2], strides, dilation, self.padding)
        B, P = patches.shape[:2]
        Cg, F = kernel.shape[2], dz.shape[-1]
        Fg = F // self.groups
        dzr = dz.reshape(B, P, F)
        sq = np.zeros(B)
        for g in range(self.groups):
            a = patches[..., g * Cg:(g + 1) * Cg].reshape(B, P, -1)
            sq += ops.per_example_matmul_sq_norms(a, dzr[..., g * Fg:(g + 1) * Fg])
        if self.use_bias:
            sq += np.square(dzr.sum(axis=1, dtype=np.float64)).sum(axis=1)
        return dx, sq, (x4, dz)

    def dp_grads(self, state, scale):
        x4, dz = state
        kernel, strides, dilation = self._geometry()
        _, dkernel, dbias = ops.conv2d_backward(dz * scale[:, None, None, None], x4, kernel,
                                                None, strides, self.padding, dilation,
                                                self.groups, "linear", need_dx=False)
        dkernel = dkernel.reshape(self.kernel.shape)
        return self._trainable_grads([dkernel, dbias] if self.use_bias else [dkernel])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "groups": self.groups,
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _serialize(self.kernel_regularizer, _regularizers),
                "bias_regularizer": _serialize(self.bias_regularizer, _regularizers)}

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r}, filters={self.filters}, "
                f"kernel_size={self.kernel_size}, activation={self.activation!r}>")


class Conv2D(_Conv):
    """2-D convolution over (B, H, W, C): kernel (kh, kw, C / groups, filters), bias (filters,).

    ``output = activation(conv2d(x, kernel) + bias)`` (a cross-correlation, as in Keras), one
    C++ call forward and one backward. Weight layout (Keras's): kernel (kh, kw, C / groups,
    filters), bias (filters,).

    Args:
        filters (int): number of output channels (divisible by groups).
        kernel_size (int or tuple of 2 ints): window (kh, kw).
        strides (int or tuple of 2 ints, default 1): step of the window.
        padding (str, default "valid"): "valid" (no padding) or "same" (out = ceil(in /
            stride)).
        data_format (str or None, default None): only "channels_last" is supported.
        dilation_rate (int or tuple of 2 ints, default 1): spacing of the window's taps (not
            with strides > 1).
        groups (int, default 1): split the channels into groups convolved separately.
        activation (str or None, default None): name of an activation (see ``Activation``),
            fused into the kernel's epilogue; None is linear.
        use_bias (bool, default True): add a bias vector.
        kernel_initializer (str or Initializer, default "glorot_uniform"): initializer of the
            kernel.
        bias_initializer (str or Initializer, default "zeros"): initializer of the bias.
        kernel_regularizer (str, Regularizer or None, default None): penalty on the kernel.
        bias_regularizer (str, Regularizer or None, default None): penalty on the bias.
        **kwargs: ``name``, ``trainable``, ``dtype`` ("float32" or "float64"), ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H', W', filters), H' = ceil((H - dilation *
    (kh - 1)) / stride) with "valid", ceil(H / stride) with "same" (W' likewise).

    Raises:
        ValueError: a bad argument (named), an input that is not 4-D, channels not divisible
            by groups, or a kernel larger than the input with padding="valid".

    Example:

    >>> layer = nn.layers.Conv2D(8, 3, padding="same", activation="relu")
    >>> layer(np.zeros((2, 28, 28, 1), np.float32)).shape
    (2, 28, 28, 8)
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 1, 8), (8,)]
    >>> nn.layers.Conv2D(4, 3, strides=2)(np.zeros((1, 9, 9, 2), np.float32)).shape
    (1, 4, 4, 4)
    """
    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (B, T, C): kernel (k, C / groups, filters); padding also "causal".

    Conv2D with a height of 1 (the same kernel). Weight layout (Keras's): kernel (k, C /
    groups, filters), bias (filters,).

    Args:
        filters (int): number of output channels (divisible by groups).
        kernel_size (int or tuple of 1 int): window length k.
        strides (int or tuple of 1 int, default 1): step of the window.
        padding (str, default "valid"): "valid", "same" (out = ceil(T / stride)) or "causal"
            (dilation * (k - 1) zeros before the sequence: step t sees only steps <= t).
        data_format (str or None, default None): only "channels_last" is supported.
        dilation_rate (int or tuple of 1 int, default 1): spacing of the window's taps (not
            with strides > 1).
        groups (int, default 1): split the channels into groups convolved separately.
        activation (str or None, default None): name of an activation (see ``Activation``),
            fused into the kernel's epilogue; None is linear.
        use_bias (bool, default True): add a bias vector.
        kernel_initializer (str or Initializer, default "glorot_uniform"): initializer of the
            kernel.
        bias_initializer (str or Initializer, default "zeros"): initializer of the bias.
        kernel_regularizer (str, Regularizer or None, default None): penalty on the kernel.
        bias_regularizer (str, Regularizer or None, default None): penalty on the bias.
        **kwargs: ``name``, ``trainable``, ``dtype`` ("float32" or "float64"), ``input_shape``.

    Input shape: (B, T, C). Output shape: (B, T', filters); T' = T with "same" or "causal"
    (stride 1), ceil((T - dilation * (k - 1)) / stride) with "valid".

    Raises:
        ValueError: a bad argument (named), an input that is not 3-D, channels not divisible
            by groups, or a kernel longer than the input with padding="valid".

    Example:

    >>> layer = nn.layers.Conv1D(4, 3, padding="causal")
    >>> x = np.random.rand(2, 10, 3).astype("float32")
    >>> y = layer(x)
    >>> y.shape, [w.shape for w in layer.get_weights()]
    ((2, 10, 4), [(3, 3, 4), (4,)])
    >>> x[:, 5:] = 0  # change the future: the first 5 outputs stay the same
    >>> bool(np.array_equal(layer(x)[:, :5], y[:, :5]))
    True
    """
    rank = 1
    paddings = ("valid", "same", "causal")


class DepthwiseConv2D(_Conv):
    """Each input channel convolved with its own depth_multiplier filters: kernel
    (kh, kw, C, depth_multiplier); output channel c * depth_multiplier + m (Keras's order). A
    grouped Conv2D with groups = C underneath.

    Weight layout (Keras's): depthwise_kernel (kh, kw, C, depth_multiplier), bias
    (C * depth_multiplier,).

    Args:
        kernel_size (int or tuple of 2 ints): window (kh, kw).
        strides (int or tuple of 2 ints, default 1): step of the window.
        padding (str, default "valid"): "valid" or "same".
        depth_multiplier (int, default 1): filters per input channel.
        data_format (str or None, default None): only "channels_last" is supported.
        dilation_rate (int or tuple of 2 ints, default 1): spacing of the window's taps.
        activation (str or None, default None): name of an activation; None is linear.
        use_bias (bool, default True): add a bias vector.
        depthwise_initializer (default "glorot_uniform"), bias_initializer (default "zeros"):
            initializers.
        depthwise_regularizer, bias_regularizer (default None): penalties.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H', W', C * depth_multiplier), H' and W' as
    in Conv2D.

    Raises:
        ValueError: a bad argument (named), or an input that is not 4-D.

    Example:

    >>> layer = nn.layers.DepthwiseConv2D(3, depth_multiplier=2)
    >>> layer(np.zeros((2, 8, 8, 3), np.float32)).shape
    (2, 6, 6, 6)
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 3, 2), (6,)]
    """
    rank = 2

    def __init__(self, kernel_size: Any, strides: Any = 1, padding: str = "valid",
                 depth_multiplier: Any = 1, data_format: Any = None, dilation_rate: Any = 1,
                 activation: Any = None, use_bias: bool = True,
                 depthwise_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 depthwise_regularizer: Any = None, bias_regularizer: Any = None,
                 **kwargs: Any) -> None:
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier,
                                                                numbers.Integral) \
                or depth_multiplier < 1:
            raise ValueError(f"DepthwiseConv2D: depth_multiplier must be a positive int; got "
                             f"{depth_multiplier!r}")
        super().__init__(1, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias,
                         kernel_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, **kwargs)
        self.depth_multiplier = int(depth_multiplier)

    def build(self, input_shape: Any) -> None:
        C = self._channels(input_shape)
        self.groups = C
        self.filters = C * self.depth_multiplier
        self.kernel = self.add_weight(shape=self.kernel_size + (C, self.depth_multiplier),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      name="depthwise_kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, name="bias")
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> Any:
        C = self._channels(input_shape)
        self.filters = C * self.depth_multiplier
        return super().compute_output_shape(input_shape)

    def _geometry(self):
        # (kh, kw, C, m) -> the grouped layout (kh, kw, 1, C * m): filter c * m + j is group c
        kh, kw, C, m = self.kernel.shape
        return self.kernel.reshape(kh, kw, 1, C * m), self.strides, self.dilation_rate

    def _in_channels(self):
        return self.kernel.shape[2]

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        dx, grads = super().backprop(ctx, dy, need_dx)
        if grads:
            grads[0] = grads[0].reshape(self.kernel.shape)
        return dx, grads

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for k in ("filters", "groups"):
            config.pop(k)
        config["depth_multiplier"] = self.depth_multiplier
        config["depthwise_initializer"] = config.pop("kernel_initializer")
        config["depthwise_regularizer"] = config.pop("kernel_regularizer")
        return config


class SeparableConv2D(Layer):
    """A depthwise convolution (kernel (kh, kw, C, depth_multiplier), no bias) followed by a
    pointwise 1x1 convolution (kernel (1, 1, C * depth_multiplier, filters)) with the bias and
    activation: Keras's weights depthwise_kernel, pointwise_kernel, bias.

    Args:
        filters (int): number of output channels.
        kernel_size (int or tuple of 2 ints): window (kh, kw) of the depthwise step.
        strides, padding, data_format, dilation_rate: as in DepthwiseConv2D.
        depth_multiplier (int, default 1): depthwise filters per input channel.
        activation (str or None, default None): activation after the pointwise step.
        use_bias (bool, default True): add a bias after the pointwise step.
        depthwise_initializer, pointwise_initializer (default "glorot_uniform"),
            bias_initializer (default "zeros"): initializers.
        depthwise_regularizer, pointwise_regularizer, bias_regularizer (default None):
            penalties.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H', W', filters), H' and W' as in Conv2D.

    Raises:
        ValueError: a bad argument (named), or an input that is not 4-D.

    Example:

    >>> layer = nn.layers.SeparableConv2D(16, 3, padding="same")
    >>> layer(np.zeros((2, 8, 8, 3), np.float32)).shape
    (2, 8, 8, 16)
    >>> [w.shape for w in layer.get_weights()]
    [(3, 3, 3, 1), (1, 1, 3, 16), (16,)]
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1, padding: str = "valid",
                 data_format: Any = None, dilation_rate: Any = 1, depth_multiplier: Any = 1,
                 activation: Any = None, use_bias: bool = True,
                 depthwise_initializer: Any = "glorot_uniform",
                 pointwise_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 depthwise_regularizer: Any = None, pointwise_regularizer: Any = None,
                 bias_regularizer: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._depthwise = DepthwiseConv2D(kernel_size, strides=strides, padding=padding,
                                          depth_multiplier=depth_multiplier,
                                          data_format=data_format, dilation_rate=dilation_rate,
                                          use_bias=False,
                                          depthwise_initializer=depthwise_initializer,
                                          depthwise_regularizer=depthwise_regularizer,
                                          dtype=self.dtype, name=self.name + "_depthwise")
        self._pointwise = Conv2D(filters, 1, activation=activation, use_bias=use_bias,
                                 kernel_initializer=pointwise_initializer,
                                 bias_initializer=bias_initializer,
                                 kernel_regularizer=pointwise_regularizer,
                                 bias_regularizer=bias_regularizer, dtype=self.dtype,
                                 name=self.name + "_pointwise")
        self.filters = self._pointwise.filters
        self.activation = self._pointwise.activation

    def build(self, input_shape: Any) -> None:
        self._depthwise.build(input_shape)
        mid = self._depthwise.compute_output_shape(input_shape)
        self._pointwise.build(mid)
        for lyr, names in ((self._depthwise, ["depthwise_kernel"]),
                           (self._pointwise, ["pointwise_kernel", "bias"])):
            for w, n, r in zip(lyr._weights, names, lyr._weight_regularizers):
                self._weights.append(w)
                self._weight_names.append(n)
                self._weight_trainable.append(True)
                self._weight_regularizers.append(r)
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self._pointwise.compute_output_shape(
            self._depthwise.compute_output_shape(input_shape))

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        return None

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        h, c1 = self._depthwise.forward(x, training)
        y, c2 = self._pointwise.forward(h, training)
        return y, ((c1, c2) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        c1, c2 = ctx
        dh, g2 = self._pointwise.backprop(c2, dy, True)
        dx, g1 = self._depthwise.backprop(c1, dh, need_dx)
        return dx, self._trainable_grads(g1 + g2)

    # DP-SGD (nanonet.privacy): the two convolutions' norms add up.
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        c1, c2 = ctx
        dh, sq2, s2 = self._pointwise.dp_backprop(c2, dy, True)
        dx, sq1, s1 = self._depthwise.dp_backprop(c1, dh, need_dx)
        return dx, sq1 + sq2, (s1, s2)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        s1, s2 = state
        return self._trainable_grads(self._depthwise.dp_grads(s1, scale) +
                                     self._pointwise.dp_grads(s2, scale))

    def get_config(self) -> dict[str, Any]:
        dw, pw = self._depthwise.get_config(), self._pointwise.get_config()
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": dw["kernel_size"], "strides": dw["strides"],
                "padding": dw["padding"], "data_format": dw["data_format"],
                "dilation_rate": dw["dilation_rate"],
                "depth_multiplier": dw["depth_multiplier"], "activation": self.activation,
                "use_bias": pw["use_bias"],
                "depthwise_initializer": dw["depthwise_initializer"],
                "pointwise_initializer": pw["kernel_initializer"],
                "bias_initializer": pw["bias_initializer"],
                "depthwise_regularizer": dw["depthwise_regularizer"],
                "pointwise_regularizer": pw["kernel_regularizer"],
                "bias_regularizer": pw["bias_regularizer"]}


Convolution1D = Conv1D
Convolution2D = Conv2D
