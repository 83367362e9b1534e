"""Reshape with Keras 3's name and arguments (Flatten lives in core.py).

``Reshape(target_shape)`` turns (B, ...) into (B,) + target_shape; one entry of target_shape may
be -1, inferred from the others. The backward pass reshapes the gradient back.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .base import Layer

__all__ = ["Reshape"]


class Reshape(Layer):
    """Reshapes each sample to ``target_shape``.

    Args:
        target_shape (tuple of int): the new shape without the batch axis; at most one entry
            may be -1, inferred from the others.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, ...). Output shape: (B,) + target_shape.

    Raises:
        ValueError: a bad target_shape, or one whose size does not match the input's.

    Example:

    >>> nn.layers.Reshape((3, -1))(np.zeros((2, 12), np.float32)).shape
    (2, 3, 4)
    """

    def __init__(self, target_shape: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(target_shape, numbers.Integral) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        try:
            shape = tuple(target_shape)
        except TypeError:
            raise ValueError(f"Reshape: target_shape must be a tuple of ints; got "
                             f"{target_shape!r}") from None
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, numbers.Integral) or \
                    not (d >= 1 or d == -1):
                raise ValueError(f"Reshape: target_shape must hold positive ints and at most "
                                 f"one -1; got {target_shape!r}")
        if sum(1 for d in shape if d == -1) > 1:
            raise ValueError(f"Reshape: target_shape may hold at most one -1; got "
                             f"{target_shape!r}")
        self.target_shape = tuple(int(d) for d in shape)

    def _resolve(self, rest):
        """target_shape with its -1 worked out from the input's non-batch dims ``rest``."""
        size = math.prod(rest)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(f"Reshape {self.name!r}: cannot reshape input of shape "
                                 f"(batch,) + {tuple(rest)} to (batch,) + {self.target_shape}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ValueError(f"Reshape {self.name!r}: cannot reshape input of shape (batch,) + "
                             f"{tuple(rest)} ({size} values per sample) to (batch,) + "
                             f"{self.target_shape} ({known} values)")
        return self.target_shape

    def compute_output_shape(self, input_shape: Any) -> Any:
        input_shape = tuple(input_shape)
        rest = input_shape[1:]
        if None in rest:
            return (input_shape[0],) + tuple(None if d == -1 else d for d in self.target_shape)
        return (input_shape[0],) + self._resolve(rest)

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Reshape {self.name!r}: input must have a batch axis; got a scalar")
        y = x.reshape((x.shape[0],) + self._resolve(x.shape[1:]))
        return y, (x.shape if training else None)

    def backprop(self, shape: Any, dy: Any, need_dx: Any = True) -> Any:
        dy = np.asarray(dy)
        if dy.size != math.prod(shape) or dy.shape[:1] != shape[:1]:
            raise ValueError(f"Reshape {self.name!r}: dy must have the output's shape "
                             f"{(shape[0],) + self._resolve(shape[1:])}; got {dy.shape}")
        return dy.reshape(shape), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": self.target_shape}

    def __repr__(self):
        return f"<Reshape name={self.name!r}, target_shape={self.target_shape}>"


# ---------------------------------------------------------------------------------------------
# Image reshaping (channels_last (B, H, W, C)): ZeroPadding2D, Cropping2D, UpSampling2D.

def _two_pairs(value, name, cls):
    """int, (a, b) or ((top, bottom), (left, right)) -> ((top, bottom), (left, right))."""
    from .convolutional import normalize_tuple
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        value = tuple(value)
    except TypeError:
        raise ValueError(f"{cls}: {name} must be an int, a pair of ints or a pair of pairs; got "
                         f"{value!r}") from None
    if len(value) != 2:
        raise ValueError(f"{cls}: {name} must be an int, a pair of ints or a pair of pairs; got "
                         f"{value!r}")
    return tuple(normalize_tuple(v, 2, name, cls, allow_zero=True) for v in value)


def _check_image(shape, layer):
    if len(shape) != 4:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: input must be 4-D (batch, "
                         f"height, width, channels); got shape {tuple(shape)}")


class _Image2D(Layer):
    def __init__(self, data_format=None, **kwargs):
        from .convolutional import check_data_format
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, type(self).__name__)

    def _input(self, x):
        x = np.asarray(x)
        _check_image(x.shape, self)
        return x

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class ZeroPadding2D(_Image2D):
    """Zero rows above / below and columns left / right: padding int, (rows, cols) or
    ((top, bottom), (left, right)); default (1, 1).

    Args:
        padding (int, tuple of 2 ints or tuple of 2 pairs, default (1, 1)): n pads n rows and
            n columns on every side; (rows, cols) pads rows above and below and cols left and
            right; ((top, bottom), (left, right)) gives each side.
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H + top + bottom, W + left + right, C).

    Raises:
        ValueError: a bad padding (negative, or not one of the three forms), or an input that
            is not 4-D.

    Example:

    >>> x = np.ones((1, 2, 3, 1), np.float32)
    >>> nn.layers.ZeroPadding2D(((1, 0), (2, 1)))(x).shape
    (1, 3, 6, 1)
    >>> nn.layers.ZeroPadding2D(1)(x)[0, :, :, 0].tolist()
    [[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0, 0.0],
     [0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(self, padding: str = (1, 1), data_format: Any = None, **kwargs: Any) -> None:
        super().__init__(data_format, **kwargs)
        self.padding = _two_pairs(padding, "padding", "ZeroPadding2D")

    def compute_output_shape(self, input_shape: Any) -> Any:
        _check_image(input_shape, self)
        (t, b), (l, r) = self.padding
        B, H, W, C = input_shape
        return (B, None if H is None else H + t + b, None if W is None else W + l + r, C)

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = self._input(x)
        (t, b), (l, r) = self.padding
        y = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        return y, (x.shape if training else None)

    def backprop(self, shape: Any, dy: Any, need_dx: Any = True) -> Any:
        (t, _), (l, _) = self.padding
        return np.asarray(dy)[:, t:t + shape[1], l:l + shape[2], :], []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding}


class Cropping2D(_Image2D):
    """Drop rows at the top / bottom and columns at the left / right: cropping int,
    (rows, cols) or ((top, bottom), (left, right)); default ((0, 0), (0, 0)).

    Args:
        cropping (int, tuple of 2 ints or tuple of 2 pairs, default ((0, 0), (0, 0))): as
            ZeroPadding2D's padding, the rows and columns to drop.
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H - top - bottom, W - left - right, C).

    Raises:
        ValueError: a bad cropping, one that leaves nothing of the height or width, or an
            input that is not 4-D.

    Example:

    >>> x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    >>> nn.layers.Cropping2D(((1, 0), (1, 1)))(x)[0, :, :, 0].tolist()
    [[5.0, 6.0], [9.0, 10.0]]
    """

    def __init__(self, cropping: Any = ((0, 0), (0, 0)), data_format: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(data_format, **kwargs)
        self.cropping = _two_pairs(cropping, "cropping", "Cropping2D")

    def compute_output_shape(self, input_shape: Any) -> Any:
        _check_image(input_shape, self)
        (t, b), (l, r) = self.cropping
        B, H, W, C = input_shape
        for n, a, z, axis in ((H, t, b, "height"), (W, l, r, "width")):
            if n is not None and a + z >= n:
                raise ValueError(f"Cropping2D {self.name!r}: cropping {self.cropping} leaves "
                                 f"nothing of {axis} {n}")
        return (B, None if H is None else H - t - b, None if W is None else W - l - r, C)

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = self._input(x)
        self.compute_output_shape(x.shape)
        (t, b), (l, r) = self.cropping
        y = x[:, t:x.shape[1] - b, l:x.shape[2] - r, :]
        return y, (x.shape if training else None)

    def backprop(self, shape: Any, dy: Any, need_dx: Any = True) -> Any:
        (t, b), (l, r) = self.cropping
        dx = np.zeros(shape, np.asarray(dy).dtype)
        dx[:, t:shape[1] - b, l:shape[2] - r, :] = dy
        return dx, []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping}


class UpSampling2D(_Image2D):
    """Repeat rows size[0] times and columns size[1] times (interpolation="nearest", Keras's
    default; the only one supported).

    Args:
        size (int or tuple of 2 ints, default (2, 2)): the repeats of rows and columns.
        data_format (str or None, default None): only "channels_last" is supported.
        interpolation (str, default "nearest"): only "nearest" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, H * size[0], W * size[1], C).

    Raises:
        ValueError: a bad size or interpolation, or an input that is not 4-D.

    Example:

    >>> x = np.array([[[[1.0], [2.0]]]], np.float32)  # (1, 1, 2, 1)
    >>> nn.layers.UpSampling2D()(x)[0, :, :, 0].tolist()
    [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]
    """

    def __init__(self, size: Any = (2, 2), data_format: Any = None, interpolation: Any = "nearest",
                 **kwargs: Any) -> None:
        from .convolutional import normalize_tuple
        super().__init__(data_format, **kwargs)
        self.size = normalize_tuple(size, 2, "size", "UpSampling2D")
        if interpolation != "nearest":
            raise ValueError(f"UpSampling2D: interpolation must be 'nearest' (the only mode "
                             f"supported); got {interpolation!r}")
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape: Any) -> Any:
        _check_image(input_shape, self)
        B, H, W, C = input_shape
        return (B, None if H is None else H * self.size[0],
                None if W is None else W * self.size[1], C)

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = self._input(x)
        y = np.repeat(np.repeat(x, self.size[0], axis=1), self.size[1], axis=2)
        return y, (x.shape if training else None)

    def backprop(self, shape: Any, dy: Any, need_dx: Any = True) -> Any:
        B, H, W, C = shape
        sh, sw = self.size
        return np.asarray(dy).reshape(B, H, sh, W, sw, C).sum(axis=(2, 4)), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}


__all__ += ["ZeroPadding2D", "Cropping2D", "UpSampling2D"]
