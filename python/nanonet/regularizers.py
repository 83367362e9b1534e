"""Weight regularizers with Keras names: L1, L2, L1L2 (and ``l1``, ``l2``, ``l1_l2``).

A regularizer adds ``l1 * sum|w| + l2 * sum w^2`` to the training loss; its gradient
``l1 * sign(w) + 2 * l2 * w`` is added to the weight's gradient before the optimizer runs.
Both are computed by the fused kernels ``nanonet.ops.l1_l2_value`` / ``l1_l2_grad_acc``.

``get("l2")`` gives ``L2(0.01)``; ``get("l1_l2")`` gives ``L1L2(l1=0.01, l2=0.01)``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from ._registry import Registry

from . import ops

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize",
           "deserialize"]


def _factor(value, name, cls):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{cls}: {name} must be a finite number >= 0; got {value!r}")
    return float(value)


class Regularizer:
    """Base class of the weight penalties: ``l1 * sum(|w|) + l2 * sum(w^2)``.

    Call: ``regularizer(w)`` returns the penalty (a float), which the model adds to the loss;
    ``add_gradient(grad, w)`` adds its gradient to ``grad`` in place.

    This class covers every L1 / L2 combination through its two factors ``l1`` and ``l2``;
    layers take one as ``kernel_regularizer=`` and the like.

    Example:

    >>> layer = nn.layers.Dense(2, kernel_regularizer=nn.regularizers.L2(0.01))
    >>> _ = layer(np.zeros((1, 3), np.float32))
    >>> len(layer.losses)
    1
    """
    l1 = 0.0
    l2 = 0.0

    def __call__(self, w: Any) -> float:
        if self.l1 == 0.0 and self.l2 == 0.0:
            return 0.0
        return ops.l1_l2_value(w, self.l1, self.l2)

    def add_gradient(self, grad: Any, w: Any) -> None:
        """grad += d(penalty)/dw, in place."""
        if self.l1 != 0.0 or self.l2 != 0.0:
            ops.l1_l2_grad_acc(grad, w, self.l1, self.l2)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """Penalty ``l1 * sum(|w|) + l2 * sum(w^2)``.

    Call: ``regularizer(w)`` returns the penalty (a float), which the model adds to the loss;
    ``add_gradient(grad, w)`` adds its gradient to ``grad`` in place.

    Args:
        l1 (float, default 0.0): the L1 factor, >= 0.
        l2 (float, default 0.0): the L2 factor, >= 0.

    Raises:
        ValueError: a factor that is not a finite number >= 0.

    Example:

    >>> reg = nn.regularizers.L1L2(l1=0.1, l2=0.1)
    >>> round(reg(np.array([1.0, -2.0])), 4)             # 0.1 * 3 + 0.1 * 5
    0.8
    """

    def __init__(self, l1: Any = 0.0, l2: Any = 0.0) -> None:
        self.l1 = _factor(l1, "l1", "L1L2")
        self.l2 = _factor(l2, "l2", "L1L2")


class L1(Regularizer):
    """Penalty ``l1 * sum(|w|)``, which favours sparse weights.

    Call: ``regularizer(w)`` returns the penalty (a float), which the model adds to the loss;
    ``add_gradient(grad, w)`` adds its gradient to ``grad`` in place.

    Args:
        l1 (float, default 0.01): the factor, >= 0.

    Raises:
        ValueError: l1 is not a finite number >= 0.

    Example:

    >>> round(nn.regularizers.L1(0.1)(np.array([1.0, -2.0])), 4)
    0.3
    """

    def __init__(self, l1: Any = 0.01) -> None:
        self.l1 = _factor(l1, "l1", "L1")

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(Regularizer):
    """Penalty ``l2 * sum(w^2)`` (weight decay through the loss).

    Call: ``regularizer(w)`` returns the penalty (a float), which the model adds to the loss;
    ``add_gradient(grad, w)`` adds its gradient to ``grad`` in place.

    Args:
        l2 (float, default 0.01): the factor, >= 0.

    Raises:
        ValueError: l2 is not a finite number >= 0.

    Example:

    >>> reg = nn.regularizers.L2(0.1)
    >>> w = np.array([1.0, -2.0])
    >>> round(reg(w), 4)
    0.5
    >>> grad = np.zeros(2)
    >>> reg.add_gradient(grad, w)             # adds 2 * l2 * w
    >>> np.round(grad, 4).tolist()
    [0.2, -0.4]
    """

    def __init__(self, l2: Any = 0.01) -> None:
        self.l2 = _factor(l2, "l2", "L2")

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


l1 = L1
l2 = L2


def l1_l2(l1: Any = 0.01, l2: Any = 0.01) -> Any:
    """An ``L1L2`` whose factors default to 0.01 each (Keras's ``l1_l2``).

    Args:
        l1 (float, default 0.01): the L1 factor.
        l2 (float, default 0.01): the L2 factor.

    Returns:
        L1L2: the regularizer.

    Example:

    >>> round(nn.regularizers.l1_l2()(np.array([1.0, -2.0])), 4)
    0.08
    """
    return L1L2(l1=l1, l2=l2)


_REGISTRY = Registry("regularizers", "regularizer",
                     {"l1": L1, "l2": L2, "l1_l2": l1_l2, "l1l2": l1_l2}, (L1, L2, L1L2))
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier: Any) -> Any:
    """A Regularizer from None, a name, a serialized dict or a Regularizer.

    Args:
        identifier (None, str, dict or Regularizer): "l1", "l2", "l1_l2" (Keras's default
            factors), a class name, ``serialize``'s dict; None and a Regularizer are returned
            as they are.

    Returns:
        Regularizer or None: the regularizer.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:

    >>> nn.regularizers.get("l2")
    L2(l2=0.01)
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        return _REGISTRY.lookup(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret regularizer {identifier!r}; pass a name "
                     f"({_REGISTRY.valid_names()}) or a Regularizer")
