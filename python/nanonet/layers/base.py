"""The Layer base class: Keras's lifecycle plus an explicit backward pass.

Lifecycle of a layer:

    __init__(...)            validate the configuration (ValueError naming argument and value)
    build(input_shape)       create weights with add_weight(); input_shape includes the batch
                             axis, e.g. (None, 64) or (None, T, F)
    call(x, training=False, mask=None)
                             forward pass on NumPy arrays; with training=True keep whatever
                             backward() needs (one cached forward at a time)
    backward(dy)             given d loss / d output of the last training call: store the weight
                             gradients in self.grads (aligned with trainable_weights) and return
                             d loss / d x (None when x is integer data, e.g. token ids)
    compute_output_shape(input_shape), compute_mask(x, mask)
    get_config() / from_config(config), get_weights() / set_weights(weights)

Masks are boolean (B, T) arrays passed along a Sequential: ``compute_mask`` returns the mask for
the next layer (by default the incoming one when ``supports_masking``, else None).

Model-level conventions a layer may use:
- ``self.needs_input_grad``: False when the layer's input is the model's input, so backward may
  skip computing dx (and return None). Sequential sets it; the default is True.
- ``fused_activation`` / ``call_logits(x, training)``: a layer ending in an activation (Dense,
  Activation) reports its name; when it is "softmax" and the loss is a cross-entropy, the model
  calls ``call_logits`` instead of ``call`` during training (forward without the activation) and
  the following ``backward(dy)`` receives d loss / d logits. Layers without a trailing
  activation report None and are never asked for logits.

Every Layer subclass is registered by class name for ``nanonet.layers.deserialize``.
"""
from __future__ import annotations

import numbers
import re

import numpy as np

from .. import initializers as _initializers
from .. import regularizers as _regularizers

__all__ = ["Layer", "get_registered", "unique_name"]

_FLOAT_DTYPES = ("float32", "float64")
_LAYER_CLASSES = {}
_NAME_COUNTS = {}


def _snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def unique_name(prefix: str) -> str:
    """prefix, prefix_1, prefix_2, ... (Keras's automatic layer and model names)."""
    n = _NAME_COUNTS.get(prefix, 0)
    _NAME_COUNTS[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def get_registered(class_name: str):
    """The Layer subclass registered under class_name, or None."""
    return _LAYER_CLASSES.get(class_name)


def _check_shape(shape, what, allow_none_batch=True):
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"{what} must be a tuple of ints; got {shape!r}") from None
    for i, d in enumerate(shape):
        if d is None:
            continue
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"{what} must be a tuple of non-negative ints or None; got {shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


class Layer:
    """Base class of every layer. See the module docstring for the lifecycle."""

    supports_masking = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _LAYER_CLASSES[cls.__name__] = cls

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None,
                 input_dim=None):
        cls = type(self).__name__
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{cls}: name must be a non-empty string; got {name!r}")
        if not isinstance(trainable, (bool, np.bool_)):
            raise ValueError(f"{cls}: trainable must be True or False; got {trainable!r}")
        dt = np.dtype("float32" if dtype is None else dtype)
        if dt.name not in _FLOAT_DTYPES:
            raise ValueError(f"{cls}: dtype must be one of {_FLOAT_DTYPES}; got {dtype!r}")
        self.name = name or unique_name(_snake(cls))
        self.trainable = bool(trainable)
        self.dtype = dt.name
        self.built = False
        self.needs_input_grad = True
        self.grads = None
        self._weights = []            # arrays, in creation order
        self._weight_names = []
        self._weight_trainable = []
        self._weight_regularizers = []
        self._build_input_shape = None
        # Keras's input_shape= / input_dim= arguments: the shape (without batch axis) a
        # Sequential builds this layer for when it is the first one.
        if input_dim is not None:
            input_shape = (input_dim,)
        self._input_shape_arg = (None if input_shape is None else
                                 _check_shape(input_shape, f"{cls}: input_shape"))

    # -- weights -----------------------------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True,
                   regularizer=None, name=None):
        """Create, register and return a weight array (Keras 3 argument names and order).

        initializer: name, Initializer or callable(shape, dtype) (default "glorot_uniform");
        regularizer: None, name or Regularizer, added to ``losses`` and to the gradient.
        """
        cls = type(self).__name__
        if isinstance(shape, (str, bytes)):
            raise TypeError(f"{cls}.add_weight: shape must be a tuple of ints; got {shape!r} "
                            "(the name goes in name=)")
        shape = _check_shape((shape,) if isinstance(shape, numbers.Integral) else shape or (),
                             f"{cls}.add_weight: shape")
        if None in shape:
            raise ValueError(f"{cls}.add_weight: shape must be fully known; got {shape}")
        dt = np.dtype(self.dtype if dtype is None else dtype)
        init = _initializers.get("glorot_uniform" if initializer is None else initializer)
        value = np.array(init(shape, dtype=dt), dtype=dt, order="C")
        if value.shape != shape:
            raise ValueError(f"{cls}.add_weight: initializer {init!r} returned shape "
                             f"{value.shape}; expected {shape}")
        self._weights.append(value)
        self._weight_names.append(name or f"weight_{len(self._weights) - 1}")
        self._weight_trainable.append(bool(trainable))
        self._weight_regularizers.append(_regularizers.get(regularizer))
        return value

    def _order(self):
        """Indices of weights in Keras order: trainable ones first, then non-trainable."""
        t = [i for i, f in enumerate(self._weight_trainable) if f]
        return t + [i for i, f in enumerate(self._weight_trainable) if not f]

    @property
    def weights(self):
        return [self._weights[i] for i in self._order()]

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [w for w, f in zip(self._weights, self._weight_trainable) if f]

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [w for w, f in zip(self._weights, self._weight_trainable) if not f]

    @property
    def weight_names(self):
        return [self._weight_names[i] for i in self._order()]

    def get_weights(self):
        """Copies of ``weights`` as NumPy arrays."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Copy values into the existing weight arrays (same count and shapes, checked first)."""
        weights = list(weights)
        own = self.weights
        names = self.weight_names
        if len(weights) != len(own):
            raise ValueError(f"Layer {self.name!r} expects {len(own)} weights "
                             f"({', '.join(names) or 'none'}); got {len(weights)}")
        arrays = []
        for w, v, n in zip(own, weights, names):
            v = np.asarray(v)
            if v.shape != w.shape:
                raise ValueError(f"Layer {self.name!r} weight {n!r} has shape {w.shape}; got "
                                 f"{v.shape}")
            if v.dtype.kind not in "biuf":
                raise ValueError(f"Layer {self.name!r} weight {n!r} must be numeric; got dtype "
                                 f"{v.dtype}")
            arrays.append(v)
        for w, v in zip(own, arrays):
            w[...] = v

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"Layer {self.name!r} is not built yet, so it has no weights to "
                             "count; call build(input_shape) or run it on data first")
        return int(sum(w.size for w in self._weights))

    # -- regularization ----------------------------------------------------------------------
    @property
    def losses(self):
        """Regularization penalties of this layer's trainable weights (floats)."""
        if not self.trainable:
            return []
        return [r(w) for w, f, r in zip(self._weights, self._weight_trainable,
                                        self._weight_regularizers) if f and r is not None]

    def add_regularization_gradients(self):
        """Add each regularizer's gradient to ``self.grads`` in place (after backward)."""
        if not self.trainable or self.grads is None:
            return
        k = 0
        for w, f, r in zip(self._weights, self._weight_trainable, self._weight_regularizers):
            if not f:
                continue
            if r is not None and self.grads[k] is not None:
                r.add_gradient(self.grads[k], w)
            k += 1

    def _set_grads(self, grads_by_weight):
        """Store gradients given for every weight in creation order; keep the trainable ones."""
        self.grads = [g for g, f in zip(grads_by_weight, self._weight_trainable) if f]

    # -- build / call ------------------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights for inputs of ``input_shape`` (batch axis included)."""
        self._build_input_shape = tuple(input_shape)
        self.built = True

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(tuple(input_shape))
            self._build_input_shape = tuple(input_shape)
            self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, x, mask=None):
        return mask if self.supports_masking else None

    @property
    def fused_activation(self):
        return None

    def __call__(self, x, training=False, mask=None):
        """Build on first use from x's shape, then run ``call`` (inference unless training)."""
        x = x if isinstance(x, np.ndarray) else np.asarray(x)
        if not self.built:
            self._maybe_build((None,) + x.shape[1:])
        return self.call(x, training=training, mask=mask)

    def _float_input(self, x):
        """x as an array of this layer's dtype (no copy when it already is one)."""
        if isinstance(x, np.ndarray) and x.dtype == self.dtype:
            return x
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ValueError(f"Layer {self.name!r} expects numeric input; got dtype {x.dtype}")
        return x.astype(self.dtype)

    # -- config ------------------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            config["input_shape"] = self._input_shape_arg
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"
