"""Normalization layers with Keras 3 names and defaults: BatchNormalization, LayerNormalization.

Both normalize over the last axis (features F, the channels of (B, H, W, C) images) of (B, F),
(B, T, F) or (B, H, W, C) input (``axis=-1``, the
only axis supported). Kernels: ``nanonet.ops.batch_norm_forward/backward`` and
``layer_norm_forward/backward``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from .base import Layer

__all__ = ["BatchNormalization", "LayerNormalization"]


def _flag(value, name, cls):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{cls}: {name} must be True or False; got {value!r}")
    return bool(value)


def _epsilon(value, cls):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value <= 0:
        raise ValueError(f"{cls}: epsilon must be a number > 0; got {value!r}")
    return float(value)


def _axis(value, cls):
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{cls}: axis must be an int (the last axis); got {value!r}")
    return int(value)


def _check_axis(axis, input_shape, layer):
    ndim = len(input_shape)
    if ndim < 2:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: input must be (batch, ..., "
                         f"features); got shape {tuple(input_shape)}")
    if axis not in (-1, ndim - 1):
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: only the last axis is "
                         f"supported (axis=-1 or {ndim - 1}); got axis={axis}")
    if input_shape[-1] is None:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: the feature axis must be "
                         f"known; got input shape {tuple(input_shape)}")
    return int(input_shape[-1])


def _ser(obj, module):
    return None if obj is None else module.serialize(obj)


class _Normalization(Layer):
    """Shared parts: gamma/beta weights, input checks, config."""
    supports_masking = True

    def __init__(self, axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                 beta_regularizer, gamma_regularizer, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.axis = _axis(axis, cls)
        self.epsilon = _epsilon(epsilon, cls)
        self.center = _flag(center, "center", cls)
        self.scale = _flag(scale, "scale", cls)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)
        self.gamma = None
        self.beta = None
        self._features = None

    def _build_affine(self, input_shape):
        F = _check_axis(self.axis, tuple(input_shape), self)
        if self.scale:
            self.gamma = self.add_weight(shape=(F,), initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, name="gamma")
        if self.center:
            self.beta = self.add_weight(shape=(F,), initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, name="beta")
        return F

    def _input(self, x):
        if self._features is None:
            raise ValueError(f"{type(self).__name__} {self.name!r} is not built; call "
                             "build(input_shape) or the layer itself first")
        x = self._float_input(x)
        F = self._features
        if x.ndim < 2 or x.shape[-1] != F:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input must be (batch, ..., "
                             f"{F}); got shape {x.shape}")
        return x

    def _dy(self, dy, shape):
        dy = np.asarray(dy)
        if dy.shape != shape:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {shape}; got {dy.shape}")
        return np.ascontiguousarray(dy, dtype=self.dtype)

    def _grads(self, dgamma, dbeta):
        grads = ([dgamma] if self.scale else []) + ([dbeta] if self.center else [])
        return grads if self.trainable else []

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": _initializers.serialize(self.beta_initializer),
                "gamma_initializer": _initializers.serialize(self.gamma_initializer),
                "beta_regularizer": _ser(self.beta_regularizer, _regularizers),
                "gamma_regularizer": _ser(self.gamma_regularizer, _regularizers)}


class BatchNormalization(_Normalization):
    """Normalizes each feature with batch statistics in training, moving ones at inference.

    ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta`` per feature (the last axis).

    In training (``training=True`` and the layer trainable) mean and the biased variance come
    from the batch (over B, or B * T for sequences; only unmasked steps count when a (B, T)
    mask arrives) and the moving statistics follow Keras:
    ``moving = moving * momentum + batch * (1 - momentum)``. Otherwise (inference, or a frozen
    layer, as in Keras 3) the moving statistics are used and nothing changes.

    Weights, Keras's order: gamma (if scale), beta (if center) trainable; moving_mean,
    moving_variance non-trainable; each (F,).

    Args:
        axis (int, default -1): the feature axis; only -1 (the last) is supported.
        momentum (float, default 0.99): weight of the old value in the moving statistics.
        epsilon (float, default 0.001): added to the variance, > 0.
        center (bool, default True): learn the offset beta.
        scale (bool, default True): learn the scale gamma.
        beta_initializer (default "zeros"), gamma_initializer (default "ones"),
            moving_mean_initializer (default "zeros"), moving_variance_initializer (default
            "ones"): initializers.
        beta_regularizer, gamma_regularizer (default None): penalties.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, F) or (B, T, F). Output shape: the same.

    Raises:
        ValueError: momentum outside [0, 1], epsilon <= 0, or (when built) an axis other than
            the last.

    Example:

    >>> layer = nn.layers.BatchNormalization()
    >>> x = np.array([[1.0], [3.0]], np.float32)
    >>> np.round(layer(x, training=True), 2).tolist()
    [[-1.0], [1.0]]
    >>> [round(float(v), 2) for v in layer.moving_mean]
    [0.02]
    """

    def __init__(self, axis: Any = -1, momentum: float = 0.99, epsilon: float = 0.001,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, **kwargs: Any) -> None:
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         beta_regularizer, gamma_regularizer, **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or \
                not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be a number in [0, 1]; got "
                             f"{momentum!r}")
        self.momentum = float(momentum)
        self.moving_mean_initializer = _initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = _initializers.get(moving_variance_initializer)
        self.moving_mean = None
        self.moving_variance = None

    def build(self, input_shape: Any) -> None:
        self._features = self._build_affine(input_shape)
        F = self._features
        self.moving_mean = self.add_weight(shape=(F,), initializer=self.moving_mean_initializer,
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=(F,),
                                               initializer=self.moving_variance_initializer,
                                               trainable=False, name="moving_variance")
        self.built = True

    def _mask(self, mask, x):
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.shape != x.shape[:-1]:
            raise ValueError(f"BatchNormalization {self.name!r}: mask must have the input's "
                             f"leading shape {x.shape[:-1]}; got {mask.shape}")
        return mask

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = self._input(x)
        mask = self._mask(mask, x)
        use_batch = bool(training) and self.trainable
        y, mean, inv_std = ops.batch_norm_forward(
            x, self.gamma, self.beta, self.moving_mean, self.moving_variance, use_batch,
            self.momentum, self.epsilon, mask)
        return y, ((x, mean, inv_std, mask, use_batch) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        x, mean, inv_std, mask, use_batch = ctx
        dx, dgamma, dbeta = ops.batch_norm_backward(self._dy(dy, x.shape), x, mean, inv_std,
                                                    self.gamma, use_batch, mask)
        return (dx if need_dx else None), self._grads(dgamma, dbeta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum,
                "moving_mean_initializer": _initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer":
                    _initializers.serialize(self.moving_variance_initializer)}

    def __repr__(self):
        return (f"<BatchNormalization name={self.name!r}, momentum={self.momentum}, "
                f"epsilon={self.epsilon}>")


class LayerNormalization(_Normalization):
    """Normalizes each sample over its last axis, the same in training and inference.

    ``y = (x - mean) / sqrt(var + epsilon) * gamma + beta``, with mean and (biased) variance
    over the F features of each row. Weights: gamma (if scale), beta (if center), each (F,).

    Args:
        axis (int, default -1): the normalized axis; only -1 (the last) is supported.
        epsilon (float, default 0.001): added to the variance, > 0.
        center (bool, default True): learn the offset beta.
        scale (bool, default True): learn the scale gamma.
        beta_initializer (default "zeros"), gamma_initializer (default "ones"): initializers.
        beta_regularizer, gamma_regularizer (default None): penalties.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, F) or (B, T, F). Output shape: the same.

    Raises:
        ValueError: epsilon <= 0, or (when built) an axis other than the last.

    Example:

    >>> layer = nn.layers.LayerNormalization()
    >>> y = layer(np.array([[1.0, 2.0, 3.0]], np.float32))
    >>> [round(float(v), 2) for v in y[0]]
    [-1.22, 0.0, 1.22]
    """

    def __init__(self, axis: Any = -1, epsilon: float = 0.001, center: bool = True,
                 scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, **kwargs: Any) -> None:
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         beta_regularizer, gamma_regularizer, **kwargs)

    def build(self, input_shape: Any) -> None:
        self._features = self._build_affine(input_shape)
        self.built = True

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = self._input(x)
        y, mean, inv_std = ops.layer_norm_forward(x, self.gamma, self.beta, self.epsilon)
        return y, ((x, mean, inv_std) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        x, mean, inv_std = ctx
        dx, dgamma, dbeta = ops.layer_norm_backward(self._dy(dy, x.shape), x, mean, inv_std,
                                                    self.gamma)
        return (dx if need_dx else None), self._grads(dgamma, dbeta)

    # DP-SGD (nanonet.privacy): example b's dgamma / dbeta are sums over its rows
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        x, mean, inv_std = ctx
        dy = self._dy(dy, x.shape)
        dx = None
        if need_dx:
            dx = ops.layer_norm_backward(dy, x, mean, inv_std, self.gamma)[0]
        B, F = x.shape[0], x.shape[-1]
        xhat = (x - mean[..., None]) * inv_std[..., None]
        parts = self._grads((dy * xhat).reshape(B, -1, F), dy.reshape(B, -1, F))
        sq = sum(np.square(p.sum(axis=1, dtype=np.float64)).sum(axis=1) for p in parts)
        return dx, np.zeros(B) + sq, parts

    def dp_grads(self, parts: Any, scale: bool) -> Any:
        return [np.tensordot(scale, p.sum(axis=1), axes=1).astype(self.dtype) for p in parts]

    def __repr__(self):
        return f"<LayerNormalization name={self.name!r}, epsilon={self.epsilon}>"
