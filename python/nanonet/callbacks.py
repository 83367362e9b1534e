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
import sys
import time
import warnings

import numpy as np

from . import distributed as _distributed

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping"]
__all__ += ["ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger",
            "TerminateOnNaN"]


class Callback:
    """Base class: every hook is a no-op; ``self.model`` and ``self.params`` are set by fit.

    ``rank0_only = True`` (ProgbarLogger, ModelCheckpoint, CSVLogger) makes CallbackList skip the
    callback on every rank but 0 under ``nanonet.distributed``: set it on callbacks that print
    or write files."""

    rank0_only = False

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

    def _here(self):
        """The callbacks that run on this rank: all on rank 0 (or one process), else those
        without ``rank0_only``."""
        if _distributed.rank() == 0:
            return self.callbacks
        return [c for c in self.callbacks if not c.rank0_only]


def _dispatch(hook):
    if hook.endswith(("batch_begin", "batch_end")) or hook.startswith("on_epoch"):
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

    rank0_only = True

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

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

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


# ---- training toolkit: ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, CSVLogger,
# TerminateOnNaN (Keras 3 names, defaults and semantics)
def _check_int(value, name, cls, lo=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{cls}: {name} must be an int >= {lo}; got {value!r}")
    return int(value)


class ModelCheckpoint(_MonitorCallback):
    """Save the model (or its weights) during training (Keras 3 semantics).

    Args:
        filepath: where to save; may hold ``str.format`` fields filled from ``epoch`` (1-based),
            ``batch`` (1-based, with an int save_freq) and the logs, e.g.
            ``"ckpt/model-{epoch:02d}-{val_loss:.2f}.nnet"``. Missing directories are created.
            Any suffix works (``.nnet`` is recommended). Saving is atomic (nanonet.saving).
        monitor: the logs key compared with save_best_only ("val_loss" by default).
        verbose: 1 prints a line for every save (or skipped save).
        save_best_only: save only when the monitored value improves on the best so far.
        save_weights_only: ``model.save_weights`` instead of ``model.save``.
        mode: "auto", "min" or "max" (see EarlyStopping).
        save_freq: "epoch" (at the end of every epoch) or an int: every that many batches.
        initial_value_threshold: with save_best_only, the value the first save must beat.

    When the monitored value, a weight or (with ``save_weights_only=False``) an optimizer slot
    is NaN or inf, nothing is written: a RuntimeWarning says why and the last good checkpoint
    stays (a diverged model is never saved, nor counted as the best).
    A checkpoint written at the end of epoch k (``{epoch}`` = k + 1) resumes training exactly
    with ``nanonet.load_model(path).fit(..., initial_epoch=k + 1)``. Put ModelCheckpoint after
    callbacks that change the model at the end of an epoch (ReduceLROnPlateau) so the file
    holds their change; callbacks' own state (patience counters) is not saved, as in Keras.
    """

    rank0_only = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            raise ValueError(f"ModelCheckpoint: filepath must be a str or os.PathLike; got "
                             f"{filepath!r}") from None
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

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
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
    """Reduce the learning rate when a monitored value has stopped improving (Keras 3).

    After ``patience`` epochs in which ``monitor`` did not improve by more than ``min_delta``,
    the learning rate becomes ``max(lr * factor, min_lr)`` (only while lr > min_lr), then
    ``cooldown`` epochs pass before the wait counts again. Adds "learning_rate" to the logs.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
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

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
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
    """Set the learning rate at the start of every epoch from ``schedule(epoch, lr)`` (or
    ``schedule(epoch)`` for a one-argument callable), epoch 0-based (Keras 3). Adds
    "learning_rate" to the epoch's logs. The result must be a positive finite number."""

    def __init__(self, schedule, verbose=0):
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

    def on_epoch_begin(self, epoch, logs=None):
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

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model, "LearningRateScheduler")


class CSVLogger(Callback):
    """Stream every epoch's logs to a CSV file: a header ``epoch,<keys sorted>`` and one row per
    epoch (0-based epoch, values as Python writes them), as Keras 3 writes it.

    When the first epoch has no validation keys, a ``val_<key>`` column is added for every key
    (filled with "NA" while absent), so later validation epochs fit the header. append=True
    appends to an existing file (its header is kept). The file is flushed after every row.
    """

    rank0_only = True

    def __init__(self, filename, separator=",", append=False):
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

    def on_train_begin(self, logs=None):
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

    def on_epoch_end(self, epoch, logs=None):
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

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
            self.csv_file = None
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite (Keras 3)."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class PrivacyBudget(Callback):
    """DP-SGD accounting during fit: after every epoch, log the privacy spent so far as
    ``epsilon`` (into History, at ``delta``) and, with ``target_epsilon``, stop training once
    the next epoch would exceed it (the last epoch run stays within the budget).

    The model must be compiled with a DP optimizer (nanonet.optimizers.DPSGD / DPAdam); the
    sampling rate is batch_size / samples of the fit call (the optimizer's ``sampling_rate``), as
    for Poisson sampling (``fit(sampling="poisson")``, which the guarantee assumes). Needs dp-accounting
    (``pip install "nanonet[privacy]"``); accountant "rdp" or "prv" as in
    ``nanonet.privacy.compute_epsilon``."""

    def __init__(self, delta, target_epsilon=None, accountant="rdp"):
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

    def on_train_begin(self, logs=None):
        from . import privacy
        privacy._dp_accounting()  # a missing package fails now, not after the first epoch
        opt = getattr(self.model, "optimizer", None)
        if not getattr(opt, "is_private", False):
            raise ValueError("PrivacyBudget: the model must be compiled with a DP optimizer "
                             f"(nanonet.optimizers.DPSGD or DPAdam); got "
                             f"{type(opt).__name__}")
        self.steps = 0
        self.epsilon = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def _epsilon(self, steps):
        from . import privacy
        opt = self.model.optimizer
        return privacy.epsilon_after_steps(opt.sampling_rate, opt.noise_multiplier, steps,
                                           self.delta, self.accountant)

    def on_epoch_end(self, epoch, logs=None):
        self.epsilon = self._epsilon(self.steps)
        if logs is not None:
            logs["epsilon"] = self.epsilon
        if self.target_epsilon is not None and self.steps and \
                self._epsilon(self.steps + self.params.get("steps", 1)) > self.target_epsilon:
            self.model.stop_training = True
