"""Global pooling over time with Keras 3 names and defaults: GlobalAveragePooling1D and
GlobalMaxPooling1D (aliases GlobalAvgPool1D, GlobalMaxPool1D).

Input (B, T, F) ("channels_last", the default) or (B, F, T) ("channels_first"); output (B, F),
or (B, 1, F) / (B, F, 1) with keepdims=True. Both consume a (B, T) mask (True = the step
counts) and pass no mask on: the average is over the unmasked steps (as Keras), the max over
the unmasked steps (Keras ignores the mask there). A sample with no unmasked step pools to 0 and
gets no gradient. Kernels: ``nanonet.ops.global_avg_pool1d_*`` / ``global_max_pool1d_*``.
"""
from __future__ import annotations

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

    def forward(self, x, training=False, mask=None):
        x, mask = self._btf(x, mask)
        y = ops.global_avg_pool1d_forward(x, mask)
        return self._out(y), ((x.shape, mask) if training else None)

    def backprop(self, ctx, dy, need_dx=True):
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

    def forward(self, x, training=False, mask=None):
        x, mask = self._btf(x, mask)
        y, argmax = ops.global_max_pool1d_forward(x, mask)
        return self._out(y), ((x.shape, argmax) if training else None)

    def backprop(self, ctx, dy, need_dx=True):
        (B, T, F), argmax = ctx
        return self._dx(ops.global_max_pool1d_backward(self._dy(dy, B, F), argmax, T)), []


GlobalAvgPool1D = GlobalAveragePooling1D
GlobalMaxPool1D = GlobalMaxPooling1D
