"""Core layers with Keras names and defaults: Dense, Activation, Dropout, Flatten, InputLayer
(and the ``Input`` function).

Shapes are batch-major; Dense on (B, T, I) input applies its kernel to the last axis.
Weight layout: Dense kernel (I, units), bias (units,).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import random as _random
from .. import regularizers as _regularizers
from .base import Layer, _check_shape, unique_name
from .node import Node, SymbolicTensor

__all__ = ["Dense", "Activation", "Dropout", "Flatten", "InputLayer", "Input", "ACTIVATIONS"]

# Activations the kernels know (nanonet.ops.activation_forward / activation_backward); Keras 3
# names with their default arguments ("gelu" exact, "gelu_approximate" the tanh form, "swish" =
# "silu"; see nanonet.ops.ACTIVATIONS).
ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax", "gelu",
               "gelu_approximate", "silu", "swish", "elu", "selu", "leaky_relu", "softplus",
               "softsign", "hard_sigmoid", "exponential")


def _activation_name(activation, cls):
    if activation is None:
        return "linear"
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return activation
    raise ValueError(f"{cls}: activation must be None or one of {ACTIVATIONS}; got {activation!r}")


def _serialize(obj, module):
    return None if obj is None else module.serialize(obj)


def _rows(x):
    """x viewed as 2-D (rows, last axis)."""
    return x if x.ndim == 2 else x.reshape(-1, x.shape[-1])


class Dense(Layer):
    """Densely connected layer: ``output = activation(x @ kernel + bias)``.

    The kernel acts on the last axis, so (B, T, I) input gives (B, T, units). The activation is
    fused into the GEMM's epilogue. Weight layout (Keras's): kernel (I, units), bias (units,).

    Args:
        units (int): size of the output's last axis.
        activation (str or None, default None): name of an activation (see ``Activation``);
            None is linear.
        use_bias (bool, default True): add a bias vector.
        kernel_initializer (str or Initializer, default "glorot_uniform"): initializer of the
            kernel.
        bias_initializer (str or Initializer, default "zeros"): initializer of the bias.
        kernel_regularizer (str, Regularizer or None, default None): penalty on the kernel.
        bias_regularizer (str, Regularizer or None, default None): penalty on the bias.
        **kwargs: ``name``, ``trainable``, ``dtype`` ("float32" or "float64"), ``input_shape``.

    Input shape: (B, ..., I). Output shape: (B, ..., units).

    Raises:
        ValueError: units not a positive int, unknown activation, or an input whose last axis
            is unknown.

    Example:

    >>> layer = nn.layers.Dense(4, activation="relu")
    >>> layer(np.zeros((2, 3), np.float32)).shape
    (2, 4)
    >>> [w.shape for w in layer.get_weights()]
    [(3, 4), (4,)]
    """
    supports_masking = True

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"Dense: units must be a positive int; got {units!r}")
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(f"Dense: use_bias must be True or False; got {use_bias!r}")
        self.units = int(units)
        self.activation = _activation_name(activation, "Dense")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel = None
        self.bias = None

    def build(self, input_shape: Any) -> None:
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"Dense {self.name!r}: input shape must be (batch, ..., features) "
                             f"with known features; got {input_shape}")
        in_dim = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(in_dim, self.units),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, name="bias")
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)[:-1] + (self.units,)

    @property
    def fused_activation(self) -> Any:
        return self.activation

    def _forward(self, x, training, activation):
        if type(x) is not np.ndarray or x.dtype != self.kernel.dtype:
            x = self._float_input(x)
        if x.ndim < 2 or x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Dense {self.name!r}: input must be (batch, ..., "
                             f"{self.kernel.shape[0]}); got shape {x.shape}")
        x2 = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        if training and activation in ops.INPUT_ACTIVATIONS:
            # gelu / silu: the backward needs the pre-activation z as well as y
            y2, z2 = ops.dense_forward(x2, self.kernel, self.bias, activation, return_z=True)
        else:
            y2 = ops.dense_forward(x2, self.kernel, self.bias, activation)
            z2 = None
        ctx = (x2, y2, activation, x.shape, z2) if training else None
        return (y2 if x.ndim == 2 else y2.reshape(x.shape[:-1] + (self.units,))), ctx

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        return self._forward(x, training, self.activation)

    def forward_logits(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        """The forward pass without the activation (x @ kernel + bias); see Layer."""
        return self._forward(x, training, "linear")

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        x2, y2, activation, x_shape, z2 = ctx
        dy2 = np.ascontiguousarray(_rows(np.asarray(dy)), dtype=self.dtype)
        if dy2.shape != y2.shape:
            raise ValueError(f"Dense {self.name!r}: dy must have the output's shape "
                             f"{x_shape[:-1] + (self.units,)}; got {np.shape(dy)}")
        dx, dkernel, dbias = ops.dense_backward(dy2, x2, self.kernel, y2, activation,
                                                need_dx=need_dx, z=z2)
        grads = self._trainable_grads([dkernel, dbias] if self.use_bias else [dkernel])
        return (None if dx is None else dx.reshape(x_shape)), grads

    # DP-SGD (nanonet.privacy): ghost norms ||x_b||^2 ||dz_b||^2, the Gram trick for (B, T, I)
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        x2, y2, activation, x_shape, z2 = ctx
        dy2 = np.ascontiguousarray(_rows(np.asarray(dy)), dtype=self.dtype)
        if dy2.shape != y2.shape:
            raise ValueError(f"Dense {self.name!r}: dy must have the output's shape "
                             f"{x_shape[:-1] + (self.units,)}; got {np.shape(dy)}")
        dz = dy2 if activation == "linear" else ops.activation_backward(dy2, y2, activation, x=z2)
        dx = ops.matmul(dz, self.kernel, transpose_b=True).reshape(x_shape) if need_dx else None
        B = x_shape[0]
        x3 = x2.reshape(B, -1, x2.shape[1])
        dz3 = dz.reshape(B, -1, dz.shape[1])
        sq = ops.per_example_matmul_sq_norms(x3, dz3, bias=self.use_bias)  # kernel + bias
        return dx, sq, (x2, dz, B)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        x2, dz, B = state
        s = scale if dz.shape[0] == B else np.repeat(scale, dz.shape[0] // B)
        if x2.shape[1] < dz.shape[1]:  # scale the narrower operand's rows
            dkernel = ops.matmul(x2 * s[:, None], dz, transpose_a=True)
            dbias = s @ dz if self.use_bias else None
        else:
            dzs = dz * s[:, None]
            dkernel = ops.matmul(x2, dzs, transpose_a=True)
            dbias = dzs.sum(axis=0) if self.use_bias else None
        return self._trainable_grads([dkernel, dbias] if self.use_bias else [dkernel])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _serialize(self.kernel_regularizer, _regularizers),
                "bias_regularizer": _serialize(self.bias_regularizer, _regularizers)}

    def __repr__(self):
        return f"<Dense name={self.name!r}, units={self.units}, activation={self.activation!r}>"


class Activation(Layer):
    """Applies an activation function element-wise (softmax over the last axis).

    Known names (``nanonet.ops.ACTIVATIONS``): linear, sigmoid, tanh, relu, softmax,
    log_softmax, gelu, gelu_approximate (tanh form), silu / swish, elu, selu, leaky_relu,
    softplus, softsign, hard_sigmoid, exponential.

    Args:
        activation (str or None): the activation's name; None is linear.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Input shape: any. Output shape: the same as the input.

    Raises:
        ValueError: an unknown activation name.

    Example:

    >>> layer = nn.layers.Activation("relu")
    >>> layer(np.array([[-1.0, 2.0]], np.float32)).tolist()
    [[0.0, 2.0]]
    """
    supports_masking = True

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = _activation_name(activation, "Activation")

    @property
    def fused_activation(self) -> Any:
        return self.activation

    def _input(self, x):
        x = np.asarray(x)
        return x if x.dtype.kind == "f" else self._float_input(x)

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = self._input(x)
        x2 = _rows(x)
        y2 = ops.activation_forward(x2, self.activation)
        # gelu / silu: the backward needs the input as well as y
        keep = x2 if self.activation in ops.INPUT_ACTIVATIONS else None
        return y2.reshape(x.shape), ((y2, self.activation, x.shape, keep) if training else None)

    def forward_logits(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        """The input unchanged (the activation is left to the fused loss); see Layer."""
        x = self._input(x)
        return x, ((None, "linear", x.shape, None) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        y2, activation, x_shape, x2 = ctx
        if activation == "linear":
            return np.asarray(dy).reshape(x_shape), []
        dy2 = np.ascontiguousarray(_rows(np.asarray(dy)), dtype=y2.dtype)
        return ops.activation_backward(dy2, y2, activation, x=x2).reshape(x_shape), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}

    def __repr__(self):
        return f"<Activation name={self.name!r}, activation={self.activation!r}>"


class Dropout(Layer):
    """Inverted dropout: randomly zeroes inputs during training.

    With ``training=True`` each input is set to 0 with probability ``rate`` and the kept ones
    are scaled by ``1 / (1 - rate)``, so the expected sum is unchanged; at inference the layer
    is the identity.

    Args:
        rate (float): probability of dropping an input, in [0, 1).
        noise_shape (tuple or None, default None): shape of the keep mask, broadcast over the
            input (None entries take the input's size); e.g. (None, 1, F) drops the same
            features at every time step.
        seed (int or None, default None): an int gives the layer its own repeatable random
            stream; None draws from nanonet's generator (see ``nanonet.set_seed``).
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Input shape: any. Output shape: the same as the input.

    Raises:
        ValueError: rate outside [0, 1), or a noise_shape that does not broadcast.

    Example:

    >>> layer = nn.layers.Dropout(0.5, seed=1)
    >>> x = np.ones((4, 10), np.float32)
    >>> bool((layer(x) == x).all())          # inference: unchanged
    True
    >>> sorted(set(layer(x, training=True).ravel().tolist()))   # training: 0 or 1 / (1 - rate)
    [0.0, 2.0]
    """
    supports_masking = True

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(rate) \
                or not 0.0 <= rate <= 1.0:
            raise ValueError(f"Dropout: rate must be a number in [0, 1]; got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = (None if noise_shape is None else
                            _check_shape(noise_shape, "Dropout: noise_shape"))
        self.seed = seed
        self._generator = _random.make_generator(seed, "Dropout")

    def _mask_shape(self, x_shape):
        if self.noise_shape is None:
            return x_shape
        if len(self.noise_shape) != len(x_shape):
            raise ValueError(f"Dropout {self.name!r}: noise_shape {self.noise_shape} must have the "
                             f"input's rank {len(x_shape)}; input shape {x_shape}")
        shape = tuple(x if n is None else n for n, x in zip(self.noise_shape, x_shape))
        for n, d in zip(shape, x_shape):
            if n not in (1, d):
                raise ValueError(f"Dropout {self.name!r}: noise_shape {self.noise_shape} does not "
                                 f"broadcast to the input shape {x_shape}")
        return shape

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = np.asarray(x)
        if not training or self.rate == 0.0:
            return x, ((None,) if training else None)
        rng = self._generator if self._generator is not None else _random.get_generator()
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(self.dtype)
        keep = rng.random(self._mask_shape(x.shape)) >= self.rate
        scale = 0.0 if self.rate == 1.0 else 1.0 / (1.0 - self.rate)
        m = keep.astype(dtype) * dtype.type(scale)
        return x * m, (m,)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        (m,) = ctx
        return (dy if m is None else dy * m), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": self.noise_shape, "seed": self.seed}

    def __repr__(self):
        return f"<Dropout name={self.name!r}, rate={self.rate}>"


class Flatten(Layer):
    """Flattens every axis after the batch axis into one.

    Args:
        **kwargs: ``name``, ``trainable``, ``dtype``; Keras's ``data_format`` is accepted and
            ignored.

    Input shape: (B, d1, d2, ...). Output shape: (B, d1 * d2 * ...).

    Example:

    >>> nn.layers.Flatten()(np.zeros((2, 3, 4), np.float32)).shape
    (2, 12)
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("data_format", None)  # Keras's argument; channel order is irrelevant here
        super().__init__(**kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        input_shape = tuple(input_shape)
        rest = input_shape[1:]
        flat = None if None in rest else int(math.prod(rest))
        return (input_shape[0], flat)

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Flatten {self.name!r}: input must have a batch axis; got a scalar")
        return (x.reshape(x.shape[0], -1) if x.ndim != 2 else x), (x.shape if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        return np.asarray(dy).reshape(ctx), []


class InputLayer(Layer):
    """The layer that declares a model input (``nanonet.Input`` makes one).

    Its symbolic tensor is ``input_layer.output``. It is not listed in ``Sequential.layers``;
    in a functional model's ``layers`` it comes first, as in Keras.

    Args:
        shape (tuple or int or None): shape of one sample, without the batch axis.
        batch_size (int or None, default None): a fixed batch size, if any.
        dtype (str or None, default None): dtype of the data; float data keeps its float dtype
            up to the first layer when None; use e.g. "int32" for token ids.
        batch_shape (tuple or None, default None): the full shape, batch axis included;
            pass either ``shape`` or ``batch_shape``.
        name (str or None, default None): the layer's (and the tensor's) name.

    Raises:
        ValueError: both or neither of shape and batch_shape, a bad batch_size or a
            non-numeric dtype.

    Example:

    >>> layer = nn.layers.InputLayer(shape=(3,))
    >>> layer.output.shape
    (None, 3)
    """

    def __init__(self, shape: Any = None, batch_size: int | None = None, dtype: Any = None,
                 batch_shape: Any = None, name: str | None = None, **kwargs: Any) -> None:
        input_shape = kwargs.pop("input_shape", None)
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        if shape is None and input_shape is not None:
            shape = input_shape
        if (shape is None) == (batch_shape is None):
            raise ValueError("InputLayer: pass exactly one of shape and batch_shape; got "
                             f"shape={shape!r}, batch_shape={batch_shape!r}")
        if batch_shape is None:
            if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
                shape = (shape,)
            if batch_size is not None and (isinstance(batch_size, bool) or
                                           not isinstance(batch_size, numbers.Integral) or
                                           batch_size < 1):
                raise ValueError(f"InputLayer: batch_size must be a positive int; got "
                                 f"{batch_size!r}")
            batch_shape = (batch_size,) + _check_shape(shape, "InputLayer: shape")
        self.batch_shape = _check_shape(batch_shape, "InputLayer: batch_shape")
        if len(self.batch_shape) < 1:
            raise ValueError(f"InputLayer: batch_shape must include the batch axis; got "
                             f"{batch_shape!r}")
        if dtype == "string":  # text for a preprocessing layer (TextVectorization), as Keras
            self.dtype = "string"
        else:
            try:
                dt = np.dtype("float32" if dtype is None else dtype)
            except TypeError:
                raise ValueError(f"InputLayer: dtype must be a numeric dtype or 'string'; got "
                                 f"{dtype!r}") from None
            if dt.kind not in "biuf":
                raise ValueError(f"InputLayer: dtype must be a numeric dtype or 'string'; got "
                                 f"{dtype!r}")
            self.dtype = dt.name
        # dtype=None: float data keeps its dtype up to the first layer (which casts to its own).
        self.dtype_explicit = dtype is not None
        self.built = True
        self.output = SymbolicTensor(self.batch_shape, self.dtype, self, 0, 0, name=self.name,
                                     dtype_explicit=self.dtype_explicit)
        self._inbound_nodes.append(Node(self, [], True, {}, [self.output], True))

    @property
    def shape(self) -> Any:
        return self.batch_shape

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.batch_shape

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        return x, None

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        return dy, []

    def backward(self, dy: Any) -> Any:
        self.grads = []
        return dy

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "batch_shape": self.batch_shape,
                "dtype": self.dtype if self.dtype_explicit else None}

    def __repr__(self):
        return (f"<InputLayer name={self.name!r}, batch_shape={self.batch_shape}, "
                f"dtype={self.dtype}>")


def Input(shape: Any = None, batch_size: int | None = None, dtype: Any = None,
          batch_shape: Any = None, name: str | None = None) -> Any:
    """A symbolic input tensor to build a model on (Keras's ``Input``).

    Calling layers on it records a graph, which ``nanonet.Model(inputs, outputs)`` turns into a
    model; as the first entry of a ``Sequential`` it fixes the input shape.

    Args:
        shape (tuple or int or None): shape of one sample, without the batch axis.
        batch_size (int or None, default None): a fixed batch size, if any.
        dtype (str or None, default None): dtype of the data (float32 when None; "int32" for
            token ids, "string" for text that a TextVectorization or StringLookup layer takes).
        batch_shape (tuple or None, default None): the full shape with the batch axis, instead
            of ``shape``.
        name (str or None, default None): the input's name (the key of a dict of inputs).

    Returns:
        SymbolicTensor: with ``shape`` = (batch_size,) + shape (None for an unknown batch).

    Raises:
        ValueError: see ``InputLayer``.

    Example:

    >>> x = nn.Input((3,), name="features")
    >>> x.shape, x.dtype
    ((None, 3), 'float32')
    >>> model = nn.Model(x, nn.layers.Dense(2)(x))
    >>> model.predict(np.zeros((5, 3), np.float32), verbose=0).shape
    (5, 2)
    """
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                      name=name).output
