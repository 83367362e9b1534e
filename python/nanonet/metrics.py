"""Metrics with Keras names: streaming means of per-sample values over the batches they see.

Each metric keeps a weighted total and count (float64): ``update_state(y_true, y_pred,
sample_weight=None)`` adds one batch, ``result()`` returns total / count, ``reset_state()``
starts again. Without sample weights every sample counts once, so the result over an epoch is
the mean over all its samples whatever the batch sizes (as Keras).

``compile(metrics=["accuracy"])`` resolves "accuracy" (or "acc") from the shapes of the first
targets and predictions it sees, as Keras 3 does: one output unit -> binary_accuracy; class ids
(y_true of rank one less than y_pred, or a trailing 1) -> sparse_categorical_accuracy; otherwise
categorical_accuracy. The metric is still reported under the name given ("accuracy").
"""
from __future__ import annotations

import math
import numbers

from ._registry import Registry

import numpy as np

__all__ = [
    "Metric", "Mean", "MeanMetricWrapper", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError", "binary_accuracy",
    "categorical_accuracy", "sparse_categorical_accuracy", "mean_squared_error",
    "mean_absolute_error", "get", "serialize", "deserialize",
]


# -- per-sample functions (NumPy) -------------------------------------------------------------

def _pair(y_true, y_pred, fn):
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        if t.shape + (1,) == p.shape:
            t = t.reshape(p.shape)
        else:
            raise ValueError(f"{fn}: y_true must have the shape of y_pred {p.shape}; got {t.shape}")
    return t, p


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per sample: the fraction of outputs where (y_pred > threshold) equals y_true."""
    t, p = _pair(y_true, y_pred, "binary_accuracy")
    return np.mean((p > threshold).astype(t.dtype) == t, axis=-1)


def categorical_accuracy(y_true, y_pred):
    """Per sample: 1 where argmax(y_pred) equals argmax(y_true) (one-hot targets)."""
    t, p = _pair(y_true, y_pred, "categorical_accuracy")
    return (np.argmax(t, axis=-1) == np.argmax(p, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """Per sample: 1 where argmax(y_pred) equals the class id y_true."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    lead = p.shape[:-1]
    if t.shape == lead + (1,):
        t = t.reshape(lead)
    if t.shape != lead:
        raise ValueError(f"sparse_categorical_accuracy: y_true must have shape {lead}; got {t.shape}")
    return (np.argmax(p, axis=-1) == t).astype(np.float64)


def mean_squared_error(y_true, y_pred):
    """Per sample: mean((y_true - y_pred)^2) over the last axis."""
    t, p = _pair(y_true, y_pred, "mean_squared_error")
    d = p.astype(np.float64) - t
    return np.mean(d * d, axis=-1)


def mean_absolute_error(y_true, y_pred):
    """Per sample: mean(|y_true - y_pred|) over the last axis."""
    t, p = _pair(y_true, y_pred, "mean_absolute_error")
    return np.mean(np.abs(p.astype(np.float64) - t), axis=-1)


# -- metric objects ---------------------------------------------------------------------------

class Metric:
    """Base class: ``update_state``, ``result``, ``reset_state``, ``name``.

    ``direction`` is "up" when larger is better (accuracies) and "down" otherwise; EarlyStopping
    in mode="auto" reads it.
    """
    direction = "down"

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{type(self).__name__}: name must be a string; got {name!r}")
        self.name = name or type(self).__name__
        self.reset_state()

    def reset_state(self):
        self._total = 0.0
        self._count = 0.0

    def result(self) -> float:
        return self._total / self._count if self._count else 0.0

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result():.6g}>"


class Mean(Metric):
    """The (weighted) mean of every value passed to ``update_state(values, sample_weight)``."""

    def __init__(self, name="mean"):
        super().__init__(name)

    def add(self, value: float, weight: float = 1.0) -> None:
        """One scalar with its weight: update_state([value], [weight]) without array work
        (the model's loss tracker calls this once per batch)."""
        self._total += weight * value
        self._count += weight

    def update_state(self, values, sample_weight=None):
        v = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            self._total += float(v.sum())
            self._count += v.size
            return
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.ndim < v.ndim:
            w = w.reshape(w.shape + (1,) * (v.ndim - w.ndim))
        try:
            w = np.broadcast_to(w, v.shape)
        except ValueError:
            raise ValueError(f"{type(self).__name__}: sample_weight of shape {np.shape(sample_weight)} "
                             f"does not match values of shape {v.shape}") from None
        self._total += float((w * v).sum())
        self._count += float(w.sum())


class MeanMetricWrapper(Mean):
    """Streams the mean of ``fn(y_true, y_pred, **kwargs)`` (per-sample values)."""

    def __init__(self, fn, name=None, **kwargs):
        self._fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name=name or getattr(fn, "__name__", "mean_metric_wrapper"))

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)


class BinaryAccuracy(MeanMetricWrapper):
    """How often (y_pred > threshold) matches binary targets."""
    direction = "up"

    def __init__(self, name="binary_accuracy", threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
                or not math.isfinite(threshold):
            raise ValueError(f"BinaryAccuracy: threshold must be a finite number; got {threshold!r}")
        self.threshold = float(threshold)
        super().__init__(binary_accuracy, name=name, threshold=self.threshold)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) matches argmax of one-hot targets."""
    direction = "up"
    argmax_only = True  # the same on logits as on softmax probabilities

    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name=name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) matches integer class ids."""
    direction = "up"
    argmax_only = True

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name=name)


class MeanSquaredError(MeanMetricWrapper):
    """Mean squared error."""

    def __init__(self, name="mean_squared_error"):
        super().__init__(mean_squared_error, name=name)


class MeanAbsoluteError(MeanMetricWrapper):
    """Mean absolute error."""

    def __init__(self, name="mean_absolute_error"):
        super().__init__(mean_absolute_error, name=name)


_CLASSES = (Mean, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
            MeanSquaredError, MeanAbsoluteError)
_NAMES = {
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy, "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
}
_ACCURACY = ("accuracy", "acc")
_REGISTRY = Registry("metrics", "metric", _NAMES, _CLASSES)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def accuracy_for(y_true_shape, y_pred_shape, name="accuracy"):
    """The accuracy metric Keras 3 picks for "accuracy" given target and prediction shapes."""
    if y_pred_shape[-1] == 1:
        return BinaryAccuracy(name=name)
    if len(y_true_shape) == len(y_pred_shape) - 1 or y_true_shape[-1] == 1:
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)


def check_identifier(identifier):
    """ValueError unless ``get`` can resolve identifier; returns the name it is reported under."""
    if isinstance(identifier, Metric):
        return identifier.name
    if isinstance(identifier, str):
        if identifier in _ACCURACY or identifier in _REGISTRY.table:
            return identifier
        raise ValueError(f"Unknown metric {identifier!r}; valid names: "
                         f"{sorted(_ACCURACY + tuple(_NAMES))}")
    if isinstance(identifier, dict):
        return deserialize(identifier).name
    raise ValueError(f"Could not interpret metric {identifier!r}; pass a name "
                     f"({sorted(_ACCURACY + tuple(_NAMES))}) or a nanonet.metrics.Metric")


def get(identifier, y_true_shape=None, y_pred_shape=None):
    """A Metric from a name, a serialized dict or a Metric. A string is reported under that
    name (Keras 3). "accuracy"/"acc" needs the target and prediction shapes to pick its kind."""
    name = check_identifier(identifier)
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if identifier in _ACCURACY:
        if y_true_shape is None or y_pred_shape is None:
            raise ValueError(f"metrics.get: {identifier!r} needs y_true_shape and y_pred_shape "
                             "to choose binary, categorical or sparse categorical accuracy")
        return accuracy_for(tuple(y_true_shape), tuple(y_pred_shape), name)
    return _REGISTRY.lookup(identifier)(name=name)
