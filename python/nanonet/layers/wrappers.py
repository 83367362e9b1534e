"""TimeDistributed with Keras 3's name and arguments: apply one layer to every time step.

``TimeDistributed(layer)`` on (B, T, ...) input runs ``layer`` once on the (B * T, ...) rows
(one kernel call, no Python loop over steps) and returns (B, T) + the layer's per-row output
shape. The wrapped layer's weights are the wrapper's weights (same arrays, same order), so
optimizers, regularizers, get_weights / set_weights and saving see them through the wrapper.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer

__all__ = ["TimeDistributed"]


class TimeDistributed(Layer):
    """Applies a layer to every time step of a sequence.

    The wrapped layer runs once on the (B * T, ...) rows (no Python loop over steps); its
    weights are the wrapper's weights, so optimizers, get_weights / set_weights and saving see
    them through the wrapper.

    Args:
        layer (Layer): the layer to apply at each step.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, T, ...). Output shape: (B, T) + the layer's output shape for one step.

    Raises:
        ValueError: layer is not a nanonet Layer.

    Example:

    >>> layer = nn.layers.TimeDistributed(nn.layers.Dense(8))
    >>> layer(np.zeros((2, 5, 3), np.float32)).shape
    (2, 5, 8)
    """
    supports_masking = True

    def __init__(self, layer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(layer, Layer):
            raise ValueError(f"TimeDistributed: layer must be a nanonet Layer instance; got "
                             f"{layer!r}")
        self.layer = layer

    def _inner_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"TimeDistributed {self.name!r}: input must be at least 3-D "
                             f"(batch, steps, ...); got shape {input_shape}")
        return (None,) + input_shape[2:]

    def build(self, input_shape: Any) -> None:
        inner = self._inner_shape(input_shape)
        if not self.layer.built:
            self.layer._maybe_build(inner)
        # Share the wrapped layer's weight lists: its arrays are this layer's weights.
        self._weights = self.layer._weights
        self._weight_names = self.layer._weight_names
        self._weight_trainable = self.layer._weight_trainable
        self._weight_regularizers = self.layer._weight_regularizers
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> Any:
        input_shape = tuple(input_shape)
        out = self.layer.compute_output_shape(self._inner_shape(input_shape))
        return tuple(input_shape[:2]) + tuple(out[1:])

    @property
    def fused_activation(self) -> Any:
        return self.layer.fused_activation

    def _rows(self, x):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ValueError(f"TimeDistributed {self.name!r}: input must be at least 3-D "
                             f"(batch, steps, ...); got shape {x.shape}")
        return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), x.shape[:2]

    def _steps(self, y2, bt):
        return y2.reshape(tuple(bt) + y2.shape[1:])

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x2, bt = self._rows(x)
        y2, ctx = self.layer.forward(x2, training=training)
        return self._steps(y2, bt), ((bt, ctx) if training else None)

    def forward_logits(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        """The wrapped layer's ``forward_logits`` on every step (see Layer)."""
        x2, bt = self._rows(x)
        y2, ctx = self.layer.forward_logits(x2, training=training)
        return self._steps(y2, bt), ((bt, ctx) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        bt, inner = ctx
        dy = np.asarray(dy)
        if dy.shape[:2] != tuple(bt):
            raise ValueError(f"TimeDistributed {self.name!r}: dy must start with (batch, "
                             f"steps) = {tuple(bt)}; got shape {dy.shape}")
        dx2, grads = self.layer.backprop(inner, dy.reshape((bt[0] * bt[1],) + dy.shape[2:]),
                                         need_dx=need_dx)
        return (None if dx2 is None else self._steps(dx2, bt)), \
            (list(grads) if self.trainable else [])

    def get_rng_state(self) -> Any:
        inner = self.layer.get_rng_state()
        return {"layer": inner} if inner else {}

    def set_rng_state(self, state: Any) -> Any:
        if not isinstance(state, dict) or set(state) - {"layer"}:
            raise ValueError(f"random state of TimeDistributed {self.name!r} must be "
                             f"{{'layer': ...}}; got {state!r}")
        self.layer.set_rng_state(state.get("layer", {}))

    def get_config(self) -> dict[str, Any]:
        from . import serialize
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        from . import deserialize
        config = dict(config)
        return cls(deserialize(config.pop("layer")), **config)

    def __repr__(self):
        return f"<TimeDistributed name={self.name!r}, layer={self.layer!r}>"
