"""Embedding: integer token ids (B, T) -> vectors (B, T, E) by table lookup.

Weight layout (Keras's): embeddings (input_dim, output_dim) = (V, E). The forward is a gather
(nanonet.ops.embedding_forward); the backward a deterministic scatter-add into a dense (V, E)
gradient (nanonet.ops.embedding_backward). Ids outside [0, input_dim) raise ValueError naming
the id. With mask_zero=True, id 0 is padding: the layer emits the mask ``ids != 0`` for the next
layers (LSTM carries its state over masked steps; the loss skips masked steps).

Position information (KerasHub's names and arguments): ``PositionEmbedding(sequence_length)``
returns a learned (sequence_length, E) table's first T rows broadcast to its input's (B, T, E)
shape (add it to the token vectors yourself); ``TokenAndPositionEmbedding(vocabulary_size,
sequence_length, embedding_dim, mask_zero=False)`` does both lookups and the sum in one layer
and, with mask_zero=True, emits the padding mask ``ids != 0``, which attention layers take as
their key (value) mask. Both take ``start_index`` (default 0) at call time: the position of the
first step (a node option in a graph).
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from .base import Layer

__all__ = ["Embedding", "PositionEmbedding", "TokenAndPositionEmbedding"]

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

    def __init__(self, input_dim: int | None, output_dim: int,
                 embeddings_initializer: Any = "uniform", embeddings_regularizer: Any = None,
                 mask_zero: bool = False, input_length: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_dim = _positive_int(input_dim, "input_dim", "Embedding")
        self.output_dim = _positive_int(output_dim, "output_dim", "Embedding")
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ValueError(f"Embedding: mask_zero must be True or False; got {mask_zero!r}")
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = _initializers.get(embeddings_initializer)
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer)
        self.embeddings = None

    def build(self, input_shape: Any) -> None:
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          name="embeddings")
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        if not self.mask_zero:
            return None
        return np.asarray(x) != 0

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        y = ops.embedding_forward(x, self.embeddings)
        return y, (np.asarray(x) if training else None)

    def backprop(self, ids: Any, dy: Any, need_dx: Any = True) -> Any:
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        if dy.shape != ids.shape + (self.output_dim,):
            raise ValueError(f"Embedding {self.name!r}: dy must have the output's shape "
                             f"{ids.shape + (self.output_dim,)}; got {dy.shape}")
        grads = self._trainable_grads([ops.embedding_backward(dy, ids, self.input_dim)])
        return None, grads  # ids are not differentiable

    # DP-SGD (nanonet.privacy): per-example sums over equal tokens
    def dp_backprop(self, ids: Any, dy: Any, need_dx: Any = True) -> Any:
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        if dy.shape != ids.shape + (self.output_dim,):
            raise ValueError(f"Embedding {self.name!r}: dy must have the output's shape "
                             f"{ids.shape + (self.output_dim,)}; got {dy.shape}")
        B = ids.shape[0]
        ids2 = ids.reshape(B, -1)
        sq = ops.embedding_per_example_sq_norms(ids2, dy.reshape(B, ids2.shape[1], -1))
        return None, sq.astype(np.float64), (ids, dy)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        ids, dy = state
        dys = dy * scale.reshape((-1,) + (1,) * (dy.ndim - 1))
        return self._trainable_grads([ops.embedding_backward(dys, ids, self.input_dim)])

    def get_config(self) -> dict[str, Any]:
        reg = self.embeddings_regularizer
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": _initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": None if reg is None else _regularizers.serialize(reg),
                "mask_zero": self.mask_zero}

    def __repr__(self):
        return (f"<Embedding name={self.name!r}, input_dim={self.input_dim}, "
                f"output_dim={self.output_dim}, mask_zero={self.mask_zero}>")


def _start_index(layer, start_index, T):
    if isinstance(start_index, bool) or not isinstance(start_index, numbers.Integral) or \
            start_index < 0:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: start_index must be a "
                         f"non-negative int; got {start_index!r}")
    if start_index + T > layer.sequence_length:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: start_index + steps must be at "
                         f"most sequence_length = {layer.sequence_length}; got {start_index} + "
                         f"{T}")
    return int(start_index)


class PositionEmbedding(Layer):
    """A learned position embedding (KerasHub's): (B, T, E) inputs -> the (B, T, E) position
    vectors ``embeddings[start_index:start_index + T]`` broadcast over the batch (the input's
    values are not used, only its shape; the input's gradient is zero).

    Add its output to the token vectors: ``x + PositionEmbedding(T)(x)``. Weight layout:
    embeddings (sequence_length, E). Masks pass through.

    Args:
        sequence_length (int): the most steps T the layer accepts.
        initializer (str or Initializer, default "glorot_uniform"): initializer of the table.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Call: ``layer(x, start_index=0)``: the positions start at start_index (a decoder that
    feeds one step at a time).

    Input shape: (B, T, E) with T <= sequence_length. Output shape: (B, T, E).

    Raises:
        ValueError: sequence_length not a positive int, an input that is not (B, T, E), or
            start_index + T > sequence_length.

    Example:

    >>> layer = nn.layers.PositionEmbedding(sequence_length=10)
    >>> x = np.zeros((2, 4, 8), np.float32)
    >>> y = layer(x)
    >>> y.shape, [w.shape for w in layer.get_weights()]
    ((2, 4, 8), [(10, 8)])
    >>> bool(np.array_equal(y[0], y[1]))  # the same positions for every sample
    True
    """
    supports_masking = True
    call_kwargs = ("start_index",)

    def __init__(self, sequence_length: Any, initializer: Any = "glorot_uniform",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sequence_length = _positive_int(sequence_length, "sequence_length",
                                             "PositionEmbedding")
        self.initializer = _initializers.get(initializer)
        self.position_embeddings = None

    def build(self, input_shape: Any) -> None:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"PositionEmbedding {self.name!r}: inputs must be (batch, steps, "
                             f"features) with known features; got shape {input_shape}")
        self.position_embeddings = self.add_weight(
            shape=(self.sequence_length, int(input_shape[-1])), initializer=self.initializer,
            name="embeddings")
        self.built = True

    def compute_output_shape(self, input_shape: Any, **options: Any) -> Any:
        return tuple(input_shape)

    def forward(self, x: Any, training: bool = False, mask: Any = None,
                start_index: Any = 0) -> Any:
        x = np.asarray(x)
        E = self.position_embeddings.shape[1]
        if x.ndim != 3 or x.shape[-1] != E:
            raise ValueError(f"PositionEmbedding {self.name!r}: inputs must be (batch, steps, "
                             f"{E}); got shape {x.shape}")
        B, T, _ = x.shape
        s = _start_index(self, start_index, T)
        y = np.ascontiguousarray(np.broadcast_to(self.position_embeddings[s:s + T], x.shape))
        return y, ((x.shape, s) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        shape, s = ctx
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != shape:
            raise ValueError(f"PositionEmbedding {self.name!r}: dy must have the output's shape "
                             f"{shape}; got {dy.shape}")
        dtable = np.zeros_like(self.position_embeddings)
        dtable[s:s + shape[1]] = dy.sum(axis=0)
        return (np.zeros(shape, self.dtype) if need_dx else None), \
            self._trainable_grads([dtable])

    # DP-SGD (nanonet.privacy): example b's gradient is its dy_b (T, E) on rows s .. s + T.
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        shape, s = ctx
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != shape:
            raise ValueError(f"PositionEmbedding {self.name!r}: dy must have the output's shape "
                             f"{shape}; got {dy.shape}")
        dx = np.zeros(shape, self.dtype) if need_dx else None
        sq = np.square(dy.reshape(shape[0], -1), dtype=np.float64).sum(axis=1)
        return dx, sq, (dy, s)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        dy, s = state
        dtable = np.zeros_like(self.position_embeddings)
        dtable[s:s + dy.shape[1]] = np.tensordot(scale, dy, axes=1)
        return self._trainable_grads([dtable])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "initializer": _initializers.serialize(self.initializer)}


class TokenAndPositionEmbedding(Layer):
    """Token ids (B, T) -> token vectors + learned position vectors (B, T, embedding_dim)
    (KerasHub's layer, without its reversible output projection).

    ``output[b, t] = token_embeddings[ids[b, t]] + position_embeddings[start_index + t]``.
    Weight layout: token_embeddings (V, E), position_embeddings (sequence_length, E).

    Args:
        vocabulary_size (int): vocabulary size V; ids must lie in [0, V).
        sequence_length (int): the most steps T the layer accepts.
        embedding_dim (int): width E of each vector.
        embeddings_initializer (str or Initializer, default "uniform"): initializer of both
            tables.
        mask_zero (bool, default False): treat id 0 as padding: the layer emits the mask
            ``ids != 0`` for the next layers.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Call: ``layer(ids, start_index=0)``: the positions start at start_index.

    Input shape: (B, T) integer ids, T <= sequence_length. Output shape: (B, T, embedding_dim).

    Raises:
        ValueError: non-positive sizes, an input that is not (B, T), ids outside [0, V), or
            start_index + T > sequence_length.

    Example:

    >>> layer = nn.layers.TokenAndPositionEmbedding(100, sequence_length=16, embedding_dim=8,
    ...                                             mask_zero=True)
    >>> ids = np.array([[5, 7, 0]], np.int32)
    >>> layer(ids).shape
    (1, 3, 8)
    >>> layer.compute_mask(ids).tolist()
    [[True, True, False]]
    """
    call_kwargs = ("start_index",)

    def __init__(self, vocabulary_size: Any, sequence_length: Any, embedding_dim: Any,
                 embeddings_initializer: Any = "uniform", mask_zero: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cls = "TokenAndPositionEmbedding"
        self.vocabulary_size = _positive_int(vocabulary_size, "vocabulary_size", cls)
        self.sequence_length = _positive_int(sequence_length, "sequence_length", cls)
        self.embedding_dim = _positive_int(embedding_dim, "embedding_dim", cls)
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ValueError(f"{cls}: mask_zero must be True or False; got {mask_zero!r}")
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = _initializers.get(embeddings_initializer)
        self.token_embeddings = self.position_embeddings = None

    def build(self, input_shape: Any) -> None:
        if len(tuple(input_shape)) != 2:
            raise ValueError(f"TokenAndPositionEmbedding {self.name!r}: inputs must be (batch, "
                             f"steps) token ids; got shape {tuple(input_shape)}")
        E = self.embedding_dim
        self.token_embeddings = self.add_weight(
            shape=(self.vocabulary_size, E), initializer=self.embeddings_initializer,
            name="token_embeddings")
        self.position_embeddings = self.add_weight(
            shape=(self.sequence_length, E), initializer=self.embeddings_initializer,
            name="position_embeddings")
        self.built = True

    def compute_output_shape(self, input_shape: Any, **options: Any) -> Any:
        return tuple(input_shape) + (self.embedding_dim,)

    def compute_mask(self, x: Any, mask: Any = None, **options: Any) -> Any:
        return (np.asarray(x) != 0) if self.mask_zero else None

    def forward(self, ids: Any, training: bool = False, mask: Any = None,
                start_index: Any = 0) -> Any:
        if np.ndim(ids) != 2:
            raise ValueError(f"TokenAndPositionEmbedding {self.name!r}: inputs must be (batch, "
                             f"steps) token ids; got shape {np.shape(ids)}")
        y = ops.embedding_forward(ids, self.token_embeddings)
        T = y.shape[1]
        s = _start_index(self, start_index, T)
        y += self.position_embeddings[s:s + T]
        return y, ((np.asarray(ids), s) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        ids, s = ctx
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        if dy.shape != ids.shape + (self.embedding_dim,):
            raise ValueError(f"TokenAndPositionEmbedding {self.name!r}: dy must have the "
                             f"output's shape {ids.shape + (self.embedding_dim,)}; got "
                             f"{dy.shape}")
        dpos = np.zeros_like(self.position_embeddings)
        dpos[s:s + ids.shape[1]] = dy.sum(axis=0)
        dtok = ops.embedding_backward(dy, ids, self.vocabulary_size)
        return None, self._trainable_grads([dtok, dpos])  # ids are not differentiable

    # DP-SGD (nanonet.privacy): per-example sums over equal tokens for the token table, dy_b
    # itself for the position rows.
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        ids, s = ctx
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        if dy.shape != ids.shape + (self.embedding_dim,):
            raise ValueError(f"TokenAndPositionEmbedding {self.name!r}: dy must have the "
                             f"output's shape {ids.shape + (self.embedding_dim,)}; got "
                             f"{dy.shape}")
        sq = ops.embedding_per_example_sq_norms(ids, dy).astype(np.float64)
        sq += np.square(dy.reshape(dy.shape[0], -1), dtype=np.float64).sum(axis=1)
        return None, sq, (ids, dy, s)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        ids, dy, s = state
        dtok = ops.embedding_backward(dy * scale[:, None, None], ids, self.vocabulary_size)
        dpos = np.zeros_like(self.position_embeddings)
        dpos[s:s + ids.shape[1]] = np.tensordot(scale, dy, axes=1)
        return self._trainable_grads([dtok, dpos])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length, "embedding_dim": self.embedding_dim,
                "embeddings_initializer": _initializers.serialize(self.embeddings_initializer),
                "mask_zero": self.mask_zero}

    def __repr__(self):
        return (f"<TokenAndPositionEmbedding name={self.name!r}, vocabulary_size="
                f"{self.vocabulary_size}, sequence_length={self.sequence_length}, "
                f"embedding_dim={self.embedding_dim}, mask_zero={self.mask_zero}>")
