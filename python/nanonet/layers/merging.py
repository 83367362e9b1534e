"""Merge layers with Keras 3 names and behaviour: Add, Subtract, Multiply, Average, Maximum,
Minimum, Concatenate, Dot.

Each takes a list of tensors (Subtract and Dot exactly two), batch axis first. The element-wise
ones need inputs of one rank whose shapes agree or broadcast (a dimension of 1 stretches); the
gradient reaching a broadcast input is summed over the stretched axes. Maximum and Minimum send
the gradient to the input holding the extreme value (the first one on ties). Concatenate joins
along ``axis`` (shapes agree elsewhere); Dot is Keras's batch dot product over ``axes``,
optionally of l2-normalised inputs (cosine similarity).

Masks (Keras 3): the element-wise layers pass on the OR of the input masks when every input has
one, else None; Concatenate ORs the masks with unmasked inputs counting as all True along the
joined axis; Dot passes no mask.

These are memory-bound element-wise passes over arrays already in cache, so they are NumPy (one
vectorised expression each); no Python loop runs per sample or per step.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .base import Layer
from .node import fmt_shape

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
           "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot"]

_NORM_EPS = 1e-12  # Keras's l2_normalize epsilon (on the squared norm)


def _sum(xs):
    """The element-wise sum of the (broadcasting) arrays xs, in a new array."""
    y = xs[0] + xs[1]
    for x in xs[2:]:
        y += x
    return y


def _unbroadcast(g, shape):
    """g summed over the axes where ``shape`` was stretched to g's shape."""
    if g.shape == tuple(shape):
        return g
    axes = tuple(i for i, (d, n) in enumerate(zip(shape, g.shape)) if d == 1 and n != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class _Merge(Layer):
    """Shared parts: input-list checks, broadcast shapes, Keras's OR of masks."""
    supports_masking = True
    _min_inputs = 2
    _max_inputs = None

    def _check_list(self, inputs, what="inputs"):
        cls = type(self).__name__
        if what == "input_shape" and isinstance(inputs, tuple) and \
                not all(isinstance(s, (list, tuple)) for s in inputs):
            inputs = None  # one shape, not a list of them
        if not isinstance(inputs, (list, tuple)):
            got = "one tensor" if inputs is None else type(inputs).__name__
            raise ValueError(f"{cls} {self.name!r}: {what} must be a list of tensors (one per "
                             f"input); got {got}")
        n = len(inputs)
        if n < self._min_inputs or (self._max_inputs is not None and n > self._max_inputs):
            want = (f"exactly {self._min_inputs}" if self._max_inputs == self._min_inputs
                    else f"at least {self._min_inputs}")
            raise ValueError(f"{cls} {self.name!r}: expects {want} inputs; got {n}")

    def _broadcast_shape(self, shapes):
        cls = type(self).__name__
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(f"{cls} {self.name!r}: inputs must have the same rank; got shapes "
                             f"{', '.join(fmt_shape(tuple(s)) for s in shapes)}")
        out = []
        for dims in zip(*shapes):
            known = {d for d in dims if d is not None and d != 1}
            if len(known) > 1:
                raise ValueError(f"{cls} {self.name!r}: inputs must have the same shape (or "
                                 f"broadcast, a dimension of 1 stretching); got shapes "
                                 f"{', '.join(fmt_shape(tuple(s)) for s in shapes)}")
            if known:
                out.append(known.pop())
            elif any(d is None for d in dims):
                out.append(None)
            else:
                out.append(1)
        return tuple(out)

    def build(self, input_shape):
        self._check_list(input_shape, "input_shape")
        self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        self._check_list(input_shape, "input_shape")
        return self._broadcast_shape([tuple(s) for s in input_shape])

    def compute_mask(self, inputs, mask=None):
        if mask is None or not isinstance(mask, (list, tuple)):
            return None
        if any(m is None for m in mask):
            return None
        out = np.asarray(mask[0], dtype=bool)
        for m in mask[1:]:
            out = out | np.asarray(m, dtype=bool)
        return out

    def _arrays(self, inputs):
        self._check_list(inputs)
        xs = [np.asarray(x) for x in inputs]
        xs = [x if x.dtype.kind == "f" else self._float_input(x) for x in xs]
        shapes = [x.shape for x in xs]
        self._broadcast_shape([(None,) + s[1:] for s in shapes])  # clear error before NumPy's
        if len({s[0] for s in shapes}) != 1:
            raise ValueError(f"{type(self).__name__} {self.name!r}: inputs must have the same "
                             f"batch size; got shapes {', '.join(str(s) for s in shapes)}")
        return xs

    @staticmethod
    def _shapes(xs):
        return [x.shape for x in xs]


class Add(_Merge):
    """Adds its inputs element-wise: ``y = x1 + x2 + ...``.

    Input shape: a list of tensors of one rank whose shapes agree or broadcast (a dimension of
    1 stretches). Output shape: the broadcast shape. Masks: the OR of the input masks when
    every input has one.

    Example:

    >>> a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32)
    >>> nn.layers.Add()([a, b]).tolist()
    [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
    """

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        xs = self._arrays(inputs)
        return _sum(xs), (self._shapes(xs) if training else None)

    def backprop(self, shapes: Any, dy: Any, need_dx: Any = True) -> Any:
        dy = np.asarray(dy)
        return [_unbroadcast(dy, s) for s in shapes], []


class Subtract(_Merge):
    """Subtracts its second input from its first: ``y = x1 - x2``.

    Input shape: a list of exactly two tensors of one rank whose shapes agree or broadcast.
    Output shape: the broadcast shape. Masks: the OR of the input masks when both have one.

    Raises:
        ValueError: not exactly two inputs.

    Example:

    >>> a, b = np.ones((1, 2), np.float32), np.full((1, 2), 3.0, np.float32)
    >>> nn.layers.Subtract()([a, b]).tolist()
    [[-2.0, -2.0]]
    """
    _max_inputs = 2

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        xs = self._arrays(inputs)
        return xs[0] - xs[1], (self._shapes(xs) if training else None)

    def backprop(self, shapes: Any, dy: Any, need_dx: Any = True) -> Any:
        dy = np.asarray(dy)
        return [_unbroadcast(dy, shapes[0]), _unbroadcast(-dy, shapes[1])], []


class Multiply(_Merge):
    """Multiplies its inputs element-wise: ``y = x1 * x2 * ...``.

    Input shape: a list of tensors of one rank whose shapes agree or broadcast (a dimension of
    1 stretches). Output shape: the broadcast shape. Masks: the OR of the input masks when
    every input has one.

    Example:

    >>> a, b = np.full((1, 2), 2.0, np.float32), np.array([[3.0, 4.0]], np.float32)
    >>> nn.layers.Multiply()([a, b]).tolist()
    [[6.0, 8.0]]
    """

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        xs = self._arrays(inputs)
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x
        return y, (xs if training else None)

    def backprop(self, xs: Any, dy: Any, need_dx: Any = True) -> Any:
        dy = np.asarray(dy)
        out = []
        for i, x in enumerate(xs):
            g = dy
            for j, other in enumerate(xs):
                if j != i:
                    g = g * other
            out.append(_unbroadcast(g, x.shape))
        return out, []


class Average(_Merge):
    """Averages its inputs element-wise: ``y = (x1 + ... + xn) / n``.

    Input shape: a list of tensors of one rank whose shapes agree or broadcast (a dimension of
    1 stretches). Output shape: the broadcast shape. Masks: the OR of the input masks when
    every input has one.

    Example:

    >>> a, b = np.ones((1, 2), np.float32), np.full((1, 2), 3.0, np.float32)
    >>> nn.layers.Average()([a, b]).tolist()
    [[2.0, 2.0]]
    """

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        xs = self._arrays(inputs)
        y = _sum(xs)
        y *= y.dtype.type(1.0 / len(xs))
        return y, (self._shapes(xs) if training else None)

    def backprop(self, shapes: Any, dy: Any, need_dx: Any = True) -> Any:
        dy = np.asarray(dy)
        g = dy * dy.dtype.type(1.0 / len(shapes))
        return [_unbroadcast(g, s) for s in shapes], []


class _Extreme(_Merge):
    _reduce = None  # np.argmax / np.argmin

    def forward(self, inputs, training=False, mask=None):
        xs = self._arrays(inputs)
        stacked = np.stack(np.broadcast_arrays(*xs))
        which = type(self)._reduce(stacked, axis=0)  # the first input on ties
        y = np.take_along_axis(stacked, which[None], axis=0)[0]
        return y, ((which, self._shapes(xs)) if training else None)

    def backprop(self, ctx, dy, need_dx=True):
        which, shapes = ctx
        dy = np.asarray(dy)
        zero = dy.dtype.type(0)
        return [_unbroadcast(np.where(which == i, dy, zero), s)
                for i, s in enumerate(shapes)], []


class Maximum(_Extreme):
    """Element-wise maximum of its inputs; the gradient goes to the input holding it.

    Input shape: a list of tensors of one rank whose shapes agree or broadcast (a dimension of
    1 stretches). Output shape: the broadcast shape. Masks: the OR of the input masks when
    every input has one.

    Example:

    >>> a, b = np.array([[1.0, 5.0]], np.float32), np.array([[3.0, 2.0]], np.float32)
    >>> nn.layers.Maximum()([a, b]).tolist()
    [[3.0, 5.0]]
    """
    _reduce = staticmethod(np.argmax)


class Minimum(_Extreme):
    """Element-wise minimum of its inputs; the gradient goes to the input holding it.

    Input shape: a list of tensors of one rank whose shapes agree or broadcast (a dimension of
    1 stretches). Output shape: the broadcast shape. Masks: the OR of the input masks when
    every input has one.

    Example:

    >>> a, b = np.array([[1.0, 5.0]], np.float32), np.array([[3.0, 2.0]], np.float32)
    >>> nn.layers.Minimum()([a, b]).tolist()
    [[1.0, 2.0]]
    """
    _reduce = staticmethod(np.argmin)


class Concatenate(_Merge):
    """Joins its inputs along one axis.

    Args:
        axis (int, default -1): the axis to join along (not the batch axis); every other
            dimension must agree.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Input shape: a list of tensors of one rank. Output shape: the common shape with the sizes
    along ``axis`` summed. Masks: ORed, an unmasked input counting as all True.

    Raises:
        ValueError: axis not an int or the batch axis, or shapes that disagree elsewhere.

    Example:

    >>> a, b = np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)
    >>> nn.layers.Concatenate()([a, b]).shape
    (2, 7)
    """

    def __init__(self, axis: Any = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ValueError(f"Concatenate: axis must be an int; got {axis!r}")
        self.axis = int(axis)

    def _axis(self, rank):
        ax = self.axis if self.axis >= 0 else rank + self.axis
        if not 1 <= ax < rank:
            raise ValueError(f"Concatenate {self.name!r}: axis {self.axis} is not a non-batch "
                             f"axis of inputs of rank {rank}")
        return ax

    def compute_output_shape(self, input_shape: Any) -> Any:
        self._check_list(input_shape, "input_shape")
        shapes = [tuple(s) for s in input_shape]
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(f"Concatenate {self.name!r}: inputs must have the same rank; got "
                             f"shapes {', '.join(fmt_shape(s) for s in shapes)}")
        ax = self._axis(ranks.pop())
        out = []
        for i, dims in enumerate(zip(*shapes)):
            if i == ax:
                out.append(None if None in dims else int(sum(dims)))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise ValueError(f"Concatenate {self.name!r}: inputs must agree on every axis "
                                 f"but the concatenation axis {self.axis}; got shapes "
                                 f"{', '.join(fmt_shape(s) for s in shapes)}")
            out.append(known.pop() if known else None)
        return tuple(out)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None or not isinstance(mask, (list, tuple)) or all(m is None for m in mask):
            return None
        xs = [np.asarray(x) for x in inputs]
        ax = self._axis(xs[0].ndim)
        masks = []
        for x, m in zip(xs, mask):
            if m is None:
                masks.append(np.ones(x.shape, dtype=bool))
            else:
                m = np.asarray(m, dtype=bool)
                if m.ndim < x.ndim:
                    m = np.broadcast_to(m.reshape(m.shape + (1,) * (x.ndim - m.ndim)), x.shape)
                masks.append(m)
        return np.any(np.concatenate(masks, axis=ax), axis=-1)

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        self._check_list(inputs)
        xs = [np.asarray(x) for x in inputs]
        xs = [x if x.dtype.kind == "f" else self._float_input(x) for x in xs]
        self.compute_output_shape([(None,) + x.shape[1:] for x in xs])
        if len({x.shape[0] for x in xs}) != 1:
            raise ValueError(f"Concatenate {self.name!r}: inputs must have the same batch size; "
                             f"got shapes {', '.join(str(x.shape) for x in xs)}")
        ax = self._axis(xs[0].ndim)
        y = np.concatenate(xs, axis=ax)
        return y, ((ax, [x.shape[ax] for x in xs]) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        ax, sizes = ctx
        cuts = np.cumsum(sizes)[:-1]
        return list(np.split(np.asarray(dy), cuts, axis=ax)), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Batch dot product of two inputs over the given axes.

    (B, K) . (B, K) -> (B, 1); (B, M, K) . (B, N, K) with axes=2 -> (B, M, N). With
    ``normalize=True`` both inputs are l2-normalized along ``axes`` first, which gives the
    cosine similarity.

    Args:
        axes (int or pair of int): the axis of both inputs to contract, or one per input.
        normalize (bool, default False): l2-normalize the inputs first.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Input shape: two tensors of rank 2 or 3. Output shape: as above. No mask is passed on.

    Raises:
        ValueError: bad axes, not exactly two inputs, or contracted sizes that differ.

    Example:

    >>> a = np.array([[1.0, 2.0]], np.float32)
    >>> b = np.array([[3.0, 4.0]], np.float32)
    >>> nn.layers.Dot(axes=1)([a, b]).tolist()
    [[11.0]]
    """
    supports_masking = True
    _max_inputs = 2

    def __init__(self, axes: Any, normalize: Any = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
            axes = (int(axes), int(axes))
        elif isinstance(axes, (list, tuple)) and len(axes) == 2 and all(
                isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes):
            axes = (int(axes[0]), int(axes[1]))
        else:
            raise ValueError(f"Dot: axes must be an int or a pair of ints; got {axes!r}")
        if not isinstance(normalize, (bool, np.bool_)):
            raise ValueError(f"Dot: normalize must be True or False; got {normalize!r}")
        self.axes = axes
        self.normalize = bool(normalize)

    def _resolve(self, shapes):
        s0, s1 = (tuple(s) for s in shapes)
        for s in (s0, s1):
            if len(s) not in (2, 3):
                raise ValueError(f"Dot {self.name!r}: inputs must have rank 2 or 3; got shapes "
                                 f"{fmt_shape(s0)} and {fmt_shape(s1)}")
        if len(s0) != len(s1):
            raise ValueError(f"Dot {self.name!r}: inputs must have the same rank; got shapes "
                             f"{fmt_shape(s0)} and {fmt_shape(s1)}")
        a0, a1 = (a if a >= 0 else len(s) + a for a, s in zip(self.axes, (s0, s1)))
        if not (1 <= a0 < len(s0) and 1 <= a1 < len(s1)):
            raise ValueError(f"Dot {self.name!r}: axes {self.axes} must name non-batch axes of "
                             f"shapes {fmt_shape(s0)} and {fmt_shape(s1)}")
        if s0[a0] is not None and s1[a1] is not None and s0[a0] != s1[a1]:
            raise ValueError(f"Dot {self.name!r}: the dot axes must have the same size; got "
                             f"shapes {fmt_shape(s0)} (axis {a0}) and {fmt_shape(s1)} "
                             f"(axis {a1})")
        return a0, a1

    def compute_output_shape(self, input_shape: Any) -> Any:
        self._check_list(input_shape, "input_shape")
        s0, s1 = (tuple(s) for s in input_shape)
        a0, a1 = self._resolve([s0, s1])
        if len(s0) == 2:
            return (s0[0], 1)
        return (s0[0], s0[3 - a0], s1[3 - a1])

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return None

    @staticmethod
    def _normalize(x, axis):
        sq = np.sum(x * x, axis=axis, keepdims=True)
        inv = 1.0 / np.sqrt(np.maximum(sq, _NORM_EPS))
        return x * inv.astype(x.dtype), inv.astype(x.dtype), sq > _NORM_EPS

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        self._check_list(inputs)
        x0, x1 = (np.asarray(x) for x in inputs)
        x0 = x0 if x0.dtype.kind == "f" else self._float_input(x0)
        x1 = x1 if x1.dtype.kind == "f" else self._float_input(x1)
        a0, a1 = self._resolve([(None,) + x0.shape[1:], (None,) + x1.shape[1:]])
        if x0.shape[0] != x1.shape[0]:
            raise ValueError(f"Dot {self.name!r}: inputs must have the same batch size; got "
                             f"shapes {x0.shape} and {x1.shape}")
        norm = None
        if self.normalize:
            n0, inv0, big0 = self._normalize(x0, a0)
            n1, inv1, big1 = self._normalize(x1, a1)
            norm = ((n0, inv0, big0), (n1, inv1, big1))
            x0, x1 = n0, n1
        if x0.ndim == 2:
            y = np.sum(x0 * x1, axis=1, keepdims=True)
        else:
            # (B, M, K) @ (B, K, N)
            y = np.matmul(np.moveaxis(x0, a0, 2), np.moveaxis(x1, a1, 1))
        return y, ((x0, x1, a0, a1, norm) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        x0, x1, a0, a1, norm = ctx
        dy = np.asarray(dy)
        if x0.ndim == 2:
            d0, d1 = dy * x1, dy * x0
        else:
            p0 = np.moveaxis(x0, a0, 2)          # (B, M, K)
            p1 = np.moveaxis(x1, a1, 1)          # (B, K, N)
            # y = p0 @ p1
            d0 = np.moveaxis(np.matmul(dy, np.swapaxes(p1, 1, 2)), 2, a0)
            d1 = np.moveaxis(np.matmul(np.swapaxes(p0, 1, 2), dy), 1, a1)
        if norm is not None:
            out = []
            for d, (n, inv, big), ax in zip((d0, d1), norm, (a0, a1)):
                # n = x * inv with inv = 1 / ||x|| where ||x||^2 > eps (else a constant)
                proj = np.sum(d * n, axis=ax, keepdims=True)
                out.append(np.where(big, (d - n * proj) * inv, d * inv))
            d0, d1 = out
        return [d0, d1], []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": list(self.axes), "normalize": self.normalize}


# Keras's functional forms: add([x1, x2]) == Add()([x1, x2]).
def add(inputs: Any, **kwargs: Any) -> None:
    """Functional form of ``Add``: ``add(inputs)`` is ``Add()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        **kwargs: passed to ``Add`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> nn.layers.add([np.ones((1, 2)), np.ones((1, 2))]).tolist()
    [[2.0, 2.0]]
    """
    return Add(**kwargs)(inputs)


def subtract(inputs: Any, **kwargs: Any) -> Any:
    """Functional form of ``Subtract``: ``subtract(inputs)`` is ``Subtract()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        **kwargs: passed to ``Subtract`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> nn.layers.subtract([np.ones((1, 2)), np.ones((1, 2))]).tolist()
    [[0.0, 0.0]]
    """
    return Subtract(**kwargs)(inputs)


def multiply(inputs: Any, **kwargs: Any) -> Any:
    """Functional form of ``Multiply``: ``multiply(inputs)`` is ``Multiply()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        **kwargs: passed to ``Multiply`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> nn.layers.multiply([np.full((1, 2), 2.0), np.full((1, 2), 3.0)]).tolist()
    [[6.0, 6.0]]
    """
    return Multiply(**kwargs)(inputs)


def average(inputs: Any, **kwargs: Any) -> Any:
    """Functional form of ``Average``: ``average(inputs)`` is ``Average()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        **kwargs: passed to ``Average`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> nn.layers.average([np.zeros((1, 2)), np.full((1, 2), 4.0)]).tolist()
    [[2.0, 2.0]]
    """
    return Average(**kwargs)(inputs)


def maximum(inputs: Any, **kwargs: Any) -> Any:
    """Functional form of ``Maximum``: ``maximum(inputs)`` is ``Maximum()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        **kwargs: passed to ``Maximum`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> nn.layers.maximum([np.array([[1.0, 4.0]]), np.array([[2.0, 3.0]])]).tolist()
    [[2.0, 4.0]]
    """
    return Maximum(**kwargs)(inputs)


def minimum(inputs: Any, **kwargs: Any) -> Any:
    """Functional form of ``Minimum``: ``minimum(inputs)`` is ``Minimum()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        **kwargs: passed to ``Minimum`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> nn.layers.minimum([np.array([[1.0, 4.0]]), np.array([[2.0, 3.0]])]).tolist()
    [[1.0, 3.0]]
    """
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: Any, axis: Any = -1, **kwargs: Any) -> Any:
    """Functional form of ``Concatenate``: ``concatenate(inputs)`` is ``Concatenate()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        axis (int, default -1): the axis to join along.
        **kwargs: passed to ``Concatenate`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> x = nn.Input((3,))
    >>> nn.layers.concatenate([x, x]).shape
    (None, 6)
    """
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs: Any, axes: Any = -1, normalize: Any = False, **kwargs: Any) -> Any:
    """Functional form of ``Dot``: ``dot(inputs)`` is ``Dot()(inputs)``.

    Args:
        inputs (list): the tensors (arrays or symbolic tensors) to merge.
        axes (int or pair of int, default -1): the axes to contract.
        normalize (bool, default False): l2-normalize the inputs first.
        **kwargs: passed to ``Dot`` (``name``, ...).

    Returns:
        The merged tensor (an array, or a symbolic tensor in a graph).

    Example:

    >>> nn.layers.dot([np.ones((2, 3)), np.ones((2, 3))]).tolist()
    [[3.0], [3.0]]
    """
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
