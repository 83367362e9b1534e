"""Embedding: integer token ids (B, T) -> vectors (B, T, E) by table lookup.

Weight layout (Keras's): embeddings (input_dim, output_dim) = (V, E). The forward is a gather
(nanonet.ops.embedding_forward); the backward a deterministic scatter-add into a dense (V, E)
gradient (nanonet.ops.embedding_backward). Ids outside [0, input_dim) raise ValueError naming
the id. With mask_zero=True, id 0 is padding: the layer emits the mask ``ids != 0`` for the next
layers (LSTM carries its state over masked steps; the loss skips masked steps).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from .base import Layer

__all__ = ["Embedding"]

def _positive_int(value, name, cls):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{cls}: {name} must be a positive int; got {value!r}")
    return int(value)


class Embedding(Layer):
    """Turns integer ids into dense vectors: ``output[b, t] = embeddings[ids[b, t]]``.

    Weight layout (Keras's): embeddings (input_dim, output_dim), i.e. (V, E).

    Args:
        input_dim (int): vocabulary size V; ids must lie in [0, input_dim).
        output_dim (int): width E of each vector.
        embeddings_initializer (str or Initializer, default "uniform"): RandomUniform(-0.05,
            0.05) by default.
        embeddings_regularizer (str, Regularizer or None, default None): penalty on the table.
        mask_zero (bool, default False): treat id 0 as padding: the layer emits the mask
            ``ids != 0`` for the next layers (LSTM, pooling, attention, ...).
        input_length (int or None, default None): Keras 2's argument; accepted and ignored.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, T) integer ids (or any (B, ...) integer array).
    Output shape: (B, T, output_dim).

    Raises:
        ValueError: non-positive dims, or ids outside [0, input_dim) (named in the message).

    Example:

    >>> layer = nn.layers.Embedding(10, 4, mask_zero=True)
    >>> ids = np.array([[3, 1, 0]], np.int32)
    >>> layer(ids).shape
    (1, 3, 4)
    >>> layer.compute_mask(ids).tolist()
    [[True, True, False]]
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, mask_zero=False, input_length=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = _positive_int(input_dim, "input_dim", "Embedding")
        self.output_dim = _positive_int(output_dim, "output_dim", "Embedding")
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ValueError(f"Embedding: mask_zero must be True or False; got {mask_zero!r}")
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = _initializers.get(embeddings_initializer)
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer)
        self.embeddings = None

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          name="embeddings")
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, x, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(x) != 0

    def forward(self, x, training=False, mask=None):
        y = ops.embedding_forward(x, self.embeddings)
        return y, (np.asarray(x) if training else None)

    def backprop(self, ids, dy, need_dx=True):
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        if dy.shape != ids.shape + (self.output_dim,):
            raise ValueError(f"Embedding {self.name!r}: dy must have the output's shape "
                             f"{ids.shape + (self.output_dim,)}; got {dy.shape}")
        grads = self._trainable_grads([ops.embedding_backward(dy, ids, self.input_dim)])
        return None, grads  # ids are not differentiable

    # DP-SGD (nanonet.privacy): per-example sums over equal tokens
    def dp_backprop(self, ids, dy, need_dx=True):
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        if dy.shape != ids.shape + (self.output_dim,):
            raise ValueError(f"Embedding {self.name!r}: dy must have the output's shape "
                             f"{ids.shape + (self.output_dim,)}; got {dy.shape}")
        B = ids.shape[0]
        ids2 = ids.reshape(B, -1)
        sq = ops.embedding_per_example_sq_norms(ids2, dy.reshape(B, ids2.shape[1], -1))
        return None, sq.astype(np.float64), (ids, dy)

    def dp_grads(self, state, scale):
        ids, dy = state
        dys = dy * scale.reshape((-1,) + (1,) * (dy.ndim - 1))
        return self._trainable_grads([ops.embedding_backward(dys, ids, self.input_dim)])

    def get_config(self):
        reg = self.embeddings_regularizer
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": _initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": None if reg is None else _regularizers.serialize(reg),
                "mask_zero": self.mask_zero}

    def __repr__(self):
        return (f"<Embedding name={self.name!r}, input_dim={self.input_dim}, "
                f"output_dim={self.output_dim}, mask_zero={self.mask_zero}>")
