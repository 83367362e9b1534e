"""Seeding: one module-level NumPy Generator drives initialisation, shuffling and dropout.

``set_seed(s)`` replaces it with ``numpy.random.default_rng(s)``, so that everything drawn after
the call (weights of layers built afterwards, the order ``fit`` visits samples in, dropout masks)
repeats exactly from run to run. Objects that take their own ``seed=`` argument (initializers,
``Dropout``) use a Generator of their own instead and are repeatable without ``set_seed``.

NumPy's global state (``np.random.seed``) is neither used nor touched.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["set_seed", "get_generator", "make_generator"]

_generator = np.random.default_rng()


def _check_seed(seed, fn: str) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{fn}: seed must be an int; got {seed!r}")
    if seed < 0:
        raise ValueError(f"{fn}: seed must be >= 0; got {seed}")
    return int(seed)


def set_seed(seed: int) -> None:
    """Make initialisation, shuffling and dropout repeatable: reseed nanonet's Generator."""
    global _generator
    _generator = np.random.default_rng(_check_seed(seed, "set_seed"))


def get_generator() -> np.random.Generator:
    """The module-level Generator (replaced by every ``set_seed`` call, so fetch it each time)."""
    return _generator


def make_generator(seed, fn: str = "seed") -> np.random.Generator | None:
    """A Generator of its own for an object's ``seed=`` argument; None when seed is None."""
    if seed is None:
        return None
    return np.random.default_rng(_check_seed(seed, fn))
