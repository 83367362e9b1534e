"""Recurrent layers: LSTM over whole sequences (one C++ call forward, one backward), and Masking.

Weight layout (Keras's): kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,), gate order
i, f, c, o. Equations, caches and threading: cpp/nanonet/lstm.hpp.

Masks: a (B, T) boolean mask from Embedding(mask_zero=True) or Masking marks padding steps. The
LSTM carries its state over a masked step and outputs it there (Keras 3 semantics), so pre- and
post-padding both work and a fully padded row returns the initial state. With
return_sequences=True the mask passes on to the next layer.

Dropout (training only, Keras semantics, 0 < rate < 1): ``dropout`` draws one (B, I) mask per
batch for the inputs, ``recurrent_dropout`` one (B, H) mask for the recurrent state, both reused
at every step (variational dropout, Gal & Ghahramani) and shared by the four gates, scaled by
1 / (1 - rate). They come from the layer's own Generator when ``seed`` is given, else from
nanonet's (nanonet.set_seed).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import random as _random
from .. import regularizers as _regularizers
from .base import Layer
from .node import flatten_inputs as _flatten_symbolic

__all__ = ["LSTM", "Masking"]

_LSTM_ACTIVATIONS = ("tanh", "sigmoid", "relu", "linear")


def _act(value, name):
    if value is None:
        return "linear"
    if isinstance(value, str) and value in _LSTM_ACTIVATIONS:
        return value
    raise ValueError(f"LSTM: {name} must be None or one of {_LSTM_ACTIVATIONS}; got {value!r}")


def _flag(value, name, cls):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{cls}: {name} must be True or False; got {value!r}")
    return bool(value)


def _rate(value, name):
    # Keras clips silently; a rate outside [0, 1] is a mistake worth an error here.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"LSTM: {name} must be a number in [0, 1]; got {value!r}")
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


class LSTM(Layer):
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
    supports_masking = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False,
                 go_backwards=False, seed=None, **kwargs):
        for ignored in ("unroll", "implementation", "use_cudnn", "time_major"):
            kwargs.pop(ignored, None)
        if kwargs.pop("stateful", False):
            raise ValueError("LSTM: stateful=True is not supported")
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"LSTM: units must be a positive int; got {units!r}")
        self.units = int(units)
        self.activation = _act(activation, "activation")
        self.recurrent_activation = _act(recurrent_activation, "recurrent_activation")
        self.use_bias = _flag(use_bias, "use_bias", "LSTM")
        self.unit_forget_bias = _flag(unit_forget_bias, "unit_forget_bias", "LSTM")
        self.return_sequences = _flag(return_sequences, "return_sequences", "LSTM")
        self.return_state = _flag(return_state, "return_state", "LSTM")
        self.go_backwards = _flag(go_backwards, "go_backwards", "LSTM")
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.recurrent_initializer = _initializers.get(recurrent_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = _regularizers.get(recurrent_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.dropout = _rate(dropout, "dropout")
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout")
        self.seed = seed
        self._generator = _random.make_generator(seed, "LSTM")
        self.kernel = self.recurrent_kernel = self.bias = None
        self.initial_state_grads = None

    # -- build -------------------------------------------------------------------------------
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"LSTM {self.name!r}: input shape must be (batch, timesteps, "
                             f"features) with known features; got {input_shape}")
        H = self.units
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), 4 * H),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(H, 4 * H),
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                name="recurrent_kernel")
        if self.use_bias:
            init = (_UnitForgetBias(self.bias_initializer, H) if self.unit_forget_bias
                    else self.bias_initializer)
            self.bias = self.add_weight(shape=(4 * H,), initializer=init,
                                        regularizer=self.bias_regularizer, name="bias")
        self.built = True

    # -- forward / backward ------------------------------------------------------------------
    def __call__(self, *args, initial_state=None, **kwargs):
        if initial_state is not None:
            kwargs["initial_state"] = initial_state
        return super().__call__(*args, **kwargs)

    def call(self, x, training=False, mask=None, initial_state=None):
        """The single-call API: x (B, T, I), initial_state [h0, c0]; see the class docstring."""
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

    def _state_list(self, initial_state):
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2:
            raise ValueError(f"LSTM {self.name!r}: initial_state must be [h0, c0], each (batch, "
                             f"{self.units}); got {type(initial_state).__name__}")
        return list(initial_state)

    def _symbolic_inputs(self, inputs, kwargs):
        state = kwargs.pop("initial_state", None)
        flat, single, kwargs = super()._symbolic_inputs(inputs, kwargs)
        if state is None:
            return flat, single, kwargs
        if not single:
            raise TypeError(f"LSTM {self.name!r}: pass the sequence alone and the states as "
                            "initial_state=[h0, c0]")
        states, _ = _flatten_symbolic(self._state_list(state), f"LSTM {self.name!r}")
        return flat + states, False, kwargs

    def _check_input_shapes(self, shapes):
        super()._check_input_shapes(shapes[0] if isinstance(shapes, list) else shapes)

    def _maybe_build(self, input_shape):
        # Called with [x, h0, c0] shapes when the layer first runs with an initial state.
        super()._maybe_build(input_shape[0] if isinstance(input_shape, list) else input_shape)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        input_shape = tuple(input_shape)
        B = input_shape[0]
        out = (B, input_shape[1], self.units) if self.return_sequences else (B, self.units)
        if self.return_state:
            return [out, (B, self.units), (B, self.units)]
        return out

    def compute_mask(self, x, mask=None):
        if isinstance(mask, list):
            mask = mask[0]
        out = mask if self.return_sequences else None
        return [out, None, None] if self.return_state else out

    def _dropout_mask(self, shape, rate):
        rng = self._generator if self._generator is not None else _random.get_generator()
        keep = rng.random(shape) >= rate
        return keep.astype(self.dtype) * np.dtype(self.dtype).type(1.0 / (1.0 - rate))

    def _states(self, states, B):
        out = []
        for name, s in zip(("h0", "c0"), states):
            s = np.ascontiguousarray(s, dtype=self.dtype)
            if s.shape != (B, self.units):
                raise ValueError(f"LSTM {self.name!r}: initial_state {name} must be "
                                 f"({B}, {self.units}); got {s.shape}")
            out.append(s)
        return out

    def forward(self, inputs, training=False, mask=None):
        """inputs: x (B, T, I), or [x, h0, c0] with an initial state (each (B, H))."""
        had_state = isinstance(inputs, (list, tuple))
        if had_state:
            if len(inputs) != 3:
                raise ValueError(f"LSTM {self.name!r}: inputs must be x or [x, h0, c0]; got a "
                                 f"list of {len(inputs)}")
            x, states = inputs[0], inputs[1:]
            if isinstance(mask, (list, tuple)):
                mask = mask[0]
        else:
            x, states = inputs, None
        x = self._float_input(x)
        I = self.kernel.shape[0]
        if x.ndim != 3 or x.shape[2] != I:
            raise ValueError(f"LSTM {self.name!r}: input must be (batch, timesteps, {I}); got "
                             f"shape {x.shape}")
        B, T = x.shape[:2]
        h0, c0 = (None, None) if states is None else self._states(states, B)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (B, T):
                raise ValueError(f"LSTM {self.name!r}: mask must be (batch, timesteps) = "
                                 f"{(B, T)}; got {mask.shape}")
            if mask.all():
                mask = None  # nothing masked: the faster unmasked path gives the same result
        idm = rdm = None
        if training and 0.0 < self.dropout < 1.0:
            idm = self._dropout_mask((B, I), self.dropout)
        if training and 0.0 < self.recurrent_dropout < 1.0:
            rdm = self._dropout_mask((B, self.units), self.recurrent_dropout)
        y, h_n, c_n, cache = ops.lstm_forward(
            x, self.kernel, self.recurrent_kernel, self.bias, h0, c0, mask, self.go_backwards,
            self.activation, self.recurrent_activation, idm, rdm, self.return_sequences,
            training=bool(training))
        out = [y, h_n, c_n] if self.return_state else y
        return out, ((cache, had_state, y.shape) if training else None)

    def backprop(self, ctx, dy, need_dx=True):
        """dy for the output, or [dy, dh_n, dc_n] with return_state (None entries allowed).
        Returns dx, or [dx, dh0, dc0] when the forward had an initial state."""
        cache, had_state, dy, dh_n, dc_n = self._output_grads(ctx, dy)
        dx, dk, drk, db, dh0, dc0 = ops.lstm_backward(dy, cache, dh_n, dc_n, need_dx=need_dx)
        grads = self._trainable_grads([dk, drk, db] if self.use_bias else [dk, drk])
        return ([dx, dh0, dc0] if had_state else dx), grads

    def _output_grads(self, ctx, dy):
        """(cache, had_state, dy, dh_n, dc_n) checked, for the kernel's backward."""
        cache, had_state, y_shape = ctx
        dh_n = dc_n = None
        if self.return_state and isinstance(dy, (list, tuple)):
            dy, dh_n, dc_n = (list(dy) + [None, None])[:3]
        arrays = []
        for a in (dy, dh_n, dc_n):
            arrays.append(None if a is None else np.ascontiguousarray(a, dtype=self.dtype))
        dy, dh_n, dc_n = arrays
        if dy is not None and dy.shape != y_shape:
            raise ValueError(f"LSTM {self.name!r}: dy must have the output's shape {y_shape}; "
                             f"got {dy.shape}")
        return cache, had_state, dy, dh_n, dc_n

    # DP-SGD (nanonet.privacy): the kernel keeps the gate gradients dz (T, B, 4H); example b's
    # gradient of [kernel; recurrent_kernel] is xh_b^T dz_b, its norm by the Gram trick in C++.
    def dp_backprop(self, ctx, dy, need_dx=True):
        cache, had_state, dy, dh_n, dc_n = self._output_grads(ctx, dy)
        dx, dz, dh0, dc0 = ops.lstm_backward_dz(dy, cache, dh_n, dc_n, need_dx=need_dx)
        xh = cache.arrays[0]
        sq = ops.per_example_matmul_sq_norms(xh, dz, time_major=True).astype(np.float64)
        if self.use_bias:
            sq += np.square(dz.sum(axis=0, dtype=np.float64)).sum(axis=1)
        return ([dx, dh0, dc0] if had_state else dx), sq, (xh, dz)

    def dp_grads(self, state, scale):
        xh, dz = state
        G = dz.shape[2]
        dzs = (dz * scale[None, :, None]).reshape(-1, G)
        dw = ops.matmul(xh.reshape(-1, xh.shape[2]), dzs, transpose_a=True)
        I = self.kernel.shape[0]
        grads = [dw[:I], dw[I:]] + ([dzs.sum(axis=0)] if self.use_bias else [])
        return self._trainable_grads(grads)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": _initializers.serialize(self.recurrent_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "unit_forget_bias": self.unit_forget_bias,
                "kernel_regularizer": _ser(self.kernel_regularizer, _regularizers),
                "recurrent_regularizer": _ser(self.recurrent_regularizer, _regularizers),
                "bias_regularizer": _ser(self.bias_regularizer, _regularizers),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "seed": self.seed}

    def __repr__(self):
        return (f"<LSTM name={self.name!r}, units={self.units}, "
                f"return_sequences={self.return_sequences}>")


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

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, numbers.Real):
            raise ValueError(f"Masking: mask_value must be a number; got {mask_value!r}")
        self.mask_value = float(mask_value)

    def compute_mask(self, x, mask=None):
        return np.any(np.asarray(x) != self.mask_value, axis=-1)

    def forward(self, x, training=False, mask=None):
        x = self._float_input(x)
        keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        return x * keep, (keep if training else None)

    def backprop(self, keep, dy, need_dx=True):
        return np.asarray(dy) * keep, []

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}

    def __repr__(self):
        return f"<Masking name={self.name!r}, mask_value={self.mask_value}>"
