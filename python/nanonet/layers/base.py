"""The Layer base class: Keras's lifecycle plus an explicit backward pass.

Lifecycle of a layer:

    __init__(...)            validate the configuration (ValueError naming argument and value)
    build(input_shape)       create weights with add_weight(); input_shape includes the batch
                             axis, e.g. (None, 64) or (None, T, F); a list of shapes for a layer
                             with several inputs (merge layers)
    forward(inputs, training=False, mask=None) -> (outputs, ctx)
                             the forward pass on NumPy arrays. ``ctx`` is what backprop needs
                             (the saved activations) when training, None at inference: nothing
                             of a call is kept on the layer, so a layer shared by several call
                             sites runs once per site and many threads may predict at once
    backprop(ctx, doutputs, need_dx=True) -> (dinputs, grads)
                             d loss / d inputs from d loss / d outputs (None when not needed or
                             when the input is integer data, e.g. token ids) and the weight
                             gradients, aligned with ``trainable_weights``; never touches the
                             layer's state
    compute_output_shape(input_shape), compute_mask(inputs, mask)
    get_config() / from_config(config), get_weights() / set_weights(weights)

Calling a layer (``layer(x)``) builds it on first use (once, under a lock, so concurrent first
calls are safe and a failed build leaves no weights behind), then runs it. Called on symbolic
tensors (``nanonet.Input``) it records a node of a graph instead (layers/node.py).

The single-call API of 0.1 stays: ``call(x, training=False, mask=None)`` runs ``forward`` and,
when training, keeps its ctx on the layer; ``backward(dy)`` runs ``backprop`` on that ctx, stores
the weight gradients in ``self.grads`` and returns dx. A custom layer may implement either pair:
``forward``/``backprop`` (shareable, thread-safe), or ``call``/``backward`` with state on the layer
(used once per step).

Masks are boolean (B, T) arrays passed beside the values: ``compute_mask`` returns the mask for
the next layers (by default the incoming one when ``supports_masking``, else None).

Conventions a model uses:
- ``fused_activation`` / ``forward_logits(inputs, training, mask)``: a layer ending in an
  activation (Dense, Activation) reports its name; when it is "softmax", the layer's output is a
  model output and the loss is a cross-entropy, training asks for the logits instead (forward
  without the activation) and ``backprop`` on that ctx receives d loss / d logits. Layers without
  a trailing activation report None and are never asked for logits. (``call_logits`` is the
  single-call form.)
- ``needs_input_grad``: the ``need_dx`` the single-call ``backward`` passes on (default True).

Saving protocol (what nanonet.saving uses, and all it uses): ``get_config()``; the variables
``weights`` / ``weight_names`` / ``set_weights``; the random state ``get_rng_state()`` /
``set_rng_state(state)`` of every Generator the layer owns.

Every Layer subclass is registered by class name for ``nanonet.layers.deserialize``.
"""
from __future__ import annotations

import contextlib
import numbers
import re
import threading
from typing import Any

import numpy as np

from .. import initializers as _initializers
from .. import regularizers as _regularizers
from .node import Node, SymbolicTensor, flatten_inputs, fmt_shape, is_symbolic

__all__ = ["Layer", "get_registered", "unique_name", "skip_initializers"]

_FLOAT_DTYPES = ("float32", "float64")
_LAYER_CLASSES = {}
_NAME_COUNTS = {}
_NAME_LOCK = threading.Lock()
# Building is rare and must happen once: one re-entrant lock for every build (a model builds its
# layers while holding it).
BUILD_LOCK = threading.RLock()
_LOCAL = threading.local()


@contextlib.contextmanager
def skip_initializers() -> Any:
    """Inside the block, ``add_weight`` on this thread makes zeros instead of calling the
    initializer: loading a model builds its layers without drawing from any random stream (the
    weights come from the file)."""
    old = getattr(_LOCAL, "skip_init", False)
    _LOCAL.skip_init = True
    try:
        yield
    finally:
        _LOCAL.skip_init = old


def _snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def unique_name(prefix: str) -> str:
    """prefix, prefix_1, prefix_2, ... (Keras's automatic layer and model names)."""
    with _NAME_LOCK:
        n = _NAME_COUNTS.get(prefix, 0)
        _NAME_COUNTS[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def get_registered(class_name: str) -> Any:
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
    """Base class of every layer; subclass it to write your own.

    A layer validates its configuration in ``__init__``, makes its weights in
    ``build(input_shape)`` with ``add_weight``, and implements the pair
    ``forward(inputs, training=False, mask=None) -> (outputs, ctx)`` and
    ``backprop(ctx, dy, need_dx=True) -> (dinputs, grads)`` (ctx: what the backward needs,
    None at inference; grads aligned with ``trainable_weights``). Calling the layer builds it
    on first use. See the module docstring for the whole protocol.

    Args:
        name (str or None, default None): the layer's name (unique by default).
        trainable (bool, default True): whether fit updates its weights.
        dtype (str or None, default None): "float32" (default) or "float64".
        input_shape (tuple or None, default None): shape of one sample, for the first layer of
            a Sequential.
        input_dim (int or None, default None): shorthand for ``input_shape=(input_dim,)``.

    Raises:
        ValueError: a bad name, trainable flag or dtype.

    Example:

    >>> class PerFeatureScale(nn.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.w = self.add_weight((input_shape[-1],), initializer="ones", name="w")
    ...     def forward(self, x, training=False, mask=None):
    ...         return x * self.w, (x if training else None)
    ...     def backprop(self, ctx, dy, need_dx=True):
    ...         return dy * self.w, [(dy * ctx).sum(axis=0)]
    >>> layer = PerFeatureScale()
    >>> layer(np.full((2, 3), 2.0, np.float32)).tolist()
    [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    >>> layer.count_params()
    3
    """

    supports_masking = False
    # Keyword arguments of a call that are options rather than tensors (MultiHeadAttention's
    # use_causal_mask, ...). Called on symbolic tensors, the layer records them on the node; the
    # graph saves them with the node and passes them to forward, compute_output_shape and
    # compute_mask of that call site only (so one layer may be called with different options).
    call_kwargs = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _LAYER_CLASSES[cls.__name__] = cls

    def __init__(self, name: str | None = None, trainable: bool = True, dtype: Any = None,
                 input_shape: Any = None, input_dim: int | None = None) -> None:
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
        self._inbound_nodes = []      # graph call sites (Node), in call order
        self._ctx = None              # the single-call API's saved forward (call / backward)
        # Keras's input_shape= / input_dim= arguments: the shape (without batch axis) a
        # Sequential builds this layer for when it is the first one.
        if input_dim is not None:
            input_shape = (input_dim,)
        self._input_shape_arg = (None if input_shape is None else
                                 _check_shape(input_shape, f"{cls}: input_shape"))

    # -- weights -----------------------------------------------------------------------------
    def add_weight(self, shape: Any = None, initializer: Any = None, dtype: Any = None,
                   trainable: bool = True, regularizer: Any = None, name: str | None = None) -> Any:
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
        if getattr(_LOCAL, "skip_init", False):
            value = np.zeros(shape, dtype=dt)
        else:
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
    def weights(self) -> Any:
        return [self._weights[i] for i in self._order()]

    @property
    def trainable_weights(self) -> Any:
        if not self.trainable:
            return []
        return [w for w, f in zip(self._weights, self._weight_trainable) if f]

    @property
    def non_trainable_weights(self) -> Any:
        if not self.trainable:
            return self.weights
        return [w for w, f in zip(self._weights, self._weight_trainable) if not f]

    @property
    def weight_names(self) -> Any:
        return [self._weight_names[i] for i in self._order()]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of ``weights`` as NumPy arrays."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Any) -> None:
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
    def losses(self) -> Any:
        """Regularization penalties of this layer's trainable weights (floats)."""
        if not self.trainable:
            return []
        return [r(w) for w, f, r in zip(self._weights, self._weight_trainable,
                                        self._weight_regularizers) if f and r is not None]

    def regularized_weights(self) -> Any:
        """(weight, regularizer) for each trainable weight that has a regularizer."""
        if not self.trainable:
            return []
        return [(w, r) for w, f, r in zip(self._weights, self._weight_trainable,
                                          self._weight_regularizers) if f and r is not None]

    def add_regularization_gradients(self) -> Any:
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
        self.grads = self._trainable_grads(grads_by_weight)

    def _trainable_grads(self, grads_by_weight):
        """Gradients given for every weight in creation order -> those aligned with
        ``trainable_weights`` (none when the layer is frozen)."""
        if not self.trainable:
            return []
        return [g for g, f in zip(grads_by_weight, self._weight_trainable) if f]

    # -- build / call ------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included)."""
        self._build_input_shape = input_shape
        self.built = True

    def _maybe_build(self, input_shape):
        """Build once: under the build lock, and all or nothing (a build that raises leaves the
        layer unbuilt, without weights)."""
        if self.built:
            return
        with BUILD_LOCK:
            if self.built:
                return
            n = len(self._weights)
            try:
                self.build(input_shape)
            except BaseException:
                for lst in (self._weights, self._weight_names, self._weight_trainable,
                            self._weight_regularizers):
                    del lst[n:]
                self.built = False
                raise
            self._build_input_shape = input_shape
            self.built = True

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape if isinstance(input_shape, list) else tuple(input_shape)

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        return mask if self.supports_masking else None

    @property
    def fused_activation(self) -> Any:
        return None

    @property
    def output_dtype(self) -> Any:
        """The dtype of this layer's outputs (its float dtype)."""
        return self.dtype

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        """(outputs, ctx); see the module docstring. This default serves layers written against
        the single-call API (``call`` / ``backward`` with state on the layer)."""
        if type(self).call is Layer.call:  # neither pair overridden: the identity
            return inputs, None
        y = self.call(inputs, training=training, mask=mask)
        return y, (_LEGACY_CTX if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        """(dinputs, grads); see the module docstring. This default serves layers written
        against the single-call API."""
        if ctx is None:
            return dy, []
        self.needs_input_grad = need_dx
        dx = self.backward(dy)
        return dx, list(self.grads or [])

    def forward_logits(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        """(logits, ctx) for a layer whose ``fused_activation`` is not None."""
        if type(self).call_logits is not Layer.call_logits:  # single-call layers
            return self.call_logits(inputs, training=training), \
                (_LEGACY_CTX if training else None)
        raise TypeError(f"{type(self).__name__} reports fused_activation "
                        f"{self.fused_activation!r} but defines neither forward_logits nor "
                        "call_logits")

    def call(self, x: Any, training: bool = False, mask: Any = None, **kwargs: Any) -> Any:
        """Run ``forward``; when training, keep its ctx for ``backward``. kwargs: the options
        named in ``call_kwargs``."""
        y, ctx = self.forward(x, training=training, mask=mask, **kwargs)
        if training:
            self._ctx = ctx
        return y

    def call_logits(self, x: Any, training: bool = True) -> Any:
        """``forward_logits``, keeping its ctx for ``backward`` when training."""
        y, ctx = self.forward_logits(x, training=training)
        if training:
            self._ctx = ctx
        return y

    def backward(self, dy: Any) -> Any:
        """d loss / d x of the last ``call(x, training=True)``; stores the weight gradients in
        ``self.grads``."""
        ctx = self._ctx
        if ctx is None:
            raise ValueError(f"Layer {self.name!r}: backward() needs a preceding "
                             "call(x, training=True)")
        self._ctx = None
        dx, grads = self.backprop(ctx, dy, need_dx=self.needs_input_grad)
        self.grads = grads
        return dx

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Build on first use from the inputs' shapes, then run (inference unless
        training=True). On symbolic tensors (nanonet.Input), record a node instead."""
        if args:
            inputs, args = args[0], args[1:]
        elif "inputs" in kwargs:
            inputs = kwargs.pop("inputs")
        else:
            raise TypeError(f"{type(self).__name__}.__call__: missing the inputs")
        if is_symbolic(inputs):
            if args:
                raise TypeError(f"{type(self).__name__} {self.name!r}: pass call arguments by "
                                "keyword when calling on symbolic tensors")
            return self._call_symbolic(inputs, kwargs)
        if isinstance(inputs, (list, tuple)):
            inputs = [v if isinstance(v, np.ndarray) else np.asarray(v) for v in inputs]
        elif not isinstance(inputs, np.ndarray):
            inputs = np.asarray(inputs)
        if not self.built:
            self._maybe_build(_batch_shapes(inputs))
        return self.call(inputs, *args, **kwargs)

    # -- graphs ------------------------------------------------------------------------------
    def _symbolic_inputs(self, inputs, kwargs):
        """(flat inbound tensors, single, node kwargs) for a call on symbolic tensors; layers
        whose call takes tensors by keyword (LSTM's initial_state) fold them in here. The node
        kwargs are the ``call_kwargs`` options given (``training`` is not recorded)."""
        flat, single = flatten_inputs(inputs, f"{type(self).__name__} {self.name!r}")
        options = {}
        for k, v in kwargs.items():
            if k != "training" and k not in self.call_kwargs:
                raise TypeError(f"{type(self).__name__} {self.name!r}: unexpected call argument "
                                f"{k!r} on symbolic inputs")
            if is_symbolic(v):
                raise TypeError(f"{type(self).__name__} {self.name!r}: {k} must not be symbolic")
            if k != "training":
                if v is not None and not isinstance(v, (bool, int, float, str)):
                    raise TypeError(f"{type(self).__name__} {self.name!r}: {k} must be a bool, "
                                    f"number, string or None; got {type(v).__name__}")
                options[k] = v
        return flat, single, options

    def _check_input_shapes(self, shapes):
        """Called before recording a node of a built layer: ValueError when the inputs cannot be
        what the layer was built for (the feature axis differs)."""
        built = self._build_input_shape
        if isinstance(shapes, list) or not isinstance(built, tuple) or not built or not shapes:
            return
        if built[-1] is not None and shapes[-1] is not None and built[-1] != shapes[-1]:
            raise ValueError(f"{type(self).__name__} {self.name!r} was built for inputs of shape "
                             f"{fmt_shape(built)}; it is called on shape {fmt_shape(shapes)}")

    def _call_symbolic(self, inputs, kwargs):
        flat, single, kwargs = self._symbolic_inputs(inputs, kwargs)
        shapes = flat[0].shape if single else [t.shape for t in flat]
        if self.built:
            self._check_input_shapes(shapes)
        else:
            self._maybe_build(shapes)
        out_shape = (self.compute_output_shape(shapes, **kwargs) if kwargs
                     else self.compute_output_shape(shapes))
        single_out = not isinstance(out_shape, list)
        out_shapes = [out_shape] if single_out else out_shape
        with BUILD_LOCK:
            node_index = len(self._inbound_nodes)
            outputs = [SymbolicTensor(tuple(s), self._output_dtype_at(i), self, node_index, i)
                       for i, s in enumerate(out_shapes)]
            self._inbound_nodes.append(Node(self, flat, single, kwargs, outputs, single_out))
        return outputs[0] if single_out else list(outputs)

    def _output_dtype_at(self, index):
        return self.output_dtype

    # -- random state (saving protocol) -------------------------------------------------------
    def get_rng_state(self) -> Any:
        """{attribute: bit-generator state} of every numpy Generator this layer owns (its own
        ``seed=`` stream); {} when it draws from nanonet's Generator."""
        return {k: v.bit_generator.state for k, v in sorted(vars(self).items())
                if isinstance(v, np.random.Generator)}

    def set_rng_state(self, state: Any) -> Any:
        """Restore ``get_rng_state()``'s dict (ValueError when it does not match the layer)."""
        if not isinstance(state, dict):
            raise ValueError(f"Layer {self.name!r}: random state must be a dict; got "
                             f"{type(state).__name__}")
        for attr, st in state.items():
            gen = vars(self).get(attr)
            if not isinstance(gen, np.random.Generator) or not isinstance(st, dict) or \
                    st.get("bit_generator") != type(gen.bit_generator).__name__:
                raise ValueError(f"random state {attr!r} does not match layer {self.name!r}")
            try:
                gen.bit_generator.state = st
            except (TypeError, ValueError, KeyError, OverflowError) as e:
                raise ValueError(f"invalid random state {attr!r} of layer {self.name!r}: "
                                 f"{e}") from None

    def _float_input(self, x):
        """x as an array of this layer's dtype (no copy when it already is one)."""
        if isinstance(x, np.ndarray) and x.dtype == self.dtype:
            return x
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ValueError(f"Layer {self.name!r} expects numeric input; got dtype {x.dtype}")
        return x.astype(self.dtype)

    # -- config ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            config["input_shape"] = self._input_shape_arg
        return config

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"


class _LegacyCtx:
    """The ctx of a single-call layer: its state lives on the layer itself."""
    __slots__ = ()

    def __repr__(self):
        return "<ctx kept on the layer>"


_LEGACY_CTX = _LegacyCtx()


def _batch_shapes(inputs):
    """(None,) + x.shape[1:] for an array; a list of those for a list of arrays."""
    if isinstance(inputs, list):
        return [(None,) + tuple(v.shape[1:]) for v in inputs]
    return (None,) + tuple(inputs.shape[1:])
