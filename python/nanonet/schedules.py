"""Learning-rate schedules: a callable ``step -> learning rate`` usable wherever a learning rate is.

Names, arguments and formulas are Keras 3's (``keras.optimizers.schedules``); ``step`` is the
number of optimizer updates done so far (0 for the first update), as an optimizer passes it.

    ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase=False)
        lr = initial_learning_rate * decay_rate ** (step / decay_steps)     (floor() if staircase)
    InverseTimeDecay(initial_learning_rate, decay_steps, decay_rate, staircase=False)
        lr = initial_learning_rate / (1 + decay_rate * step / decay_steps)  (floor() if staircase)
    PiecewiseConstantDecay(boundaries, values)
        values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <=
        boundaries[i], values[-1] once step > boundaries[-1]
    CosineDecay(initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None,
                warmup_steps=0)
        without warmup: s = min(step, decay_steps),
            lr = initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps))
                                          + alpha)
        with warmup_target: s = min(step, warmup_steps + decay_steps); while s < warmup_steps
            lr = initial_learning_rate + (warmup_target - initial_learning_rate) * s /
            warmup_steps, then the cosine decay above from warmup_target over s - warmup_steps.

Serialization: ``serialize(schedule)`` gives a JSON-able ``{"class_name": ..., "config": {...}}``
and ``deserialize`` (or ``get``) rebuilds it from the registry of schedule classes; nothing is
imported or executed from a config. ``register`` adds a user subclass to the registry.
"""
from __future__ import annotations

import abc
import math
import numbers
from typing import Any

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay",
           "InverseTimeDecay", "serialize", "deserialize", "get", "register"]


def _real(value, name: str, cls: str, lo=None, lo_open=False, hi=None, integral=False):
    """value as a finite float (ValueError naming the argument otherwise), within [lo, hi]."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value)
    if ok and integral:
        ok = value == math.floor(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        kind = "an integer" if integral else "a finite number"
        rng = ""
        if lo is not None:
            rng += f" {'>' if lo_open else '>='} {lo:g}"
        if hi is not None:
            rng += (" and" if rng else "") + f" <= {hi:g}"
        raise ValueError(f"{cls}: {name} must be {kind}{rng}; got {value!r}")
    return value


def _plain(value):
    """A config value as plain Python (int stays int, numpy scalars become float/int)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _step(step, cls: str) -> float:
    if isinstance(step, bool) or not isinstance(step, numbers.Real):
        raise TypeError(f"{cls}: step must be a number; got {type(step).__name__}")
    step = float(step)
    if not step >= 0:
        raise ValueError(f"{cls}: step must be >= 0; got {step!r}")
    return step


class LearningRateSchedule(abc.ABC):
    """Base class of the learning-rate schedules: ``schedule(step) -> float``.

    An optimizer given a schedule as ``learning_rate`` calls it with its ``iterations`` (the
    number of updates so far) before each update.

    A subclass implements ``__call__(step)`` and ``get_config()`` (the constructor's
    arguments as plain JSON-able values); ``register`` it so that ``deserialize`` and model
    files know its name.

    Example:

    >>> class HalveEvery(nn.schedules.LearningRateSchedule):
    ...     def __init__(self, lr, steps):
    ...         self.lr, self.steps = lr, steps
    ...     def __call__(self, step):
    ...         return self.lr * 0.5 ** (step // self.steps)
    ...     def get_config(self):
    ...         return {"lr": self.lr, "steps": self.steps}
    >>> HalveEvery(0.1, 10)(25)
    0.025
    """

    @abc.abstractmethod
    def __call__(self, step: Any) -> float:
        """The learning rate for optimizer step ``step`` (0, 1, 2, ...)."""

    @abc.abstractmethod
    def get_config(self) -> dict:
        """The constructor arguments, JSON-able."""

    @classmethod
    def from_config(cls, config: dict) -> Any:
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None


class ExponentialDecay(LearningRateSchedule):
    """Decays the learning rate exponentially: ``lr0 * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``, so the rate drops
    in steps.

    An optimizer given a schedule as ``learning_rate`` calls it with its ``iterations`` (the
    number of updates so far) before each update.

    Args:
        initial_learning_rate (float): lr0, > 0.
        decay_steps (int): the step count over which the rate is multiplied by decay_rate,
            > 0.
        decay_rate (float): the factor per decay_steps, > 0.
        staircase (bool, default False): decay in discrete intervals.
        name (str, default "ExponentialDecay"): the schedule's name.

    Raises:
        ValueError: an argument that is not a finite number in its range (named).

    Example:

    >>> schedule = nn.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    >>> [round(schedule(step), 4) for step in (0, 10, 20)]
    [0.1, 0.05, 0.025]
    >>> opt = nn.optimizers.SGD(learning_rate=schedule)
    """

    def __init__(self, initial_learning_rate: Any, decay_steps: Any, decay_rate: Any,
                 staircase: Any = False, name: str | None = "ExponentialDecay") -> None:
        cls = type(self).__name__
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate", cls,
                                           lo=0.0)
        self.decay_steps = _plain(decay_steps)
        _real(decay_steps, "decay_steps", cls, lo=0.0, lo_open=True)
        self.decay_rate = _real(decay_rate, "decay_rate", cls, lo=0.0, lo_open=True)
        if not isinstance(staircase, bool):
            raise ValueError(f"{cls}: staircase must be True or False; got {staircase!r}")
        self.staircase = staircase
        self.name = name

    def __call__(self, step: Any) -> float:
        p = _step(step, type(self).__name__) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """Decays the learning rate as ``lr0 / (1 + decay_rate * step / decay_steps)``.

    With ``staircase=True`` ``step / decay_steps`` is floored.

    An optimizer given a schedule as ``learning_rate`` calls it with its ``iterations`` (the
    number of updates so far) before each update.

    Args:
        initial_learning_rate (float): lr0, > 0.
        decay_steps (int): the step scale, > 0.
        decay_rate (float): the decay per decay_steps, >= 0.
        staircase (bool, default False): decay in discrete intervals.
        name (str, default "InverseTimeDecay"): the schedule's name.

    Raises:
        ValueError: an argument that is not a finite number in its range (named).

    Example:

    >>> schedule = nn.schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=1.0)
    >>> [round(schedule(step), 4) for step in (0, 10, 30)]
    [0.1, 0.05, 0.025]
    """

    def __init__(self, initial_learning_rate: Any, decay_steps: Any, decay_rate: Any,
                 staircase: Any = False, name: str | None = "InverseTimeDecay") -> None:
        cls = type(self).__name__
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate", cls,
                                           lo=0.0)
        self.decay_steps = _plain(decay_steps)
        _real(decay_steps, "decay_steps", cls, lo=0.0, lo_open=True)
        self.decay_rate = _real(decay_rate, "decay_rate", cls, lo=0.0)
        if not isinstance(staircase, bool):
            raise ValueError(f"{cls}: staircase must be True or False; got {staircase!r}")
        self.staircase = staircase
        self.name = name

    def __call__(self, step: Any) -> float:
        p = _step(step, type(self).__name__) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant learning rate on each interval between step boundaries.

    ``values[0]`` for ``step <= boundaries[0]``, ``values[i]`` for
    ``boundaries[i - 1] < step <= boundaries[i]``, ``values[-1]`` for
    ``step > boundaries[-1]``.

    An optimizer given a schedule as ``learning_rate`` calls it with its ``iterations`` (the
    number of updates so far) before each update.

    Args:
        boundaries (list of int): strictly increasing steps.
        values (list of float): ``len(boundaries) + 1`` learning rates.
        name (str, default "PiecewiseConstant"): the schedule's name.

    Raises:
        ValueError: boundaries not strictly increasing, or len(values) != len(boundaries) + 1.

    Example:

    >>> schedule = nn.schedules.PiecewiseConstantDecay([100, 200], [0.1, 0.01, 0.001])
    >>> [schedule(step) for step in (0, 100, 101, 500)]
    [0.1, 0.1, 0.01, 0.001]
    """

    def __init__(self, boundaries: Any, values: Any,
                 name: str | None = "PiecewiseConstant") -> None:
        cls = type(self).__name__
        if isinstance(boundaries, (str, bytes)) or not hasattr(boundaries, "__len__"):
            raise ValueError(f"{cls}: boundaries must be a list of numbers; got {boundaries!r}")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise ValueError(f"{cls}: values must be a list of numbers; got {values!r}")
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"{cls}: the length of boundaries must be 1 less than the length "
                             f"of values; got boundaries={list(boundaries)!r} of length "
                             f"{len(boundaries)} and values={list(values)!r} of length "
                             f"{len(values)}")
        for i, b in enumerate(boundaries):
            _real(b, f"boundaries[{i}]", cls)
        for i, v in enumerate(values):
            _real(v, f"values[{i}]", cls, lo=0.0)
        for i in range(1, len(boundaries)):
            if not boundaries[i] > boundaries[i - 1]:
                raise ValueError(f"{cls}: boundaries must be strictly increasing; got "
                                 f"{list(boundaries)!r}")
        self.boundaries = _plain(list(boundaries))
        self.values = [float(v) for v in values]
        self.name = name

    def __call__(self, step: Any) -> float:
        step = _step(step, type(self).__name__)
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay of the learning rate, with an optional linear warmup.

    Without warmup: ``lr = lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * step / decay_steps)) +
    alpha)`` for ``step <= decay_steps``, then ``alpha * lr0``. With ``warmup_steps`` the rate
    first rises linearly from ``initial_learning_rate`` to ``warmup_target``, then decays from
    ``warmup_target``.

    An optimizer given a schedule as ``learning_rate`` calls it with its ``iterations`` (the
    number of updates so far) before each update.

    Args:
        initial_learning_rate (float): lr0 (the start of the warmup when there is one), >= 0.
        decay_steps (int): the length of the decay, > 0.
        alpha (float, default 0.0): the final rate as a fraction of the peak, in [0, 1].
        name (str, default "CosineDecay"): the schedule's name.
        warmup_target (float or None, default None): the rate reached after warmup.
        warmup_steps (int, default 0): the length of the warmup.

    Raises:
        ValueError: an argument that is not a finite number in its range (named).

    Example:

    >>> schedule = nn.schedules.CosineDecay(0.1, decay_steps=100)
    >>> [round(schedule(step), 4) for step in (0, 50, 100, 200)]
    [0.1, 0.05, 0.0, 0.0]
    >>> warm = nn.schedules.CosineDecay(0.0, 100, warmup_target=0.1, warmup_steps=10)
    >>> [round(warm(step), 4) for step in (0, 5, 10)]
    [0.0, 0.05, 0.1]
    """

    def __init__(self, initial_learning_rate: Any, decay_steps: Any, alpha: Any = 0.0,
                 name: str | None = "CosineDecay", warmup_target: Any = None,
                 warmup_steps: Any = 0) -> None:
        cls = type(self).__name__
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate", cls,
                                           lo=0.0)
        self.decay_steps = _plain(decay_steps)
        _real(decay_steps, "decay_steps", cls, lo=0.0, lo_open=True)
        self.alpha = _real(alpha, "alpha", cls, lo=0.0, hi=1.0)
        self.warmup_target = (None if warmup_target is None
                              else _real(warmup_target, "warmup_target", cls, lo=0.0))
        self.warmup_steps = _plain(warmup_steps)
        _real(warmup_steps, "warmup_steps", cls, lo=0.0)
        self.name = name

    def _decay(self, step, decay_from):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: Any) -> float:
        step = _step(step, type(self).__name__)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


# ---------------------------------------------------------------------------------------------
# registry and serialization

_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def _snake(name: str) -> str:
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i:
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def register(cls) -> Any:
    """Registers a LearningRateSchedule subclass for ``deserialize`` and model files.

    The class is known under its class name and its snake_case form; usable as a class
    decorator.

    Args:
        cls (type): a LearningRateSchedule subclass.

    Returns:
        type: cls itself.

    Raises:
        ValueError: cls is not a LearningRateSchedule subclass.

    Example:

    >>> @nn.schedules.register
    ... class Constant(nn.schedules.LearningRateSchedule):
    ...     def __init__(self, lr):
    ...         self.lr = lr
    ...     def __call__(self, step):
    ...         return self.lr
    ...     def get_config(self):
    ...         return {"lr": self.lr}
    >>> nn.schedules.get("constant", lr=0.5)(100)
    0.5
    """
    if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
        raise ValueError(f"register: expected a LearningRateSchedule subclass; got {cls!r}")
    _REGISTRY[cls.__name__] = cls
    _ALIASES[_snake(cls.__name__)] = cls.__name__
    return cls


for _cls in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay, InverseTimeDecay):
    register(_cls)


def _lookup(name: str, fn: str) -> type:
    cls = _REGISTRY.get(name) or _REGISTRY.get(_ALIASES.get(name, ""))
    if cls is None:
        raise ValueError(f"{fn}: unknown learning-rate schedule {name!r}; known: "
                         f"{sorted(_REGISTRY)}")
    return cls


def serialize(schedule: Any) -> dict:
    """The ``{"class_name": ..., "config": {...}}`` dict of a schedule (JSON-able values).

    Args:
        schedule (LearningRateSchedule): the schedule.

    Returns:
        dict: what ``deserialize`` reads back.

    Example:

    >>> nn.schedules.serialize(nn.schedules.ExponentialDecay(0.1, 10, 0.5))["class_name"]
    'ExponentialDecay'
    """
    if not isinstance(schedule, LearningRateSchedule):
        raise ValueError(f"serialize: expected a LearningRateSchedule; got {schedule!r}")
    name = type(schedule).__name__
    if _REGISTRY.get(name) is not type(schedule):
        raise ValueError(f"serialize: {name} is not registered; decorate it with "
                         "nanonet.schedules.register so that it can be loaded again")
    return {"class_name": name,
            "config": {k: _plain(v) for k, v in schedule.get_config().items()}}


def deserialize(config: dict) -> LearningRateSchedule:
    """The schedule described by ``serialize``'s dict.

    Extra Keras keys such as "module" and "registered_name" are ignored; only registered
    classes can be built.

    Args:
        config (dict): ``{"class_name": ..., "config": {...}}``.

    Returns:
        LearningRateSchedule: the schedule.

    Raises:
        ValueError: a malformed dict or an unknown class name.

    Example:

    >>> s = nn.schedules.ExponentialDecay(0.1, 10, 0.5)
    >>> nn.schedules.deserialize(nn.schedules.serialize(s))(10)
    0.05
    """
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError("deserialize: expected a dict with 'class_name' and 'config'; got "
                         f"{config!r}")
    cls = _lookup(config["class_name"], "deserialize")
    args = config.get("config") or {}
    if not isinstance(args, dict):
        raise ValueError(f"deserialize: 'config' must be a dict; got {args!r}")
    try:
        return cls.from_config(dict(args))
    except TypeError as e:  # an unknown or missing argument
        raise ValueError(f"deserialize: bad config for {cls.__name__}: {e}") from None


def get(identifier: Any, **kwargs: Any) -> LearningRateSchedule:
    """A schedule from a schedule, a ``serialize`` dict, or a registered name and keywords.

    Args:
        identifier (LearningRateSchedule, dict or str): a schedule (returned as is), a dict,
            or a name such as "ExponentialDecay" or "exponential_decay".
        **kwargs: the constructor's arguments, with a name.

    Returns:
        LearningRateSchedule: the schedule.

    Raises:
        ValueError: an unknown name or a malformed dict.

    Example:

    >>> nn.schedules.get("exponential_decay", initial_learning_rate=0.1, decay_steps=10,
    ...                  decay_rate=0.5)
    ExponentialDecay(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5, staircase=False)
    """
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _lookup(identifier, "get")
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise ValueError(f"get: {cls.__name__} needs its arguments as keywords: {e}") \
                from None
    raise ValueError(f"get: could not interpret {identifier!r} as a learning-rate schedule; "
                     "pass a LearningRateSchedule, a config dict or a name")
