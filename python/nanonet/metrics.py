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
from typing import Any

from ._registry import Registry

import numpy as np

__all__ = [
    "Metric", "Mean", "MeanMetricWrapper", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError", "binary_accuracy",
    "categorical_accuracy", "sparse_categorical_accuracy", "mean_squared_error",
    "mean_absolute_error", "get", "serialize", "deserialize",
    "Precision", "Recall", "AUC", "F1Score", "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
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


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> Any:
    """Per sample, the fraction of outputs where ``(y_pred > threshold)`` equals y_true.

    Args:
        y_true (array-like): targets.
        y_pred (array-like): predictions.
        threshold (float, default 0.5): the decision threshold.

    Returns:
        ndarray: one value per sample (the metric classes stream their mean).

    Example:

    >>> nn.metrics.binary_accuracy([[1], [0]], [[0.9], [0.8]]).tolist()
    [1.0, 0.0]
    """
    t, p = _pair(y_true, y_pred, "binary_accuracy")
    return np.mean((p > threshold).astype(t.dtype) == t, axis=-1)


def categorical_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Per sample, 1 where ``argmax(y_pred)`` equals ``argmax(y_true)`` (one-hot targets).

    Args:
        y_true (array-like): targets.
        y_pred (array-like): predictions.

    Returns:
        ndarray: one value per sample (the metric classes stream their mean).

    Example:

    >>> nn.metrics.categorical_accuracy([[0, 1], [1, 0]], [[0.2, 0.8], [0.4, 0.6]]).tolist()
    [1.0, 0.0]
    """
    t, p = _pair(y_true, y_pred, "categorical_accuracy")
    return (np.argmax(t, axis=-1) == np.argmax(p, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Per sample, 1 where ``argmax(y_pred)`` equals the integer class id y_true.

    Args:
        y_true (array-like): targets.
        y_pred (array-like): predictions.

    Returns:
        ndarray: one value per sample (the metric classes stream their mean).

    Example:

    >>> nn.metrics.sparse_categorical_accuracy([1, 0], [[0.2, 0.8], [0.4, 0.6]]).tolist()
    [1.0, 0.0]
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    lead = p.shape[:-1]
    if t.shape == lead + (1,):
        t = t.reshape(lead)
    if t.shape != lead:
        raise ValueError(f"sparse_categorical_accuracy: y_true must have shape {lead}; got {t.shape}")
    return (np.argmax(p, axis=-1) == t).astype(np.float64)


def mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    """Per sample, ``mean((y_true - y_pred)^2)`` over the last axis.

    Args:
        y_true (array-like): targets.
        y_pred (array-like): predictions.

    Returns:
        ndarray: one value per sample (the metric classes stream their mean).

    Example:

    >>> nn.metrics.mean_squared_error([[0.0, 1.0]], [[0.5, 1.0]]).tolist()
    [0.125]
    """
    t, p = _pair(y_true, y_pred, "mean_squared_error")
    d = p.astype(np.float64) - t
    return np.mean(d * d, axis=-1)


def mean_absolute_error(y_true: Any, y_pred: Any) -> Any:
    """Per sample, ``mean(|y_true - y_pred|)`` over the last axis.

    Args:
        y_true (array-like): targets.
        y_pred (array-like): predictions.

    Returns:
        ndarray: one value per sample (the metric classes stream their mean).

    Example:

    >>> nn.metrics.mean_absolute_error([[0.0, 1.0]], [[0.5, 1.0]]).tolist()
    [0.25]
    """
    t, p = _pair(y_true, y_pred, "mean_absolute_error")
    return np.mean(np.abs(p.astype(np.float64) - t), axis=-1)


# -- metric objects ---------------------------------------------------------------------------

class Metric:
    """Base class of the metrics: a streaming value over the batches seen so far.

    A metric keeps a weighted total and count (float64): ``update_state`` adds one batch,
    ``result()`` returns total / count (0.0 before any update), ``reset_state()`` starts
    again. Without sample weights every sample counts once, so an epoch's result is the mean
    over all its samples whatever the batch sizes. ``direction`` is "up" when larger is
    better (accuracies) and "down" otherwise; ``EarlyStopping(mode="auto")`` reads it.

    Args:
        name (str or None, default None): the reported name (the class name if None).

    Raises:
        ValueError: name is not a string.

    Example:

    >>> m = nn.metrics.BinaryAccuracy()
    >>> m.update_state([[1], [0]], [[0.9], [0.2]])
    >>> m.update_state([[1]], [[0.1]])
    >>> round(m.result(), 4)
    0.6667
    >>> m.reset_state(); m.result()
    0.0
    """
    direction = "down"

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{type(self).__name__}: name must be a string; got {name!r}")
        self.name = name or type(self).__name__
        self.reset_state()

    def reset_state(self) -> None:
        self._total = 0.0
        self._count = 0.0

    def result(self) -> float:
        return self._total / self._count if self._count else 0.0

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result():.6g}>"


class Mean(Metric):
    """The (weighted) mean of every value passed to ``update_state``.

    Call ``update_state(values, sample_weight=None)`` with an array (or scalar) of values and
    optional weights broadcast against them; ``result()`` is ``sum(w * v) / sum(w)``.

    Args:
        name (str, default "mean"): the reported name.

    Raises:
        ValueError: sample_weight that does not broadcast to the values.

    Example:

    >>> m = nn.metrics.Mean()
    >>> m.update_state([1.0, 2.0, 3.0])
    >>> m.update_state(5.0, sample_weight=3)
    >>> m.result()
    3.5
    """

    def __init__(self, name: str | None = "mean") -> None:
        super().__init__(name)

    def add(self, value: float, weight: float = 1.0) -> None:
        """One scalar with its weight: update_state([value], [weight]) without array work
        (the model's loss tracker calls this once per batch)."""
        self._total += weight * value
        self._count += weight

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
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
    """Streams the mean of a per-sample function ``fn(y_true, y_pred, **kwargs)``.

    Args:
        fn (callable): returns one value per sample.
        name (str or None, default None): the reported name (``fn.__name__`` if None).
        **kwargs: passed to fn on every call.

    Example:

    >>> m = nn.metrics.MeanMetricWrapper(nn.metrics.mean_absolute_error, name="mae")
    >>> m.update_state([[0.0, 1.0]], [[0.5, 1.0]])
    >>> m.name, m.result()
    ('mae', 0.25)
    """

    def __init__(self, fn: Any, name: str | None = None, **kwargs: Any) -> None:
        self._fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name=name or getattr(fn, "__name__", "mean_metric_wrapper"))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``(y_pred > threshold)`` matches the binary targets.

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        threshold (float, default 0.5): the decision threshold.
        name (str, default "binary_accuracy"): the reported name.

    Example:

    >>> m = nn.metrics.BinaryAccuracy()
    >>> m.update_state([[1], [0], [1]], [[0.9], [0.8], [0.3]])
    >>> round(m.result(), 4)
    0.3333
    """
    direction = "up"

    def __init__(self, name: str | None = "binary_accuracy", threshold: float = 0.5) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
                or not math.isfinite(threshold):
            raise ValueError(f"BinaryAccuracy: threshold must be a finite number; got {threshold!r}")
        self.threshold = float(threshold)
        super().__init__(binary_accuracy, name=name, threshold=self.threshold)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` matches the argmax of one-hot targets.

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        name (str, default "categorical_accuracy"): the reported name.

    Example:

    >>> m = nn.metrics.CategoricalAccuracy()
    >>> m.update_state([[0, 1], [1, 0]], [[0.2, 0.8], [0.4, 0.6]])
    >>> m.result()
    0.5
    """
    direction = "up"
    argmax_only = True  # the same on logits as on softmax probabilities

    def __init__(self, name: str | None = "categorical_accuracy") -> None:
        super().__init__(categorical_accuracy, name=name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` matches integer class ids.

    y_true holds ids of shape (B,) or (B, 1); y_pred is (B, C).

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        name (str, default "sparse_categorical_accuracy"): the reported name.

    Example:

    >>> m = nn.metrics.SparseCategoricalAccuracy()
    >>> m.update_state([1, 0], [[0.2, 0.8], [0.4, 0.6]])
    >>> m.result()
    0.5
    """
    direction = "up"
    argmax_only = True

    def __init__(self, name: str | None = "sparse_categorical_accuracy") -> None:
        super().__init__(sparse_categorical_accuracy, name=name)


class MeanSquaredError(MeanMetricWrapper):
    """Streaming mean squared error, ``mean((y_true - y_pred)^2)``.

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        name (str, default "mean_squared_error"): the reported name.

    Example:

    >>> m = nn.metrics.MeanSquaredError()
    >>> m.update_state([[0.0, 1.0]], [[0.5, 1.0]])
    >>> m.result()
    0.125
    """

    def __init__(self, name: str | None = "mean_squared_error") -> None:
        super().__init__(mean_squared_error, name=name)


class MeanAbsoluteError(MeanMetricWrapper):
    """Streaming mean absolute error, ``mean(|y_true - y_pred|)``.

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        name (str, default "mean_absolute_error"): the reported name.

    Example:

    >>> m = nn.metrics.MeanAbsoluteError()
    >>> m.update_state([[0.0, 1.0]], [[0.5, 1.0]])
    >>> m.result()
    0.25
    """

    def __init__(self, name: str | None = "mean_absolute_error") -> None:
        super().__init__(mean_absolute_error, name=name)


# -- top-k accuracies ---------------------------------------------------------------------------

def _check_k(k, cls):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{cls}: k must be a positive int; got {k!r}")
    return int(k)


def _in_top_k(ids, p, k):
    """Keras 3's in_top_k: the target's rank 1 + #(predictions strictly greater) is <= k; a NaN
    prediction at the target counts as -inf. p (N, C), ids (N,) ints."""
    at = np.take_along_axis(p, ids[:, None], axis=-1)
    at = np.where(np.isnan(at), -np.inf, at)
    return (1 + np.sum(p > at, axis=-1)) <= k


def sparse_top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> Any:
    """Per sample, 1 where the class id y_true is among the k largest predictions.

    Args:
        y_true (array-like): targets.
        y_pred (array-like): predictions.
        k (int, default 5): how many of the largest predictions count.

    Returns:
        ndarray: one value per sample (the metric classes stream their mean).

    Example:

    >>> nn.metrics.sparse_top_k_categorical_accuracy([1], [[0.5, 0.3, 0.2]], k=2).tolist()
    [1.0]
    """
    p = np.asarray(y_pred, dtype=np.float64)
    if p.ndim < 1:
        raise ValueError("sparse_top_k_categorical_accuracy: y_pred must be at least 1-D")
    lead = p.shape[:-1]
    t = np.asarray(y_true)
    if t.shape == lead + (1,):
        t = t.reshape(lead)
    if t.shape != lead:
        raise ValueError(f"sparse_top_k_categorical_accuracy: y_true must have shape {lead}; "
                         f"got {t.shape}")
    ids = t.astype(np.int64).reshape(-1)
    C = p.shape[-1]
    if ids.size and (ids.min() < 0 or ids.max() >= C):
        raise ValueError(f"sparse_top_k_categorical_accuracy: class ids must be in [0, {C}); "
                         f"got {int(ids[(ids < 0) | (ids >= C)][0])}")
    hit = _in_top_k(ids, p.reshape(-1, C), _check_k(k, "sparse_top_k_categorical_accuracy"))
    return hit.reshape(lead).astype(np.float64)


def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> Any:
    """Per sample, 1 where ``argmax(y_true)`` (one-hot) is among the k largest predictions.

    Args:
        y_true (array-like): targets.
        y_pred (array-like): predictions.
        k (int, default 5): how many of the largest predictions count.

    Returns:
        ndarray: one value per sample (the metric classes stream their mean).

    Example:

    >>> nn.metrics.top_k_categorical_accuracy([[0, 0, 1]], [[0.5, 0.3, 0.2]], k=2).tolist()
    [0.0]
    """
    t, p = _pair(y_true, y_pred, "top_k_categorical_accuracy")
    return sparse_top_k_categorical_accuracy(np.argmax(t, axis=-1), p, k)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot target is among the k largest predictions.

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        k (int, default 5): how many of the largest predictions count.
        name (str, default "top_k_categorical_accuracy"): the reported name.

    Example:

    >>> m = nn.metrics.TopKCategoricalAccuracy(k=2)
    >>> m.update_state([[0, 0, 1], [1, 0, 0]], [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1]])
    >>> m.result()
    0.5
    """
    direction = "up"
    argmax_only = True  # ranks are the same on logits as on softmax probabilities

    def __init__(self, k: int = 5, name: str | None = "top_k_categorical_accuracy") -> None:
        self.k = _check_k(k, type(self).__name__)
        super().__init__(top_k_categorical_accuracy, name=name, k=self.k)

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, "name": self.name}


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer class id is among the k largest predictions.

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        k (int, default 5): how many of the largest predictions count.
        name (str, default "sparse_top_k_categorical_accuracy"): the reported name.

    Example:

    >>> m = nn.metrics.SparseTopKCategoricalAccuracy(k=2)
    >>> m.update_state([2, 0], [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1]])
    >>> m.result()
    0.5
    """
    direction = "up"
    argmax_only = True

    def __init__(self, k: int = 5, name: str | None = "sparse_top_k_categorical_accuracy") -> None:
        self.k = _check_k(k, type(self).__name__)
        super().__init__(sparse_top_k_categorical_accuracy, name=name, k=self.k)

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, "name": self.name}


# -- confusion-matrix metrics -----------------------------------------------------------------
# Streaming weighted counts of true/false positives/negatives at one or more thresholds, as
# Keras's update_confusion_matrix_variables: a prediction is positive when y_pred > threshold;
# a label is positive when nonzero; sample_weight broadcasts over the trailing axes.

_EPSILON = 1e-7  # Keras's backend.epsilon()


def _broadcast_weight(sample_weight, shape, cls):
    if sample_weight is None:
        return np.ones(shape)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim < len(shape):
        w = w.reshape(w.shape + (1,) * (len(shape) - w.ndim))
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"{cls}: sample_weight of shape {np.shape(sample_weight)} does not "
                         f"match y_pred of shape {shape}") from None


def _confusion_counts(y_true, y_pred, thresholds, sample_weight, cls, class_id=None, top_k=None):
    """(tp, fp, tn, fn), float64 arrays of len(thresholds) (sorted ascending)."""
    t, p = _pair(y_true, y_pred, cls)
    p = np.asarray(p, dtype=np.float64)
    w = _broadcast_weight(sample_weight, p.shape, cls)
    if top_k is not None:  # only each row's k largest can be positive (Keras's _filter_top_k)
        kth = -np.sort(-p, axis=-1)[..., top_k - 1:top_k] if p.shape[-1] >= top_k else None
        if kth is not None:
            order = np.argsort(-p, axis=-1, kind="stable")
            keep = np.zeros(p.shape, bool)
            np.put_along_axis(keep, order[..., :top_k], True, axis=-1)
            p = np.where(keep, p, -np.inf)
    if class_id is not None:
        if not 0 <= class_id < p.shape[-1]:
            raise ValueError(f"{cls}: class_id {class_id} is out of range for y_pred with "
                             f"{p.shape[-1]} classes")
        t, p, w = t[..., class_id], p[..., class_id], w[..., class_id]
    pos = (np.asarray(t) != 0).reshape(-1)
    p, w = p.reshape(-1), w.reshape(-1)
    th = np.asarray(thresholds, dtype=np.float64)
    # above[i] = how many thresholds p_i exceeds (p > thr); NaN exceeds none
    above = np.searchsorted(th, np.where(np.isnan(p), -np.inf, p), side="left")
    n = len(th)
    pos_w = np.bincount(above, weights=w * pos, minlength=n + 1)
    neg_w = np.bincount(above, weights=w * ~pos, minlength=n + 1)
    # predicted positive at threshold j: above > j
    tp = np.cumsum(pos_w[::-1])[::-1][1:]
    fp = np.cumsum(neg_w[::-1])[::-1][1:]
    return tp, fp, neg_w.sum() - fp, pos_w.sum() - tp


def _check_thresholds(thresholds, default, cls):
    """(sorted float64 array, whether the result is a list)."""
    if thresholds is None:
        return np.array([default]), False
    scalar = isinstance(thresholds, numbers.Real) and not isinstance(thresholds, bool)
    th = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if th.ndim != 1 or th.size == 0 or not np.all(np.isfinite(th)):
        raise ValueError(f"{cls}: thresholds must be a finite number or a list of them; got "
                         f"{thresholds!r}")
    return th, not scalar


def _check_opt_int(value, name, cls, low):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{cls}: {name} must be None or an int >= {low}; got {value!r}")
    return int(value)


def _divide_no_nan(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


class _ThresholdCounts(Metric):
    """Streaming confusion counts, one per threshold (Precision, Recall, AUC)."""

    def reset_state(self):
        n = len(getattr(self, "_thresholds", [0]))
        self.true_positives = np.zeros(n)
        self.false_positives = np.zeros(n)
        self.true_negatives = np.zeros(n)
        self.false_negatives = np.zeros(n)


class _ConfusionMetric(_ThresholdCounts):
    direction = "up"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        cls = type(self).__name__
        # Keras: 0.5 by default, or -inf with top_k (every top-k prediction is positive)
        default = 0.5 if top_k is None else -np.inf
        self._thresholds, self._as_list = _check_thresholds(thresholds, default, cls)
        self._order = np.argsort(self._thresholds, kind="stable")
        self.thresholds = thresholds
        self.top_k = _check_opt_int(top_k, "top_k", cls, 1)
        self.class_id = _check_opt_int(class_id, "class_id", cls, 0)
        super().__init__(name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, tn, fn = _confusion_counts(y_true, y_pred, self._thresholds[self._order],
                                           sample_weight, type(self).__name__, self.class_id,
                                           self.top_k)
        back = np.empty_like(self._order)
        back[self._order] = np.arange(len(self._order))  # counts in the thresholds' given order
        self.true_positives += tp[back]
        self.false_positives += fp[back]
        self.true_negatives += tn[back]
        self.false_negatives += fn[back]

    def _out(self, values):
        return [float(v) for v in values] if self._as_list else float(values[0])

    def get_config(self):
        th = self.thresholds
        if isinstance(th, np.ndarray):
            th = th.tolist()
        return {"thresholds": th, "top_k": self.top_k, "class_id": self.class_id,
                "name": self.name}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result()!r}>"


class Precision(_ConfusionMetric):
    """Precision, ``tp / (tp + fp)``, streamed over the batches (0 when undefined).

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    A prediction is positive when it is above the threshold; with ``top_k`` only each row's k
    largest predictions can be; with ``class_id`` only that column of (B, C) data counts.

    Args:
        thresholds (float, list of float or None, default None): 0.5 if None; a list gives a
            list of results, one per threshold.
        top_k (int or None, default None): count only the k largest predictions per row.
        class_id (int or None, default None): compute the metric for this class only.
        name (str, default "precision"): the reported name.

    Raises:
        ValueError: a bad top_k or class_id.

    Example:

    >>> m = nn.metrics.Precision()
    >>> m.update_state([1, 0, 1, 1], [0.9, 0.8, 0.3, 0.7])
    >>> round(m.result(), 4)
    0.6667
    """

    def __init__(self, thresholds: Any = None, top_k: Any = None, class_id: Any = None,
                 name: str | None = "precision") -> None:
        super().__init__(thresholds, top_k, class_id, name)

    def result(self) -> Any:
        return self._out(_divide_no_nan(self.true_positives,
                                        self.true_positives + self.false_positives))


class Recall(_ConfusionMetric):
    """Recall, ``tp / (tp + fn)``, streamed over the batches (0 when undefined).

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        thresholds (float, list of float or None, default None): 0.5 if None; a list gives a
            list of results, one per threshold.
        top_k (int or None, default None): count only the k largest predictions per row.
        class_id (int or None, default None): compute the metric for this class only.
        name (str, default "recall"): the reported name.

    Raises:
        ValueError: a bad top_k or class_id.

    Example:

    >>> m = nn.metrics.Recall()
    >>> m.update_state([1, 0, 1, 1], [0.9, 0.8, 0.3, 0.7])
    >>> round(m.result(), 4)
    0.6667
    """

    def __init__(self, thresholds: Any = None, top_k: Any = None, class_id: Any = None,
                 name: str | None = "recall") -> None:
        super().__init__(thresholds, top_k, class_id, name)

    def result(self) -> Any:
        return self._out(_divide_no_nan(self.true_positives,
                                        self.true_positives + self.false_negatives))


class AUC(_ThresholdCounts):
    """Area under the ROC or precision-recall curve, from confusion counts at thresholds.

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Counts of tp, fp, tn, fn at ``num_thresholds`` thresholds are streamed; the curve is
    integrated as Keras 3 does with summation_method="interpolation": ROC by the trapezoid
    rule over (false positive rate, recall), PR by Davis & Goadrich's interpolation.
    "minoring" / "majoring" take the lower / upper Riemann sums. The default thresholds are
    -1e-7, (i + 1) / (num_thresholds - 1) for i < num_thresholds - 2, and 1 + 1e-7. All
    labels are pooled.

    Args:
        num_thresholds (int, default 200): number of thresholds, > 1.
        curve (str, default "ROC"): "ROC" or "PR".
        summation_method (str, default "interpolation"): or "minoring", "majoring".
        name (str, default "auc"): the reported name.
        dtype: accepted for Keras compatibility.
        thresholds (list of float or None, default None): explicit thresholds in [0, 1].
        multi_label (bool, default False): only False (labels pooled) is supported.
        num_labels, label_weights: Keras's arguments for multi_label; only None.
        from_logits (bool, default False): apply a sigmoid to y_pred first.

    Raises:
        ValueError: a bad curve, summation_method, num_thresholds or thresholds, or
            multi_label=True.

    Example:

    >>> m = nn.metrics.AUC()
    >>> m.update_state([1, 0, 1, 0], [0.9, 0.2, 0.7, 0.4])
    >>> round(m.result(), 4)
    1.0
    """
    direction = "up"

    def __init__(self, num_thresholds: Any = 200, curve: Any = "ROC",
                 summation_method: Any = "interpolation", name: str | None = "auc",
                 dtype: Any = None, thresholds: Any = None, multi_label: Any = False,
                 num_labels: Any = None, label_weights: Any = None,
                 from_logits: bool = False) -> None:
        cls = "AUC"
        if curve not in ("ROC", "PR"):
            raise ValueError(f"{cls}: curve must be 'ROC' or 'PR'; got {curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"{cls}: summation_method must be 'interpolation', 'minoring' or "
                             f"'majoring'; got {summation_method!r}")
        if multi_label or num_labels is not None or label_weights is not None:
            raise ValueError(f"{cls}: multi_label, num_labels and label_weights are not "
                             "supported (labels are pooled)")
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(f"{cls}: from_logits must be True or False; got {from_logits!r}")
        if thresholds is not None:
            th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
            if th.size == 0 or not np.all(np.isfinite(th)):
                raise ValueError(f"{cls}: thresholds must be finite numbers; got {thresholds!r}")
            self._thresholds = np.concatenate([[-_EPSILON], np.sort(th), [1 + _EPSILON]])
            self.num_thresholds = len(self._thresholds)
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds,
                                                                  numbers.Integral) \
                    or num_thresholds <= 1:
                raise ValueError(f"{cls}: num_thresholds must be an int > 1; got "
                                 f"{num_thresholds!r}")
            n = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
            self._thresholds = np.array([0.0 - _EPSILON] + inner + [1.0 + _EPSILON])
            self.num_thresholds = n
        self.thresholds = None if thresholds is None else list(np.asarray(thresholds,
                                                                          float).reshape(-1))
        self.curve = curve
        self.summation_method = summation_method
        self.from_logits = bool(from_logits)
        self.multi_label = False
        super().__init__(name)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        p = np.asarray(y_pred, dtype=np.float64)
        if self.from_logits:
            with np.errstate(over="ignore"):
                p = 1 / (1 + np.exp(-p))
        tp, fp, tn, fn = _confusion_counts(y_true, p, self._thresholds, sample_weight, "AUC")
        self.true_positives += tp
        self.false_positives += fp
        self.true_negatives += tn
        self.false_negatives += fn

    def _interpolate_pr_auc(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        n = self.num_thresholds
        dtp = tp[:n - 1] - tp[1:]
        p = tp + fp
        dp = p[:n - 1] - p[1:]
        prec_slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - prec_slope * p[1:]
        safe_p_ratio = np.where((p[:n - 1] > 0) & (p[1:] > 0),
                                _divide_no_nan(p[:n - 1], np.maximum(p[1:], 0)), 1.0)
        increment = _divide_no_nan(prec_slope * (dtp + intercept * np.log(safe_p_ratio)),
                                   np.maximum(tp[1:] + fn[1:], 0))
        return float(np.sum(increment))

    def result(self) -> Any:
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc()
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        n = self.num_thresholds
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:n - 1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:n - 1], y[1:])
        else:
            heights = np.maximum(y[:n - 1], y[1:])
        return float(np.sum((x[:n - 1] - x[1:]) * heights))

    def get_config(self) -> dict[str, Any]:
        return {"num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "name": self.name,
                "thresholds": self.thresholds, "from_logits": self.from_logits}


class F1Score(Metric):
    """F1 score, the harmonic mean of precision and recall, per class or averaged.

    Keras 3's F1Score (FBetaScore with beta = 1) over (B, C) targets and predictions: per class
    ``2 p r / (p + r)`` from streamed tp, fp, fn (epsilon 1e-7 in each division).

    Call ``update_state(y_true, y_pred, sample_weight=None)`` once per batch and ``result()``
    for the value so far (a float); ``reset_state()`` starts again.

    Args:
        average (str or None, default None): None returns the per-class array (as Keras);
            "micro", "macro" or "weighted" give one number (what ``compile(metrics=...)``
            logs).
        threshold (float or None, default None): None takes each row's maximum (if nonzero)
            as the positive prediction; otherwise ``y_pred > threshold``.
        name (str, default "f1_score"): the reported name.
        dtype: accepted for Keras compatibility.

    Raises:
        ValueError: an unknown average or a threshold outside (0, 1].

    Example:

    >>> m = nn.metrics.F1Score(average="macro")
    >>> m.update_state([[1, 0], [0, 1], [1, 0]], [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
    >>> round(m.result(), 4)
    0.6667
    """
    direction = "up"
    beta = 1.0

    def __init__(self, average: Any = None, threshold: float = None, name: str | None = "f1_score",
                 dtype: Any = None) -> None:
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"F1Score: average must be None, 'micro', 'macro' or 'weighted'; "
                             f"got {average!r}")
        if threshold is not None and (isinstance(threshold, bool) or
                                      not isinstance(threshold, numbers.Real) or
                                      not 0.0 < threshold <= 1.0):
            raise ValueError(f"F1Score: threshold must be None or a number in (0, 1]; got "
                             f"{threshold!r}")
        self.average = average
        self.threshold = None if threshold is None else float(threshold)
        self._tp = None
        super().__init__(name)

    def reset_state(self) -> None:
        self._tp = self._fp = self._fn = self._support = None

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        t, p = _pair(y_true, y_pred, "F1Score")
        if p.ndim != 2:
            raise ValueError(f"F1Score: y_pred must be 2-D (batch, classes); got shape {p.shape}")
        p = np.asarray(p, np.float64)
        t = np.asarray(t, np.float64)
        if self.threshold is None:
            pred = (p >= p.max(axis=-1, keepdims=True)) & (np.abs(p) > 1e-9)
        else:
            pred = p > self.threshold
        pred = pred.astype(np.float64)
        w = np.ones((p.shape[0], 1)) if sample_weight is None else \
            np.asarray(sample_weight, np.float64).reshape(-1, 1)
        if w.shape[0] != p.shape[0]:
            raise ValueError(f"F1Score: sample_weight must have one value per row of y_pred "
                             f"{p.shape}; got shape {np.shape(sample_weight)}")
        axis = None if self.average == "micro" else 0
        add = [np.sum(v * w, axis=axis) for v in (pred * t, pred * (1 - t), (1 - pred) * t, t)]
        if self._tp is None:
            self._tp, self._fp, self._fn, self._support = add
        else:
            self._tp = self._tp + add[0]
            self._fp = self._fp + add[1]
            self._fn = self._fn + add[2]
            self._support = self._support + add[3]

    def result(self) -> Any:
        if self._tp is None:
            return 0.0
        precision = self._tp / (self._tp + self._fp + _EPSILON)
        recall = self._tp / (self._tp + self._fn + _EPSILON)
        b2 = self.beta ** 2
        f1 = precision * recall / (b2 * precision + recall + _EPSILON) * (1 + b2)
        if self.average == "weighted":
            weights = self._support / (np.sum(self._support) + _EPSILON)
            return float(np.sum(f1 * weights))
        if self.average is not None:
            return float(np.mean(f1))
        return np.asarray(f1, np.float64)

    def get_config(self) -> dict[str, Any]:
        return {"average": self.average, "threshold": self.threshold, "name": self.name}

    def __repr__(self):
        return f"<F1Score name={self.name!r} average={self.average!r}>"


_CLASSES = (Mean, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
            MeanSquaredError, MeanAbsoluteError, Precision, Recall, AUC, F1Score,
            TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy)
_NAMES = {
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy, "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError, "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "precision": Precision, "recall": Recall, "auc": AUC, "f1_score": F1Score,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
}
_ACCURACY = ("accuracy", "acc")
_REGISTRY = Registry("metrics", "metric", _NAMES, _CLASSES)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def accuracy_for(y_true_shape: Any, y_pred_shape: Any, name: str | None = "accuracy") -> Any:
    """The accuracy metric Keras 3 picks for "accuracy" given target and prediction shapes."""
    if y_pred_shape[-1] == 1:
        return BinaryAccuracy(name=name)
    if len(y_true_shape) == len(y_pred_shape) - 1 or y_true_shape[-1] == 1:
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)


def check_identifier(identifier: Any) -> Any:
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


def get(identifier: Any, y_true_shape: Any = None, y_pred_shape: Any = None) -> Any:
    """A Metric from a name, a serialized dict or a Metric.

    A string is reported under that name, as in Keras 3. "accuracy" / "acc" picks its kind
    from the shapes: one output unit -> binary accuracy; integer ids (y_true of rank one less
    than y_pred, or a trailing 1) -> sparse categorical; otherwise categorical.

    Args:
        identifier (str, dict or Metric): the metric.
        y_true_shape (tuple or None, default None): shape of the targets (for "accuracy").
        y_pred_shape (tuple or None, default None): shape of the predictions.

    Returns:
        Metric: a new metric (or identifier itself when it is a Metric).

    Raises:
        ValueError: an unknown name, or "accuracy" without shapes.

    Example:

    >>> nn.metrics.get("accuracy", (4,), (4, 3))
    <SparseCategoricalAccuracy name='accuracy' result=0>
    """
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
