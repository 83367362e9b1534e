"""Seeding: one module-level NumPy Generator drives initialisation, shuffling and dropout.

``set_seed(s)`` replaces it with ``numpy.random.default_rng(s)``, so that everything drawn after
the call (weights of layers built afterwards, the order ``fit`` visits samples in, dropout masks)
repeats exactly from run to run. Objects that take their own ``seed=`` argument (initializers,
``Dropout``) use a Generator of their own instead and are repeatable without ``set_seed``.

NumPy's global state (``np.random.seed``) is neither used nor touched.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["set_seed", "is_seeded", "get_generator", "make_generator", "get_state", "set_state", "draw_seed",
           "derive_generator", "enter_epoch", "exit_epoch"]

# Made on first use (numpy.random costs ~25 ms of import time); set_seed replaces it.
_generator = None


def _check_seed(seed, fn: str) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{fn}: seed must be an int; got {seed!r}")
    if seed < 0:
        raise ValueError(f"{fn}: seed must be >= 0; got {seed}")
    return int(seed)


_seeded = False  # whether set_seed was called (DP noise then becomes repeatable, for tests)


def set_seed(seed: int) -> None:
    """Makes weight initialization, shuffling and dropout repeatable.

    Reseeds nanonet's random generator; layers with their own ``seed=`` keep their own
    streams. Results are then identical for a given seed and thread count.

    Args:
        seed (int): a non-negative integer.

    Raises:
        TypeError: seed is not an int.
        ValueError: seed < 0.

    Example:

    >>> nn.set_seed(42)
    >>> a = nn.layers.Dense(3)
    >>> a.build((None, 2))
    >>> nn.set_seed(42)
    >>> b = nn.layers.Dense(3)
    >>> b.build((None, 2))
    >>> bool(np.array_equal(a.kernel, b.kernel))
    True
    """
    global _generator, _seeded
    _generator = np.random.default_rng(_check_seed(seed, "set_seed"))
    _seeded = True


def is_seeded() -> bool:
    """Whether ``set_seed`` was called in this process."""
    return _seeded


def get_generator() -> np.random.Generator:
    """The module-level Generator (replaced by every ``set_seed`` call, so fetch it each time);
    inside a ``fit`` epoch, that epoch's Generator (see ``enter_epoch``)."""
    return _module_generator() if _epoch_generator is None else _epoch_generator


def _module_generator() -> np.random.Generator:
    global _generator
    if _generator is None:
        _generator = np.random.default_rng()
    return _generator


def make_generator(seed: int | None, fn: str = "seed") -> np.random.Generator | None:
    """A Generator of its own for an object's ``seed=`` argument; None when seed is None."""
    if seed is None:
        return None
    return np.random.default_rng(_check_seed(seed, fn))


# ---- checkpoint and resume
# fit draws epoch e's shuffling order and dropout masks from derive_generator(seed, e), where seed
# is the model's training seed (drawn once from the module Generator, saved in the model file).
# A run resumed with fit(initial_epoch=k) therefore needs only the seed and k to repeat epochs
# k, k+1, ... exactly; nothing depends on how many numbers earlier epochs drew.
_epoch_generator = None


def draw_seed() -> int:
    """A new seed in [0, 2**63) drawn from the module Generator (repeatable after set_seed)."""
    return int(get_generator().integers(0, 2**63 - 1, dtype=np.int64))


def derive_generator(seed: int, *keys: int) -> np.random.Generator:
    """A Generator determined by (seed, *keys) alone (NumPy's SeedSequence spawning rule)."""
    return np.random.default_rng(np.random.SeedSequence([_check_seed(seed, "derive_generator"),
                                                         *(int(k) for k in keys)]))


def enter_epoch(seed: int, epoch: int) -> np.random.Generator:
    """Make derive_generator(seed, epoch) what get_generator() returns until exit_epoch();
    returns it. fit calls it at the start of every epoch."""
    global _epoch_generator
    _epoch_generator = derive_generator(seed, epoch)
    return _epoch_generator


def exit_epoch() -> None:
    """Return get_generator() to the module Generator (fit calls it when training ends)."""
    global _epoch_generator
    _epoch_generator = None


def get_state() -> dict:
    """The module Generator's state (a JSON-able dict of ints and strings)."""
    return _module_generator().bit_generator.state


def set_state(state: dict) -> None:
    """Restore the module Generator from ``get_state()``'s dict (ValueError if it is invalid)."""
    global _generator
    if not isinstance(state, dict) or not isinstance(state.get("bit_generator"), str):
        raise ValueError(f"set_state: expected a dict from get_state(); got {state!r}")
    bit_generator = getattr(np.random, state["bit_generator"], None)
    if bit_generator not in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                             np.random.Philox, np.random.SFC64):
        raise ValueError(f"set_state: unknown bit generator {state['bit_generator']!r}")
    bg = bit_generator()
    try:
        bg.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ValueError(f"set_state: invalid state for {state['bit_generator']}: {e}") from None
    _generator = np.random.Generator(bg)
