"""Losses with Keras names, wrapping the fused kernels ``nanonet.ops.loss`` and
``nanonet.ops.softmax_cross_entropy``.

A loss value is the mean over the batch (Keras's "sum_over_batch_size"): per-sample losses
(averaged over the last axis for mse / mae / binary_crossentropy, summed over classes for the
cross-entropies), times ``sample_weight`` when given, summed and divided by the number of
samples. For predictions of rank 3, (B, T, C), each (b, t) position counts as a sample and
``sample_weight`` may be (B,) (repeated over T) or (B, T).

``loss(y_true, y_pred, sample_weight=None)`` returns the value as a float;
``loss.value_and_grad(...)`` also returns d(value)/d(y_pred), which is what the model trains on.
"""
from __future__ import annotations

import math
import numbers

from ._registry import Registry

import numpy as np

from . import ops

__all__ = [
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get", "serialize",
    "deserialize",
]


def _check_bool(value, name, cls):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{cls}: {name} must be True or False; got {value!r}")
    return bool(value)


def _check_smoothing(value, cls):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"{cls}: label_smoothing must be a number in [0, 1]; got {value!r}")
    return float(value)


class Loss:
    """Base class. A subclass sets ``_op_name`` (the name ``nanonet.ops.loss`` knows) and may
    transform targets in ``_targets``."""
    _op_name = ""
    _default_name = ""
    sparse = False
    from_logits = False

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{type(self).__name__}: name must be a string; got {name!r}")
        self.name = name or self._default_name

    def _targets(self, y_true, y_pred):
        """y_true as the kernel takes it (subclasses apply label smoothing here)."""
        return y_true

    @staticmethod
    def _pred(y_pred):
        y_pred = np.asarray(y_pred)
        return y_pred if y_pred.dtype.kind == "f" else y_pred.astype(np.float32)

    def value_and_grad(self, y_true, y_pred, sample_weight=None, compute_grad=True):
        """(value, d value / d y_pred) with the gradient shaped like y_pred (None if not asked).
        Shapes and ids are checked by ``nanonet.ops.loss``."""
        y_pred = self._pred(y_pred)
        value, grad = ops.loss(self._op_name, self._targets(y_true, y_pred), y_pred,
                               from_logits=self.from_logits, sample_weight=sample_weight,
                               compute_grad=compute_grad)
        return float(value), grad

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.value_and_grad(y_true, y_pred, sample_weight, compute_grad=False)[0]

    @property
    def fused_activation(self):
        """'softmax' when a trailing softmax may be fused into this loss (value and gradient
        computed from the logits by ``value_and_grad_from_logits``), else None."""
        return None

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MeanSquaredError(Loss):
    """mean((y_true - y_pred)^2) over the last axis, then over the batch."""
    _op_name = "mse"
    _default_name = "mean_squared_error"


class MeanAbsoluteError(Loss):
    """mean(|y_true - y_pred|) over the last axis, then over the batch."""
    _op_name = "mae"
    _default_name = "mean_absolute_error"


class BinaryCrossentropy(Loss):
    """-(y log p + (1 - y) log(1 - p)) averaged over the last axis; p = sigmoid(y_pred) when
    ``from_logits``. ``label_smoothing`` s moves targets to y (1 - s) + s / 2."""
    _op_name = "binary_crossentropy"
    _default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits = _check_bool(from_logits, "from_logits", type(self).__name__)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)

    def _targets(self, y_true, y_pred):
        if not self.label_smoothing:
            return y_true
        t = np.asarray(y_true, dtype=y_pred.dtype)
        return t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing

    def get_config(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "name": self.name}


class CategoricalCrossentropy(Loss):
    """-sum(y log p) over classes; y one-hot (or a distribution), p = softmax(y_pred) when
    ``from_logits``. ``label_smoothing`` s moves targets to y (1 - s) + s / C."""
    _op_name = "categorical_crossentropy"
    _default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits = _check_bool(from_logits, "from_logits", type(self).__name__)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)

    def _targets(self, y_true, y_pred):
        if not self.label_smoothing:
            return y_true
        t = np.asarray(y_true, dtype=y_pred.dtype)
        return t * (1.0 - self.label_smoothing) + self.label_smoothing / y_pred.shape[-1]

    @property
    def fused_activation(self):
        return None if self.from_logits else "softmax"

    def value_and_grad_from_logits(self, y_true, logits, sample_weight=None):
        """Loss of softmax(logits) and its gradient wrt the logits, in one stable kernel."""
        logits = self._pred(logits)
        value, grad = ops.softmax_cross_entropy(self._targets(y_true, logits), logits,
                                                sparse=self.sparse, sample_weight=sample_weight)
        return float(value), grad

    def get_config(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "name": self.name}


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """-log p[y] with integer class ids y of shape (B,) or (B, 1) ((B, T) for sequences)."""
    _op_name = "sparse_categorical_crossentropy"
    _default_name = "sparse_categorical_crossentropy"
    sparse = True

    def __init__(self, from_logits=False, name=None):
        super().__init__(from_logits=from_logits, name=name)

    def get_config(self):
        return {"from_logits": self.from_logits, "name": self.name}


_CLASSES = (MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, CategoricalCrossentropy,
            SparseCategoricalCrossentropy)
_NAMES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_REGISTRY = Registry("losses", "loss", _NAMES, _CLASSES)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier):
    """A Loss from a name ("mse", ...), a class name, a serialized dict or a Loss."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        return _REGISTRY.lookup(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    raise ValueError(f"Could not interpret loss {identifier!r}; pass a name ({sorted(_NAMES)}) "
                     f"or a nanonet.losses.Loss")
