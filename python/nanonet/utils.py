"""Small helpers with Keras names: ``to_categorical``, ``Progbar``, ``PyDataset``; and, from
nanonet.plotting (matplotlib, imported on first use), ``plot_history`` and ``plot_model``.

Pure NumPy; nothing here touches the compiled core.
"""
from __future__ import annotations

import math
import numbers
import sys
import time
from typing import Any

import numpy as np

__all__ = ["to_categorical", "plot_history", "plot_model"]


def __getattr__(name):
    if name in ("plot_history", "plot_model"):
        from . import plotting
        return getattr(plotting, name)
    raise AttributeError(f"module 'nanonet.utils' has no attribute {name!r}")


def to_categorical(y: Any, num_classes: int | None = None, dtype: Any = "float32") -> np.ndarray:
    """One-hot encode integer class labels, as ``keras.utils.to_categorical``.

    Args:
        y: array-like of integer labels in ``[0, num_classes)``, any shape. Floats are accepted
            when they hold whole numbers (``2.0``). A trailing axis of length 1 is dropped first,
            as in Keras: ``(N, 1)`` gives ``(N, num_classes)``.
        num_classes: number of classes; ``None`` (or 0, as in Keras) means ``max(y) + 1``.
        dtype: dtype of the result, ``"float32"`` by default.

    Returns:
        ``np.ndarray`` of shape ``y.shape + (num_classes,)`` (after dropping a trailing 1) with a
        single 1 per row, zeros elsewhere.

    Raises:
        ValueError: labels that are negative, not whole numbers, or ``>= num_classes``;
            ``num_classes`` that is negative; empty ``y`` without ``num_classes``.
        TypeError: non-numeric ``y``, a non-integer ``num_classes`` or an unknown ``dtype``.

    Unlike Keras, a negative label raises instead of silently wrapping to the last class.

    >>> nn.utils.to_categorical([0, 2, 1], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"to_categorical: dtype must be a NumPy dtype; got {dtype!r}") from e
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise TypeError(f"to_categorical: y must hold integer class labels; got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.complexfloating):
        raise TypeError(f"to_categorical: y must hold integer class labels; got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(y))].ravel()[0].item()
            raise ValueError(
                f"to_categorical: y must hold whole-number class labels; got {bad!r}")
    labels = y.astype(np.int64)

    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    flat = labels.reshape(-1)

    if num_classes is not None and (isinstance(num_classes, (bool, np.bool_))
                                    or not isinstance(num_classes, numbers.Integral)):
        raise TypeError(
            f"to_categorical: num_classes must be an int or None; got {num_classes!r}")
    if num_classes is not None and num_classes < 0:
        raise ValueError(f"to_categorical: num_classes must be >= 1; got {num_classes}")
    if not num_classes:
        if flat.size == 0:
            raise ValueError(
                "to_categorical: y is empty, so num_classes must be given; got num_classes=None")
        num_classes = int(flat.max()) + 1
    num_classes = int(num_classes)

    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0:
            raise ValueError(f"to_categorical: labels must be >= 0; got {lo}")
        if hi >= num_classes:
            raise ValueError(
                f"to_categorical: labels must be < num_classes = {num_classes}; got {hi}")

    out = np.zeros((flat.size, num_classes), dtype=out_dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(shape + (num_classes,))


# ---- progress display and Python data sources (Keras's keras.utils.Progbar / PyDataset) ------
__all__ += ["Progbar", "PyDataset", "Sequence"]


def _is_terminal(stream):
    """Whether a progress bar can redraw in place: a tty, or a Jupyter kernel's stdout."""
    if "ipykernel" in sys.modules and stream in (sys.stdout, sys.stderr):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed stream
        return False


def format_duration(seconds: Any) -> Any:
    """``4.2s``, ``3:07`` (minutes), ``1:02:03`` (hours)."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _format_per_step(seconds, unit):
    if seconds >= 1:
        return f"{seconds:.2f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def format_logs(logs: dict[str, Any] | None) -> Any:
    """``loss: 0.1235 - accuracy: 0.9650`` (4 decimals; tiny values in e-notation)."""
    parts = []
    for k, v in (logs.items() if isinstance(logs, dict) else logs):
        if isinstance(v, numbers.Real):
            v = float(v)
            parts.append(f"{k}: {v:.4f}" if abs(v) > 1e-3 or v == 0 or not math.isfinite(v)
                         else f"{k}: {v:.4e}")
    return " - ".join(parts)


class Progbar:
    """A progress bar (Keras's ``keras.utils.Progbar``).

    On a terminal (or in Jupyter) it redraws one line in place, at most once every ``interval``
    seconds: ``37/100 [=====>.........] - ETA: 8.0s - 31ms/step - loss: 0.4312``; ``finalize``
    completes it with the elapsed time. Elsewhere (logs, CI) with ``verbose=1`` it writes a line
    every ``log_interval`` seconds, so that long runs show progress, and one at the end; with
    ``verbose=2`` only the line at the end. ``verbose=0`` shows nothing.

    Args:
        target: the number of steps, or None when unknown (``37/Unknown``).
        width: the bar's width in characters.
        verbose: 0, 1 or 2 as above.
        interval: the least time between two redraws on a terminal, in seconds.
        stateful_metrics: accepted for Keras compatibility; values are shown as given (nanonet's
            logs already hold running means).
        unit_name: the word after the time per step.
        stream: where to write (sys.stdout at each write by default).
        log_interval: the time between two lines when not on a terminal, in seconds.
        prefix: text put before every line that is not redrawn (``"Epoch 3/10 - "``).

    Between redraws ``update`` costs one clock read: the display adds nothing measurable to a
    training step.

    >>> bar = Progbar(3, verbose=2)
    >>> for i in range(3):
    ...     bar.update(i + 1, {"loss": 0.5})  # doctest: +SKIP
    """

    def __init__(self, target: Any, width: Any = 30, verbose: int | str = 1, interval: Any = 0.1,
                 stateful_metrics: Any = None, unit_name: Any = "step", stream: Any = None,
                 log_interval: Any = 5.0, prefix: Any = "") -> None:
        if target is not None and (isinstance(target, bool) or
                                   not isinstance(target, numbers.Integral) or target < 0):
            raise ValueError(f"Progbar: target must be an int >= 0 or None; got {target!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: verbose must be 0, 1 or 2; got {verbose!r}")
        self.target = None if target is None else int(target)
        self.width = int(width)
        self.verbose = verbose
        self.interval = float(interval)
        self.log_interval = float(log_interval)
        self.stateful_metrics = set(stateful_metrics or ())
        self.unit_name = unit_name
        self.prefix = prefix
        self._stream = stream
        self._dynamic = _is_terminal(self.stream)
        self._start = time.perf_counter()
        self._next = self._start + (self.interval if self._dynamic else self.log_interval)
        self._drawn = 0  # length of the line drawn in place, to blank it on the next redraw
        self._current = 0
        self._done = False

    @property
    def stream(self) -> Any:
        return self._stream if self._stream is not None else sys.stdout

    def update(self, current: Any, values: Any = None, finalize: Any = None) -> Any:
        """Show ``current`` steps done; ``values`` is a dict or (name, value) pairs shown after
        the times. ``finalize`` (by default: current reached target) writes the last line."""
        self._current = current
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        if not finalize:
            if self.verbose != 1:
                return
            now = time.perf_counter()
            if now < self._next:
                return
            self._next = now + (self.interval if self._dynamic else self.log_interval)
        elif self._done:
            return
        self._show(current, values or {}, finalize)

    def add(self, n: int, values: Any = None) -> None:
        """Advance by n steps (Keras's ``Progbar.add``)."""
        self.update(self._current + n, values)

    def _show(self, current, values, finalize):
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self._start
        per_step = _format_per_step(elapsed / current, self.unit_name) if current else ""
        logs = format_logs(values)
        target = "Unknown" if self.target is None else str(self.target)
        count = f"{current:>{len(target)}}/{target}" if self.target is not None \
            else f"{current}/{target}"
        if finalize or not current or self.target is None:
            when = format_duration(elapsed)
        else:
            when = "ETA: " + format_duration(elapsed / current * max(self.target - current, 0))
        times = " - ".join(p for p in (when, per_step) if p)
        stream = self.stream
        if self._dynamic and self.verbose == 1:
            if self.target is not None:
                done = int(self.width * min(current, self.target) / max(self.target, 1))
                bar = "=" * done + (">" if done < self.width else "")
                count += f" [{bar:<{self.width}}]"
            line = " - ".join(p for p in (count, times, logs) if p)
            pad = " " * max(self._drawn - len(line), 0)
            stream.write("\r" + line + pad + ("\n" if finalize else ""))
            self._drawn = 0 if finalize else len(line)
        else:
            if not finalize and self.target is not None:
                times = format_duration(elapsed) + " - " + times
            line = self.prefix + " - ".join(p for p in (count, times, logs) if p)
            stream.write(line + "\n")
        stream.flush()
        if finalize:
            self._done = True


class PyDataset:
    """Batches from Python code (Keras 3's ``keras.utils.PyDataset``): subclass it, define
    ``__len__`` (the number of batches) and ``__getitem__(index)`` returning ``x``, ``(x, y)`` or
    ``(x, y, sample_weight)`` for batch ``index``, and optionally ``on_epoch_end`` (and
    ``on_epoch_begin``). ``fit``, ``evaluate`` and ``predict`` take it as ``x``.

    Args:
        workers: how many batches are prepared at once; above 1, ``__getitem__`` runs in that
            many worker threads (or processes), up to ``max_queue_size`` batches ahead of the
            training step, and batches still arrive in order. Threads help when
            ``__getitem__`` reads files or calls NumPy, which release the GIL.
        use_multiprocessing: run the workers in processes instead of threads (the dataset must
            then be picklable; worth it for pure-Python ``__getitem__`` work).
        max_queue_size: the most batches prepared ahead of training.

    With ``fit(shuffle=True)`` the batch order is shuffled every epoch (from the epoch's
    random stream, so resumed runs repeat it).

    >>> class Squares(PyDataset):
    ...     def __init__(self, n, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.x = np.arange(n, dtype="float32").reshape(-1, 1)
    ...     def __len__(self):
    ...         return math.ceil(len(self.x) / 8)
    ...     def __getitem__(self, i):
    ...         xb = self.x[i * 8:(i + 1) * 8]
    ...         return xb, xb ** 2
    """

    def __init__(self, workers: Any = 1, use_multiprocessing: Any = False,
                 max_queue_size: Any = 10) -> None:
        for name, v in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"PyDataset: {name} must be a positive int; got {v!r}")
        self._workers = int(workers)
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = int(max_queue_size)

    @property
    def workers(self) -> Any:
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self) -> Any:
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self) -> Any:
        return getattr(self, "_max_queue_size", 10)

    @property
    def num_batches(self) -> Any:
        """The number of batches per epoch (``len(self)``)."""
        return len(self)

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__ (the number of "
                                  "batches)")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def on_epoch_begin(self) -> None:
        """Called before every epoch."""

    def on_epoch_end(self) -> None:
        """Called after every epoch (shuffle your data here, for example)."""


Sequence = PyDataset  # Keras's older name
