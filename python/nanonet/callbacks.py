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

import math
import numbers
import sys
import time
import warnings

import numpy as np

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping"]


class Callback:
    """Base class: every hook is a no-op; ``self.model`` and ``self.params`` are set by fit."""

    def __init__(self):
        self.params = {}
        self._model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self._model = model

    @property
    def model(self):
        return self._model

    def on_batch_begin(self, batch, logs=None):
        """Older name of on_train_batch_begin (called by it)."""

    def on_batch_end(self, batch, logs=None):
        """Older name of on_train_batch_end (called by it)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Start of a training epoch (0-based)."""

    def on_epoch_end(self, epoch, logs=None):
        """End of a training epoch; logs hold the epoch's training and validation results."""

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        """Start of an evaluation batch."""

    def on_test_batch_end(self, batch, logs=None):
        """End of an evaluation batch; logs hold the running results."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Start of a prediction batch."""

    def on_predict_batch_end(self, batch, logs=None):
        """End of a prediction batch; logs hold {"outputs": predictions of the batch}."""

    def on_train_begin(self, logs=None):
        """Start of fit."""

    def on_train_end(self, logs=None):
        """End of fit; logs hold the last epoch's results."""

    def on_test_begin(self, logs=None):
        """Start of evaluate (also the validation pass inside fit)."""

    def on_test_end(self, logs=None):
        """End of evaluate; logs hold its results."""

    def on_predict_begin(self, logs=None):
        """Start of predict."""

    def on_predict_end(self, logs=None):
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
    """Calls every hook on each of its callbacks, in order (History and ProgbarLogger added on
    request, as fit does)."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
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

    def append(self, callback):
        self.callbacks.append(callback)

    def set_params(self, params):
        self.params = params
        for c in self.callbacks:
            c.set_params(params)

    def set_model(self, model):
        self._model = model
        for c in self.callbacks:
            c.set_model(model)

    def __iter__(self):
        return iter(self.callbacks)


def _dispatch(hook):
    if hook.endswith(("batch_begin", "batch_end")) or hook.startswith("on_epoch"):
        def call(self, index, logs=None):
            logs = _pythonify(logs)
            for c in self.callbacks:
                getattr(c, hook)(index, logs=logs)
    else:
        def call(self, logs=None):
            logs = _pythonify(logs)
            for c in self.callbacks:
                getattr(c, hook)(logs=logs)
    call.__name__ = hook
    call.__doc__ = f"Calls {hook} on every callback."
    return call


for _hook in _HOOKS:
    setattr(CallbackList, _hook, _dispatch(_hook))
del _hook


class History(Callback):
    """Records every epoch's logs: ``history`` maps each key to its per-epoch list, ``epoch``
    lists the epoch indices. fit returns it (and sets ``model.history``)."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self


def _format_logs(logs):
    parts = []
    for k, v in logs.items():
        if isinstance(v, numbers.Real):
            v = float(v)
            parts.append(f"{k}: {v:.4f}" if abs(v) > 1e-3 or v == 0 or not math.isfinite(v)
                         else f"{k}: {v:.4e}")
    return " - ".join(parts)


class ProgbarLogger(Callback):
    """Prints one line per epoch, ``Epoch 3/10 - 0.4s - loss: 0.1234 - accuracy: 0.9650 -
    val_loss: ...``, one line per evaluate and per predict, when ``params["verbose"]`` > 0.

    Output goes to ``stream`` (sys.stdout at print time by default).
    """

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream
        self._in_fit = False
        self._t0 = 0.0
        self._steps = 0

    def _print(self, line):
        print(line, file=self.stream if self.stream is not None else sys.stdout, flush=True)

    @property
    def _verbose(self):
        return self.params.get("verbose", 1) if self.params else 1

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._verbose:
            t = time.perf_counter() - self._t0
            text = _format_logs(logs or {})
            epochs = self.params.get("epochs", "?")
            self._print(f"Epoch {epoch + 1}/{epochs} - {t:.1f}s" + (f" - {text}" if text else ""))

    def on_test_begin(self, logs=None):
        self._t_test = time.perf_counter()
        self._steps = 0

    def on_test_batch_end(self, batch, logs=None):
        self._steps = batch + 1

    def on_test_end(self, logs=None):
        if self._verbose and not self._in_fit:
            t = time.perf_counter() - self._t_test
            text = _format_logs(logs or {})
            self._print(f"{self._steps}/{self._steps} - {t:.1f}s" + (f" - {text}" if text else ""))

    def on_predict_begin(self, logs=None):
        self._t_test = time.perf_counter()
        self._steps = 0

    def on_predict_batch_end(self, batch, logs=None):
        self._steps = batch + 1

    def on_predict_end(self, logs=None):
        if self._verbose:
            t = time.perf_counter() - self._t_test
            self._print(f"{self._steps}/{self._steps} - {t:.1f}s")


_MODES = ("auto", "min", "max")


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving (Keras 3 semantics).

    Args:
        monitor: the logs key to watch ("val_loss" by default).
        min_delta: an improvement must beat the best value by more than this.
        patience: epochs without improvement after which training stops.
        verbose: 1 prints a message when stopping and when restoring weights.
        mode: "min", "max" or "auto" (loss -> min; otherwise the metric's direction, e.g.
            accuracy -> max; ValueError when unknown).
        baseline: the wait counter only restarts once the value also beats the baseline.
        restore_best_weights: at the end of training, restore the weights of the best epoch
            (even when training ran to completion without stopping).
        start_from_epoch: epochs to let pass before monitoring starts.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if not isinstance(monitor, str):
            raise ValueError(f"EarlyStopping: monitor must be a string; got {monitor!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta):
            raise ValueError(f"EarlyStopping: min_delta must be a finite number; got {min_delta!r}")
        for arg, v in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"EarlyStopping: {arg} must be an int >= 0; got {v!r}")
        if mode not in _MODES:
            raise ValueError(f"EarlyStopping: mode must be one of {_MODES}; got {mode!r}")
        if baseline is not None and (isinstance(baseline, bool) or
                                     not isinstance(baseline, numbers.Real)):
            raise ValueError(f"EarlyStopping: baseline must be a number or None; got {baseline!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = mode
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.monitor_op = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

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
                    f"EarlyStopping: monitor={self.monitor!r} does not say whether it should be "
                    "maximized or minimized; pass mode='max' or mode='min'")
        if self.monitor_op is np.less:
            self.min_delta = -abs(self.min_delta)
        else:
            self.min_delta = abs(self.min_delta)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        return bool(self.monitor_op(value - self.min_delta, reference))

    def get_monitor_value(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {', '.join(logs or {})}",
                          stacklevel=2)
        return value

    def on_epoch_end(self, epoch, logs=None):
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

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)
