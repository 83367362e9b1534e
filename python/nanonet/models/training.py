"""The training loop shared by every model: compile, fit, evaluate, predict and the *_on_batch
methods (Keras 3's names, arguments and return values).

One training step (``train_on_batch`` and each batch of ``fit``): the graph runs forward keeping
every node's ctx (fused outputs give logits, see compile_utils); the losses give their values and
gradients wrt the outputs, times the loss weights; the graph runs backward, summing the gradients
of tensors used twice and of layers shared by several nodes; regularizer gradients are added;
the optimizer updates every trainable weight in place with one fused kernel; the metrics see the
predictions made before the update.

``fit`` visits the samples of epoch e in an order drawn from (the model's training seed, e), so a
run resumed from a checkpoint with ``initial_epoch=k`` repeats the original one; the epoch's
Generator is released in a ``finally``, also when a callback raises.

The model side (``Model`` in functional.py) provides ``inputs``, ``outputs``, ``input_names``,
``output_names``, ``_execute`` (forward) and ``_backward``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import callbacks as _callbacks
from .. import distributed as _distributed
from .. import optimizers as _optimizers
from .. import privacy as _privacy
from .. import random as _random
from . import data_adapters as _data
from .compile_utils import CompiledLoss, CompiledMetrics, mask_weights

__all__ = ["Trainer"]


def _check_verbose(verbose, fn):
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"{fn}: verbose must be 0, 1, 2 or 'auto'; got {verbose!r}")
    return int(verbose)


def _check_positive_int(value, name, fn, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{fn}: {name} must be a positive int; got {value!r}")
    return int(value)


def _check_int_min0(value, name, fn):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{fn}: {name} must be an int >= 0; got {value!r}")
    return int(value)


class Trainer:
    """compile / fit / evaluate / predict for a model (mixed into ``Model``)."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.compiled_loss = None
        self.compiled_metrics = None
        self._train_metrics = None
        self._test_metrics = None
        self._metric_owners = None
        self.stop_training = False
        self.history = None
        self._train_seed = None
        self._dp = None  # the data-parallel hook during fit / evaluate under MPI (distributed.py)

    # -- compile -------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None):
        """Set the optimizer (name or object), the loss (a name or Loss for every output, or a
        list / dict per output), loss_weights (per output) and metrics (a list; for several
        outputs a list per output or a dict by output name)."""
        names = self._compile_output_names()
        optimizer = _optimizers.get(optimizer)
        if getattr(optimizer, "is_private", False):
            _privacy.check_model(self)
        compiled_loss = CompiledLoss(loss, loss_weights, names)
        compiled_metrics = CompiledMetrics(metrics, names, compiled_loss.losses)
        self.optimizer = optimizer
        self.compiled_loss = compiled_loss
        self.compiled_metrics = compiled_metrics
        if len(names) == 1 and compiled_loss.kind == "single":
            self.loss = compiled_loss.losses[0]
        else:
            self.loss = loss
        self._train_metrics = None
        self._test_metrics = None
        self.compiled = True

    def _ensure_graph(self, fn, x=None):
        """Hook for models that build their graph lazily, from the first data (Sequential)."""

    def _compile_output_names(self):
        return list(self.output_names)

    @property
    def metrics_names(self):
        """["loss", <per-output losses when several>, <metric names in compile order>]."""
        if not self.compiled:
            return []
        return list(self.compiled_metrics.names)

    @property
    def metrics(self):
        """The training metric objects: the loss tracker(s), then the compiled metrics (once
        the model has seen data)."""
        return [] if self._train_metrics is None else list(self._train_metrics)

    def _metric_set(self, which, ys, outs):
        attr = "_train_metrics" if which == "train" else "_test_metrics"
        ms = getattr(self, attr)
        if ms is None:
            ms, owners = self.compiled_metrics.build(
                [None if y is None else y.shape for y in ys], [o.shape for o in outs],
                which == "train")
            setattr(self, attr, ms)
            self._metric_owners = owners
        return ms

    @staticmethod
    def _reset(metric_set):
        if metric_set is not None:
            for m in metric_set:
                m.reset_state()

    def reset_metrics(self):
        self._reset(self._train_metrics)
        self._reset(self._test_metrics)

    def _require_compiled(self, fn):
        if not self.compiled:
            raise RuntimeError(f"{fn}: the model must be compiled before {fn}(); call "
                               "model.compile(optimizer, loss, metrics) first")
        if self.compiled_loss.empty:
            raise ValueError(f"{fn}: the model was compiled without a loss; pass "
                             "loss=... to compile()")

    def _fused(self):
        """Whether the (first) output trains on its logits with the fused loss kernel."""
        if not self.compiled or self.compiled_loss.losses[0] is None:
            return False
        return self._fused_output(0, self.compiled_loss.losses[0])

    # -- data ------------------------------------------------------------------------------------
    def _prepare_x(self, x, fn, name="x"):
        self._ensure_graph(fn, x)
        return _data.standardize_inputs(self, x, fn, name)

    def _prepare_y(self, y, n, fn, name="y"):
        return _data.standardize_targets(self, y, n, fn, name)

    def _prepare_weights(self, sample_weight, ys, n, fn, class_weight=None):
        return _data.standardize_weights(self, sample_weight, ys, n, fn, class_weight)

    def _output_float_dtype(self, k):
        """The float dtype targets of output k are cast to: the dtype of the nearest layer with
        weights on the way back from that output (float32 when none)."""
        cache = getattr(self, "_target_dtypes", None)
        if cache is None or len(cache) != len(self.outputs):
            cache = [self._find_float_dtype(t) for t in self.outputs]
            self._target_dtypes = cache
        return cache[k]

    @staticmethod
    def _find_float_dtype(tensor):
        seen, todo = set(), [tensor]
        while todo:
            t = todo.pop(0)
            if id(t) in seen:
                continue
            seen.add(id(t))
            layer = t.layer
            if layer.weights:
                return np.dtype(layer.dtype)
            todo.extend(t.node.inputs)
        return np.dtype(tensor.dtype if str(tensor.dtype).startswith("float") else "float32")

    def _pack(self, outs):
        """Output arrays in the structure the model's outputs were given in."""
        if self._output_kind == "dict":
            return dict(zip(self.output_names, outs))
        if self._output_kind == "single" and len(outs) == 1:
            return outs[0]
        return list(outs)

    def _call_arrays(self, x, training=False):
        xs = self._prepare_x(x, "__call__")
        return self._pack(self._execute(xs, bool(training))[0])

    # -- steps -------------------------------------------------------------------------------
    def _train_step(self, xs, ys, sws):
        if self._dp is not None and xs[0].shape[0] == 0:
            # Data parallel: this rank's share of a batch smaller than the ranks is empty; it
            # still takes part in the gradient and metric reductions.
            self._apply_gradients({}, self.regularized_weights())
            return self._logs(self._train_metrics)
        cl = self.compiled_loss
        fused = cl.fused if cl.fused is not None else cl.decide_fused(self)
        outs, masks, ctxs = self._execute(xs, True, [k for k, f in enumerate(fused) if f])
        total, values, douts = cl.train_values(ys, outs, masks, sws)
        regs = self.regularized_weights()
        if regs:
            total += sum(r(w) for w, r in regs)
        if getattr(self.optimizer, "is_private", False):  # DP-SGD: clipped per example, noised
            wgrads, _ = _privacy.private_gradients(self, ctxs, douts, xs[0].shape[0])
        else:
            _, wgrads = self._backward(ctxs, douts, False)
        self._apply_gradients(wgrads, regs)
        metric_set = self._metric_set("train", ys, outs)
        self._update_metrics(metric_set, total, values, ys, outs, sws, masks, xs[0].shape[0])
        return self._logs(metric_set)

    def _apply_gradients(self, wgrads, regs):
        """Regularizer gradients added, then one optimizer step ({id(weight): grad})."""
        params = self.trainable_weights
        if params:
            if self._dp is not None:  # data parallel: the global batch's gradients, all ranks
                grads = self._dp.reduce_gradients(wgrads, params)
                wgrads = {id(p): g for p, g in zip(params, grads) if g is not None}
            for w, r in regs:
                g = wgrads.get(id(w))
                if g is None:
                    g = np.zeros_like(w)
                    wgrads[id(w)] = g
                elif not g.flags.writeable or not g.flags.owndata:
                    g = g.copy()
                    wgrads[id(w)] = g
                r.add_gradient(g, w)
            self.optimizer.apply([wgrads.get(id(p)) for p in params], params)

    def _test_step(self, xs, ys, sws):
        outs, masks, _ = self._execute(xs, False)
        total, values = self.compiled_loss.test_values(ys, outs, masks, sws)
        total += sum(self.losses)
        metric_set = self._metric_set("test", ys, outs)
        self._update_metrics(metric_set, total, values, ys, outs, sws, masks, xs[0].shape[0])
        return self._logs(metric_set)

    def _update_metrics(self, metric_set, total, values, ys, outs, sws, masks, n):
        metric_set[0].add(float(total), float(n))  # the loss, weighted by batch size
        k = 1
        if len(self.output_names) > 1:
            for v in values:
                if v is not None:
                    metric_set[k].add(float(v), float(n))
                    k += 1
        for m, owner in zip(metric_set[k:], self._metric_owners):
            mw = mask_weights(sws[owner], masks[owner], outs[owner].ndim, False)
            m.update_state(ys[owner], outs[owner], sample_weight=mw)

    def _logs(self, metric_set):
        if self._dp is not None:  # data parallel: every metric's (total, count) summed over ranks
            return self._dp.reduce_logs(metric_set, self.compiled_metrics.names)
        return {name: float(m.result())
                for name, m in zip(self.compiled_metrics.names, metric_set)}

    def _flatten_logs(self, logs, return_dict):
        if return_dict:
            return dict(logs)
        values = [logs[k] for k in self.metrics_names]
        return values[0] if len(values) == 1 else values

    # -- public training API -----------------------------------------------------------------
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One optimizer step on one batch. Returns the batch loss (no metrics), [loss, metrics...]
        or a dict (return_dict=True)."""
        fn = "train_on_batch"
        self._require_compiled(fn)
        xs = self._prepare_x(x, fn)
        n = xs[0].shape[0]
        ys = self._prepare_y(y, n, fn)
        sws = self._prepare_weights(sample_weight, ys, n, fn, class_weight)
        self._reset(self._train_metrics)
        return self._flatten_logs(self._train_step(xs, ys, sws), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics of one batch, without training (same return rules as evaluate)."""
        fn = "test_on_batch"
        self._require_compiled(fn)
        xs = self._prepare_x(x, fn)
        n = xs[0].shape[0]
        ys = self._prepare_y(y, n, fn)
        sws = self._prepare_weights(sample_weight, ys, n, fn)
        self._reset(self._test_metrics)
        return self._flatten_logs(self._test_step(xs, ys, sws), return_dict)

    def predict_on_batch(self, x):
        """Predictions for one batch: an array (a list or dict for several outputs)."""
        xs = self._prepare_x(x, "predict_on_batch")
        return self._pack(self._execute(xs, False)[0])

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, sampling="uniform"):
        """Train for ``epochs`` epochs over (x, y) in batches (Keras 3 arguments).

        validation_split takes the last fraction of the samples (before shuffling) for
        validation; validation_data=(x_val, y_val[, sample_weight_val]) overrides it.
        shuffle reshuffles the training samples every epoch (nanonet's Generator, see
        set_seed). steps_per_epoch caps the number of batches per epoch. sampling="poisson"
        (for DP-SGD, whose privacy accounting assumes it) makes each batch of an epoch take
        every sample independently with probability batch_size / n, so batch sizes vary; empty
        batches are skipped, and a DP optimizer divides by the expected batch size. Returns a
        History.
        """
        fn = "fit"
        self._require_compiled(fn)
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        epochs = _check_int_min0(epochs, "epochs", fn)
        initial_epoch = _check_int_min0(initial_epoch, "initial_epoch", fn)
        if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"{fn}: validation_split must be a float in [0, 1); got "
                             f"{validation_split!r}")
        steps_per_epoch = _check_positive_int(steps_per_epoch, "steps_per_epoch", fn)
        validation_steps = _check_positive_int(validation_steps, "validation_steps", fn)
        validation_batch_size = _check_positive_int(validation_batch_size,
                                                    "validation_batch_size", fn) or batch_size
        validation_freq = _check_positive_int(validation_freq, "validation_freq", fn,
                                              allow_none=False)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise ValueError(f"{fn}: shuffle must be True or False; got {shuffle!r}")
        if sampling not in ("uniform", "poisson"):
            raise ValueError(f"{fn}: sampling must be 'uniform' or 'poisson'; got {sampling!r}")

        xs = self._prepare_x(x, fn)
        n = xs[0].shape[0]
        ys = self._prepare_y(y, n, fn)
        sws = self._prepare_weights(sample_weight, ys, n, fn, class_weight)

        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError(f"{fn}: validation_data must be a tuple (x_val, y_val) or "
                                 f"(x_val, y_val, sample_weight_val); got "
                                 f"{type(validation_data).__name__}")
            xv = self._prepare_x(validation_data[0], fn, "validation_data[0]")
            nv = xv[0].shape[0]
            yv = self._prepare_y(validation_data[1], nv, fn, "validation_data[1]")
            swv = (self._prepare_weights(validation_data[2], yv, nv, fn)
                   if len(validation_data) == 3 else [None] * len(yv))
            val = (xv, yv, swv)
        elif validation_split:
            split = _data.split_validation(n, validation_split, fn)
            tail = slice(split, None)
            head = slice(0, split)
            val = (_data.take(xs, tail), _data.take(ys, tail), _data.take(sws, tail))
            xs, ys, sws = _data.take(xs, head), _data.take(ys, head), _data.take(sws, head)
            n = split

        slices = _data.batch_slices(n, batch_size, steps_per_epoch)
        cbs = _callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                      model=self, verbose=verbose, epochs=epochs,
                                      steps=len(slices))
        self.stop_training = False
        self._dp = _distributed.DataParallel.start(self)  # None on one process
        poisson = sampling == "poisson"
        if poisson and self._dp is not None:
            raise ValueError(f"{fn}: sampling='poisson' does not run under data-parallel MPI")
        if getattr(self.optimizer, "is_private", False):  # for the noise and the accountant
            self.optimizer.expected_batch_size = min(batch_size, n) if poisson else None
            self.optimizer.sampling_rate = min(1.0, batch_size / n) if n else None
        cbs.on_train_begin()
        epoch_logs = {}
        try:
            for epoch in range(initial_epoch, epochs):
                self._reset(self._train_metrics)
                cbs.on_epoch_begin(epoch)
                rng = self._enter_epoch(epoch)  # this epoch's shuffling and dropout (resumable)
                if shuffle and not poisson:
                    order = rng.permutation(n)
                    xe, ye, swe = _data.take(xs, order), _data.take(ys, order), \
                        _data.take(sws, order)
                else:
                    xe, ye, swe = xs, ys, sws
                logs = {}
                for step, sl in enumerate(slices):
                    if poisson:  # each sample independently, with probability batch_size / n
                        sl = np.flatnonzero(rng.random(n) < batch_size / n)
                        if sl.size == 0:
                            continue
                    cbs.on_train_batch_begin(step)
                    if self._dp is not None:  # data parallel: this rank's share of the batch
                        sl = self._dp.shard(sl, xe)
                    logs = self._train_step(_data.take(xe, sl), _data.take(ye, sl),
                                            _data.take(swe, sl))
                    cbs.on_train_batch_end(step, logs)
                    if self.stop_training:
                        break
                epoch_logs = dict(logs)
                if val is not None and (epoch + 1) % validation_freq == 0:
                    val_logs = self._run_evaluation(*val, validation_batch_size,
                                                    validation_steps, cbs)
                    epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
                cbs.on_epoch_end(epoch, epoch_logs)
                if self.stop_training:
                    break
        finally:
            _random.exit_epoch()
            self._dp = None
            if getattr(self.optimizer, "is_private", False):
                self.optimizer.expected_batch_size = self.optimizer.sampling_rate = None
        cbs.on_train_end(epoch_logs)
        history = next(c for c in cbs if isinstance(c, _callbacks.History))
        self.history = history
        return history

    def _run_evaluation(self, xs, ys, sws, batch_size, max_steps, cbs):
        slices = _data.batch_slices(xs[0].shape[0], batch_size, max_steps)
        self._reset(self._test_metrics)
        cbs.on_test_begin()
        logs = {}
        for step, sl in enumerate(slices):
            cbs.on_test_batch_begin(step)
            if self._dp is not None:  # data parallel: this rank's share, metrics summed
                sl = self._dp.shard(sl)
                if sl.stop == sl.start:
                    logs = self._logs(self._test_metrics)
                    cbs.on_test_batch_end(step, logs)
                    continue
            logs = self._test_step(_data.take(xs, sl), _data.take(ys, sl), _data.take(sws, sl))
            cbs.on_test_batch_end(step, logs)
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) over (x, y) in batches, without training.

        Returns the loss as a float when no metrics were compiled (and one output), else a list
        in ``metrics_names`` order, or a dict with return_dict=True (Keras 3).
        """
        fn = "evaluate"
        self._require_compiled(fn)
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        steps = _check_positive_int(steps, "steps", fn)
        xs = self._prepare_x(x, fn)
        n = xs[0].shape[0]
        ys = self._prepare_y(y, n, fn)
        sws = self._prepare_weights(sample_weight, ys, n, fn)
        n_steps = math.ceil(n / batch_size)
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=1,
                                      steps=n_steps if steps is None else min(steps, n_steps))
        dp, self._dp = self._dp, self._dp or _distributed.DataParallel.start(self, broadcast=False)
        try:
            logs = self._run_evaluation(xs, ys, sws, batch_size, steps, cbs)
        finally:
            self._dp = dp
        return self._flatten_logs(logs, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Model outputs for x, computed in batches of batch_size (default 32): one array, or a
        list / dict of arrays for several outputs."""
        fn = "predict"
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        steps = _check_positive_int(steps, "steps", fn)
        xs = self._prepare_x(x, fn)
        n = xs[0].shape[0]
        slices = _data.batch_slices(n, batch_size, steps)
        n = slices[-1].stop
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=1, steps=len(slices))
        cbs.on_predict_begin()
        outs = None
        for step, sl in enumerate(slices):
            cbs.on_predict_batch_begin(step)
            ybs = self._execute(_data.take(xs, sl), False)[0]
            if outs is None:
                outs = [np.empty((n,) + yb.shape[1:], dtype=yb.dtype) for yb in ybs]
            for o, yb in zip(outs, ybs):
                o[sl] = yb
            cbs.on_predict_batch_end(step, {"outputs": self._pack(ybs)})
        cbs.on_predict_end()
        return self._pack(outs)

    # -- saving ------------------------------------------------------------------------------
    def save(self, filepath, overwrite=True):
        """Write the whole model (architecture, weights, compile settings, optimizer state,
        training seed) to one file, atomically; ``nanonet.load_model`` reads it back. See
        ``nanonet.saving``."""
        from .. import saving
        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        """Write the weights alone, atomically (``load_weights`` reads them back)."""
        from .. import saving
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, allow_nan=False):
        """Set the weights from a file written by ``save_weights`` or ``save`` (matched by
        position; layer classes, weight names and shapes must agree)."""
        from .. import saving
        saving.load_weights(self, filepath, allow_nan=allow_nan)

    def _enter_epoch(self, epoch):
        """Epoch ``epoch``'s Generator for fit, derived from (training seed, epoch): the seed is
        drawn once from nanonet's Generator and saved with the model, so that a model loaded
        from a checkpoint and trained with fit(initial_epoch=k) repeats the original run."""
        if getattr(self, "_train_seed", None) is None:
            self._train_seed = _random.draw_seed()
        return _random.enter_epoch(self._train_seed, epoch)

    def summary(self, line_length=None, positions=None, print_fn=None):
        """Print a table of layers (name and type, output shape, parameter count, and for graph
        models the tensors each consumes) and totals. ``print_fn`` is called with each line
        (default: print)."""
        from .summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

