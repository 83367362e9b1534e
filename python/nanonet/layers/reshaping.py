"""Reshape with Keras 3's name and arguments (Flatten lives in core.py).

``Reshape(target_shape)`` turns (B, ...) into (B,) + target_shape; one entry of target_shape may
be -1, inferred from the others. The backward pass reshapes the gradient back.
"""
from __future__ import annotations

import math
import numbers

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

    def __init__(self, target_shape, **kwargs):
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

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        rest = input_shape[1:]
        if None in rest:
            return (input_shape[0],) + tuple(None if d == -1 else d for d in self.target_shape)
        return (input_shape[0],) + self._resolve(rest)

    def forward(self, x, training=False, mask=None):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Reshape {self.name!r}: input must have a batch axis; got a scalar")
        y = x.reshape((x.shape[0],) + self._resolve(x.shape[1:]))
        return y, (x.shape if training else None)

    def backprop(self, shape, dy, need_dx=True):
        dy = np.asarray(dy)
        if dy.size != math.prod(shape) or dy.shape[:1] != shape[:1]:
            raise ValueError(f"Reshape {self.name!r}: dy must have the output's shape "
                             f"{(shape[0],) + self._resolve(shape[1:])}; got {dy.shape}")
        return dy.reshape(shape), []

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}

    def __repr__(self):
        return f"<Reshape name={self.name!r}, target_shape={self.target_shape}>"
