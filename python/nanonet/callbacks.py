"""Callbacks with Keras names and hooks: Callback, CallbackList, History, ProgbarLogger,
EarlyStopping.

``fit`` calls, in order: on_train_begin; per epoch on_epoch_begin, per batch
on_train_batch_begin / on_train_batch_end (which call the older on_batch_begin / on_batch_end),
then, when there is validation data, on_test_begin, on_test_batch_begin / _end, on_test_end,
then on_epoch_end(epoch, logs) with logs such as {"loss", "accuracy", "val_loss",
"val_accuracy"}; finally on_train_end. ``evaluate`` and ``predict`` call the test and predict
hooks. Batch logs hold the running means of the epoch so far; every value is a Python float.
A callback can stop training by setting ``self.model.stop_training = True``.
"""
from __future__ import annotations

import collections.abc
import csv
import inspect
import math
import numbers
import os
import re
import time
import warnings
from typing import Any

import numpy as np

from . import distributed as _distributed

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping"]
__all__ += ["ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger",
            "TerminateOnNaN"]


class Callback:
    """Base class of the callbacks: hooks that fit, evaluate and predict call.

    Every hook is a no-op; override the ones you need: ``on_train_begin/end``,
    ``on_epoch_begin/end(epoch, logs)``, ``on_train_batch_begin/end(batch, logs)``, the
    ``on_test_*`` and ``on_predict_*`` counterparts. ``logs`` is a dict of the current values
    (loss, metrics, val_*). ``self.model`` and ``self.params`` (epochs, steps, verbose) are set
    by fit; setting ``self.model.stop_training = True`` ends training after the epoch.

    ``rank0_only = True`` (ProgbarLogger, ModelCheckpoint, CSVLogger) makes CallbackList skip
    the callback on every rank but 0 under ``nanonet.distributed``: set it on callbacks that
    print or write files.

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> class PrintKeys(nn.callbacks.Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print(epoch, sorted(logs))
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[PrintKeys()])
    0 ['loss']
    1 ['loss']
    """

    rank0_only = False

    def __init__(self) -> None:
        self.params = {}
        self._model = None

    def set_params(self, params: Any) -> None:
        self.params = params

    def set_model(self, model: Any) -> None:
        self._model = model

    @property
    def model(self) -> Any:
        return self._model

    def on_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Older name of on_train_batch_begin (called by it)."""

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Older name of on_train_batch_end (called by it)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Start of a training epoch (0-based)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """End of a training epoch; logs hold the epoch's training and validation results."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Start of an evaluation batch."""

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """End of an evaluation batch; logs hold the running results."""

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Start of a prediction batch."""

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """End of a prediction batch; logs hold {"outputs": predictions of the batch}."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start of fit."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """End of fit; logs hold the last epoch's results."""

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start of evaluate (also the validation pass inside fit)."""

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        """End of evaluate; logs hold its results."""

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start of predict."""

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        """End of predict."""


_HOOKS = ("on_batch_begin", "on_batch_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
          "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end",
          "on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "on_predict_begin",
          "on_predict_end")


def _pythonify(logs):
    if not logs:
        return {} if logs is None else logs
    out = {}
    for k, v in logs.items():
        if isinstance(v, (np.ndarray, np.generic)) and np.ndim(v) == 0:
            v = v.item()
        out[k] = v
    return out


class CallbackList(Callback):
    """Calls every hook on each of its callbacks, in order.

    fit, evaluate and predict wrap the ``callbacks`` argument in one; History and
    ProgbarLogger are added on request, as fit does.

    Args:
        callbacks (list of Callback or None, default None): the callbacks.
        add_history (bool, default False): append a ``History``.
        add_progbar (bool, default False): append a ``ProgbarLogger``.
        model (Model or None, default None): set on every callback.
        **params: the ``params`` dict given to every callback.

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> cl = nn.callbacks.CallbackList([], add_history=True, model=model)
    >>> [type(c).__name__ for c in cl.callbacks]
    ['History']
    """

    def __init__(self, callbacks: Any = None, add_history: Any = False, add_progbar: Any = False,
                 model: Any = None, **params: Any) -> None:
        super().__init__()
        callbacks = [] if callbacks is None else list(callbacks)
        for i, c in enumerate(callbacks):
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks[{i}] must be a nanonet.callbacks.Callback; got "
                                f"{type(c).__name__}")
        self.callbacks = callbacks
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in callbacks):
            self.callbacks.append(ProgbarLogger())
        if add_history and not any(isinstance(c, History) for c in callbacks):
            self.callbacks.append(History())
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback: Any) -> Any:
        self.callbacks.append(callback)

    def set_params(self, params: Any) -> None:
        self.params = params
        for c in self.callbacks:
            c.set_params(params)

    def set_model(self, model: Any) -> None:
        self._model = model
        for c in self.callbacks:
            c.set_model(model)

    def __iter__(self):
        return iter(self.callbacks)

    def _here(self):
        """The callbacks that run on this rank: all on rank 0 (or one process), else those
        without ``rank0_only``."""
        if _distributed.rank() == 0:
            return self.callbacks
        return [c for c in self.callbacks if not c.rank0_only]

    def _batch_users(self, hook):
        """The callbacks here that implement a batch hook (Keras skips the others too): most
        steps then call none, which keeps fit's cost per step small."""
        key = (len(self.callbacks), _distributed.rank())
        cache = self.__dict__.get("_users")
        if cache is None or cache[0] != key:
            cache = (key, {})
            self._users = cache
        users = cache[1].get(hook)
        if users is None:
            users = [c for c in self._here() if _implements(c, hook)]
            cache[1][hook] = users
        return users


_LEGACY_HOOKS = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


def _implements(callback, hook):
    """Whether the callback does something in hook (or in its older name); a callback that
    looks attributes up its own way (__getattribute__) is asked every hook."""
    if type(callback).__getattribute__ is not object.__getattribute__:
        return True
    for name in (hook, _LEGACY_HOOKS.get(hook)):
        if name is not None and (name in vars(callback) or
                                 getattr(type(callback), name) is not getattr(Callback, name)):
            return True
    return False


def _dispatch(hook):
    if hook.endswith(("batch_begin", "batch_end")):
        def call(self, index, logs=None):
            users = self._batch_users(hook)
            if users:
                logs = _pythonify(logs)
                for c in users:
                    getattr(c, hook)(index, logs=logs)
    elif hook.startswith("on_epoch"):
        def call(self, index, logs=None):
            logs = _pythonify(logs)
            for c in self._here():
                getattr(c, hook)(index, logs=logs)
    else:
        def call(self, logs=None):
            logs = _pythonify(logs)
            for c in self._here():
                getattr(c, hook)(logs=logs)
    call.__name__ = hook
    call.__doc__ = f"Calls {hook} on every callback."
    return call


for _hook in _HOOKS:
    setattr(CallbackList, _hook, _dispatch(_hook))
del _hook


class History(Callback):
    """Records every epoch's logs; fit returns it (and sets ``model.history``).

    Attributes:
        history (dict): each logs key mapped to its per-epoch list of values.
        epoch (list of int): the epoch indices (0-based).

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    >>> sorted(history.history), history.epoch
    (['loss', 'val_loss'], [0, 1, 2])
    """

    def __init__(self) -> None:
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self


class ProgbarLogger(Callback):
    """The progress display of fit, evaluate and predict (``params["verbose"]``: 1 or 2).

    On a terminal with verbose=1: an ``Epoch 3/10`` line, then a bar redrawn in place at most
    10 times a second, ``37/100 [=====>....] - ETA: 8.0s - 31ms/step - loss: 0.4312 - ...``,
    completed at the end of the epoch with the elapsed time and the validation results. Not on a
    terminal (logs, CI) with verbose=1: a line every ``log_interval`` seconds while an epoch
    runs and one at its end, ``Epoch 3/10 - 100/100 - 3.1s - 31ms/step - loss: 0.1234 -
    val_loss: ...``; verbose=2: only the line at the end of each epoch. evaluate and predict
    show the same, without the epoch. See ``nanonet.utils.Progbar``.

    A line reads ``Epoch 3/10 - 0.4s - loss: 0.1234 - accuracy: 0.9650 - val_loss: ...``;
    nothing is printed when fit's ``verbose`` is 0. fit adds one itself when verbose > 0.

    Args:
        stream (file or None, default None): where to write (``sys.stdout`` at print time if
            None).

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> import io
    >>> out = io.StringIO()
    >>> _ = model.fit(x, y, epochs=2, verbose=2,
    ...               callbacks=[nn.callbacks.ProgbarLogger(stream=out)])
    >>> "Epoch 2/2" in out.getvalue()
    True
    """

    rank0_only = True

    def __init__(self, stream: Any = None, interval: Any = 0.1, log_interval: Any = 5.0) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.log_interval = log_interval
        self._in_fit = False
        self._bar = None
        self._seen = 0
        self._target = None

    @property
    def _verbose(self):
        return self.params.get("verbose", 1) if self.params else 1

    def _new_bar(self, prefix=""):
        from .utils import Progbar
        self._seen = 0
        self._bar = Progbar(self._target, verbose=self._verbose, stream=self.stream,
                            interval=self.interval, log_interval=self.log_interval,
                            prefix=prefix)
        return self._bar

    def _step(self, batch, logs):
        self._seen = batch + 1
        if self._bar is not None:
            self._bar.update(self._seen, logs, finalize=False)  # the end comes with its logs

    def _finish(self, logs):
        if self._bar is not None:
            self._bar.update(self._seen, logs, finalize=True)
            self._bar = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = True
        self._target = self.params.get("steps") if self.params else None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        epochs = self.params.get("epochs", "?") if self.params else "?"
        bar = self._new_bar(f"Epoch {epoch + 1}/{epochs} - ")
        if bar._dynamic and self._verbose == 1:
            print(f"Epoch {epoch + 1}/{epochs}", file=bar.stream, flush=True)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step(batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._target is None and self._seen:  # learnt from the first epoch (generators)
            self._target = self._seen
        self._finish(logs)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:
            self._target = self.params.get("steps") if self.params else None
            self._new_bar()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:
            self._step(batch, logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._target = self.params.get("steps") if self.params else None
        self._new_bar()

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step(batch, None)

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._finish(None)


_MODES = ("auto", "min", "max")


def _check_real(value, name, cls):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{cls}: {name} must be a finite number; got {value!r}")
    return float(value)


class _MonitorCallback(Callback):
    """Shared by EarlyStopping, ModelCheckpoint and ReduceLROnPlateau: which way the monitored value should
    go (mode "min", "max", or "auto": the loss goes down, a metric its ``direction``) and
    whether a value improves on a reference by more than min_delta (Keras 3 MonitorCallback)."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        cls = type(self).__name__
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{cls}: monitor must be a non-empty string; got {monitor!r}")
        if mode not in _MODES:
            raise ValueError(f"{cls}: mode must be one of {_MODES}; got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.best = None if baseline is None else _check_real(baseline, "baseline", cls)
        self.min_delta = abs(_check_real(min_delta, "min_delta", cls))
        self.monitor_op = None

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = np.less
        elif self.mode == "max":
            self.monitor_op = np.greater
        else:
            name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
            if name == "loss":
                self.monitor_op = np.less
            for m in getattr(self.model, "metrics", None) or []:
                if getattr(m, "name", None) == name and hasattr(m, "direction"):
                    self.monitor_op = np.greater if m.direction == "up" else np.less
            if self.monitor_op is None:
                raise ValueError(
                    f"{type(self).__name__}: monitor={self.monitor!r} does not say whether it "
                    "should be maximized or minimized; pass mode='max' or mode='min'")
        self.min_delta = abs(self.min_delta) if self.monitor_op is np.greater else \
            -abs(self.min_delta)

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        return bool(self.monitor_op(value - self.min_delta, reference))


class EarlyStopping(_MonitorCallback):
    """Ends training once a watched value no longer gets better (Keras 3 semantics).

    Args:
        monitor (str, default "val_loss"): the logs key to watch.
        min_delta (float, default 0): an improvement must beat the best value by more than
            this.
        patience (int, default 0): epochs without improvement after which training stops.
        verbose (int, default 0): 1 prints a message when stopping and when restoring weights.
        mode (str, default "auto"): "min", "max" or "auto" (a loss is minimized; a metric
            follows its direction, e.g. accuracy is maximized).
        baseline (float or None, default None): the wait counter only restarts once the value
            also beats the baseline.
        restore_best_weights (bool, default False): at the end of training, restore the
            weights of the best epoch (even when training ran to completion).
        start_from_epoch (int, default 0): epochs to let pass before monitoring starts.

    Attributes:
        stopped_epoch (int): the epoch (0-based) at which training stopped, 0 if it did not.

    Raises:
        ValueError: an unknown mode, or a bad patience or start_from_epoch.

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> stop = nn.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=100.0)
    >>> history = model.fit(x, y, epochs=10, verbose=0, callbacks=[stop])
    >>> len(history.history["loss"]), stop.stopped_epoch   # no epoch improves by 100
    (2, 1)
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0,
                 verbose: int | str = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__(monitor=monitor, mode=mode, baseline=None, min_delta=min_delta)
        for arg, v in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"EarlyStopping: {arg} must be an int >= 0; got {v!r}")
        self.patience = int(patience)
        self.verbose = verbose
        # the baseline only gates the wait counter; best starts empty (Keras 3)
        self.baseline = None if baseline is None else _check_real(baseline, "baseline",
                                                                   "EarlyStopping")
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def get_monitor_value(self, logs: dict[str, Any] | None) -> Any:
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {', '.join(logs or {})}",
                          stacklevel=2)
        return value

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


# ---- training toolkit: ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, CSVLogger,
# TerminateOnNaN (Keras 3 names, defaults and semantics)
def _check_int(value, name, cls, lo=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{cls}: {name} must be an int >= {lo}; got {value!r}")
    return int(value)


class ModelCheckpoint(_MonitorCallback):
    """Saves the model (or its weights) during training (Keras 3 semantics).

    When the monitored value, a weight or (with ``save_weights_only=False``) an optimizer slot
    is NaN or inf, nothing is written: a RuntimeWarning says why and the last good checkpoint
    stays (a diverged model is never saved, nor counted as the best). A checkpoint written at
    the end of epoch k (``{epoch}`` = k + 1) resumes training exactly with
    ``nanonet.load_model(path).fit(..., initial_epoch=k + 1)``. Put ModelCheckpoint after
    callbacks that change the model at the end of an epoch (ReduceLROnPlateau) so the file
    holds their change; callbacks' own state (patience counters) is not saved, as in Keras.

    Args:
        filepath (str or path): where to save; may hold ``str.format`` fields filled from
            ``epoch`` (1-based), ``batch`` (1-based, with an int save_freq) and the logs, e.g.
            ``"ckpt/model-{epoch:02d}-{val_loss:.2f}.nnet"``. Missing directories are
            created; saving is atomic (``nanonet.saving``); ``.nnet`` is the recommended
            suffix.
        monitor (str, default "val_loss"): the logs key compared with save_best_only.
        verbose (int, default 0): 1 prints a line for every save (or skipped save).
        save_best_only (bool, default False): save only when the monitored value improves on
            the best so far.
        save_weights_only (bool, default False): ``model.save_weights`` instead of
            ``model.save``.
        mode (str, default "auto"): "min", "max" or "auto" (a loss is minimized; a metric
            follows its direction, e.g. accuracy is maximized).
        save_freq (str or int, default "epoch"): "epoch" (the end of every epoch) or an int:
            every that many batches.
        initial_value_threshold (float or None, default None): with save_best_only, the
            value the first save must beat.

    Raises:
        ValueError: a bad mode, save_freq or filepath (a str or os.PathLike).

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> ckpt = nn.callbacks.ModelCheckpoint("model-{epoch}.nnet", monitor="loss")
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[ckpt])
    >>> nn.load_model("model-2.nnet").predict(x[:4], verbose=0).shape
    (4, 1)
    """

    rank0_only = True

    def __init__(self, filepath: str | os.PathLike[str], monitor: str = "val_loss",
                 verbose: int | str = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto",
                 save_freq: str | int = "epoch", initial_value_threshold: Any = None) -> None:
        super().__init__(monitor, mode, initial_value_threshold)
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            raise ValueError(f"ModelCheckpoint: filepath must be a str or os.PathLike; got "
                             f"{filepath!r}") from None
        from .saving import refuse_keras_name
        refuse_keras_name(self.filepath, "ModelCheckpoint")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or
                                     not isinstance(save_freq, numbers.Integral) or
                                     save_freq < 1):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive int; "
                             f"got {save_freq!r}")
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        self._current_epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current_epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if batch <= self._last_batch_seen:  # a new epoch started
            add_batches = batch + 1
        else:
            add_batches = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += add_batches
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _get_file_path(self, epoch, batch, logs):
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(f"ModelCheckpoint: cannot format filepath {self.filepath!r}: no "
                           f"{e} in the logs (available: epoch, {', '.join(logs) or 'none'})"
                           ) from None

    def _write(self, filepath):
        directory = os.path.dirname(filepath)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)

    def _non_finite(self, logs):
        """What makes this state unfit to save (the monitored value, a weight or an optimizer
        slot that is NaN or inf), or None."""
        current = logs.get(self.monitor)
        if isinstance(current, numbers.Real) and not math.isfinite(current):
            return f"{self.monitor} is {current}"
        for layer in self.model.layers:
            for w, name in zip(layer.weights, layer.weight_names):
                if w.dtype.kind == "f" and not np.isfinite(w).all():
                    return f"weight {name!r} of layer {layer.name!r} holds NaN or inf"
        optimizer = getattr(self.model, "optimizer", None)
        if not self.save_weights_only and optimizer is not None:
            for k, v in enumerate(optimizer.variables):
                if v.dtype.kind == "f" and not np.isfinite(v).all():
                    return f"optimizer variables[{k}] holds NaN or inf"
        return None

    def _save_model(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        # A diverged model never replaces the last good checkpoint (nor becomes the "best").
        problem = self._non_finite(logs)
        if problem is not None:
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1}: not saving to {filepath!r}: "
                          f"{problem}; the last checkpoint is kept", RuntimeWarning,
                          stacklevel=2)
            return
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: saving model to {filepath}")
            self._write(filepath)
            return
        if self.monitor_op is None:
            self._set_monitor_op()
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available, skipping.",
                          stacklevel=2)
            return
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                best = "inf" if self.best is None else f"{self.best:.5f}"
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {best} to "
                      f"{current:.5f}, saving model to {filepath}")
            self.best = current
            self._write(filepath)
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")


def _learning_rate(model, cls):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"{cls}: the model must be compiled with an optimizer that has a "
                         "learning_rate")
    return float(optimizer.learning_rate)


def _set_learning_rate(model, value, cls):
    optimizer = model.optimizer
    if getattr(optimizer, "learning_rate_schedule", None) is not None:
        raise TypeError(f"{cls}: the optimizer's learning_rate is a schedule "
                        f"({optimizer.learning_rate_schedule!r}), so it cannot be set; use a "
                        "constant learning rate with this callback")
    optimizer.learning_rate = value


class ReduceLROnPlateau(_MonitorCallback):
    """Lowers the learning rate once a watched value no longer gets better (Keras 3).

    After ``patience`` epochs in which ``monitor`` did not improve by more than ``min_delta``,
    the learning rate becomes ``max(lr * factor, min_lr)`` (only while lr > min_lr); then
    ``cooldown`` epochs pass before the wait counts again. Adds "learning_rate" to the logs.

    Args:
        monitor (str, default "val_loss"): the logs key to watch.
        factor (float, default 0.1): multiplier of the learning rate, in (0, 1).
        patience (int, default 10): epochs without improvement before a reduction.
        verbose (int, default 0): 1 prints a message at each reduction.
        mode (str, default "auto"): "min", "max" or "auto" (a loss is minimized; a metric
            follows its direction, e.g. accuracy is maximized).
        min_delta (float, default 0.0001): the smallest change that counts as improvement.
        cooldown (int, default 0): epochs to wait after a reduction.
        min_lr (float, default 0.0): the learning rate's lower bound.

    Raises:
        ValueError: factor outside (0, 1), or a bad mode / patience / cooldown / min_lr.

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> reduce = nn.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=100.0,
    ...                                         factor=0.5)
    >>> history = model.fit(x, y, epochs=3, verbose=0, callbacks=[reduce])
    >>> history.history["learning_rate"]
    [0.01, 0.01, 0.005]
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int | str = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta=min_delta)
        cls = "ReduceLROnPlateau"
        factor = _check_real(factor, "factor", cls)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"{cls}: factor must be in (0, 1); got {factor!r}")
        self.factor = factor
        self.patience = _check_int(patience, "patience", cls)
        self.cooldown = _check_int(cooldown, "cooldown", cls)
        self.min_lr = _check_real(min_lr, "min_lr", cls)
        if self.min_lr < 0:
            raise ValueError(f"{cls}: min_lr must be >= 0; got {min_lr!r}")
        self.verbose = verbose
        self.wait = 0
        self.cooldown_counter = 0

    def _reset(self):
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()

    def in_cooldown(self) -> Any:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _learning_rate(self.model, "ReduceLROnPlateau")
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: "
                          f"{', '.join(logs)}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = logs["learning_rate"]
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    _set_learning_rate(self.model, new_lr, "ReduceLROnPlateau")
                    if self.verbose > 0:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                              f"{new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of every epoch from a function of the epoch.

    The schedule is called as ``schedule(epoch, lr)`` (or ``schedule(epoch)`` for a
    one-argument callable), epoch 0-based, as in Keras 3; its result must be a positive
    finite number. Adds "learning_rate" to the epoch's logs.

    Args:
        schedule (callable): ``(epoch, lr) -> new lr`` or ``epoch -> new lr``.
        verbose (int, default 0): 1 prints the new rate at each epoch.

    Raises:
        ValueError: schedule is not callable, or returns something that is not a positive
            finite number.

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> sched = nn.callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    >>> history = model.fit(x, y, epochs=3, verbose=0, callbacks=[sched])
    >>> [round(lr, 4) for lr in history.history["learning_rate"]]
    [0.1, 0.05, 0.0333]
    """

    def __init__(self, schedule: Any, verbose: int | str = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"LearningRateScheduler: schedule must be callable; got "
                             f"{schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        try:
            inspect.signature(schedule).bind(0, 0.1)
            self._two_args = True
        except TypeError:
            self._two_args = False
        except ValueError:  # no signature (some builtins): try two arguments, as Keras does
            self._two_args = True

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        lr = _learning_rate(self.model, "LearningRateScheduler")
        value = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                not math.isfinite(value) or value <= 0:
            raise ValueError(f"LearningRateScheduler: the schedule must return a positive "
                             f"finite float; got {value!r} for epoch {epoch}")
        _set_learning_rate(self.model, float(value), "LearningRateScheduler")
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(value)}.")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model, "LearningRateScheduler")


class CSVLogger(Callback):
    """Streams every epoch's logs to a CSV file, as Keras 3 writes it.

    The file has a header ``epoch,<keys sorted>`` and one row per epoch (0-based epoch, values
    as Python writes them). When the first epoch has no validation keys, a ``val_<key>``
    column is added for every key (filled with "NA" while absent), so later validation epochs
    fit the header. The file is flushed after every row.

    Args:
        filename (str or path): the CSV file.
        separator (str, default ","): the field separator.
        append (bool, default False): append to an existing file (its header is kept).

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[nn.callbacks.CSVLogger("log.csv")])
    >>> open("log.csv").read().splitlines()[0]
    'epoch,loss,val_loss'
    """

    rank0_only = True

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",",
                 append: bool = False) -> None:
        super().__init__()
        try:
            self.filename = os.fspath(filename)
        except TypeError:
            raise ValueError(f"CSVLogger: filename must be a str or os.PathLike; got "
                             f"{filename!r}") from None
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character; got {separator!r}")
        self.sep = separator
        self.append = bool(append)
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, "r", newline="") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        self.writer = None
        self.keys = None
        self.csv_file = open(self.filename, mode, newline="")

    @staticmethod
    def _value(v):
        if isinstance(v, str):
            return v
        if isinstance(v, np.ndarray) and v.ndim == 0:
            return v.item()
        if isinstance(v, collections.abc.Iterable):
            return f"[{', '.join(map(str, v))}]"
        return v

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys.extend(["val_" + k for k in self.keys])
        if self.writer is None:
            class _Dialect(csv.excel):
                delimiter = self.sep
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=_Dialect, extrasaction="ignore")
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, self._value(logs.get(k, "NA"))) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.csv_file is not None:
            self.csv_file.close()
            self.csv_file = None
        self.writer = None


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch's loss is NaN or infinite (Keras 3).

    Example:

    >>> x = np.random.rand(32, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> y[0] = np.nan
    >>> history = model.fit(x, y, epochs=3, verbose=0,
    ...                     callbacks=[nn.callbacks.TerminateOnNaN()])
    Batch 0: Invalid loss, terminating training
    >>> len(history.history["loss"])
    1
    """

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


# ---- LambdaCallback, BackupAndRestore, TensorBoard -------------------------------------------
__all__ += ["LambdaCallback", "BackupAndRestore", "TensorBoard"]


class LambdaCallback(Callback):
    """A callback made of plain functions (Keras 3): ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``, and any other
    hook name (``on_test_end=...``) as a keyword.

    Example:

    >>> x = np.random.rand(16, 3).astype("float32")
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> seen = []
    >>> log = nn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    >>> _ = model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[log])
    >>> seen
    [0, 1, 2]
    """

    def __init__(self, on_epoch_begin: Any = None, on_epoch_end: Any = None,
                 on_train_begin: Any = None, on_train_end: Any = None,
                 on_train_batch_begin: Any = None, on_train_batch_end: Any = None,
                 **kwargs: Any) -> None:
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, fn in hooks.items():
            if name not in _HOOKS:
                raise ValueError(f"LambdaCallback: unknown hook {name!r}; the hooks are "
                                 f"{list(_HOOKS)}")
            if fn is None:
                continue
            if not callable(fn):
                raise ValueError(f"LambdaCallback: {name} must be callable; got {fn!r}")
            setattr(self, name, fn)


class BackupAndRestore(Callback):
    """Fault tolerance for fit (Keras 3's BackupAndRestore): back the training state up to
    ``backup_dir`` at the end of every epoch (or every ``save_freq`` batches); when fit is run
    again with a BackupAndRestore on the same directory after an interruption (an exception,
    a killed process), it restores that state into the model and continues from the epoch after
    the last one backed up.

    The backup is a nanonet model file (``model.save``: weights, optimizer slots and iteration
    count, learning rate, the training seed and every layer's random state), so a run resumed
    from an epoch-end backup ends bit-identical to an uninterrupted one: the same shuffling,
    dropout masks and updates. With ``save_freq=<int>`` the backups written inside an epoch hold
    that moment's weights and the resumed run restarts that epoch (as Keras does), which is not
    bit-identical.

    Args:
        backup_dir: a directory for this run's backups only.
        save_freq: "epoch", or an int: back up every that many batches.
        double_checkpoint: also keep the previous backup, used when the latest cannot be read.
        delete_checkpoint: delete ``backup_dir`` when fit ends normally.

    The model must be built (and compiled) before fit. Under ``nanonet.distributed`` every rank
    restores and rank 0 writes.

    Example:

    >>> x = np.random.rand(16, 3).astype("float32")
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> backup = nn.callbacks.BackupAndRestore("backup")  # re-run the same fit after a crash
    >>> history = model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[backup])
    >>> import os
    >>> len(history.history["loss"]), os.path.exists("backup")  # deleted after a clean end
    (2, False)
    """

    def __init__(self, backup_dir: Any, save_freq: str | int = "epoch",
                 double_checkpoint: Any = False, delete_checkpoint: Any = True) -> None:
        super().__init__()
        try:
            self.backup_dir = os.fspath(backup_dir)
        except TypeError:
            raise ValueError(f"BackupAndRestore: backup_dir must be a str or os.PathLike; got "
                             f"{backup_dir!r}") from None
        if not self.backup_dir:
            raise ValueError("BackupAndRestore: backup_dir must be a non-empty path; got ''")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or
                                     not isinstance(save_freq, numbers.Integral) or
                                     save_freq < 1):
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch' or a positive int; "
                             f"got {save_freq!r}")
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._current_epoch = 0
        self._batches_since_save = 0

    _NAME = re.compile(r"^backup-e(\d{6})-b(\d{9})\.nnet$")

    def _backups(self):
        """[(epoch to resume at, batches done in it, path)], newest last."""
        if not os.path.isdir(self.backup_dir):
            return []
        found = []
        for name in os.listdir(self.backup_dir):
            m = self._NAME.match(name)
            if m:
                found.append((int(m.group(1)), int(m.group(2)),
                              os.path.join(self.backup_dir, name)))
        return sorted(found)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.model.built:
            raise ValueError(f"BackupAndRestore: model {self.model.name!r} must be built before "
                             "fit (build it, or call it on a batch of data)")
        self._batches_since_save = 0
        self._current_epoch = 0
        backups = self._backups()
        for k, (epoch, _, path) in enumerate(reversed(backups)):
            try:
                self._restore(path)
            except ValueError as e:
                if k + 1 < len(backups):
                    warnings.warn(f"BackupAndRestore: cannot restore {path!r} ({e}); trying "
                                  "the previous backup", RuntimeWarning, stacklevel=2)
                    continue
                raise
            self._current_epoch = epoch
            self.model._initial_epoch = epoch
            return

    def _restore(self, path):
        """Set the model's weights, optimizer state and random state to those saved in path."""
        from .saving import load_model
        saved = load_model(path)
        model = self.model
        model.set_weights(saved.get_weights())
        mine, theirs = getattr(model, "optimizer", None), getattr(saved, "optimizer", None)
        if mine is not None and theirs is not None:
            position = {id(w): i for i, w in enumerate(saved.weights)}
            weights = model.weights
            slots = {id(weights[position[id(p)]]): s for p, s in theirs.slot_variables()}
            mine.build([weights[position[id(p)]] for p, _ in theirs.slot_variables()])
            values = [theirs.iterations]
            for p, current in mine.slot_variables():
                values.extend(slots.get(id(p), current))
            mine.set_variables(values)
            if mine.learning_rate_schedule is None and theirs.learning_rate_schedule is None:
                mine.learning_rate = theirs.learning_rate
        if len(saved.layers) != len(model.layers):
            raise ValueError(f"the backup has {len(saved.layers)} layers; model "
                             f"{model.name!r} has {len(model.layers)}")
        for theirs_layer, my_layer in zip(saved.layers, model.layers):  # by position: the
            state = theirs_layer.get_rng_state()                         # names may differ
            if state:
                my_layer.set_rng_state(state)
        model._train_seed = saved._train_seed

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current_epoch = epoch + 1
        self._batches_since_save = 0
        if self.save_freq == "epoch":
            self._save(epoch + 1, 0)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch + 1)

    def _save(self, epoch, batches):
        if _distributed.rank() != 0:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        path = os.path.join(self.backup_dir, f"backup-e{epoch:06d}-b{batches:09d}.nnet")
        self.model.save(path, overwrite=True)  # atomic: a kill mid-save keeps the last one
        keep = 2 if self.double_checkpoint else 1
        for _, _, old in self._backups()[:-keep]:
            os.remove(old)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.delete_checkpoint and _distributed.rank() == 0 and \
                os.path.isdir(self.backup_dir):
            import shutil
            shutil.rmtree(self.backup_dir)


class TensorBoard(Callback):
    """Write the training logs as TensorBoard event files (Keras 3's TensorBoard callback),
    through tensorboardX (``pip install "nanonet[tensorboard]"``; TensorFlow is not needed).

    Scalars go to ``log_dir/train`` and ``log_dir/validation`` with Keras's tags:
    ``epoch_loss``, ``epoch_accuracy``, ... per epoch (validation values without their ``val_``
    prefix), ``epoch_learning_rate``, ``epoch_steps_per_second`` with
    ``write_steps_per_second``, and ``batch_<name>`` every ``update_freq`` batches when it is
    an int; ``evaluate`` outside fit writes ``evaluation_<name>_vs_iterations``.
    ``histogram_freq=N`` adds a histogram of every weight (``<layer>/<weight>``) every N
    epochs.

    Args:
        log_dir: the directory of the event files.
        histogram_freq: epochs between weight histograms (0: none).
        write_graph, write_images, profile_batch, embeddings_freq, embeddings_metadata:
            accepted for Keras compatibility; nanonet writes no graph, images, profile or
            embeddings (write_images, profile_batch and embeddings_freq must stay off).
        write_steps_per_second: log the training speed per epoch.
        update_freq: "epoch", "batch" (every batch) or an int (every that many batches).

    Example (needs ``pip install "nanonet[tensorboard]"``):

    >>> x = np.random.rand(16, 3).astype("float32")
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> board = nn.callbacks.TensorBoard(log_dir="logs")
    >>> _ = model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[board])  # doctest: +SKIP
    """

    rank0_only = True

    def __init__(self, log_dir: Any = "logs", histogram_freq: Any = 0, write_graph: Any = True,
                 write_images: Any = False, write_steps_per_second: Any = False,
                 update_freq: Any = "epoch", profile_batch: Any = 0, embeddings_freq: Any = 0,
                 embeddings_metadata: Any = None) -> None:
        super().__init__()
        try:
            self.log_dir = os.fspath(log_dir)
        except TypeError:
            raise ValueError(f"TensorBoard: log_dir must be a str or os.PathLike; got "
                             f"{log_dir!r}") from None
        self.histogram_freq = _check_int(histogram_freq, "histogram_freq", "TensorBoard")
        for name, value in (("write_images", write_images), ("profile_batch", profile_batch),
                            ("embeddings_freq", embeddings_freq)):
            if value:
                raise ValueError(f"TensorBoard: {name} is not supported by nanonet; leave it "
                                 f"off; got {name}={value!r}")
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or
                                       not isinstance(update_freq, numbers.Integral) or
                                       update_freq < 1):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive "
                             f"int; got {update_freq!r}")
        self.update_freq = update_freq
        self.write_graph = write_graph
        self.write_steps_per_second = bool(write_steps_per_second)
        self._writers = {}
        self._train_step = 0
        self._epoch_start = 0.0
        self._epoch_steps = 0
        self._in_fit = False

    def _writer(self, which):
        w = self._writers.get(which)
        if w is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise ImportError('TensorBoard needs tensorboardX: pip install '
                                  '"nanonet[tensorboard]"') from None
            w = SummaryWriter(os.path.join(self.log_dir, which))
            self._writers[which] = w
        return w

    def _close(self):
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = True
        self._writer("train")
        self._train_step = 0

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = False
        self._close()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_steps = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._train_step += 1
        self._epoch_steps += 1
        if self.update_freq != "epoch" and self._train_step % self.update_freq == 0:
            w = self._writer("train")
            for k, v in (logs or {}).items():
                if isinstance(v, numbers.Real):
                    w.add_scalar(f"batch_{k}", float(v), self._train_step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        train, val = self._writer("train"), None
        for k, v in logs.items():
            if not isinstance(v, numbers.Real):
                continue
            if k.startswith("val_"):
                val = val or self._writer("validation")
                val.add_scalar(f"epoch_{k[4:]}", float(v), epoch)
            else:
                train.add_scalar(f"epoch_{k}", float(v), epoch)
        optimizer = getattr(self.model, "optimizer", None)
        if "learning_rate" not in logs and optimizer is not None and \
                hasattr(optimizer, "learning_rate"):
            train.add_scalar("epoch_learning_rate", float(optimizer.learning_rate), epoch)
        if self.write_steps_per_second:
            t = time.perf_counter() - self._epoch_start
            train.add_scalar("epoch_steps_per_second", self._epoch_steps / max(t, 1e-9), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for layer in self.model.layers:
                for w, name in zip(layer.weights, layer.weight_names):
                    train.add_histogram(f"{layer.name}/{name}", np.asarray(w), epoch)
        for w in self._writers.values():
            w.flush()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:
            return
        w = self._writer("validation")
        step = int(getattr(getattr(self.model, "optimizer", None), "iterations", 0) or 0)
        for k, v in (logs or {}).items():
            if isinstance(v, numbers.Real):
                w.add_scalar(f"evaluation_{k}_vs_iterations", float(v), step)
        self._close()


__all__ += ["PrivacyBudget"]


class PrivacyBudget(Callback):
    """DP-SGD accounting during fit: after every epoch, log the privacy spent so far as
    ``epsilon`` (into History, at ``delta``) and, with ``target_epsilon``, stop training once
    the next epoch would exceed it (the last epoch run stays within the budget).

    The model must be compiled with a DP optimizer (nanonet.optimizers.DPSGD / DPAdam); the
    sampling rate is batch_size / samples of the fit call (the optimizer's ``sampling_rate``), as
    for Poisson sampling (``fit(sampling="poisson")``, which the guarantee assumes). Needs dp-accounting
    (``pip install "nanonet[privacy]"``); accountant "rdp" or "prv" as in
    ``nanonet.privacy.compute_epsilon``.

    Args:
        delta (float): the delta of the (epsilon, delta) guarantee, in (0, 1); usually below
            1 / number of training examples.
        target_epsilon (float or None, default None): stop training before the epoch that
            would spend more than this.
        accountant (str, default "rdp"): "rdp" (Renyi DP) or "prv" (privacy loss random
            variables, tighter).

    Raises:
        ValueError: a bad argument (named), or, when fit starts, a model not compiled with a
            DP optimizer.
        ImportError: dp-accounting is not installed (when fit starts).

    Example (the fit needs ``pip install "nanonet[privacy]"``):

    >>> x = np.random.rand(64, 3).astype("float32")
    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    >>> model.compile(optimizer=nn.optimizers.DPSGD(noise_multiplier=1.1), loss="mse")
    >>> budget = nn.callbacks.PrivacyBudget(delta=1e-5, target_epsilon=10.0)
    >>> budget.delta, budget.target_epsilon
    (1e-05, 10.0)
    >>> history = model.fit(x, x[:, :1], batch_size=16, epochs=3, verbose=0,
    ...                     callbacks=[budget])  # doctest: +SKIP
    >>> "epsilon" in history.history  # doctest: +SKIP
    True
    """

    def __init__(self, delta: Any, target_epsilon: Any = None, accountant: Any = "rdp") -> None:
        super().__init__()
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 < delta < 1:
            raise ValueError(f"PrivacyBudget: delta must be a number in (0, 1); got {delta!r}")
        if target_epsilon is not None and (isinstance(target_epsilon, bool) or
                                           not isinstance(target_epsilon, numbers.Real) or
                                           not target_epsilon > 0):
            raise ValueError(f"PrivacyBudget: target_epsilon must be a positive number or None; "
                             f"got {target_epsilon!r}")
        if accountant not in ("rdp", "prv"):
            raise ValueError(f"PrivacyBudget: accountant must be 'rdp' or 'prv'; got "
                             f"{accountant!r}")
        self.delta = float(delta)
        self.target_epsilon = None if target_epsilon is None else float(target_epsilon)
        self.accountant = accountant
        self.steps = 0
        self.epsilon = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        from . import privacy
        privacy._dp_accounting()  # a missing package fails now, not after the first epoch
        opt = getattr(self.model, "optimizer", None)
        if not getattr(opt, "is_private", False):
            raise ValueError("PrivacyBudget: the model must be compiled with a DP optimizer "
                             f"(nanonet.optimizers.DPSGD or DPAdam); got "
                             f"{type(opt).__name__}")
        self.steps = 0
        self.epsilon = 0.0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.steps += 1

    def _epsilon(self, steps):
        from . import privacy
        opt = self.model.optimizer
        return privacy.epsilon_after_steps(opt.sampling_rate, opt.noise_multiplier, steps,
                                           self.delta, self.accountant)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epsilon = self._epsilon(self.steps)
        if logs is not None:
            logs["epsilon"] = self.epsilon
        if self.target_epsilon is not None and self.steps and \
                self._epsilon(self.steps + self.params.get("steps", 1)) > self.target_epsilon:
            self.model.stop_training = True
