"""Global pooling over time with Keras 3 names and defaults: GlobalAveragePooling1D and
GlobalMaxPooling1D (aliases GlobalAvgPool1D, GlobalMaxPool1D).

Input (B, T, F) ("channels_last", the default) or (B, F, T) ("channels_first"); output (B, F),
or (B, 1, F) / (B, F, 1) with keepdims=True. Both consume a (B, T) mask (True = the step
counts) and pass no mask on: the average is over the unmasked steps (as Keras), the max over
the unmasked steps (Keras ignores the mask there). A sample with no unmasked step pools to 0 and
gets no gradient. Kernels: ``nanonet.ops.global_avg_pool1d_*`` / ``global_max_pool1d_*``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .base import Layer

__all__ = ["GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAvgPool1D", "GlobalMaxPool1D"]

_FORMATS = ("channels_last", "channels_first")


class _GlobalPooling1D(Layer):
    supports_masking = True

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        data_format = "channels_last" if data_format is None else data_format
        if data_format not in _FORMATS:
            raise ValueError(f"{cls}: data_format must be one of {_FORMATS}; got "
                             f"{data_format!r}")
        if not isinstance(keepdims, (bool, np.bool_)):
            raise ValueError(f"{cls}: keepdims must be True or False; got {keepdims!r}")
        self.data_format = data_format
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input must be 3-D (batch, "
                             f"steps, features); got shape {input_shape}")
        B = input_shape[0]
        F = input_shape[2] if self.data_format == "channels_last" else input_shape[1]
        if not self.keepdims:
            return (B, F)
        return (B, 1, F) if self.data_format == "channels_last" else (B, F, 1)

    def compute_mask(self, x, mask=None):
        return None

    def _btf(self, x, mask):
        """x as (B, T, F) of this layer's dtype and the mask checked against (B, T)."""
        x = np.asarray(x)
        x = x if x.dtype == self.dtype else self._float_input(x)
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input must be 3-D (batch, "
                             f"steps, features); got shape {x.shape}")
        if self.data_format == "channels_first":
            x = x.transpose(0, 2, 1)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != x.shape[:2]:
                raise ValueError(f"{type(self).__name__} {self.name!r}: mask must be (batch, "
                                 f"steps) = {x.shape[:2]}; got {mask.shape}")
        return x, mask

    def _out(self, y):
        if not self.keepdims:
            return y
        return y[:, None, :] if self.data_format == "channels_last" else y[:, :, None]

    def _dy(self, dy, B, F):
        dy = np.asarray(dy)
        last = self.data_format == "channels_last"
        want = self.compute_output_shape((B, None, F) if last else (B, F, None))
        if dy.shape != want:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {want}; got {dy.shape}")
        return np.ascontiguousarray(dy.reshape(B, F), dtype=self.dtype)

    def _dx(self, dx):
        return dx.transpose(0, 2, 1) if self.data_format == "channels_first" else dx

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Averages over the time axis (alias ``GlobalAvgPool1D``).

    With a (B, T) mask only the unmasked steps count, as in Keras; a sample without any
    unmasked step pools to 0.

    Args:
        data_format (str or None, default None): "channels_last" ((B, T, F), the default) or
            "channels_first" ((B, F, T)).
        keepdims (bool, default False): keep the time axis with length 1.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, T, F) (channels_last) or (B, F, T) (channels_first).
    Output shape: (B, F); with keepdims (B, 1, F) or (B, F, 1).

    Example:

    >>> x = np.array([[[1.0], [3.0], [8.0]]], np.float32)
    >>> nn.layers.GlobalAveragePooling1D()(x).tolist()
    [[4.0]]
    >>> nn.layers.GlobalAveragePooling1D()(x, mask=np.array([[True, True, False]])).tolist()
    [[2.0]]
    """

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x, mask = self._btf(x, mask)
        y = ops.global_avg_pool1d_forward(x, mask)
        return self._out(y), ((x.shape, mask) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        (B, T, F), mask = ctx
        return self._dx(ops.global_avg_pool1d_backward(self._dy(dy, B, F), T, mask)), []


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Takes the maximum over the time axis (alias ``GlobalMaxPool1D``).

    With a (B, T) mask only the unmasked steps count (Keras ignores the mask here); the
    gradient goes to the first step holding the maximum.

    Args:
        data_format (str or None, default None): "channels_last" ((B, T, F), the default) or
            "channels_first" ((B, F, T)).
        keepdims (bool, default False): keep the time axis with length 1.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, T, F) (channels_last) or (B, F, T) (channels_first).
    Output shape: (B, F); with keepdims (B, 1, F) or (B, F, 1).

    Example:

    >>> x = np.array([[[1.0, 5.0], [3.0, 2.0]]], np.float32)
    >>> nn.layers.GlobalMaxPooling1D()(x).tolist()
    [[3.0, 5.0]]
    """

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x, mask = self._btf(x, mask)
        y, argmax = ops.global_max_pool1d_forward(x, mask)
        return self._out(y), ((x.shape, argmax) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        (B, T, F), argmax = ctx
        return self._dx(ops.global_max_pool1d_backward(self._dy(dy, B, F), argmax, T)), []


GlobalAvgPool1D = GlobalAveragePooling1D
GlobalMaxPool1D = GlobalMaxPooling1D


# ---------------------------------------------------------------------------------------------
# Windowed pooling (MaxPooling1D / 2D, AveragePooling1D / 2D) and global pooling over images.
# Keras 3 arguments: pool_size (2 / (2, 2)), strides=None (= pool_size), padding="valid" |
# "same", data_format=None (channels_last only). Average pooling with "same" divides by the
# number of in-image positions (the padding does not count), as Keras. Like Keras, windowed
# pooling does not use or pass on a mask. Kernels: nanonet.ops.max_pool2d_* / avg_pool2d_*; the
# 1-D layers run them with H = 1. Max pooling keeps its argmax indices only when training.

from .convolutional import check_data_format, check_padding, normalize_tuple, out_size  # noqa: E402

__all__ += ["MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
            "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAveragePooling2D",
            "GlobalMaxPooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D"]


class _Pooling(Layer):
    rank = 2

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size", cls)
        self.strides = (self.pool_size if strides is None else
                        normalize_tuple(strides, self.rank, "strides", cls))
        self.padding = check_padding(padding, ("valid", "same"), cls)
        self.data_format = check_data_format(data_format, cls)

    def _check_rank(self, shape):
        if len(shape) != self.rank + 2:
            what = "(batch, steps, channels)" if self.rank == 1 else \
                "(batch, height, width, channels)"
            raise ValueError(f"{type(self).__name__} {self.name!r}: input must be "
                             f"{self.rank + 2}-D {what}; got shape {tuple(shape)}")

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_rank(input_shape)
        spatial = tuple(out_size(n, k, s, 1, self.padding) for n, k, s in
                        zip(input_shape[1:-1], self.pool_size, self.strides))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def compute_mask(self, x, mask=None):
        return None

    def _nhwc(self, x):
        x = np.asarray(x)
        x = x if x.dtype == self.dtype else self._float_input(x)
        self._check_rank(x.shape)
        if self.padding == "valid" and any(n < k for n, k in zip(x.shape[1:-1], self.pool_size)):
            raise ValueError(f"{type(self).__name__} {self.name!r}: pool_size {self.pool_size} "
                             f"is larger than the input {x.shape[1:-1]} with padding='valid'")
        return x if self.rank == 2 else x[:, None]

    def _geometry(self):
        if self.rank == 2:
            return self.pool_size, self.strides
        return (1,) + self.pool_size, (1,) + self.strides

    def _out(self, y):
        return y if self.rank == 2 else y[:, 0]

    def _dy(self, dy, shape):
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        dy4 = dy if self.rank == 2 else dy[:, None]
        if dy4.shape != shape:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {self._out(np.empty(shape)).shape}; got {dy.shape}")
        return dy4

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format}


class MaxPooling2D(_Pooling):
    """Max over pool_size windows of (B, H, W, C); the gradient goes to the first max.

    Args:
        pool_size (int or tuple of 2 ints, default (2, 2)): the window (ph, pw).
        strides (int, tuple of 2 ints or None, default None): step of the window; None is
            pool_size.
        padding (str, default "valid"): "valid" (whole windows only) or "same" (out =
            ceil(in / stride); the padding never wins the max).
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H', W', C), H' = (H - ph) // stride + 1
    with "valid", ceil(H / stride) with "same" (W' likewise). No mask is used or passed on.

    Raises:
        ValueError: a bad argument (named), an input that is not 4-D, or a window larger
            than the input with padding="valid".

    Example:

    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> nn.layers.MaxPooling2D()(x)[..., 0].tolist()
    [[[5.0, 7.0], [13.0, 15.0]]]
    """
    rank = 2

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x4 = self._nhwc(x)
        p, s = self._geometry()
        if not training:
            return self._out(ops.max_pool2d_forward(x4, p, s, self.padding)), None
        y, argmax = ops.max_pool2d_forward(x4, p, s, self.padding, return_argmax=True)
        return self._out(y), (x4.shape[1:3], argmax)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        hw, argmax = ctx
        p, s = self._geometry()
        dx = ops.max_pool2d_backward(self._dy(dy, argmax.shape), argmax, hw, p, s, self.padding)
        return self._out(dx), []


class AveragePooling2D(_Pooling):
    """Mean over pool_size windows of (B, H, W, C) (the in-image part with "same").

    Args:
        pool_size (int or tuple of 2 ints, default (2, 2)): the window (ph, pw).
        strides (int, tuple of 2 ints or None, default None): step of the window; None is
            pool_size.
        padding (str, default "valid"): "valid" (whole windows only) or "same" (out =
            ceil(in / stride); the padding does not count in the mean, as Keras).
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H', W', C), as MaxPooling2D. No mask is
    used or passed on.

    Raises:
        ValueError: a bad argument (named), an input that is not 4-D, or a window larger
            than the input with padding="valid".

    Example:

    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> nn.layers.AveragePooling2D()(x)[..., 0].tolist()
    [[[2.5, 4.5], [10.5, 12.5]]]
    """
    rank = 2

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x4 = self._nhwc(x)
        p, s = self._geometry()
        y = ops.avg_pool2d_forward(x4, p, s, self.padding)
        return self._out(y), ((x4.shape[1:3], y.shape) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        hw, shape = ctx
        p, s = self._geometry()
        return self._out(ops.avg_pool2d_backward(self._dy(dy, shape), hw, p, s,
                                                 self.padding)), []


class MaxPooling1D(MaxPooling2D):
    """Max over pool_size steps of (B, T, C) (MaxPooling2D with a height of 1).

    Args:
        pool_size (int or tuple of 1 int, default 2): the window length.
        strides (int, tuple of 1 int or None, default None): step of the window; None is
            pool_size.
        padding (str, default "valid"): "valid" (whole windows only) or "same" (out =
            ceil(in / stride); the padding never wins the max).
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, T, C). Output shape: (B, T', C), T' = (T - pool_size) // stride + 1 with
    "valid", ceil(T / stride) with "same".

    Raises:
        ValueError: a bad argument (named), an input that is not 3-D, or a window longer than
            the input with padding="valid".

    Example:

    >>> x = np.array([[[1.0], [5.0], [2.0], [4.0], [3.0]]], np.float32)
    >>> nn.layers.MaxPooling1D()(x)[..., 0].tolist()  # the last step has no whole window
    [[5.0, 4.0]]
    >>> nn.layers.MaxPooling1D(padding="same")(x)[..., 0].tolist()
    [[5.0, 4.0, 3.0]]
    """
    rank = 1


class AveragePooling1D(AveragePooling2D):
    """Mean over pool_size steps of (B, T, C) (AveragePooling2D with a height of 1).

    Args:
        pool_size (int or tuple of 1 int, default 2): the window length.
        strides (int, tuple of 1 int or None, default None): step of the window; None is
            pool_size.
        padding (str, default "valid"): "valid" (whole windows only) or "same" (out =
            ceil(in / stride); the padding does not count in the mean, as Keras).
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, T, C). Output shape: (B, T', C), as MaxPooling1D.

    Raises:
        ValueError: a bad argument (named), an input that is not 3-D, or a window longer than
            the input with padding="valid".

    Example:

    >>> x = np.array([[[1.0], [5.0], [2.0], [4.0], [3.0]]], np.float32)
    >>> nn.layers.AveragePooling1D(padding="same")(x)[..., 0].tolist()
    [[3.0, 3.0, 3.0]]
    """
    rank = 1


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.data_format = check_data_format(data_format, cls)
        if not isinstance(keepdims, (bool, np.bool_)):
            raise ValueError(f"{cls}: keepdims must be True or False; got {keepdims!r}")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input must be 4-D (batch, "
                             f"height, width, channels); got shape {input_shape}")
        B, C = input_shape[0], input_shape[-1]
        return (B, 1, 1, C) if self.keepdims else (B, C)

    def compute_mask(self, x, mask=None):
        return None

    def _btc(self, x):
        x = np.asarray(x)
        x = x if x.dtype == self.dtype else self._float_input(x)
        self.compute_output_shape(x.shape)
        B, H, W, C = x.shape
        return np.ascontiguousarray(x).reshape(B, H * W, C)

    def _out(self, y):
        return y[:, None, None, :] if self.keepdims else y

    def _dy(self, dy, B, C):
        dy = np.asarray(dy)
        want = (B, 1, 1, C) if self.keepdims else (B, C)
        if dy.shape != want:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {want}; got {dy.shape}")
        return np.ascontiguousarray(dy.reshape(B, C), dtype=self.dtype)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over height and width: (B, H, W, C) -> (B, C) (alias ``GlobalAvgPool2D``).

    Args:
        data_format (str or None, default None): only "channels_last" is supported.
        keepdims (bool, default False): keep height and width with length 1.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, C); with keepdims (B, 1, 1, C).

    Raises:
        ValueError: a bad argument (named), or an input that is not 4-D.

    Example:

    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> nn.layers.GlobalAveragePooling2D()(x).tolist()
    [[7.5]]
    >>> nn.layers.GlobalAveragePooling2D(keepdims=True)(x).shape
    (1, 1, 1, 1)
    """

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        shape = np.shape(x)
        y = ops.global_avg_pool1d_forward(self._btc(x))
        return self._out(y), (shape if training else None)

    def backprop(self, shape: Any, dy: Any, need_dx: Any = True) -> Any:
        B, H, W, C = shape
        return ops.global_avg_pool1d_backward(self._dy(dy, B, C), H * W).reshape(shape), []


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over height and width: (B, H, W, C) -> (B, C); the gradient goes to the first max
    (alias ``GlobalMaxPool2D``).

    Args:
        data_format (str or None, default None): only "channels_last" is supported.
        keepdims (bool, default False): keep height and width with length 1.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, C); with keepdims (B, 1, 1, C).

    Raises:
        ValueError: a bad argument (named), or an input that is not 4-D.

    Example:

    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> nn.layers.GlobalMaxPooling2D()(x).tolist()
    [[15.0]]
    """

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        shape = np.shape(x)
        y, argmax = ops.global_max_pool1d_forward(self._btc(x))
        return self._out(y), ((shape, argmax) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        (B, H, W, C), argmax = ctx
        dx = ops.global_max_pool1d_backward(self._dy(dy, B, C), argmax, H * W)
        return dx.reshape(B, H, W, C), []


MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D
