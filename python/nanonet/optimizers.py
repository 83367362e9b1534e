"""Optimizers with Keras 3 names, arguments, defaults and update rules, simplest first.

Each parameter is updated in place by one fused kernel (``nanonet.ops.sgd_update``,
``adam_update``, ``rmsprop_update``); gradient clipping happens inside the same pass:
``clipvalue`` clips each element, ``clipnorm`` scales each gradient to norm <= clipnorm and
``global_clipnorm`` scales all gradients together (the norms come from ``ops.sum_squares``).
At most one of the three may be set, as in Keras.

``learning_rate`` is a positive number or a callable schedule ``step -> lr`` (such as a
``nanonet.schedules.LearningRateSchedule``) called with the number of updates done so far
(``iterations``) before each update, as Keras calls a LearningRateSchedule; ``get_config``
serializes a LearningRateSchedule and ``from_config`` restores it. ``weight_decay`` (decoupled, Keras 3) shrinks each parameter by
``p * weight_decay * lr`` before its update.

Slots (velocities, moments) are created on first use, per parameter, with its shape and dtype.
``variables`` lists ``[iterations] + slots`` (in the order parameters were first seen) as
arrays, and ``set_variables(values)`` restores them after ``build(var_list)``, for saving.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from . import ops
from . import schedules as _schedules
from ._registry import Registry

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "Nadam", "Lion",
           "DPSGD", "DPAdam", "get", "serialize", "deserialize"]


def _number(value, name, cls, lo=None, hi=None, lo_open=False, hi_open=False, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{cls}: {name} must be a finite number; got {value!r}")
    value = float(value)
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or \
          (hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        hi_s = "inf)" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        raise ValueError(f"{cls}: {name} must be in {lo_s or '(-inf'}, {hi_s}; got {value!r}")
    return value


class Optimizer:
    """Base class of the optimizers: learning rate, weight decay, clipping, slots.

    ``apply(grads, trainable_variables)`` (or Keras's ``apply_gradients(pairs)``) updates each
    parameter array in place with one fused kernel, clipping inside the same pass, and counts
    ``iterations``. Slots (velocities, moments) are made on first use with the parameter's
    shape and dtype. ``variables`` lists ``[iterations] + slots`` for saving and
    ``set_variables(values)`` restores them after ``build(var_list)``.

    A subclass lists its slot names per parameter in ``_slot_names()`` and updates one
    parameter in ``_update(param, grad, slots, lr, grad_scale)``.

    Args:
        learning_rate (float or schedule, default (required)): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str or None, default None): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> opt = nn.optimizers.SGD(learning_rate=0.1)
    >>> p = np.array([1.0, -2.0])
    >>> opt.apply([np.array([0.5, 0.5])], [p])
    >>> p.tolist(), opt.iterations
    ([0.95, -2.05], 1)
    """
    _fused_weight_decay = False

    def __init__(self, learning_rate: Any, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None) -> None:
        cls = type(self).__name__
        self.name = name or cls
        self.learning_rate = learning_rate
        self.weight_decay = _number(weight_decay, "weight_decay", cls, lo=0.0, allow_none=True)
        self.clipnorm = _number(clipnorm, "clipnorm", cls, lo=0.0, lo_open=True, allow_none=True)
        self.clipvalue = _number(clipvalue, "clipvalue", cls, lo=0.0, lo_open=True,
                                 allow_none=True)
        self.global_clipnorm = _number(global_clipnorm, "global_clipnorm", cls, lo=0.0,
                                       lo_open=True, allow_none=True)
        if sum(v is not None for v in (self.clipnorm, self.clipvalue, self.global_clipnorm)) > 1:
            raise ValueError(f"{cls}: only one of clipnorm, clipvalue and global_clipnorm can be "
                             f"set; got clipnorm={clipnorm!r}, clipvalue={clipvalue!r}, "
                             f"global_clipnorm={global_clipnorm!r}")
        self.iterations = 0
        self._params = []   # parameters in the order first seen (kept alive: ids stay unique)
        self._slots = []    # per parameter: list of slot arrays
        self._index = {}    # id(param) -> position in _params

    # -- learning rate -----------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update (a schedule is evaluated at ``iterations``)."""
        if self._schedule is not None:
            return float(self._schedule(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> Any:
        cls = type(self).__name__
        if isinstance(value, dict):  # a serialized schedule, as get_config writes it
            value = _schedules.deserialize(value)
        if callable(value) and not isinstance(value, numbers.Real):
            self._schedule = value
            self._learning_rate = None
        else:
            self._schedule = None
            self._learning_rate = _number(value, "learning_rate", cls, lo=0.0, lo_open=True)

    @property
    def learning_rate_schedule(self) -> Any:
        """The callable schedule, or None for a constant learning rate."""
        return self._schedule

    # -- slots -------------------------------------------------------------------------------
    def _slot_names(self):
        return ()

    def build(self, var_list: Any) -> None:
        """Create the slots of every parameter in var_list not seen before."""
        for p in var_list:
            self._slots_of(p)

    def _slots_of(self, param):
        i = self._index.get(id(param))
        if i is None:
            i = len(self._params)
            self._index[id(param)] = i
            self._params.append(param)
            self._slots.append([np.zeros_like(param) for _ in self._slot_names()])
        return self._slots[i]

    @property
    def slot_names(self) -> Any:
        """The names of the slots every parameter gets (e.g. ("m", "v") for Adam)."""
        return tuple(self._slot_names())

    def slot_variables(self) -> Any:
        """[(parameter, [its slot arrays in slot_names order])], parameters in the order first
        seen (the saving protocol: ``build`` + ``set_variables`` restore them)."""
        return [(p, list(s)) for p, s in zip(self._params, self._slots)]

    @property
    def variables(self) -> Any:
        """[iterations (0-d int64 array)] + every slot array, parameter by parameter."""
        out = [np.array(self.iterations, dtype=np.int64)]
        for slots in self._slots:
            out.extend(slots)
        return out

    def set_variables(self, values: Any) -> Any:
        """Restore ``variables`` (same count and shapes; call ``build(var_list)`` first)."""
        cls = type(self).__name__
        values = list(values)
        want = 1 + sum(len(s) for s in self._slots)
        if len(values) != want:
            raise ValueError(f"{cls}.set_variables: expected {want} arrays (iterations + slots "
                             f"of {len(self._slots)} parameters); got {len(values)}")
        it = np.asarray(values[0])
        if it.shape not in ((), (1,)) or it.dtype.kind not in "iuf" or float(it.ravel()[0]) < 0:
            raise ValueError(f"{cls}.set_variables: values[0] must be the iteration count; got "
                             f"{values[0]!r}")
        k = 1
        for p, slots in zip(self._params, self._slots):
            for s in slots:
                v = np.asarray(values[k])
                if v.shape != s.shape:
                    raise ValueError(f"{cls}.set_variables: values[{k}] must have shape "
                                     f"{s.shape}; got {v.shape}")
                k += 1
        k = 1
        for slots in self._slots:
            for s in slots:
                s[...] = values[k]
                k += 1
        self.iterations = int(it.ravel()[0])

    # -- updates -----------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars: Any) -> Any:
        """Keras-style: update each variable from its gradient, pairs (grad, var)."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads: Any, trainable_variables: Any) -> Any:
        """One step: update each parameter in place from its gradient (None grads are skipped)."""
        cls = type(self).__name__
        grads = list(grads)
        params = list(trainable_variables)
        if len(grads) != len(params):
            raise ValueError(f"{cls}.apply: got {len(grads)} gradients for {len(params)} "
                             "variables")
        pairs = []
        for i, (g, p) in enumerate(zip(grads, params)):
            if g is None:
                continue
            if not isinstance(p, np.ndarray):
                raise TypeError(f"{cls}.apply: variables[{i}] must be a numpy.ndarray updated "
                                f"in place; got {type(p).__name__}")
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"{cls}.apply: gradient {i} must have the variable's shape "
                                 f"{p.shape}; got {g.shape}")
            if g.dtype != p.dtype:
                g = g.astype(p.dtype)
            pairs.append((np.ascontiguousarray(g).reshape(p.shape), p))  # keeps 0-d 0-d
        lr = self.learning_rate
        scales = self._grad_scales([g for g, _ in pairs])
        for (g, p), scale in zip(pairs, scales):
            if self.weight_decay and not self._fused_weight_decay:
                p -= p * p.dtype.type(self.weight_decay * lr)
            self._update(p, g, self._slots_of(p), lr, scale)
        self.iterations += 1

    def _grad_scales(self, grads):
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = math.sqrt(ops.sum_squares(g))
                out.append(self.clipnorm / max(norm, self.clipnorm))
            return out
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(ops.sum_squares(g) for g in grads))
            return [self.global_clipnorm / max(norm, self.global_clipnorm)] * len(grads)
        return [1.0] * len(grads)

    @property
    def _clipvalue(self):
        return 0.0 if self.clipvalue is None else self.clipvalue

    # -- config ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        lr = self._schedule if self._schedule is not None else self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            lr = _schedules.serialize(lr)
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(**config)

    def __repr__(self):
        lr = self._schedule if self._schedule is not None else self._learning_rate
        return f"<{type(self).__name__} learning_rate={lr!r} iterations={self.iterations}>"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    With ``momentum == 0``: ``p -= lr * g``. Otherwise ``v = momentum * v - lr * g`` and
    ``p += v`` (nesterov: ``p += momentum * v - lr * g``).

    Args:
        learning_rate (float or schedule, default 0.01): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        momentum (float, default 0.0): in [0, 1].
        nesterov (bool, default False): use Nesterov momentum.
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "SGD"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.SGD(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()
    [0.9, -2.1]
    """

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 name: str | None = "SGD") -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.momentum = _number(momentum, "momentum", "SGD", lo=0.0, hi=1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"SGD: nesterov must be True or False; got {nesterov!r}")
        self.nesterov = bool(nesterov)

    def _slot_names(self):
        return ("momentum",) if self.momentum > 0 else ()

    def _update(self, param, grad, slots, lr, grad_scale):
        velocity = slots[0] if slots else None
        ops.sgd_update(param, grad, velocity, lr, momentum=self.momentum, nesterov=self.nesterov,
                       grad_scale=grad_scale, clipvalue=self._clipvalue)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as Keras computes it (epsilon outside the square root).

    ``m += (g - m)(1 - beta_1)``; ``v += (g^2 - v)(1 - beta_2)``;
    ``p -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)``, with
    t = iterations + 1.

    Args:
        learning_rate (float or schedule, default 0.001): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        beta_1 (float, default 0.9): decay rate of the first moment, in [0, 1).
        beta_2 (float, default 0.999): decay rate of the second moment, in [0, 1).
        epsilon (float, default 1e-7): small constant for numerical stability.
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "adam"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.Adam(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()             # about lr per step, whatever |g|
    [0.8, -2.2]
    """
    _fused_weight_decay = True

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = "adam") -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        cls = type(self).__name__
        self.beta_1 = _number(beta_1, "beta_1", cls, lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = _number(beta_2, "beta_2", cls, lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = _number(epsilon, "epsilon", cls, lo=0.0)

    def _slot_names(self):
        return ("momentum", "velocity")

    def _update(self, param, grad, slots, lr, grad_scale):
        m, v = slots
        ops.adam_update(param, grad, m, v, lr, self.iterations + 1, beta_1=self.beta_1,
                        beta_2=self.beta_2, epsilon=self.epsilon,
                        weight_decay=self.weight_decay or 0.0, grad_scale=grad_scale,
                        clipvalue=self._clipvalue)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay.

    Before each Adam update ``p -= p * weight_decay * lr`` (the default weight decay is
    0.004, as in Keras).

    Args:
        learning_rate (float or schedule, default 0.001): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        beta_1 (float, default 0.9): decay rate of the first moment, in [0, 1).
        beta_2 (float, default 0.999): decay rate of the second moment, in [0, 1).
        epsilon (float, default 1e-7): small constant for numerical stability.
        weight_decay (float, default 0.004): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "adamw"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.AdamW(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()
    [0.7992, -2.1984]
    """

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float | None = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = "adamw") -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm,
                         clipvalue, global_clipnorm, name)
        if self.weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number >= 0; got None")


class RMSprop(Optimizer):
    """RMSprop, as Keras computes it (epsilon inside the square root).

    ``v = rho v + (1 - rho) g^2`` (centered: also ``a = rho a + (1 - rho) g`` and
    ``v' = v - a^2``); ``step = lr g / sqrt(v' + epsilon)``; with momentum
    ``b = momentum b + step, p -= b``, else ``p -= step``.

    Args:
        learning_rate (float or schedule, default 0.001): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        rho (float, default 0.9): decay rate of the squared-gradient average, in [0, 1).
        momentum (float, default 0.0): in [0, 1].
        epsilon (float, default 1e-7): small constant for numerical stability.
        centered (bool, default False): divide by the variance rather than the second moment.
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "rmsprop"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.RMSprop(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()
    [0.4544, -2.5456]
    """

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: Any = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = "rmsprop") -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.rho = _number(rho, "rho", "RMSprop", lo=0.0, hi=1.0, hi_open=True)
        self.momentum = _number(momentum, "momentum", "RMSprop", lo=0.0, hi=1.0)
        self.epsilon = _number(epsilon, "epsilon", "RMSprop", lo=0.0)
        if not isinstance(centered, (bool, np.bool_)):
            raise ValueError(f"RMSprop: centered must be True or False; got {centered!r}")
        self.centered = bool(centered)

    def _slot_names(self):
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        return tuple(names)

    def _update(self, param, grad, slots, lr, grad_scale):
        velocity = slots[0]
        momentum_buf = slots[1] if self.momentum > 0 else None
        average_grad = slots[-1] if self.centered else None
        ops.rmsprop_update(param, grad, velocity, lr, rho=self.rho, momentum=self.momentum,
                           epsilon=self.epsilon, centered=self.centered,
                           momentum_buf=momentum_buf, average_grad=average_grad,
                           grad_scale=grad_scale, clipvalue=self._clipvalue)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad: per-parameter learning rates from the sum of squared gradients.

    ``accumulator += g^2`` (starting at initial_accumulator_value);
    ``p -= lr g / sqrt(accumulator + epsilon)``.

    Args:
        learning_rate (float or schedule, default 0.001): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        initial_accumulator_value (float, default 0.1): starting value of the accumulator,
            >= 0.
        epsilon (float, default 1e-7): small constant for numerical stability.
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "adagrad"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.Adagrad(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()
    [0.8509, -2.1491]
    """

    def __init__(self, learning_rate: Any = 0.001, initial_accumulator_value: Any = 0.1,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = "adagrad") -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.initial_accumulator_value = _number(initial_accumulator_value,
                                                 "initial_accumulator_value", "Adagrad", lo=0.0)
        self.epsilon = _number(epsilon, "epsilon", "Adagrad", lo=0.0)

    def _slot_names(self):
        return ("accumulator",)

    def _slots_of(self, param):
        new = id(param) not in self._index
        slots = super()._slots_of(param)
        if new:
            slots[0].fill(self.initial_accumulator_value)
        return slots

    def _update(self, param, grad, slots, lr, grad_scale):
        ops.adagrad_update(param, grad, slots[0], lr, epsilon=self.epsilon,
                           grad_scale=grad_scale, clipvalue=self._clipvalue)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adamax(Optimizer):
    """Adamax: Adam with the infinity norm.

    ``m += (g - m)(1 - beta_1)``; ``u = max(beta_2 u, |g|)``;
    ``p -= lr m / ((1 - beta_1^t)(u + epsilon))``, with t = iterations + 1.

    Args:
        learning_rate (float or schedule, default 0.001): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        beta_1 (float, default 0.9): decay rate of the first moment, in [0, 1).
        beta_2 (float, default 0.999): decay rate of the infinity norm, in [0, 1).
        epsilon (float, default 1e-7): small constant for numerical stability.
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "adamax"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.Adamax(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()
    [0.8, -2.2]
    """

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = "adamax") -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = _number(beta_1, "beta_1", "Adamax", lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = _number(beta_2, "beta_2", "Adamax", lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = _number(epsilon, "epsilon", "Adamax", lo=0.0)

    def _slot_names(self):
        return ("momentum", "norm")

    def _update(self, param, grad, slots, lr, grad_scale):
        m, u = slots
        ops.adamax_update(param, grad, m, u, lr, self.iterations + 1, beta_1=self.beta_1,
                          beta_2=self.beta_2, epsilon=self.epsilon, grad_scale=grad_scale,
                          clipvalue=self._clipvalue)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Nadam(Optimizer):
    """Nadam: Adam with Nesterov momentum, Keras 3's update.

    Dozat's momentum schedule ``u_t = beta_1 (1 - 0.5 * 0.96^t)``; see
    ``nanonet.reference.nadam_update`` for the equations. Keras keeps the product of the u_t
    as a variable; here it is a function of ``iterations`` (float64, cached), so
    ``variables`` stays [iterations] + slots and a saved optimizer resumes exactly.

    Args:
        learning_rate (float or schedule, default 0.001): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        beta_1 (float, default 0.9): decay rate of the first moment, in [0, 1).
        beta_2 (float, default 0.999): decay rate of the second moment, in [0, 1).
        epsilon (float, default 1e-7): small constant for numerical stability.
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "nadam"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.Nadam(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()
    [0.8164, -2.1836]
    """

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = "nadam") -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = _number(beta_1, "beta_1", "Nadam", lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = _number(beta_2, "beta_2", "Nadam", lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = _number(epsilon, "epsilon", "Nadam", lo=0.0)
        self._u_cache = (0, 1.0)  # (t, prod_{i <= t} u_i)

    def _u_product(self, t):
        """prod_{i = 1..t} beta_1 (1 - 0.5 * 0.96^i)."""
        t0, prod = self._u_cache
        if t0 > t:
            t0, prod = 0, 1.0
        for i in range(t0 + 1, t + 1):
            prod *= self.beta_1 * (1.0 - 0.5 * 0.96 ** i)
        self._u_cache = (t, prod)
        return prod

    def _slot_names(self):
        return ("momentum", "velocity")

    def _update(self, param, grad, slots, lr, grad_scale):
        m, v = slots
        t = self.iterations + 1
        ops.nadam_update(param, grad, m, v, lr, t, self._u_product(t), beta_1=self.beta_1,
                         beta_2=self.beta_2, epsilon=self.epsilon, grad_scale=grad_scale,
                         clipvalue=self._clipvalue)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Lion(Optimizer):
    """Lion (Chen et al., 2023): the sign of an interpolated momentum.

    ``p -= lr sign(beta_1 m + (1 - beta_1) g)``, then ``m = beta_2 m + (1 - beta_2) g``.
    Every step moves each parameter by lr, so Lion usually wants a smaller learning rate
    than Adam.

    Args:
        learning_rate (float or schedule, default 0.001): a positive number, or a callable
            ``step -> lr`` such as a ``nanonet.schedules.LearningRateSchedule``.
        beta_1 (float, default 0.9): interpolation for the update, in (0, 1].
        beta_2 (float, default 0.99): decay rate of the momentum, in [0, 1].
        weight_decay (float or None, default None): decoupled weight decay: each parameter
            shrinks by ``p * weight_decay * lr`` before its update.
        clipnorm (float or None, default None): scale each gradient to norm <= clipnorm.
        clipvalue (float or None, default None): clip each gradient element to
            [-clipvalue, clipvalue].
        global_clipnorm (float or None, default None): scale all gradients together so that
            their joint norm is <= global_clipnorm (at most one of the three clips).
        name (str, default "lion"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range), or more than one
            of clipnorm, clipvalue and global_clipnorm.

    Example:

    >>> p = np.array([1.0, -2.0])             # updated in place
    >>> g = np.array([0.5, 0.5])
    >>> opt = nn.optimizers.Lion(learning_rate=0.1)
    >>> opt.apply([g], [p]); opt.apply([g], [p])
    >>> np.round(p, 4).tolist()
    [0.8, -2.2]
    """

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.99,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 name: str | None = "lion") -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = _number(beta_1, "beta_1", "Lion", lo=0.0, hi=1.0, lo_open=True)
        self.beta_2 = _number(beta_2, "beta_2", "Lion", lo=0.0, hi=1.0)

    def _slot_names(self):
        return ("momentum",)

    def _update(self, param, grad, slots, lr, grad_scale):
        ops.lion_update(param, grad, slots[0], lr, beta_1=self.beta_1, beta_2=self.beta_2,
                        grad_scale=grad_scale, clipvalue=self._clipvalue)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


class _Private:
    """DP-SGD's part of an optimizer (mixed into DPSGD and DPAdam; see nanonet.privacy).

    l2_norm_clip: every example's gradient (all trainable weights together) is scaled to an L2
    norm of at most this (TF Privacy's name; Opacus: max_grad_norm). noise_multiplier: Gaussian
    noise of std noise_multiplier * l2_norm_clip is added to the sum of the clipped gradients
    (both libraries' name), which is then divided by the batch size (the expected batch size
    under ``fit(sampling="poisson")``). The noise is Philox4x32-10 + Box-Muller in C++
    (``nanonet.ops.gaussian_noise_acc``) under a 64-bit key from the operating system's
    cryptographic source (``secrets``); after ``nanonet.set_seed`` the key comes from nanonet's
    Generator instead, repeatable, with a warning: for tests only."""
    is_private = True

    def _init_private(self, l2_norm_clip, noise_multiplier):
        cls = type(self).__name__
        self.l2_norm_clip = _number(l2_norm_clip, "l2_norm_clip", cls, lo=0.0, lo_open=True)
        self.noise_multiplier = _number(noise_multiplier, "noise_multiplier", cls, lo=0.0)
        self.expected_batch_size = None  # set by fit(sampling="poisson")
        self.sampling_rate = None        # batch_size / samples, set during fit (PrivacyBudget)
        self._noise_key = None           # Philox key, made on first use
        self._noise_step = 0             # steps noised so far: the counters' high 64 bits

    def noise_key(self):
        """The 64-bit Philox key the noise is drawn with (made on first use): from the
        operating system's cryptographic source, or from nanonet's Generator after
        ``nanonet.set_seed`` (repeatable, with a warning: for tests only)."""
        if self._noise_key is None:
            from . import random as _random
            if _random.is_seeded():
                warnings.warn(f"{type(self).__name__}: nanonet.set_seed was called, so the DP "
                              "noise is repeatable; that is for testing only (an attacker "
                              "who knows the seed can remove the noise)", RuntimeWarning,
                              stacklevel=3)
                self._noise_key = int(np.random.default_rng(_random.draw_seed())
                                      .integers(0, 1 << 64, dtype=np.uint64))
            else:
                import secrets  # on first use: it costs ~20 ms of import time
                self._noise_key = secrets.randbits(64)
        return self._noise_key

    def privatize(self, clipped_sums, params, batch):
        """Add the noise to the summed clipped gradients ({id(param): array}; a missing one is
        zero) and divide by the batch size; returns {id(param): gradient} for every param. The
        arrays of clipped_sums are updated in place when they are writeable, C-contiguous and
        of the parameter's dtype and shape.

        One pass over each gradient (``ops.gaussian_noise_acc``): g = (g + std z) / B
        with std = noise_multiplier * l2_norm_clip and z from Philox4x32-10 under
        ``noise_key()``; step s's parameters use the counters (s << 64) + offset, offset
        running over the parameters, so no counter is used twice under one key."""
        denom = self.expected_batch_size or batch
        std = self.noise_multiplier * self.l2_norm_clip
        inv = 1.0 / denom
        if std > 0:
            key = self.noise_key()
            counter = self._noise_step << 64
            self._noise_step += 1
        out = {}
        for p in params:
            g = clipped_sums.get(id(p))
            if g is None:
                if std > 0:  # noise only: written, nothing read
                    out[id(p)] = ops.gaussian_noise(p.shape, key, counter, std * inv, p.dtype)
                    counter += ops.noise_counters(p.size)
                    continue
                g = np.zeros_like(p)
            elif (type(g) is not np.ndarray or g.dtype != p.dtype or g.shape != p.shape or
                  not g.flags.c_contiguous or not g.flags.writeable):
                g = np.array(g, dtype=p.dtype).reshape(p.shape)
            if std > 0:
                ops.gaussian_noise_acc(g, key, counter, std, inv)
                counter += ops.noise_counters(g.size)
            else:
                g *= p.dtype.type(inv)
            out[id(p)] = g
        return out

    def _private_config(self):
        return {"l2_norm_clip": self.l2_norm_clip, "noise_multiplier": self.noise_multiplier}


class DPSGD(_Private, SGD):
    """SGD (momentum, nesterov) on differentially private gradients: DP-SGD (Abadi et al. 2016).
    l2_norm_clip and noise_multiplier as in TF Privacy's DPKerasSGDOptimizer (Opacus:
    max_grad_norm, noise_multiplier); see nanonet.privacy for what a step computes.

    Each example's gradient (all trainable weights together) is clipped to an L2 norm of at
    most l2_norm_clip, the clipped gradients are summed, Gaussian noise of std
    ``noise_multiplier * l2_norm_clip`` is added, the sum is divided by the batch size and
    SGD's update rule applies. ``compile`` refuses a model with a layer that cannot give
    per-example gradient norms (see nanonet.privacy). The noise comes from the operating
    system's cryptographic source unless ``nanonet.set_seed`` was called (then repeatable,
    with a RuntimeWarning: for tests only). Count the privacy spent with
    ``nanonet.callbacks.PrivacyBudget`` or ``nanonet.privacy.compute_epsilon``.

    Args:
        learning_rate (float or schedule, default 0.01): as SGD's.
        l2_norm_clip (float, default 1.0): the largest L2 norm of one example's gradient; > 0.
        noise_multiplier (float, default 1.1): noise std over l2_norm_clip; >= 0 (0 gives
            clipping without privacy).
        momentum, nesterov, weight_decay, clipnorm, clipvalue, global_clipnorm: as SGD's.
        name (str, default "DPSGD"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range).

    Example:

    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> opt = nn.optimizers.DPSGD(learning_rate=1.0, l2_norm_clip=0.5, noise_multiplier=0.0)
    >>> model.compile(optimizer=opt, loss="mse")  # no noise here, to show the clipping alone
    >>> before = model.get_weights()
    >>> _ = model.train_on_batch(np.full((1, 3), 10.0, np.float32), np.zeros((1, 1), np.float32))
    >>> step = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(model.get_weights(), before)))
    >>> round(float(step), 3)  # a huge gradient, clipped to norm 0.5, times lr 1
    0.5
    """

    def __init__(self, learning_rate: Any = 0.01, l2_norm_clip: Any = 1.0,
                 noise_multiplier: Any = 1.1, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 name: str | None = "DPSGD") -> None:
        super().__init__(learning_rate, momentum, nesterov, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)
        self._init_private(l2_norm_clip, noise_multiplier)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._private_config()}


class DPAdam(_Private, Adam):
    """Adam on differentially private gradients (TF Privacy's DPKerasAdamOptimizer); see DPSGD.

    The gradient Adam sees is DPSGD's: per-example clipping to l2_norm_clip, Gaussian noise of
    std ``noise_multiplier * l2_norm_clip`` on the sum, division by the batch size.

    Args:
        learning_rate (float or schedule, default 0.001): as Adam's.
        l2_norm_clip (float, default 1.0): the largest L2 norm of one example's gradient; > 0.
        noise_multiplier (float, default 1.1): noise std over l2_norm_clip; >= 0.
        beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue, global_clipnorm: as Adam's.
        name (str, default "DPAdam"): the optimizer's name.

    Raises:
        ValueError: an argument out of its range (named, with the range).

    Example:

    >>> x = np.random.rand(16, 3).astype("float32")
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> opt = nn.optimizers.DPAdam(learning_rate=0.01, l2_norm_clip=1.0, noise_multiplier=0.0)
    >>> model.compile(optimizer=opt, loss="mse")
    >>> _ = model.fit(x, x.sum(axis=1, keepdims=True), batch_size=4, epochs=1, verbose=0)
    >>> int(opt.iterations), opt.get_config()["l2_norm_clip"]
    (4, 1.0)
    """

    def __init__(self, learning_rate: Any = 0.001, l2_norm_clip: Any = 1.0,
                 noise_multiplier: Any = 1.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = "DPAdam") -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm,
                         clipvalue, global_clipnorm, name)
        self._init_private(l2_norm_clip, noise_multiplier)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._private_config()}


_CLASSES = (SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, Nadam, Lion, DPSGD, DPAdam)
_NAMES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
          "adamax": Adamax, "nadam": Nadam, "lion": Lion}
_REGISTRY = Registry("optimizers", "optimizer", _NAMES, _CLASSES)
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier: Any) -> Any:
    """A fresh optimizer from a name, a serialized dict, or an Optimizer.

    Args:
        identifier (str, dict or Optimizer): "sgd", "adam", "adamw", "rmsprop", "adagrad",
            "adamax", "nadam", "lion" (Keras's defaults), a class name, ``serialize``'s dict;
            an Optimizer is returned as is.

    Returns:
        Optimizer: the optimizer.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:

    >>> nn.optimizers.get("adam")
    <Adam learning_rate=0.001 iterations=0>
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier if identifier in _REGISTRY.table else identifier.lower()
        return _REGISTRY.lookup(key if key in _REGISTRY.table else identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret optimizer {identifier!r}; pass a name "
                     f"({sorted(_NAMES)}) or a nanonet.optimizers.Optimizer")
