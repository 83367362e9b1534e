"""Weight initializers with Keras 3 names, arguments and defaults.

An initializer is called as ``init(shape, dtype="float32")`` and returns a new NumPy array.
Fans follow Keras: for a 2-D kernel (I, units) (an LSTM kernel (I, 4H) included) fan_in = I and
fan_out = units; a 1-D shape uses its length for both; higher ranks multiply the receptive field
(all axes but the last two) into both.

Randomness: with ``seed=None`` values come from nanonet's Generator (see ``nanonet.set_seed``);
with an int ``seed`` every call starts from that seed, so a seeded initializer returns the same
values each time (as in Keras 3).

Strings resolve through one registry: ``get("glorot_uniform")`` or ``get("GlorotUniform")``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from ._registry import Registry

import numpy as np

from . import random as _random

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
    "LecunNormal", "Orthogonal", "get", "serialize", "deserialize", "compute_fans",
]

_FLOAT_DTYPES = ("float32", "float64")


def _dtype(dtype, fn):
    dt = np.dtype("float32" if dtype is None else dtype)
    if dt.name not in _FLOAT_DTYPES:
        raise ValueError(f"{fn}: dtype must be one of {_FLOAT_DTYPES}; got {dt.name!r}")
    return dt


def _shape(shape, fn):
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{fn}: shape must be a tuple of ints; got {shape!r}") from None
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"{fn}: shape must hold non-negative ints; got {shape!r}")
    return tuple(int(d) for d in shape)


def compute_fans(shape: Any) -> Any:
    """The (fan_in, fan_out) of a weight shape, as Keras computes them.

    For a 2-D kernel (I, O): (I, O). For higher ranks (a convolution kernel
    (..., in_channels, out_channels)): each multiplied by the product of the leading axes.
    Rank 0 and 1 shapes follow Keras too.

    Args:
        shape (tuple of int): the weight's shape.

    Returns:
        tuple: (fan_in, fan_out).

    Example:

    >>> nn.initializers.compute_fans((4, 3)), nn.initializers.compute_fans((3, 4, 5))
    ((4, 3), (12, 15))
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _finite(value, name, cls):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{cls}: {name} must be a finite number; got {value!r}")
    return float(value)


class Initializer:
    """Base class of the weight initializers.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    A subclass defines ``_generate(shape, dtype)`` (shape a validated tuple, dtype float32 or
    float64) or overrides ``__call__``; ``get_config()`` / ``from_config(config)`` describe
    it for saving. Wherever an initializer is expected, a plain callable
    ``(shape, dtype) -> array`` works too.

    Raises:
        ValueError: a bad shape, or a dtype other than float32 and float64.

    Example:

    >>> class Twos(nn.initializers.Initializer):
    ...     def _generate(self, shape, dtype):
    ...         return np.full(shape, 2.0, dtype)
    >>> Twos()((2,)).tolist()
    [2.0, 2.0]
    """

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        name = type(self).__name__
        return self._generate(_shape(shape, name), _dtype(dtype, name))

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _Seeded(Initializer):
    def __init__(self, seed=None):
        _random.make_generator(seed, f"{type(self).__name__}")  # validates the seed
        self.seed = seed

    def _rng(self):
        gen = _random.make_generator(self.seed)
        return gen if gen is not None else _random.get_generator()

    def get_config(self):
        return {"seed": self.seed}


class Zeros(Initializer):
    """Initializes to zeros (Keras's default for biases).

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Example:

    >>> nn.initializers.Zeros()((2, 2)).tolist()
    [[0.0, 0.0], [0.0, 0.0]]
    """

    def _generate(self, shape, dtype):
        return np.zeros(shape, dtype)


class Ones(Initializer):
    """Initializes to ones.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Example:

    >>> nn.initializers.Ones()((3,)).tolist()
    [1.0, 1.0, 1.0]
    """

    def _generate(self, shape, dtype):
        return np.ones(shape, dtype)


class Constant(Initializer):
    """Initializes every value to one constant.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        value (float, default 0.0): the constant (a scalar).

    Raises:
        ValueError: value is not a finite scalar.

    Example:

    >>> nn.initializers.Constant(0.5)((2,)).tolist()
    [0.5, 0.5]
    """

    def __init__(self, value: Any = 0.0) -> None:
        self.value = _finite(value, "value", "Constant")

    def _generate(self, shape, dtype):
        return np.full(shape, self.value, dtype)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class RandomNormal(_Seeded):
    """Draws from a normal distribution N(mean, stddev).

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        mean (float, default 0.0): the mean.
        stddev (float, default 0.05): the standard deviation, >= 0.
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.RandomNormal(stddev=0.1, seed=1)((100, 10))
    >>> w.shape, bool(abs(w.std() - 0.1) < 0.02)
    ((100, 10), True)
    """

    def __init__(self, mean: Any = 0.0, stddev: Any = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean = _finite(mean, "mean", "RandomNormal")
        self.stddev = _finite(stddev, "stddev", "RandomNormal")
        if self.stddev < 0:
            raise ValueError(f"RandomNormal: stddev must be >= 0; got {stddev!r}")

    def _generate(self, shape, dtype):
        return self._rng().normal(self.mean, self.stddev, shape).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(_Seeded):
    """Draws from a uniform distribution on [minval, maxval).

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        minval (float, default -0.05): the lower bound.
        maxval (float, default 0.05): the upper bound, >= minval.
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.RandomUniform(-1.0, 1.0, seed=1)((100,))
    >>> bool(w.min() >= -1.0 and w.max() < 1.0)
    True
    """

    def __init__(self, minval: Any = -0.05, maxval: Any = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.minval = _finite(minval, "minval", "RandomUniform")
        self.maxval = _finite(maxval, "maxval", "RandomUniform")
        if self.maxval < self.minval:
            raise ValueError(f"RandomUniform: maxval must be >= minval = {minval!r}; got {maxval!r}")

    def _generate(self, shape, dtype):
        return self._rng().uniform(self.minval, self.maxval, shape).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


def _truncated_normal(rng, shape, stddev):
    """Normal(0, stddev) with values beyond 2 stddev redrawn."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class TruncatedNormal(_Seeded):
    """Draws from N(mean, stddev), redrawing values more than two stddev from the mean.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        mean (float, default 0.0): the mean.
        stddev (float, default 0.05): the standard deviation before truncation, >= 0.
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.TruncatedNormal(stddev=1.0, seed=1)((1000,))
    >>> bool(np.abs(w).max() <= 2.0)
    True
    """

    def __init__(self, mean: Any = 0.0, stddev: Any = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean = _finite(mean, "mean", "TruncatedNormal")
        self.stddev = _finite(stddev, "stddev", "TruncatedNormal")
        if self.stddev < 0:
            raise ValueError(f"TruncatedNormal: stddev must be >= 0; got {stddev!r}")

    def _generate(self, shape, dtype):
        return (self.mean + _truncated_normal(self._rng(), shape, self.stddev)).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


class VarianceScaling(_Seeded):
    """Draws with variance ``scale / n``, n = fan_in, fan_out or their mean (Keras's).

    "uniform": U(-limit, limit) with ``limit = sqrt(3 * scale / n)``; "untruncated_normal":
    N(0, scale / n); "truncated_normal": N(0, sigma) cut at 2 sigma, with
    ``sigma = sqrt(scale / n) / 0.87962566103423978`` (the stddev of a unit normal truncated
    at +-2), so the variance is scale / n. The fans come from ``compute_fans``.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        scale (float, default 1.0): the variance numerator, > 0.
        mode (str, default "fan_in"): "fan_in", "fan_out" or "fan_avg".
        distribution (str, default "truncated_normal"): "truncated_normal",
            "untruncated_normal" or "uniform".
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Raises:
        ValueError: scale <= 0, or an unknown mode or distribution.

    Example:

    >>> init = nn.initializers.VarianceScaling(scale=2.0, distribution="uniform", seed=0)
    >>> w = init((100, 50))
    >>> round(float(w.var()), 2)                  # scale / fan_in = 0.02
    0.02
    """

    def __init__(self, scale: bool = 1.0, mode: str = "fan_in",
                 distribution: Any = "truncated_normal", seed: int | None = None) -> None:
        super().__init__(seed)
        cls = type(self).__name__
        self.scale = _finite(scale, "scale", cls)
        if self.scale <= 0:
            raise ValueError(f"{cls}: scale must be > 0; got {scale!r}")
        if mode not in _MODES:
            raise ValueError(f"{cls}: mode must be one of {_MODES}; got {mode!r}")
        if distribution == "normal":  # Keras accepts this old spelling
            distribution = "truncated_normal"
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"{cls}: distribution must be one of {_DISTRIBUTIONS}; got {distribution!r}")
        self.mode = mode
        self.distribution = distribution

    def _generate(self, shape, dtype):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, shape)
        elif self.distribution == "untruncated_normal":
            values = rng.normal(0.0, math.sqrt(variance), shape)
        else:
            values = _truncated_normal(rng, shape, math.sqrt(variance) / 0.87962566103423978)
        return values.astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


class _FixedVarianceScaling(VarianceScaling):
    _ARGS = (1.0, "fan_avg", "uniform")

    def __init__(self, seed=None):
        super().__init__(*self._ARGS, seed=seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_FixedVarianceScaling):
    """Glorot (Xavier) uniform: Keras's default kernel initializer.

    U(-limit, limit) with ``limit = sqrt(6 / (fan_in + fan_out))``.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.GlorotUniform(seed=1)((4, 3))
    >>> bool(np.abs(w).max() <= np.sqrt(6 / (4 + 3)))
    True
    """
    _ARGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Glorot (Xavier) normal initializer.

    Truncated normal with stddev ``sqrt(2 / (fan_in + fan_out))`` (VarianceScaling, fan_avg).

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.GlorotNormal(seed=1)((4, 3))
    >>> w.shape, w.dtype
    ((4, 3), dtype('float32'))
    """
    _ARGS = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """He uniform initializer, for ReLU layers.

    U(-limit, limit) with ``limit = sqrt(6 / fan_in)``.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.HeUniform(seed=1)((4, 3))
    >>> bool(np.abs(w).max() <= np.sqrt(6 / 4))
    True
    """
    _ARGS = (2.0, "fan_in", "uniform")


class HeNormal(_FixedVarianceScaling):
    """He normal initializer, for ReLU layers.

    Truncated normal with stddev ``sqrt(2 / fan_in)``.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.HeNormal(seed=1)((4, 3))
    >>> w.shape, w.dtype
    ((4, 3), dtype('float32'))
    """
    _ARGS = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """LeCun uniform initializer, for SELU layers.

    U(-limit, limit) with ``limit = sqrt(3 / fan_in)``.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.LecunUniform(seed=1)((4, 3))
    >>> bool(np.abs(w).max() <= np.sqrt(3 / 4))
    True
    """
    _ARGS = (1.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """LeCun normal initializer, for SELU layers.

    Truncated normal with stddev ``sqrt(1 / fan_in)``.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Example:

    >>> w = nn.initializers.LecunNormal(seed=1)((4, 3))
    >>> w.shape, w.dtype
    ((4, 3), dtype('float32'))
    """
    _ARGS = (1.0, "fan_in", "truncated_normal")


class Orthogonal(_Seeded):
    """A (semi-)orthogonal matrix times ``gain`` (Keras's default recurrent initializer).

    Drawn from the QR decomposition of a normal matrix. The shape is seen as
    (prod(shape[:-1]), shape[-1]); its rows or columns, whichever are fewer, are orthonormal.

    Call: ``initializer(shape, dtype=None)`` returns a new array of that shape, float32 by
    default (or float64).

    Args:
        gain (float, default 1.0): the multiplier.
        seed (int or None, default None): an int makes the draws repeatable for this
            initializer; None draws from nanonet's generator (see ``nanonet.set_seed``).

    Raises:
        ValueError: a shape of rank < 2.

    Example:

    >>> w = nn.initializers.Orthogonal(seed=0)((3, 3))
    >>> bool(np.allclose(w.T @ w, np.eye(3), atol=1e-5))
    True
    """

    def __init__(self, gain: Any = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.gain = _finite(gain, "gain", "Orthogonal")

    def _generate(self, shape, dtype):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: shape must have rank >= 2; got {shape!r}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        flat = (max(rows, cols), min(rows, cols))
        a = self._rng().standard_normal(flat)
        q, r = np.linalg.qr(a)
        d = np.sign(np.diag(r))
        d[d == 0] = 1.0
        q = q * d
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, "seed": self.seed}


_CLASSES = (Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling,
            GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal,
            Orthogonal)
_NAMES = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal, "orthogonal": Orthogonal,
    # Keras 3's short aliases
    "uniform": RandomUniform, "normal": RandomNormal, "one": Ones, "zero": Zeros,
}
_REGISTRY = Registry("initializers", "initializer", _NAMES, _CLASSES)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier: Any) -> Any:
    """An Initializer from a name, a serialized dict, an Initializer or a callable.

    Args:
        identifier (str, dict, Initializer or callable): e.g. "glorot_uniform", "zeros",
            "orthogonal", a class name, ``serialize``'s dict; an Initializer or a callable
            ``(shape, dtype) -> array`` is returned as is.

    Returns:
        Initializer or callable: the initializer.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:

    >>> nn.initializers.get("glorot_uniform")
    GlorotUniform(seed=None)
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        return _REGISTRY.lookup(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret initializer {identifier!r}; valid names: "
                     f"{sorted(_NAMES)}")
