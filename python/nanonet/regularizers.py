"""Weight regularizers with Keras names: L1, L2, L1L2 (and ``l1``, ``l2``, ``l1_l2``).

A regularizer adds ``l1 * sum|w| + l2 * sum w^2`` to the training loss; its gradient
``l1 * sign(w) + 2 * l2 * w`` is added to the weight's gradient before the optimizer runs.
Both are computed by the fused kernels ``nanonet.ops.l1_l2_value`` / ``l1_l2_grad_acc``.

``get("l2")`` gives ``L2(0.01)``; ``get("l1_l2")`` gives ``L1L2(l1=0.01, l2=0.01)``.
"""
from __future__ import annotations

import math
import numbers

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
    """Base class: ``__call__(w)`` -> penalty (float) and ``add_gradient(grad, w)`` in place.

    This base class covers every L1/L2 combination through its two factors ``l1`` and ``l2``.
    """
    l1 = 0.0
    l2 = 0.0

    def __call__(self, w) -> float:
        if self.l1 == 0.0 and self.l2 == 0.0:
            return 0.0
        return ops.l1_l2_value(w, self.l1, self.l2)

    def add_gradient(self, grad, w) -> None:
        """grad += d(penalty)/dw, in place."""
        if self.l1 != 0.0 or self.l2 != 0.0:
            ops.l1_l2_grad_acc(grad, w, self.l1, self.l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """``l1 * sum|w| + l2 * sum w^2``; both factors default to 0 as in Keras."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1", "L1L2")
        self.l2 = _factor(l2, "l2", "L1L2")


class L1(Regularizer):
    """``l1 * sum|w|``."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1", "L1")

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum w^2``."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2", "L2")

    def get_config(self):
        return {"l2": self.l2}


l1 = L1
l2 = L2


def l1_l2(l1=0.01, l2=0.01):
    """An L1L2 regularizer whose factors default to 0.01 each (Keras's ``l1_l2``)."""
    return L1L2(l1=l1, l2=l2)


_REGISTRY = Registry("regularizers", "regularizer",
                     {"l1": L1, "l2": L2, "l1_l2": l1_l2, "l1l2": l1_l2}, (L1, L2, L1L2))
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier):
    """A Regularizer from None, a name, a serialized dict or a Regularizer."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        return _REGISTRY.lookup(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret regularizer {identifier!r}; pass a name "
                     f"({_REGISTRY.valid_names()}) or a Regularizer")
