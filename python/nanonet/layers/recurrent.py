"""Recurrent layers: LSTM, GRU and SimpleRNN over whole sequences (one C++ call forward, one
backward), Bidirectional, and Masking.

Weight layouts (Keras's): LSTM kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,), gate order
i, f, c, o (cpp/nanonet/lstm.hpp); GRU kernel (I, 3H), recurrent_kernel (H, 3H), gate order
z, r, h, bias (2, 3H) with reset_after=True (Keras's default) else (3H,); SimpleRNN kernel
(I, H), recurrent_kernel (H, H), bias (H,) (cpp/nanonet/gru.hpp). Bidirectional wraps any of
the three; with return_sequences its outputs at masked steps are zero, as in Keras.

Masks: a (B, T) boolean mask from Embedding(mask_zero=True) or Masking marks padding steps. The
LSTM carries its state over a masked step and outputs it there (Keras 3 semantics), so pre- and
post-padding both work and a fully padded row returns the initial state (GRU and SimpleRNN
alike). With
return_sequences=True the mask passes on to the next layer.

Dropout (training only, Keras semantics, 0 < rate < 1): ``dropout`` draws one (B, I) mask per
batch for the inputs, ``recurrent_dropout`` one (B, H) mask for the recurrent state, both reused
at every step (variational dropout, Gal & Ghahramani) and shared by the four gates, scaled by
1 / (1 - rate). They come from the layer's own Generator when ``seed`` is given, else from
nanonet's (nanonet.set_seed).
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import random as _random
from .. import regularizers as _regularizers
from .base import Layer
from .node import flatten_inputs as _flatten_symbolic

__all__ = ["LSTM", "GRU", "SimpleRNN", "Bidirectional", "Masking"]

_LSTM_ACTIVATIONS = ("tanh", "sigmoid", "relu", "linear")


def _act(value, name, cls="LSTM"):
    if value is None:
        return "linear"
    if isinstance(value, str) and value in _LSTM_ACTIVATIONS:
        return value
    raise ValueError(f"{cls}: {name} must be None or one of {_LSTM_ACTIVATIONS}; got {value!r}")


def _flag(value, name, cls):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{cls}: {name} must be True or False; got {value!r}")
    return bool(value)


def _rate(value, name, cls="LSTM"):
    # Keras clips silently; a rate outside [0, 1] is a mistake worth an error here.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{cls}: {name} must be a number in [0, 1]; got {value!r}")
    return float(value)


def _ser(obj, module):
    return None if obj is None else module.serialize(obj)


class _UnitForgetBias(_initializers.Initializer):
    """Keras's unit_forget_bias: the base initializer for gates i, c, o and ones for f."""

    def __init__(self, base, units):
        self.base = base
        self.units = units

    def __call__(self, shape, dtype=None):
        H = self.units
        dt = np.dtype("float32" if dtype is None else dtype)
        return np.concatenate([np.asarray(self.base((H,), dtype=dt), dt), np.ones(H, dt),
                               np.asarray(self.base((2 * H,), dtype=dt), dt)])

    def get_config(self):
        return {}


class _StateInputs:
    """The call protocol of a layer whose initial states come as ``initial_state=`` and travel as
    extra inputs [x, *states] (recurrent layers, Bidirectional). The class defines
    ``_state_list(initial_state)`` -> list of states and reports their gradients as
    ``initial_state_grads`` after ``backward``."""

    def __call__(self, *args, initial_state=None, **kwargs):
        if initial_state is not None:
            kwargs["initial_state"] = initial_state
        return super().__call__(*args, **kwargs)

    def call(self, x, training=False, mask=None, initial_state=None):
        """The single-call API: x (B, T, I) and an optional initial_state; see the class
        docstring."""
        inputs = x if initial_state is None else [x] + self._state_list(initial_state)
        y, ctx = self.forward(inputs, training=training, mask=mask)
        if training:
            self._ctx = ctx
        return y

    def backward(self, dy):
        dx = super().backward(dy)
        if isinstance(dx, list):
            self.initial_state_grads = dx[1:]
            return dx[0]
        self.initial_state_grads = None
        return dx

    def _symbolic_inputs(self, inputs, kwargs):
        state = kwargs.pop("initial_state", None)
        flat, single, kwargs = super()._symbolic_inputs(inputs, kwargs)
        if state is None:
            return flat, single, kwargs
        what = f"{type(self).__name__} {self.name!r}"
        if not single:
            raise TypeError(f"{what}: pass the sequence alone and the states as "
                            f"initial_state=[{', '.join(self._state_names)}]")
        states, _ = _flatten_symbolic(self._state_list(state), what)
        return flat + states, False, kwargs

    def _check_input_shapes(self, shapes):
        super()._check_input_shapes(shapes[0] if isinstance(shapes, list) else shapes)

    def _maybe_build(self, input_shape):
        # Called with [x, states...] shapes when the layer first runs with an initial state.
        super()._maybe_build(input_shape[0] if isinstance(input_shape, list) else input_shape)


class _Recurrent(_StateInputs, Layer):
    """What LSTM, GRU and SimpleRNN share: Keras 3's RNN arguments, the weights kernel (I, G),
    recurrent_kernel (H, G) and bias, initial states as extra inputs, masks, per-sequence dropout
    masks, return_sequences / return_state. A subclass sets ``_state_names`` and ``_gates`` and
    implements ``_bias_shape``, ``_bias_initializer``, ``_run`` and ``_run_backward``."""
    supports_masking = True
    _state_names = ("h0",)
    _gates = 1

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, seed=None,
                 **kwargs):
        cls = type(self).__name__
        for ignored in ("unroll", "implementation", "use_cudnn", "time_major",
                        "zero_output_for_mask"):
            kwargs.pop(ignored, None)
        if kwargs.pop("stateful", False):
            raise ValueError(f"{cls}: stateful=True is not supported")
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"{cls}: units must be a positive int; got {units!r}")
        self.units = int(units)
        self.activation = _act(activation, "activation", cls)
        self.use_bias = _flag(use_bias, "use_bias", cls)
        self.return_sequences = _flag(return_sequences, "return_sequences", cls)
        self.return_state = _flag(return_state, "return_state", cls)
        self.go_backwards = _flag(go_backwards, "go_backwards", cls)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.recurrent_initializer = _initializers.get(recurrent_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = _regularizers.get(recurrent_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.dropout = _rate(dropout, "dropout", cls)
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout", cls)
        self.seed = seed
        self._generator = _random.make_generator(seed, cls)
        self.kernel = self.recurrent_kernel = self.bias = None
        self.initial_state_grads = None

    # -- build -------------------------------------------------------------------------------
    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input shape must be (batch, "
                             f"timesteps, features) with known features; got {input_shape}")
        G = self._gates * self.units
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), G),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, G),
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                name="recurrent_kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=self._bias_shape(),
                                        initializer=self._bias_initializer(),
                                        regularizer=self.bias_regularizer, name="bias")
        self.built = True

    # -- forward / backward ------------------------------------------------------------------
    def _state_list(self, initial_state):
        n = len(self._state_names)
        if n == 1 and not isinstance(initial_state, (list, tuple)):
            return [initial_state]
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != n:
            names = ", ".join(s for s in self._state_names)
            raise ValueError(f"{type(self).__name__} {self.name!r}: initial_state must be "
                             f"[{names}], each (batch, {self.units}); got "
                             f"{type(initial_state).__name__}")
        return list(initial_state)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        input_shape = tuple(input_shape)
        B = input_shape[0]
        out = (B, input_shape[1], self.units) if self.return_sequences else (B, self.units)
        if self.return_state:
            return [out] + [(B, self.units)] * len(self._state_names)
        return out

    def compute_mask(self, x, mask=None):
        if isinstance(mask, list):
            mask = mask[0]
        out = mask if self.return_sequences else None
        return [out] + [None] * len(self._state_names) if self.return_state else out

    def _dropout_mask(self, shape, rate):
        rng = self._generator if self._generator is not None else _random.get_generator()
        keep = rng.random(shape) >= rate
        return keep.astype(self.dtype) * np.dtype(self.dtype).type(1.0 / (1.0 - rate))

    def _states(self, states, B):
        out = []
        for name, s in zip(self._state_names, states):
            s = np.ascontiguousarray(s, dtype=self.dtype)
            if s.shape != (B, self.units):
                raise ValueError(f"{type(self).__name__} {self.name!r}: initial_state {name} "
                                 f"must be ({B}, {self.units}); got {s.shape}")
            out.append(s)
        return out

    def forward(self, inputs, training=False, mask=None):
        """inputs: x (B, T, I), or [x, *initial states] (each (B, H))."""
        cls, n = type(self).__name__, len(self._state_names)
        had_state = isinstance(inputs, (list, tuple))
        if had_state:
            if len(inputs) != 1 + n:
                raise ValueError(f"{cls} {self.name!r}: inputs must be x or [x, "
                                 f"{', '.join(self._state_names)}]; got a list of {len(inputs)}")
            x, states = inputs[0], inputs[1:]
            if isinstance(mask, (list, tuple)):
                mask = mask[0]
        else:
            x, states = inputs, None
        x = self._float_input(x)
        I = self.kernel.shape[0]
        if x.ndim != 3 or x.shape[2] != I:
            raise ValueError(f"{cls} {self.name!r}: input must be (batch, timesteps, {I}); got "
                             f"shape {x.shape}")
        B, T = x.shape[:2]
        states = [None] * n if states is None else self._states(states, B)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (B, T):
                raise ValueError(f"{cls} {self.name!r}: mask must be (batch, timesteps) = "
                                 f"{(B, T)}; got {mask.shape}")
            if mask.all():
                mask = None  # nothing masked: the faster unmasked path gives the same result
        idm = rdm = None
        if training and 0.0 < self.dropout < 1.0:
            idm = self._dropout_mask((B, I), self.dropout)
        if training and 0.0 < self.recurrent_dropout < 1.0:
            rdm = self._dropout_mask((B, self.units), self.recurrent_dropout)
        y, finals, cache = self._run(x, states, mask, idm, rdm, bool(training))
        out = [y] + finals if self.return_state else y
        return out, ((cache, had_state, y.shape) if training else None)

    def backprop(self, ctx, dy, need_dx=True):
        """dy for the output, or [dy, d final states...] with return_state (None entries
        allowed). Returns dx, or [dx, d initial states...] when the forward had an initial
        state."""
        cache, had_state, dy, dstates = self._output_grads(ctx, dy)
        dx, dk, drk, db, dinit = self._run_backward(dy, dstates, cache, need_dx)
        grads = self._trainable_grads([dk, drk, db] if self.use_bias else [dk, drk])
        return ([dx] + dinit if had_state else dx), grads

    def _output_grads(self, ctx, dy):
        """(cache, had_state, dy, [d final states]) checked, for the kernel's backward."""
        cache, had_state, y_shape = ctx
        n = len(self._state_names)
        dstates = [None] * n
        if self.return_state and isinstance(dy, (list, tuple)):
            dy, *dstates = (list(dy) + [None] * n)[:1 + n]
        arrays = [None if a is None else np.ascontiguousarray(a, dtype=self.dtype)
                  for a in [dy] + dstates]
        dy, dstates = arrays[0], arrays[1:]
        if dy is not None and dy.shape != y_shape:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {y_shape}; got {dy.shape}")
        return cache, had_state, dy, dstates

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": _initializers.serialize(self.recurrent_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _ser(self.kernel_regularizer, _regularizers),
                "recurrent_regularizer": _ser(self.recurrent_regularizer, _regularizers),
                "bias_regularizer": _ser(self.bias_regularizer, _regularizers),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "seed": self.seed}

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r}, units={self.units}, "
                f"return_sequences={self.return_sequences}>")


class LSTM(_Recurrent):
    """Long Short-Term Memory layer (Hochreiter & Schmidhuber, 1997).

    For each time step t, with gates in Keras's order i, f, c, o::

        z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias            (B, 4H)
        i, f, o = recurrent_activation(z_i), recurrent_activation(z_f), recurrent_activation(z_o)
        c_t = f * c_{t-1} + i * activation(z_c)
        h_t = o * activation(c_t)

    The whole sequence, forward or backward, is one call into C++. Weight layout (Keras's):
    kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,).

    Args:
        units (int): hidden size H.
        activation (str or None, default "tanh"): tanh, sigmoid, relu, linear (None).
        recurrent_activation (str or None, default "sigmoid"): activation of the gates.
        use_bias (bool, default True): add a bias.
        kernel_initializer (default "glorot_uniform"), recurrent_initializer (default
            "orthogonal"), bias_initializer (default "zeros"): initializers.
        unit_forget_bias (bool, default True): start the forget-gate bias at 1.
        kernel_regularizer, recurrent_regularizer, bias_regularizer (default None): penalties.
        dropout (float, default 0.0): dropout rate on the inputs, in training.
        recurrent_dropout (float, default 0.0): dropout rate on the recurrent state.
        return_sequences (bool, default False): return every step's h, not just the last.
        return_state (bool, default False): also return the final states h_n and c_n.
        go_backwards (bool, default False): read the sequence in reverse.
        seed (int or None, default None): seed of the layer's dropout stream.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``; Keras's ``unroll``,
            ``implementation`` and ``use_cudnn`` are accepted and change nothing.

    Call: ``layer(x, training=False, mask=None, initial_state=None)``, initial_state =
    [h0, c0], each (B, H). A (B, T) mask (e.g. from ``Embedding(mask_zero=True)``) skips the
    masked steps, carrying the state over them.

    Input shape: (B, T, I). Output shape: (B, T, H) with return_sequences, else (B, H); with
    return_state, the list [output, h_n, c_n].

    Raises:
        ValueError: a bad argument (named), ``stateful=True`` (not supported), or an input that
            is not (B, T, I).

    Example:

    >>> layer = nn.layers.LSTM(5, return_sequences=True)
    >>> layer(np.zeros((2, 7, 3), np.float32)).shape
    (2, 7, 5)
    >>> [w.shape for w in layer.get_weights()]
    [(3, 20), (5, 20), (20,)]
    """
    _state_names = ("h0", "c0")
    _gates = 4

    def __init__(self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 unit_forget_bias: bool = True, kernel_regularizer: Any = None,
                 recurrent_regularizer: Any = None, bias_regularizer: Any = None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                         recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, seed=seed,
                         **kwargs)
        self.recurrent_activation = _act(recurrent_activation, "recurrent_activation")
        self.unit_forget_bias = _flag(unit_forget_bias, "unit_forget_bias", "LSTM")

    def _bias_initializer(self):
        return (_UnitForgetBias(self.bias_initializer, self.units) if self.unit_forget_bias
                else self.bias_initializer)

    def _run(self, x, states, mask, idm, rdm, training):
        y, h_n, c_n, cache = ops.lstm_forward(
            x, self.kernel, self.recurrent_kernel, self.bias, states[0], states[1], mask,
            self.go_backwards, self.activation, self.recurrent_activation, idm, rdm,
            self.return_sequences, training=training)
        return y, [h_n, c_n], cache

    def _run_backward(self, dy, dstates, cache, need_dx):
        dx, dk, drk, db, dh0, dc0 = ops.lstm_backward(dy, cache, dstates[0], dstates[1],
                                                      need_dx=need_dx)
        return dx, dk, drk, db, [dh0, dc0]

    # DP-SGD (nanonet.privacy): the kernel keeps the gate gradients dz (T, B, 4H); example b's
    # gradient of [kernel; recurrent_kernel] is xh_b^T dz_b, its norm by the Gram trick in C++.
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        cache, had_state, dy, dstates = self._output_grads(ctx, dy)
        dx, dz, dh0, dc0 = ops.lstm_backward_dz(dy, cache, dstates[0], dstates[1],
                                                need_dx=need_dx)
        xh = cache.arrays[0]
        sq = ops.per_example_matmul_sq_norms(xh, dz, time_major=True, bias=self.use_bias)
        return ([dx, dh0, dc0] if had_state else dx), sq, (xh, dz)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        xh, dz = state
        K, G = xh.shape[2], dz.shape[2]
        s = scale[None, :, None]
        if K <= G:  # scale the narrower operand: sum_b s_b xh_b^T dz_b
            dw = ops.matmul((xh * s).reshape(-1, K), dz.reshape(-1, G), transpose_a=True)
            db = scale @ dz.sum(axis=0) if self.use_bias else None
        else:
            dzs = dz * s
            dw = ops.matmul(xh.reshape(-1, K), dzs.reshape(-1, G), transpose_a=True)
            db = dzs.sum(axis=(0, 1)) if self.use_bias else None
        I = self.kernel.shape[0]
        grads = [dw[:I], dw[I:]] + ([db] if self.use_bias else [])
        return self._trainable_grads(grads)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["recurrent_activation"] = self.recurrent_activation
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


class GRU(_Recurrent):
    """Gated Recurrent Unit (Cho et al. 2014), Keras 3 arguments and layout.

    Weights: kernel (I, 3H), recurrent_kernel (H, 3H), gate order z, r, h; bias (2, 3H) (input
    and recurrent biases) with reset_after, else (3H,). Equations: cpp/nanonet/gru.hpp.
    Dropout: one (B, I) mask for the inputs and one (B, H) for the state in the recurrent
    products, shared by the gates and reused at every step. The whole sequence is one call
    into C++.

    Args:
        units (int): hidden size H.
        activation (str or None, default "tanh"): tanh, sigmoid, relu, linear (None).
        recurrent_activation (str or None, default "sigmoid"): activation of the gates.
        use_bias (bool, default True): add biases.
        kernel_initializer (default "glorot_uniform"), recurrent_initializer (default
            "orthogonal"), bias_initializer (default "zeros"): initializers.
        kernel_regularizer, recurrent_regularizer, bias_regularizer (default None): penalties.
        dropout (float, default 0.0): dropout rate on the inputs, in training.
        recurrent_dropout (float, default 0.0): dropout rate on the recurrent state.
        seed (int or None, default None): seed of the layer's dropout stream.
        return_sequences (bool, default False): return every step's h, not just the last.
        return_state (bool, default False): also return the final state h_n.
        go_backwards (bool, default False): read the sequence in reverse.
        reset_after (bool, default True): apply the reset gate after the recurrent product
            (Keras 3's and cuDNN's convention; two bias rows).
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``; Keras's ``unroll``,
            ``implementation`` and ``use_cudnn`` are accepted and change nothing.

    Call: ``layer(x, training=False, mask=None, initial_state=None)``, initial_state = [h0] or
    h0 (B, H). A (B, T) mask skips the masked steps, carrying the state over them.

    Input shape: (B, T, I). Output shape: (B, T, H) with return_sequences, else (B, H); with
    return_state, the list [output, h_n].

    Raises:
        ValueError: a bad argument (named), ``stateful=True`` (not supported), or an input that
            is not (B, T, I).

    Example:

    >>> layer = nn.layers.GRU(5, return_sequences=True)
    >>> layer(np.zeros((2, 7, 3), np.float32)).shape
    (2, 7, 5)
    >>> [w.shape for w in layer.get_weights()]
    [(3, 15), (5, 15), (2, 15)]
    """
    _gates = 3

    def __init__(self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
                 bias_regularizer: Any = None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 seed: int | None = None, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, reset_after: Any = True,
                 **kwargs: Any) -> None:
        super().__init__(units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                         recurrent_regularizer=recurrent_regularizer,
                         bias_regularizer=bias_regularizer, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, seed=seed,
                         **kwargs)
        self.recurrent_activation = _act(recurrent_activation, "recurrent_activation", "GRU")
        self.reset_after = _flag(reset_after, "reset_after", "GRU")

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _run(self, x, states, mask, idm, rdm, training):
        y, h_n, cache = ops.gru_forward(
            x, self.kernel, self.recurrent_kernel, self.bias, states[0], mask, self.go_backwards,
            self.reset_after, self.activation, self.recurrent_activation, idm, rdm,
            self.return_sequences, training=training)
        return y, [h_n], cache

    def _run_backward(self, dy, dstates, cache, need_dx):
        dx, dk, drk, db, dh0 = ops.gru_backward(dy, cache, dstates[0], need_dx=need_dx)
        return dx, dk, drk, db, [dh0]

    # DP-SGD (nanonet.privacy): the kernel keeps the gate gradients dgx (and, reset_after, dgr)
    # (T, B, 3H); example b's gradients are xd_b^T dgx_b (kernel), hd_b^T dgr_b (recurrent
    # kernel; without reset_after hd_b^T dgx_b on the z, r columns and (r hd)_b^T dgx_b on h~)
    # and sums over steps (biases); their norms by the Gram trick in C++.
    def _dp_products(self, cache, dgx, dgr):
        """[(a, d)]: example b's gradient of each weight block is a_b^T d_b (time-major)."""
        I, H = self.kernel.shape[0], self.units
        xh = cache.arrays[0]
        xd, hd = xh[..., :I], xh[..., I:]
        if self.reset_after:
            return [(xd, dgx), (hd, dgr)]
        return [(xd, dgx), (hd, dgx[..., :2 * H]), (cache.arrays[3], dgx[..., 2 * H:])]

    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        cache, had_state, dy, dstates = self._output_grads(ctx, dy)
        dx, dgx, dgr, dh0 = ops.gru_backward_dz(dy, cache, dstates[0], need_dx=need_dx)
        sq = np.zeros(dgx.shape[1])
        for a, d in self._dp_products(cache, dgx, dgr):
            sq += ops.per_example_matmul_sq_norms(a, d, time_major=True)
        if self.use_bias:
            for d in (dgx, dgr) if self.reset_after else (dgx,):
                sq += np.square(d.sum(axis=0, dtype=np.float64)).sum(axis=1)
        return ([dx, dh0] if had_state else dx), sq, (cache, dgx, dgr)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        cache, dgx, dgr = state
        s = scale[None, :, None]
        dgx = dgx * s
        dgr = None if dgr is None else dgr * s
        blocks = [ops.matmul(a.reshape(-1, a.shape[2]), d.reshape(-1, d.shape[2]),
                             transpose_a=True)
                  for a, d in self._dp_products(cache, dgx, dgr)]
        grads = [blocks[0], np.concatenate(blocks[1:], axis=1)]
        if self.use_bias:
            sums = [d.sum(axis=(0, 1)) for d in ((dgx, dgr) if self.reset_after else (dgx,))]
            grads.append(np.stack(sums) if self.reset_after else sums[0])
        return self._trainable_grads(grads)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["recurrent_activation"] = self.recurrent_activation
        config["reset_after"] = self.reset_after
        return config


class SimpleRNN(_Recurrent):
    """Fully connected recurrent layer, h' = activation(x W + b + h U), Keras 3 arguments.

    Weights: kernel (I, H), recurrent_kernel (H, H), bias (H,). Call and states as GRU.

    Args:
        units (int): hidden size H.
        activation (str or None, default "tanh"): tanh, relu, sigmoid, linear (None).
        use_bias (bool, default True): add a bias.
        kernel_initializer (default "glorot_uniform"), recurrent_initializer (default
            "orthogonal"), bias_initializer (default "zeros"): initializers.
        kernel_regularizer, recurrent_regularizer, bias_regularizer (default None): penalties.
        dropout (float, default 0.0): dropout rate on the inputs, in training.
        recurrent_dropout (float, default 0.0): dropout rate on the recurrent state.
        return_sequences (bool, default False): return every step's h, not just the last.
        return_state (bool, default False): also return the final state h_n.
        go_backwards (bool, default False): read the sequence in reverse.
        seed (int or None, default None): seed of the layer's dropout stream.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Call: ``layer(x, training=False, mask=None, initial_state=None)``, initial_state = [h0] or
    h0 (B, H); a (B, T) mask skips the masked steps, carrying the state over them.

    Input shape: (B, T, I). Output shape: (B, T, H) with return_sequences, else (B, H); with
    return_state, the list [output, h_n].

    Raises:
        ValueError: a bad argument (named), ``stateful=True`` (not supported), or an input that
            is not (B, T, I).

    Example:

    >>> layer = nn.layers.SimpleRNN(4)
    >>> x = np.random.rand(1, 4, 3).astype("float32")
    >>> layer(x).shape, [w.shape for w in layer.get_weights()]
    ((1, 4), [(3, 4), (4, 4), (4,)])
    >>> mask = np.array([[True, True, False, False]])  # the last two steps are padding
    >>> bool(np.allclose(layer(x, mask=mask), layer(x[:, :2])))
    True
    """

    def _run(self, x, states, mask, idm, rdm, training):
        y, h_n, cache = ops.simple_rnn_forward(
            x, self.kernel, self.recurrent_kernel, self.bias, states[0], mask, self.go_backwards,
            self.activation, idm, rdm, self.return_sequences, training=training)
        return y, [h_n], cache

    def _run_backward(self, dy, dstates, cache, need_dx):
        dx, dk, drk, db, dh0 = ops.simple_rnn_backward(dy, cache, dstates[0], need_dx=need_dx)
        return dx, dk, drk, db, [dh0]

    # DP-SGD (nanonet.privacy): as the LSTM's, with dpre (T, B, H) for the gate gradients.
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        cache, had_state, dy, dstates = self._output_grads(ctx, dy)
        dx, dz, _, dh0 = ops.simple_rnn_backward_dz(dy, cache, dstates[0], need_dx=need_dx)
        xh = cache.arrays[0]
        sq = ops.per_example_matmul_sq_norms(xh, dz, time_major=True, bias=self.use_bias)
        return ([dx, dh0] if had_state else dx), sq, (xh, dz)

    dp_grads = LSTM.dp_grads


_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


# kLstmParallelFlops (cpp/nanonet/lstm.hpp): below it a direction's kernels run on one thread,
# so running the two directions at once gains nothing over running them in order.
_PAIR_MIN_FLOPS = 1.2e8


def _in_order(first, second):
    return first(), second()


def _directions_at_once(fw, bw, x, training) -> bool:
    """Whether Bidirectional runs its directions through ops.run_pair: one direction's forward
    (2 B T (I + H) G flops) is at least _PAIR_MIN_FLOPS, and no dropout draws from the shared
    generator during training (the order of its draws must not vary)."""
    if fw.kernel is None:
        return False
    I, G = fw.kernel.shape
    B, T = np.shape(x)[:2]
    if 2.0 * B * T * (I + fw.units) * G < _PAIR_MIN_FLOPS:
        return False
    return not (training and any((s.dropout or s.recurrent_dropout) and s._generator is None
                                 for s in (fw, bw)))


def _removeprefix(name, prefix):
    return name[len(prefix):] if name.startswith(prefix) else name


class Bidirectional(_StateInputs, Layer):
    """Runs a recurrent layer over the sequence both ways, Keras 3 arguments:
    ``Bidirectional(layer, merge_mode="concat", weights=None, backward_layer=None)``.

    ``layer`` (LSTM, GRU or SimpleRNN) is copied from its config into ``forward_layer``
    ("forward_<name>") and, unless ``backward_layer`` is given, into ``backward_layer``
    ("backward_<name>", go_backwards=True). The backward outputs are flipped back to time order,
    then merged: "concat" (last axis), "sum", "mul", "ave", or None (the list [forward,
    backward]). With return_state the final states follow: forward's, then backward's.
    Weights: forward layer's then backward layer's, named "<sublayer>/<weight>" (Keras's order);
    ``weights`` sets them after the build.

    Masks, as Keras does: each direction carries its state over masked steps, so with
    post-padding the backward direction starts from its initial state at each sequence's own
    last valid step; with return_sequences the outputs at masked steps are zero
    (Keras's zero_output_for_mask). Initial states: initial_state = forward's states then
    backward's ([h0_f, h0_b] for GRU / SimpleRNN, [h0_f, c0_f, h0_b, c0_b] for LSTM).

    Args:
        layer (LSTM, GRU or SimpleRNN): the recurrent layer to run both ways (copied).
        merge_mode (str or None, default "concat"): "concat", "sum", "mul", "ave" or None.
        weights (list of arrays or None, default None): initial weights, set after the build.
        backward_layer (LSTM, GRU, SimpleRNN or None, default None): the backward direction,
            with go_backwards opposite to ``layer``'s and the same return_sequences and
            return_state.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Call: ``layer(x, training=False, mask=None, initial_state=None)``.

    Input shape: (B, T, I). Output shape: the wrapped layer's with its last axis doubled
    (2H) for "concat", H for the others; merge_mode None gives [forward, backward]; with
    return_state the final states follow.

    Raises:
        ValueError: ``layer`` or ``backward_layer`` not a recurrent layer, an unknown
            merge_mode, or directions that disagree (go_backwards, return_sequences,
            return_state, dtype).

    Example:

    >>> layer = nn.layers.Bidirectional(nn.layers.LSTM(4, return_sequences=True))
    >>> layer(np.zeros((2, 7, 3), np.float32)).shape
    (2, 7, 8)
    >>> [w.shape for w in layer.get_weights()]  # forward's, then backward's
    [(3, 16), (4, 16), (16,), (3, 16), (4, 16), (16,)]
    >>> outs = nn.layers.Bidirectional(nn.layers.GRU(4), merge_mode=None)(np.zeros((2, 7, 3)))
    >>> [o.shape for o in outs]
    [(2, 4), (2, 4)]
    """
    supports_masking = True

    def __init__(self, layer: Any, merge_mode: Any = "concat", weights: Any = None,
                 backward_layer: Any = None, **kwargs: Any) -> None:
        if not isinstance(layer, _Recurrent):
            raise ValueError("Bidirectional: layer must be a recurrent layer instance (LSTM, GRU "
                             f"or SimpleRNN); got {layer!r}")
        if backward_layer is not None and not isinstance(backward_layer, _Recurrent):
            raise ValueError("Bidirectional: backward_layer must be None or a recurrent layer "
                             f"instance (LSTM, GRU or SimpleRNN); got {backward_layer!r}")
        if not any(merge_mode is m or (isinstance(merge_mode, str) and merge_mode == m)
                   for m in _MERGE_MODES):
            raise ValueError(f"Bidirectional: merge_mode must be one of {_MERGE_MODES}; got "
                             f"{merge_mode!r}")
        kwargs.setdefault("dtype", layer.dtype)
        super().__init__(**kwargs)
        from . import serialize
        self._layer_config = serialize(layer)
        self._backward_config = None if backward_layer is None else serialize(backward_layer)
        config = layer.get_config()
        config["name"] = "forward_" + _removeprefix(layer.name, "forward_")
        self.forward_layer = type(layer).from_config(config)
        if backward_layer is None:
            config = layer.get_config()
            config["go_backwards"] = True
            config["name"] = "backward_" + _removeprefix(layer.name, "backward_")
            self.backward_layer = type(layer).from_config(config)
        else:
            self.backward_layer = backward_layer
        fw, bw = self.forward_layer, self.backward_layer
        if fw.go_backwards == bw.go_backwards:
            raise ValueError("Bidirectional: the forward and backward layers must have different "
                             f"go_backwards; got {fw.go_backwards} for both")
        for attr in ("return_sequences", "return_state"):
            if getattr(fw, attr) != getattr(bw, attr):
                raise ValueError(f"Bidirectional: forward and backward layers must have the same "
                                 f"{attr}; got {getattr(fw, attr)} and {getattr(bw, attr)}")
        if fw.dtype != bw.dtype:
            raise ValueError(f"Bidirectional: forward and backward layers must have the same "
                             f"dtype; got {fw.dtype} and {bw.dtype}")
        self.merge_mode = merge_mode
        self.return_sequences = fw.return_sequences
        self.return_state = fw.return_state
        self._initial_weights = None if weights is None else list(weights)
        self.initial_state_grads = None

    @property
    def _state_names(self):
        return tuple(f"forward {n}" for n in self.forward_layer._state_names) + \
            tuple(f"backward {n}" for n in self.backward_layer._state_names)

    def _state_list(self, initial_state):
        n = len(self._state_names)
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != n:
            raise ValueError(f"Bidirectional {self.name!r}: initial_state must be a list of {n} "
                             f"states ({', '.join(self._state_names)}); got {initial_state!r:.80}")
        return list(initial_state)

    # -- build ---------------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        for sub in (self.forward_layer, self.backward_layer):
            sub._maybe_build(tuple(input_shape))
        fw, bw = self.forward_layer, self.backward_layer
        # The sub-layers' arrays are this layer's weights: forward's, then backward's.
        self._weights = fw._weights + bw._weights
        self._weight_names = [f"{fw.name}/{n}" for n in fw._weight_names] + \
            [f"{bw.name}/{n}" for n in bw._weight_names]
        self._weight_trainable = fw._weight_trainable + bw._weight_trainable
        self._weight_regularizers = fw._weight_regularizers + bw._weight_regularizers
        self.built = True
        if self._initial_weights is not None:
            weights, self._initial_weights = self._initial_weights, None
            self.set_weights(weights)

    def compute_output_shape(self, input_shape: Any) -> Any:
        out = self.forward_layer.compute_output_shape(input_shape)
        back = self.backward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            out, states = out[0], out[1:] + back[1:]
            back = back[0]
        if self.merge_mode == "concat":
            merged = [tuple(out[:-1]) + (out[-1] + back[-1],)]
        elif self.merge_mode is None:
            merged = [tuple(out), tuple(back)]
        else:
            merged = [tuple(out)]
        shapes = merged + [tuple(s) for s in states]
        return shapes[0] if len(shapes) == 1 else shapes

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        if isinstance(mask, list):
            mask = mask[0]
        out = mask if self.return_sequences else None
        masks = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            masks += [None] * len(self._state_names)
        return masks[0] if len(masks) == 1 else masks

    # -- forward / backward --------------------------------------------------------------------
    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        fw, bw = self.forward_layer, self.backward_layer
        had_state = isinstance(inputs, (list, tuple))
        if had_state:
            n = len(self._state_names)
            if len(inputs) != 1 + n:
                raise ValueError(f"Bidirectional {self.name!r}: inputs must be x or [x, "
                                 f"{', '.join(self._state_names)}]; got a list of {len(inputs)}")
            nf = len(fw._state_names)
            x = inputs[0]
            f_in, b_in = [x] + list(inputs[1:1 + nf]), [x] + list(inputs[1 + nf:])
            if isinstance(mask, (list, tuple)):
                mask = mask[0]
        else:
            f_in = b_in = inputs
        pair = _directions_at_once(fw, bw, f_in[0] if had_state else f_in, training)
        (yf, ctx_f), (yb, ctx_b) = (ops.run_pair if pair else _in_order)(
            lambda: fw.forward(f_in, training=training, mask=mask),
            lambda: bw.forward(b_in, training=training, mask=mask))
        states = []
        if self.return_state:
            states = list(yf[1:]) + list(yb[1:])
            yf, yb = yf[0], yb[0]
        keep = None
        if self.return_sequences:
            yb = yb[:, ::-1]
            if mask is not None:
                keep = np.asarray(mask, dtype=bool)[:, :, None].astype(yf.dtype)
                yf, yb = yf * keep, yb * keep
        mode = self.merge_mode
        if mode == "concat":
            merged = [np.concatenate([yf, yb], axis=-1)]
        elif mode == "sum":
            merged = [yf + yb]
        elif mode == "ave":
            merged = [(yf + yb) * yf.dtype.type(0.5)]
        elif mode == "mul":
            merged = [yf * yb]
        else:
            merged = [np.ascontiguousarray(yf), np.ascontiguousarray(yb)]
        outs = merged + states
        out = outs[0] if len(outs) == 1 else outs
        ctx = None
        if training:
            ctx = (ctx_f, ctx_b, yf if mode == "mul" else None, yb if mode == "mul" else None,
                   keep, had_state, yf.shape[-1], pair)
        return out, ctx

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        ctx_f, ctx_b, yf, yb, keep, had_state, Hf, pair = ctx
        fw, bw = self.forward_layer, self.backward_layer
        n_out = 2 if self.merge_mode is None else 1
        dys = list(dy) if isinstance(dy, (list, tuple)) else [dy]
        n_f = len(fw._state_names) if self.return_state else 0
        n_b = len(bw._state_names) if self.return_state else 0
        dys = (dys + [None] * (n_out + n_f + n_b))[:n_out + n_f + n_b]
        douts, dsf, dsb = dys[:n_out], dys[n_out:n_out + n_f], dys[n_out + n_f:]
        mode = self.merge_mode
        if mode is None:
            dyf, dyb = douts
        else:
            d = None if douts[0] is None else np.asarray(douts[0])
            if d is None:
                dyf = dyb = None
            elif mode == "concat":
                dyf, dyb = d[..., :Hf], d[..., Hf:]
            elif mode == "sum":
                dyf = dyb = d
            elif mode == "ave":
                dyf = dyb = d * d.dtype.type(0.5)
            else:  # mul
                dyf, dyb = d * yb, d * yf
        if self.return_sequences:
            if keep is not None:  # the zeroed outputs at masked steps pass no gradient
                dyf = None if dyf is None else dyf * keep
                dyb = None if dyb is None else dyb * keep
            dyb = None if dyb is None else np.ascontiguousarray(np.asarray(dyb)[:, ::-1])
        (df, gf), (db, gb) = (ops.run_pair if pair else _in_order)(
            lambda: fw.backprop(ctx_f, [dyf] + dsf if self.return_state else dyf,
                                need_dx=need_dx),
            lambda: bw.backprop(ctx_b, [dyb] + dsb if self.return_state else dyb,
                                need_dx=need_dx))
        grads = list(gf) + list(gb) if self.trainable else []
        if had_state:
            dx = None if df[0] is None else df[0] + db[0]
            return [dx] + list(df[1:]) + list(db[1:]), grads
        return (None if df is None else df + db), grads

    # DP-SGD (nanonet.privacy): backprop's merge with each direction's dp_backprop in place of
    # its backprop; the two directions' norms add up.
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        fw, bw = self.forward_layer, self.backward_layer
        kept = {}  # by direction (run_pair)

        def first_pass(layer, key):
            def run(c, d, need_dx=True):
                dx, sq, state = layer.dp_backprop(c, d, need_dx=need_dx)
                kept[key] = (sq, state)
                return dx, []
            return run
        fw.backprop, bw.backprop = first_pass(fw, 0), first_pass(bw, 1)
        try:
            dx, _ = self.backprop(ctx, dy, need_dx)
        finally:
            del fw.backprop, bw.backprop
        (sq_f, state_f), (sq_b, state_b) = kept[0], kept[1]
        return dx, sq_f + sq_b, (state_f, state_b)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        if not self.trainable:
            return []
        return (list(self.forward_layer.dp_grads(state[0], scale)) +
                list(self.backward_layer.dp_grads(state[1], scale)))

    # -- saving --------------------------------------------------------------------------------
    def get_rng_state(self) -> Any:
        state = {}
        for key, sub in (("forward_layer", self.forward_layer),
                         ("backward_layer", self.backward_layer)):
            inner = sub.get_rng_state()
            if inner:
                state[key] = inner
        return state

    def set_rng_state(self, state: Any) -> Any:
        if not isinstance(state, dict) or set(state) - {"forward_layer", "backward_layer"}:
            raise ValueError(f"random state of Bidirectional {self.name!r} must be a dict with "
                             f"forward_layer / backward_layer; got {state!r:.80}")
        self.forward_layer.set_rng_state(state.get("forward_layer", {}))
        self.backward_layer.set_rng_state(state.get("backward_layer", {}))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "layer": self._layer_config,
                  "merge_mode": self.merge_mode}
        if self._backward_config is not None:
            config["backward_layer"] = self._backward_config
        return config

    @classmethod
    def from_config(cls, config: Any) -> Any:
        from . import deserialize
        config = dict(config)
        layer = deserialize(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        if backward is not None:
            backward = deserialize(backward)
        return cls(layer, backward_layer=backward, **config)

    def __repr__(self):
        return (f"<Bidirectional name={self.name!r}, layer={self.forward_layer!r}, "
                f"merge_mode={self.merge_mode!r}>")


class Masking(Layer):
    """Masks the time steps whose features all equal ``mask_value``.

    The layer emits the (B, T) mask ``any(x != mask_value, axis=-1)`` for the next layers and,
    as Keras does, zeroes the masked steps of its output.

    Args:
        mask_value (float, default 0.0): the value that marks a padded step.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, T, F). Output shape: the same.

    Example:

    >>> x = np.array([[[1.0, 2.0], [0.0, 0.0]]], np.float32)
    >>> nn.layers.Masking().compute_mask(x).tolist()
    [[True, False]]
    """
    supports_masking = True

    def __init__(self, mask_value: Any = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, numbers.Real):
            raise ValueError(f"Masking: mask_value must be a number; got {mask_value!r}")
        self.mask_value = float(mask_value)

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        return np.any(np.asarray(x) != self.mask_value, axis=-1)

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = self._float_input(x)
        keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        return x * keep, (keep if training else None)

    def backprop(self, keep: Any, dy: Any, need_dx: Any = True) -> Any:
        return np.asarray(dy) * keep, []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}

    def __repr__(self):
        return f"<Masking name={self.name!r}, mask_value={self.mask_value}>"
