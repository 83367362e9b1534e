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
from typing import Any

from ._registry import Registry

import numpy as np

from . import ops

__all__ = [
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "Huber", "KLDivergence",
    "Poisson", "LogCosh", "Hinge", "SquaredHinge", "CategoricalHinge", "CosineSimilarity",
    "get", "serialize", "deserialize",
    # Keras's function forms: per-sample losses (no reduction, no sample_weight)
    "mean_squared_error", "mean_absolute_error", "mse", "mae", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "huber", "kl_divergence",
    "poisson", "log_cosh", "hinge", "squared_hinge", "categorical_hinge", "cosine_similarity",
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
    """Base class of the losses: reduces per-sample losses to the mean over the batch.

    A loss value is Keras's "sum_over_batch_size": per-sample losses times ``sample_weight``
    when given, summed and divided by the number of samples. For predictions of rank 3,
    (B, T, C), each (b, t) position is a sample and ``sample_weight`` may be (B,) or (B, T).

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> loss = nn.losses.MeanSquaredError()
    >>> value, grad = loss.value_and_grad(np.ones((2, 3)), np.zeros((2, 3)))
    >>> round(value, 4), grad.shape
    (1.0, (2, 3))
    """
    _op_name = ""
    _default_name = ""
    sparse = False
    from_logits = False

    def __init__(self, name: str | None = None) -> None:
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

    def value_and_grad(self, y_true: Any, y_pred: Any, sample_weight: Any = None,
                       compute_grad: Any = True) -> Any:
        """(value, d value / d y_pred) with the gradient shaped like y_pred (None if not asked).
        Shapes and ids are checked by ``nanonet.ops.loss``."""
        y_pred = self._pred(y_pred)
        value, grad = ops.loss(self._op_name, self._targets(y_true, y_pred), y_pred,
                               from_logits=self.from_logits, sample_weight=sample_weight,
                               compute_grad=compute_grad)
        return float(value), grad

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        return self.value_and_grad(y_true, y_pred, sample_weight, compute_grad=False)[0]

    @property
    def fused_activation(self) -> Any:
        """'softmax' when a trailing softmax may be fused into this loss (value and gradient
        computed from the logits by ``value_and_grad_from_logits``), else None."""
        return None

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MeanSquaredError(Loss):
    """Mean of the squared errors (``'mse'``).

    Per sample ``mean((y_true - y_pred)^2)`` over the last axis.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.MeanSquaredError()(y_true, y_pred), 4)
    0.1
    """
    _op_name = "mse"
    _default_name = "mean_squared_error"


class MeanAbsoluteError(Loss):
    """Mean of the absolute errors (``'mae'``).

    Per sample ``mean(|y_true - y_pred|)`` over the last axis.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.MeanAbsoluteError()(y_true, y_pred), 4)
    0.3
    """
    _op_name = "mae"
    _default_name = "mean_absolute_error"


class BinaryCrossentropy(Loss):
    """Cross-entropy for binary (0 or 1) targets, one or more per sample.

    Per sample ``mean(-(y log p + (1 - y) log(1 - p)))`` over the last axis, p clipped to
    [1e-7, 1 - 1e-7]; ``p = sigmoid(y_pred)`` (in a stable form) when ``from_logits``.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        from_logits (bool, default False): y_pred are logits rather than probabilities.
        label_smoothing (float, default 0.0): s in [0, 1] moves targets to
            ``y (1 - s) + s / 2``.
        name (str or None, default None): the loss's name (Keras's default if None).

    Raises:
        ValueError: label_smoothing outside [0, 1] or from_logits not a bool.

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.BinaryCrossentropy()(y_true, y_pred), 4)
    0.367
    """
    _op_name = "binary_crossentropy"
    _default_name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.from_logits = _check_bool(from_logits, "from_logits", type(self).__name__)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)

    def _targets(self, y_true, y_pred):
        if not self.label_smoothing:
            return y_true
        t = np.asarray(y_true, dtype=y_pred.dtype)
        return t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "name": self.name}


class CategoricalCrossentropy(Loss):
    """Cross-entropy for one-hot (or distribution) targets.

    Per sample ``-sum(y log p)`` over the classes; ``p = softmax(y_pred)`` when
    ``from_logits``. Behind a softmax output layer a model fuses the two into one stable
    kernel and trains on the logits.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        from_logits (bool, default False): y_pred are logits rather than probabilities.
        label_smoothing (float, default 0.0): s in [0, 1] moves targets to
            ``y (1 - s) + s / C``.
        name (str or None, default None): the loss's name (Keras's default if None).

    Raises:
        ValueError: label_smoothing outside [0, 1] or from_logits not a bool.

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.CategoricalCrossentropy()(y_true, y_pred), 4)
    0.367
    """
    _op_name = "categorical_crossentropy"
    _default_name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.from_logits = _check_bool(from_logits, "from_logits", type(self).__name__)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)

    def _targets(self, y_true, y_pred):
        if not self.label_smoothing:
            return y_true
        t = np.asarray(y_true, dtype=y_pred.dtype)
        return t * (1.0 - self.label_smoothing) + self.label_smoothing / y_pred.shape[-1]

    @property
    def fused_activation(self) -> Any:
        return None if self.from_logits else "softmax"

    def value_and_grad_from_logits(self, y_true: Any, logits: Any,
                                   sample_weight: Any = None) -> Any:
        """Loss of softmax(logits) and its gradient wrt the logits, in one stable kernel."""
        logits = self._pred(logits)
        value, grad = ops.softmax_cross_entropy(self._targets(y_true, logits), logits,
                                                sparse=self.sparse, sample_weight=sample_weight)
        return float(value), grad

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "name": self.name}


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Cross-entropy for integer class ids.

    Per sample ``-log p[y]``, y an integer id of shape (B,) or (B, 1) ((B, T) for
    sequences); ``p = softmax(y_pred)`` when ``from_logits``.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        from_logits (bool, default False): y_pred are logits rather than probabilities.
        name (str or None, default None): the loss's name (Keras's default if None).

    Raises:
        ValueError: ids outside [0, C) (named with their position) or a bad shape.

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.SparseCategoricalCrossentropy()([1, 0], y_pred), 4)
    0.367
    """
    _op_name = "sparse_categorical_crossentropy"
    _default_name = "sparse_categorical_crossentropy"
    sparse = True

    def __init__(self, from_logits: bool = False, name: str | None = None) -> None:
        super().__init__(from_logits=from_logits, name=name)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "name": self.name}


# ---- losses computed in NumPy ---------------------------------------------------------------
# Per-sample values (B,) or (B, T) and their gradient wrt y_pred from one function each; the
# work is O(B * C) elementwise NumPy per step, small beside the layers' GEMMs. The reduction is
# the kernels' (Keras's "sum_over_batch_size"): sum(w * per) / number of samples.

_EPSILON = 1e-7  # Keras's backend.epsilon()


def _prepare(y_true, y_pred, fn):
    """(y_true, y_pred) as C-contiguous float arrays of y_pred's dtype and shape (..., C)."""
    y_pred = ops._loss_y_pred(Loss._pred(y_pred), fn)
    return ops._loss_y_true(y_true, y_pred, fn), y_pred


def _hinge_labels(y_true):
    """Keras's convert_binary_labels_to_hinge: labels all in {0, 1} become {-1, 1}."""
    if np.all((y_true == 0) | (y_true == 1)):
        return 2.0 * y_true - 1.0
    return y_true


def _huber(t, p, grad, delta=1.0):
    e = p - t
    a = np.abs(e)
    quad = a <= delta
    per = np.mean(np.where(quad, 0.5 * e * e, delta * a - 0.5 * delta * delta), axis=-1)
    g = np.where(quad, e, delta * np.sign(e)) / p.shape[-1] if grad else None
    return per, g


def _kl_divergence(t, p, grad):
    tc = np.clip(t, _EPSILON, 1.0)
    pc = np.clip(p, _EPSILON, 1.0)
    per = np.sum(tc * np.log(tc / pc), axis=-1)
    g = np.where((p >= _EPSILON) & (p <= 1.0), -tc / pc, 0.0) if grad else None
    return per, g


def _poisson(t, p, grad):
    per = np.mean(p - t * np.log(p + _EPSILON), axis=-1)
    g = (1.0 - t / (p + _EPSILON)) / p.shape[-1] if grad else None
    return per, g


def _log_cosh(t, p, grad):
    x = p - t  # log(cosh(x)) = x + softplus(-2x) - log 2, without overflow
    softplus = np.maximum(-2 * x, 0) + np.log1p(np.exp(-np.abs(2 * x)))
    per = np.mean(x + softplus - math.log(2.0), axis=-1)
    g = np.tanh(x) / p.shape[-1] if grad else None
    return per, g


def _hinge(t, p, grad):
    t = _hinge_labels(t)
    m = np.maximum(1.0 - t * p, 0.0)
    per = np.mean(m, axis=-1)
    g = np.where(m > 0, -t, 0.0) / p.shape[-1] if grad else None
    return per, g


def _squared_hinge(t, p, grad):
    t = _hinge_labels(t)
    m = np.maximum(1.0 - t * p, 0.0)
    per = np.mean(m * m, axis=-1)
    g = -2.0 * t * m / p.shape[-1] if grad else None
    return per, g


def _categorical_hinge(t, p, grad):
    pos = np.sum(t * p, axis=-1)
    other = (1.0 - t) * p
    neg = np.max(other, axis=-1) if p.shape[-1] else np.zeros(p.shape[:-1], p.dtype)
    per = np.maximum(neg - pos + 1.0, 0.0)
    g = None
    if grad:
        # d/dp: -t + (1 - t_j) at the first arg max j of (1 - t) p, where the hinge is active
        j = np.argmax(other, axis=-1)[..., None] if p.shape[-1] else None
        g = -t
        if j is not None:
            g = g + (np.arange(p.shape[-1]) == j) * (1.0 - t)
        g = np.where((per > 0)[..., None], g, 0.0)
    return per, g


def _cosine_similarity(t, p, grad):
    # Keras: -sum(l2norm(y_true) * l2norm(y_pred)), l2norm(x) = x / max(||x||, epsilon)
    u = t / np.maximum(np.sqrt(np.sum(t * t, axis=-1, keepdims=True)), _EPSILON)
    n = np.sqrt(np.sum(p * p, axis=-1, keepdims=True))
    d = np.maximum(n, _EPSILON)
    q = p / d
    per = -np.sum(u * q, axis=-1)
    g = None
    if grad:  # -(u - (u . q) q) / ||p|| where ||p|| > epsilon, else -u / epsilon
        uq = np.sum(u * q, axis=-1, keepdims=True)
        g = np.where(n > _EPSILON, -(u - uq * q) / d, -u / _EPSILON)
    return per, g


class _NumpyLoss(Loss):
    """A loss whose per-sample values and gradient come from ``_per_sample`` (NumPy)."""
    _per_sample = None

    def _kwargs(self):
        return {}

    def value_and_grad(self, y_true, y_pred, sample_weight=None, compute_grad=True):
        fn = type(self).__name__
        t, p = _prepare(y_true, y_pred, fn)
        w = ops._loss_weight(sample_weight, p, fn)  # flat (P,) or None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            per, g = type(self)._per_sample(t, p, compute_grad, **self._kwargs())
        count = max(per.size, 1)
        per = per.reshape(-1)
        scale = np.ones(per.size, np.float64) if w is None else w.astype(np.float64)
        value = float(np.sum(scale * per, dtype=np.float64) / count) if per.size else 0.0
        if not compute_grad:
            return value, None
        grad = g * (scale / count).reshape(p.shape[:-1] + (1,))
        return value, np.ascontiguousarray(grad, dtype=p.dtype)


class Huber(_NumpyLoss):
    """Huber loss: quadratic for small errors, linear for large ones.

    Per sample the mean over the last axis of ``0.5 e^2`` where ``|e| <= delta`` and
    ``delta (|e| - delta / 2)`` elsewhere, with ``e = y_pred - y_true``.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        delta (float, default 1.0): where the loss turns linear, >= 0.
        name (str or None, default None): the loss's name (Keras's default if None).

    Raises:
        ValueError: delta not a finite number >= 0.

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.Huber()(y_true, y_pred), 4)
    0.05
    """
    _default_name = "huber_loss"
    _per_sample = staticmethod(_huber)

    def __init__(self, delta: Any = 1.0, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or \
                not math.isfinite(delta) or delta < 0:
            raise ValueError(f"Huber: delta must be a finite number >= 0; got {delta!r}")
        self.delta = float(delta)

    def _kwargs(self):
        return {"delta": self.delta}

    def get_config(self) -> dict[str, Any]:
        return {"delta": self.delta, "name": self.name}


class KLDivergence(_NumpyLoss):
    """Kullback-Leibler divergence of y_pred from y_true.

    Per sample ``sum(y_true log(y_true / y_pred))`` over the last axis, both clipped to
    [1e-7, 1].

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.KLDivergence()(y_true, y_pred), 4)
    0.367
    """
    _default_name = "kl_divergence"
    _per_sample = staticmethod(_kl_divergence)


class Poisson(_NumpyLoss):
    """Poisson loss, for count targets.

    Per sample ``mean(y_pred - y_true log(y_pred + 1e-7))`` over the last axis.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.Poisson()(y_true, y_pred), 4)
    0.6835
    """
    _default_name = "poisson"
    _per_sample = staticmethod(_poisson)


class LogCosh(_NumpyLoss):
    """Logarithm of the hyperbolic cosine of the error.

    Per sample ``mean(log(cosh(y_pred - y_true)))`` over the last axis, computed without
    overflow; close to ``e^2 / 2`` for small errors and ``|e| - log 2`` for large ones.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.LogCosh()(y_true, y_pred), 4)
    0.0489
    """
    _default_name = "log_cosh"
    _per_sample = staticmethod(_log_cosh)


class Hinge(_NumpyLoss):
    """Hinge loss, for targets in {-1, 1}.

    Per sample ``mean(max(1 - y_true y_pred, 0))`` over the last axis; targets all in
    {0, 1} are mapped to {-1, 1} first, as Keras does.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.Hinge()(y_true, y_pred), 4)
    0.8
    """
    _default_name = "hinge"
    _per_sample = staticmethod(_hinge)


class SquaredHinge(_NumpyLoss):
    """Squared hinge loss, for targets in {-1, 1}.

    Per sample ``mean(max(1 - y_true y_pred, 0)^2)`` over the last axis; {0, 1} targets
    are mapped to {-1, 1} as for ``Hinge``.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.SquaredHinge()(y_true, y_pred), 4)
    0.9
    """
    _default_name = "squared_hinge"
    _per_sample = staticmethod(_squared_hinge)


class CategoricalHinge(_NumpyLoss):
    """Categorical hinge loss, for one-hot targets.

    Per sample ``max(neg - pos + 1, 0)`` with ``pos = sum(y_true y_pred)`` and
    ``neg = max((1 - y_true) y_pred)``.

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        name (str or None, default None): the loss's name (Keras's default if None).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.CategoricalHinge()(y_true, y_pred), 4)
    0.6
    """
    _default_name = "categorical_hinge"
    _per_sample = staticmethod(_categorical_hinge)


class CosineSimilarity(_NumpyLoss):
    """Negative cosine similarity between targets and predictions.

    Per sample ``-sum(l2_normalize(y_true) * l2_normalize(y_pred))`` over the last axis,
    with ``l2_normalize(x) = x / max(||x||, 1e-7)``: -1 is best (Keras 3's sign).

    Call: ``loss(y_true, y_pred, sample_weight=None)`` returns the mean over the batch as a
    float (per-sample losses times ``sample_weight``, summed, divided by the number of
    samples); ``loss.value_and_grad(y_true, y_pred, sample_weight=None)`` also returns
    d(value)/d(y_pred), shaped like y_pred.

    Args:
        axis (int, default -1): the axis of the vectors; only -1 is supported.
        name (str or None, default None): the loss's name (Keras's default if None).

    Raises:
        ValueError: an axis other than -1.

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> round(nn.losses.CosineSimilarity()(y_true, y_pred), 4)
    -0.9011
    """
    _default_name = "cosine_similarity"
    _per_sample = staticmethod(_cosine_similarity)

    def __init__(self, axis: Any = -1, name: str | None = None) -> None:
        super().__init__(name)
        if axis != -1:
            raise ValueError(f"CosineSimilarity: only axis=-1 is supported; got {axis!r}")
        self.axis = -1

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis, "name": self.name}


# ---- Keras's function forms: per-sample losses ----------------------------------------------
# keras.losses.<name>(y_true, y_pred): the loss of each sample, shape y_pred.shape[:-1], float
# of y_pred's dtype, no sample weights and no reduction (the classes' value is their mean).

def _per_sample_values(fn, per_sample, y_true, y_pred, **kw):
    t, p = _prepare(y_true, y_pred, fn)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        per, _ = per_sample(t, p, False, **kw)
    return np.asarray(per, dtype=p.dtype)


def _mse(t, p, grad):
    return np.mean((p - t) ** 2, axis=-1), None


def _mae(t, p, grad):
    return np.mean(np.abs(p - t), axis=-1), None


def mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    """Per-sample mean squared error, ``mean((y_true - y_pred)^2, axis=-1)`` (alias ``mse``).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.mean_squared_error(y_true, y_pred), 4).tolist()
    [0.04, 0.16]
    """
    return _per_sample_values("mean_squared_error", _mse, y_true, y_pred)


def mean_absolute_error(y_true: Any, y_pred: Any) -> Any:
    """Per-sample mean absolute error, ``mean(|y_true - y_pred|, axis=-1)`` (alias ``mae``).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.mean_absolute_error(y_true, y_pred), 4).tolist()
    [0.2, 0.4]
    """
    return _per_sample_values("mean_absolute_error", _mae, y_true, y_pred)


mse = mean_squared_error
mae = mean_absolute_error


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: Any = -1) -> Any:
    """Per-sample binary cross-entropy (see ``BinaryCrossentropy``).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).
        from_logits (bool, default False): y_pred are logits (the stable log-sigmoid form).
        label_smoothing (float, default 0.0): moves targets to ``y (1 - s) + s / 2``.
        axis (int, default -1): the reduced axis.

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.binary_crossentropy(y_true, y_pred), 4).tolist()
    [0.2231, 0.5108]
    """
    fn = "binary_crossentropy"
    if axis != -1:
        raise ValueError(f"{fn}: only axis=-1 is supported; got {axis!r}")
    from_logits = _check_bool(from_logits, "from_logits", fn)
    s = _check_smoothing(label_smoothing, fn)
    t, z = _prepare(y_true, y_pred, fn)
    if s:
        t = t * (1.0 - s) + 0.5 * s
    with np.errstate(over="ignore", divide="ignore"):
        if from_logits:
            e = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        else:
            p = np.clip(z, _EPSILON, 1 - _EPSILON)
            e = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    return np.mean(e, axis=-1).astype(z.dtype)


def _log_probs(z, from_logits):
    """log of the class probabilities, as the categorical kernels take them."""
    if from_logits:
        return ops.activation_forward(z, "log_softmax")
    q = z / np.sum(z, axis=-1, keepdims=True)
    return np.log(np.clip(q, _EPSILON, 1 - _EPSILON))


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: Any = -1) -> Any:
    """Per-sample categorical cross-entropy (see ``CategoricalCrossentropy``).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).
        from_logits (bool, default False): y_pred are logits (log_softmax is applied);
            otherwise y_pred is normalized by its row sum and clipped to [1e-7, 1 - 1e-7].
        label_smoothing (float, default 0.0): moves targets to ``y (1 - s) + s / C``.
        axis (int, default -1): the class axis.

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.categorical_crossentropy(y_true, y_pred), 4).tolist()
    [0.2231, 0.5108]
    """
    fn = "categorical_crossentropy"
    if axis != -1:
        raise ValueError(f"{fn}: only axis=-1 is supported; got {axis!r}")
    from_logits = _check_bool(from_logits, "from_logits", fn)
    s = _check_smoothing(label_smoothing, fn)
    t, z = _prepare(y_true, y_pred, fn)
    if s:
        t = t * (1.0 - s) + s / z.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (-np.sum(t * _log_probs(z, from_logits), axis=-1)).astype(z.dtype)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: Any = None, axis: Any = -1) -> Any:
    """Per-sample cross-entropy for integer class ids, ``-log p[y]``.

    Args:
        y_true (array-like): integer ids, shaped y_pred.shape[:-1] (or with a trailing 1).
        y_pred (array-like): predictions, (B, ..., C).
        from_logits (bool, default False): y_pred are logits.
        ignore_class (None): Keras's argument; only None is supported.
        axis (int, default -1): the class axis.

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.sparse_categorical_crossentropy([1, 0], y_pred), 4).tolist()
    [0.2231, 0.5108]
    """
    fn = "sparse_categorical_crossentropy"
    if axis != -1:
        raise ValueError(f"{fn}: only axis=-1 is supported; got {axis!r}")
    if ignore_class is not None:
        raise ValueError(f"{fn}: ignore_class is not supported; got {ignore_class!r}")
    from_logits = _check_bool(from_logits, "from_logits", fn)
    z = ops._loss_y_pred(Loss._pred(y_pred), fn)
    ids = ops._loss_ids(y_true, z, fn)
    C = z.shape[-1]
    if ids.size and (ids.min() < 0 or ids.max() >= C):
        bad = ids[(ids < 0) | (ids >= C)][0]
        raise ValueError(f"{fn}: sparse y_true must hold integer class ids in [0, C) = [0, {C}); "
                         f"got {int(bad)}")
    rows = ops._loss_rows(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = _log_probs(rows, from_logits)
    return (-lp[np.arange(rows.shape[0]), ids]).reshape(z.shape[:-1]).astype(z.dtype)


def huber(y_true: Any, y_pred: Any, delta: Any = 1.0) -> Any:
    """Per-sample Huber loss (see ``Huber``).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).
        delta (float, default 1.0): where the loss turns linear.

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.huber(y_true, y_pred), 4).tolist()
    [0.02, 0.08]
    """
    return _per_sample_values("huber", _huber, y_true, y_pred, delta=Huber(delta).delta)


def kl_divergence(y_true: Any, y_pred: Any) -> Any:
    """Per-sample ``sum(y_true log(y_true / y_pred))``, both clipped to [1e-7, 1].

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.kl_divergence(y_true, y_pred), 4).tolist()
    [0.2231, 0.5108]
    """
    return _per_sample_values("kl_divergence", _kl_divergence, y_true, y_pred)


def poisson(y_true: Any, y_pred: Any) -> Any:
    """Per-sample Poisson loss, ``mean(y_pred - y_true log(y_pred + 1e-7))``.

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.poisson(y_true, y_pred), 4).tolist()
    [0.6116, 0.7554]
    """
    return _per_sample_values("poisson", _poisson, y_true, y_pred)


def log_cosh(y_true: Any, y_pred: Any) -> Any:
    """Per-sample ``mean(log(cosh(y_pred - y_true)))``.

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.log_cosh(y_true, y_pred), 4).tolist()
    [0.0199, 0.078]
    """
    return _per_sample_values("log_cosh", _log_cosh, y_true, y_pred)


def hinge(y_true: Any, y_pred: Any) -> Any:
    """Per-sample ``mean(max(1 - y_true y_pred, 0))`` ({0, 1} labels mapped to {-1, 1}).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.hinge(y_true, y_pred), 4).tolist()
    [0.7, 0.9]
    """
    return _per_sample_values("hinge", _hinge, y_true, y_pred)


def squared_hinge(y_true: Any, y_pred: Any) -> Any:
    """Per-sample ``mean(max(1 - y_true y_pred, 0)^2)`` ({0, 1} labels mapped to {-1, 1}).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.squared_hinge(y_true, y_pred), 4).tolist()
    [0.74, 1.06]
    """
    return _per_sample_values("squared_hinge", _squared_hinge, y_true, y_pred)


def categorical_hinge(y_true: Any, y_pred: Any) -> Any:
    """Per-sample ``max(max((1 - y_true) y_pred) - sum(y_true y_pred) + 1, 0)``.

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.categorical_hinge(y_true, y_pred), 4).tolist()
    [0.4, 0.8]
    """
    return _per_sample_values("categorical_hinge", _categorical_hinge, y_true, y_pred)


def cosine_similarity(y_true: Any, y_pred: Any, axis: Any = -1) -> Any:
    """Per-sample ``-sum(l2_normalize(y_true) * l2_normalize(y_pred))`` (Keras 3's sign).

    Args:
        y_true (array-like): targets, shaped like y_pred.
        y_pred (array-like): predictions, (B, ..., C).
        axis (int, default -1): the axis of the vectors.

    Returns:
        ndarray: the per-sample losses, shaped like y_pred without its last axis (no
        reduction, no sample weights, as Keras's function forms).

    Example:

    >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
    >>> y_pred = [[0.2, 0.8], [0.6, 0.4]]
    >>> np.round(nn.losses.cosine_similarity(y_true, y_pred), 4).tolist()
    [-0.9701, -0.8321]
    """
    CosineSimilarity(axis=axis)  # validates axis
    return _per_sample_values("cosine_similarity", _cosine_similarity, y_true, y_pred)


_CLASSES = (MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, CategoricalCrossentropy,
            SparseCategoricalCrossentropy, Huber, KLDivergence, Poisson, LogCosh, Hinge,
            SquaredHinge, CategoricalHinge, CosineSimilarity)
_NAMES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "huber": Huber, "huber_loss": Huber,
    "kl_divergence": KLDivergence, "kld": KLDivergence,
    "poisson": Poisson, "log_cosh": LogCosh, "hinge": Hinge, "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge, "cosine_similarity": CosineSimilarity,
}
# The function forms, accepted by get() (Keras's compile(loss=keras.losses.huber)).
_FUNCTIONS = {
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
    binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy, huber: Huber,
    kl_divergence: KLDivergence, poisson: Poisson, log_cosh: LogCosh, hinge: Hinge,
    squared_hinge: SquaredHinge, categorical_hinge: CategoricalHinge,
    cosine_similarity: CosineSimilarity,
}
_REGISTRY = Registry("losses", "loss", _NAMES, _CLASSES)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier: Any) -> Any:
    """A Loss from a name, a class name, a serialized dict or a Loss.

    Args:
        identifier (str, dict or Loss): "mse", "mae", "binary_crossentropy",
            "categorical_crossentropy", "sparse_categorical_crossentropy", "huber", ... or a
            class name, or ``serialize``'s dict; a Loss is returned as is.

    Returns:
        Loss: a loss object.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:

    >>> nn.losses.get("mse")
    MeanSquaredError(name='mean_squared_error')
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        return _REGISTRY.lookup(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    raise ValueError(f"Could not interpret loss {identifier!r}; pass a name ({sorted(_NAMES)}) "
                     f"or a nanonet.losses.Loss")
