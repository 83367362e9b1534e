"""TimeDistributed with Keras 3's name and arguments: apply one layer to every time step.

``TimeDistributed(layer)`` on (B, T, ...) input runs ``layer`` once on the (B * T, ...) rows
(one kernel call, no Python loop over steps) and returns (B, T) + the layer's per-row output
shape. The wrapped layer's weights are the wrapper's weights (same arrays, same order), so
optimizers, regularizers, get_weights / set_weights and saving see them through the wrapper.
"""
from __future__ import annotations

import numpy as np

from .base import Layer

__all__ = ["TimeDistributed"]


class TimeDistributed(Layer):
    """Applies ``layer`` to every time step of (B, T, ...) input, e.g.
    ``TimeDistributed(Dense(8))`` maps (B, T, F) to (B, T, 8)."""
    supports_masking = True

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer):
            raise ValueError(f"TimeDistributed: layer must be a nanonet Layer instance; got "
                             f"{layer!r}")
        self.layer = layer
        self._cache = None

    def _inner_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"TimeDistributed {self.name!r}: input must be at least 3-D "
                             f"(batch, steps, ...); got shape {input_shape}")
        return (None,) + input_shape[2:]

    def build(self, input_shape):
        inner = self._inner_shape(input_shape)
        if not self.layer.built:
            self.layer._maybe_build(inner)
        # Share the wrapped layer's weight lists: its arrays are this layer's weights.
        self._weights = self.layer._weights
        self._weight_names = self.layer._weight_names
        self._weight_trainable = self.layer._weight_trainable
        self._weight_regularizers = self.layer._weight_regularizers
        self.built = True

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        out = self.layer.compute_output_shape(self._inner_shape(input_shape))
        return tuple(input_shape[:2]) + tuple(out[1:])

    @property
    def fused_activation(self):
        return self.layer.fused_activation

    def _rows(self, x):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ValueError(f"TimeDistributed {self.name!r}: input must be at least 3-D "
                             f"(batch, steps, ...); got shape {x.shape}")
        return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), x.shape[:2]

    def _steps(self, y2, bt):
        return y2.reshape(tuple(bt) + y2.shape[1:])

    def call(self, x, training=False, mask=None):
        x2, bt = self._rows(x)
        y2 = self.layer.call(x2, training=training)
        if training:
            self._cache = bt
        return self._steps(y2, bt)

    def call_logits(self, x, training=True):
        """The wrapped layer's ``call_logits`` on every step (see Layer)."""
        x2, bt = self._rows(x)
        y2 = self.layer.call_logits(x2, training=training)
        if training:
            self._cache = bt
        return self._steps(y2, bt)

    def backward(self, dy):
        if self._cache is None:
            raise ValueError(f"Layer {self.name!r}: backward() needs a preceding "
                             "call(x, training=True)")
        bt = self._cache
        self._cache = None
        dy = np.asarray(dy)
        if dy.shape[:2] != tuple(bt):
            raise ValueError(f"TimeDistributed {self.name!r}: dy must start with (batch, "
                             f"steps) = {tuple(bt)}; got shape {dy.shape}")
        self.layer.needs_input_grad = self.needs_input_grad
        dx2 = self.layer.backward(dy.reshape((bt[0] * bt[1],) + dy.shape[2:]))
        self.grads = self.layer.grads if self.trainable else []
        return None if dx2 is None else self._steps(dx2, bt)

    def get_config(self):
        from . import serialize
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config):
        from . import deserialize
        config = dict(config)
        return cls(deserialize(config.pop("layer")), **config)

    def __repr__(self):
        return f"<TimeDistributed name={self.name!r}, layer={self.layer!r}>"
