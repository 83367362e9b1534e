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
import os
import numbers
import warnings
from typing import Any

import numpy as np

from .. import callbacks as _callbacks
from .. import distributed as _distributed
from .. import ops as _ops
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

    def __init__(self) -> None:
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
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, loss_weights: Any = None,
                metrics: Any = None) -> None:
        """Configures the model for training: optimizer, loss and metrics.

        Args:
            optimizer (str or Optimizer, default "rmsprop"): a name ("sgd", "adam", ...) or an
                optimizer object.
            loss (str, Loss, list or dict, default None): one loss for every output, or one
                per output (a list in output order or a dict by output name).
            loss_weights (list or dict or None, default None): the weight of each output's
                loss in the total.
            metrics (list or dict or None, default None): metric names or objects; for
                several outputs a list per output or a dict by output name. "accuracy" picks
                binary, categorical or sparse categorical accuracy from the data's shapes.

        Raises:
            ValueError: an unknown optimizer, loss or metric name, or per-output settings that
                do not match the outputs.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> model.optimizer
        <Adam learning_rate=0.001 iterations=0>
        """
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
    def metrics_names(self) -> Any:
        """["loss", <per-output losses when several>, <metric names in compile order>]."""
        if not self.compiled:
            return []
        return list(self.compiled_metrics.names)

    @property
    def metrics(self) -> Any:
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

    def reset_metrics(self) -> Any:
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
        logs = self._dense_chain_step(xs, ys, sws)
        if logs is not None:
            return logs
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

    # -- the whole step of a chain of Dense layers in one C++ call ------------------------------
    # For a model that is a chain of plain Dense layers (no regularizers, no activation that
    # needs its pre-activation) with one loss the kernels cover (mse, mae, binary / categorical /
    # sparse categorical cross-entropy, no label smoothing) and SGD or Adam (no clipnorm, no
    # SGD weight decay), one training step without sample weights runs as one call of
    # ops.dense_chain_train_step: the kernels _train_step would call, in the same order, so the
    # weights, slots, loss and metrics come out bit-identical; it only drops the Python between
    # them (a 4-3-2 model's train_on_batch: 65 -> 15 us, RESULTS.md). Anything else, and data
    # parallel or private training, takes the general step.

    def _dense_chain(self):
        """(layers, loss op name, fused, sparse, from_logits, dtype) when this compiled model
        is such a chain, else None; computed once per graph / optimizer / compile."""
        from ..layers.core import Dense
        from .. import losses as L
        plan = self._plan
        if plan is None or len(plan.input_slots) != 1 or len(plan.output_slots) != 1:
            return None
        layers, prev = [], plan.input_slots[0]
        for layer, ins, outs, single_in, single_out in plan.steps:
            if (type(layer) is not Dense or not (single_in and single_out) or ins != (prev,)
                    or type(layer.activation) is not str
                    or layer.activation in _ops.INPUT_ACTIVATIONS
                    or any(r is not None for r in layer._weight_regularizers)
                    or getattr(layer, "activity_regularizer", None) is not None):
                return None
            prev = outs[0]
            layers.append(layer)
        if not layers or prev != plan.output_slots[0]:
            return None
        dt = layers[0].kernel.dtype
        if any(w.dtype != dt for lay in layers for w in (lay.kernel, lay.bias) if w is not None):
            return None
        cl = self.compiled_loss
        loss = cl.losses[0]
        if (type(loss) not in (L.MeanSquaredError, L.MeanAbsoluteError, L.BinaryCrossentropy,
                               L.CategoricalCrossentropy, L.SparseCategoricalCrossentropy)
                or getattr(loss, "label_smoothing", 0.0) or cl.weights != [1.0]):
            return None
        if type(self.optimizer) not in (_optimizers.SGD, _optimizers.Adam, _optimizers.AdamW):
            return None
        fused = (cl.fused if cl.fused is not None else cl.decide_fused(self))[0]
        sparse = type(loss) is L.SparseCategoricalCrossentropy
        if sparse and not fused:
            return None
        return tuple(layers), loss._op_name, bool(fused), sparse, bool(loss.from_logits), dt

    def _dense_chain_step(self, xs, ys, sws):
        """The logs of one step by ops.dense_chain_train_step, or None when it does not apply."""
        entry = self.__dict__.get("_dense_chain_cache")
        if (entry is None or entry[0] is not self._plan or entry[1] is not self.optimizer
                or entry[2] is not self.compiled_loss):
            entry = (self._plan, self.optimizer, self.compiled_loss, self._dense_chain())
            self.__dict__["_dense_chain_cache"] = entry
        chain = entry[3]
        opt = self.optimizer
        if (chain is None or self._dp is not None or not self.trainable or sws[0] is not None
                or opt.clipnorm is not None or opt.global_clipnorm is not None):
            return None
        layers, loss_name, fused, sparse, from_logits, dt = chain
        x, y = xs[0], ys[0]
        if (type(x) is not np.ndarray or x.dtype != dt or x.ndim != 2
                or type(y) is not np.ndarray):
            return None
        n = x.shape[0]
        if sparse:
            if y.dtype != np.int64 or y.shape not in ((n,), (n, 1)):
                return None
            y = y.reshape(n)
        elif y.dtype != dt or y.shape != (n, layers[-1].units):
            return None
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        if type(opt) is _optimizers.SGD:
            if opt.weight_decay:
                return None
            kind, hyper = "sgd", (opt.momentum, opt.nesterov)
        else:
            kind, hyper = "adam", (opt.iterations + 1, opt.beta_1, opt.beta_2, opt.epsilon,
                                   opt.weight_decay or 0.0)
        kernels, biases, acts, slots = [], [], [], []
        for layer in layers:
            if not layer.trainable:
                return None
            kernels.append(layer.kernel)
            biases.append(layer.bias)
            acts.append(layer.activation)
            slots.append(opt._slots_of(layer.kernel))
            if layer.bias is not None:
                slots.append(opt._slots_of(layer.bias))
        if fused:
            acts[-1] = "linear"
        value, y_pred = _ops.dense_chain_train_step(
            x, y, kernels, biases, acts, loss_name, fused, from_logits, kind, opt.learning_rate,
            hyper, opt._clipvalue, slots)
        opt.iterations += 1
        outs = [y_pred]
        metric_set = self._metric_set("train", ys, outs)
        self._update_metrics(metric_set, value, [value], ys, outs, sws, [None], n)
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
    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: Any = None, return_dict: bool = False) -> Any:
        """Runs one optimizer step on one batch.

        Args:
            x: the inputs: an array, a list of arrays (several inputs, in order) or a dict by
                input name.
            y: the targets, given the same way, per output.
            sample_weight (array or None, default None): a weight per sample ((B,), or (B, T)
                for sequence outputs), per output for several.
            class_weight (dict or None, default None): a weight per class id, multiplying the
                sample weights (one output).
            return_dict (bool, default False): return a dict.

        Returns:
            float: the batch's loss, when no metrics were compiled and there is one output; else a
            list of floats in ``metrics_names`` order; or a dict ``{name: value}`` with
            ``return_dict=True``.

        Raises:
            RuntimeError: the model was not compiled.
            ValueError: inputs or targets of the wrong shape, dtype or count (named), or a
                bad argument.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> logs = model.train_on_batch(x, y, return_dict=True)
        >>> sorted(logs), model.optimizer.iterations
        (['accuracy', 'loss'], 1)
        """
        fn = "train_on_batch"
        self._require_compiled(fn)
        xs = self._prepare_x(x, fn)
        n = xs[0].shape[0]
        ys = self._prepare_y(y, n, fn)
        sws = self._prepare_weights(sample_weight, ys, n, fn, class_weight)
        self._reset(self._train_metrics)
        return self._flatten_logs(self._train_step(xs, ys, sws), return_dict)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:
        """Computes the loss and metrics of one batch, without training.

        Args:
            x: the inputs: an array, a list of arrays (several inputs, in order) or a dict by
                input name.
            y: the targets, given the same way, per output.
            sample_weight (array or None, default None): a weight per sample ((B,), or (B, T)
                for sequence outputs), per output for several.
            return_dict (bool, default False): return a dict.

        Returns:
            float: the loss, when no metrics were compiled and there is one output; else a
            list of floats in ``metrics_names`` order; or a dict ``{name: value}`` with
            ``return_dict=True``.

        Raises:
            RuntimeError: the model was not compiled.
            ValueError: inputs or targets of the wrong shape, dtype or count (named), or a
                bad argument.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> loss, acc = model.test_on_batch(x, y)
        >>> 0.0 <= acc <= 1.0, model.optimizer.iterations
        (True, 0)
        """
        fn = "test_on_batch"
        self._require_compiled(fn)
        xs = self._prepare_x(x, fn)
        n = xs[0].shape[0]
        ys = self._prepare_y(y, n, fn)
        sws = self._prepare_weights(sample_weight, ys, n, fn)
        self._reset(self._test_metrics)
        return self._flatten_logs(self._test_step(xs, ys, sws), return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        """Computes the outputs for one batch (no batching, no callbacks).

        Args:
            x: the inputs: an array, a list of arrays (several inputs, in order) or a dict by
                input name.

        Returns:
            ndarray: the output, or a list / dict of arrays for several outputs.

        Raises:
            ValueError: inputs of the wrong shape, dtype or count.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.predict_on_batch(x[:4]).shape
        (4, 2)
        """
        xs = self._prepare_x(x, "predict_on_batch")
        return self._pack(self._execute(xs, False)[0])

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = "auto", callbacks: Any = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: bool = True, class_weight: Any = None,
            sample_weight: Any = None, initial_epoch: int = 0, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, validation_batch_size: int | None = None,
            validation_freq: int = 1, sampling: Any = "uniform") -> _callbacks.History:
        """Trains the model for a number of epochs over (x, y) in batches.

        Each epoch reshuffles the training samples (nanonet's generator, see
        ``nanonet.set_seed``), runs one optimizer step per batch, then validates when asked.

        Args:
            x: the inputs: an array, a list of arrays (several inputs, in order) or a dict by
                input name. x may also yield batches (then y and sample_weight stay None): a
                generator or iterator of ``(x, y)`` / ``(x, y, sample_weight)`` tuples,
                consumed across epochs (``steps_per_epoch`` batches per epoch; all it has when
                None), another iterable of them (iterated afresh every epoch), or a
                ``nanonet.utils.PyDataset`` (``len`` batches per epoch, their order shuffled
                with shuffle=True, prepared ahead by its workers). Training stops with a
                warning when the batches run out. Arrays remain the fast path.
            y: the targets, given the same way, per output.
            batch_size (int or None, default None): samples per step (32 if None).
            epochs (int, default 1): the index the epochs run up to (exclusive), so with
                initial_epoch=k fit trains epochs - k epochs.
            verbose ("auto", 0, 1 or 2, default "auto"): 0 silent; 1 a progress bar (on a
                terminal) or a line every few seconds (logs); 2 one line per epoch; "auto" is 1
                (see ``ProgbarLogger``).
            callbacks (list of Callback or None, default None): called during training.
            validation_split (float, default 0.0): the fraction in [0, 1) of the samples
                (the last ones, before shuffling) held out for validation.
            validation_data (tuple or None, default None): ``(x_val, y_val)`` or
                ``(x_val, y_val, sample_weight_val)``, or batches given as for x
                (``validation_steps`` of them); overrides validation_split.
            shuffle (bool, default True): reshuffle the training samples every epoch.
            class_weight (dict or None, default None): a weight per class id (one output).
            sample_weight (array or None, default None): a weight per sample ((B,), or (B, T)
                for sequence outputs), per output for several.
            initial_epoch (int, default 0): the epoch to start from (to resume a run).
            steps_per_epoch (int or None, default None): cap on the batches per epoch.
            validation_steps (int or None, default None): cap on the validation batches.
            validation_batch_size (int or None, default None): batch size for validation
                (batch_size if None).
            validation_freq (int, default 1): validate every that many epochs.
            sampling ("uniform" or "poisson", default "uniform"): "poisson" (for DP-SGD, whose
                privacy accounting assumes it) makes each batch take every sample
                independently with probability batch_size / n, so batch sizes vary; empty
                batches are skipped, and a DP optimizer divides by the expected batch size.
                Arrays only.

        Returns:
            History: ``history.history`` maps "loss", each metric and their "val_" twins to
            per-epoch lists.

        Raises:
            RuntimeError: the model was not compiled.
            ValueError: inputs or targets of the wrong shape, dtype or count (named), or a
                bad argument.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25,
        ...                     verbose=0)
        >>> sorted(history.history), len(history.history["loss"])
        (['accuracy', 'loss', 'val_accuracy', 'val_loss'], 2)
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

        train = None
        if _data.is_batch_source(x):  # batches from Python code; arrays stay the fast path
            self._check_source_args(fn, y, sample_weight, validation_split=validation_split)
            train = _data.BatchSource(x, steps_per_epoch, fn, "x", shuffle)
        else:
            xs = self._prepare_x(x, fn)
            n = xs[0].shape[0]
            ys = self._prepare_y(y, n, fn)
            sws = self._prepare_weights(sample_weight, ys, n, fn, class_weight)

        val = None
        if validation_data is not None and _data.is_batch_source(validation_data):
            val = _data.BatchSource(validation_data, validation_steps, fn, "validation_data")
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError(f"{fn}: validation_data must be a tuple (x_val, y_val) or "
                                 f"(x_val, y_val, sample_weight_val), a generator or a "
                                 f"PyDataset; got {type(validation_data).__name__}")
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

        if train is None:
            slices = _data.batch_slices(n, batch_size, steps_per_epoch)
            steps = len(slices)
        else:
            steps = train.steps
        cbs = _callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                      model=self, verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        self._dp = _distributed.DataParallel.start(self)  # None on one process
        self._initial_epoch = None
        poisson = sampling == "poisson"
        if poisson and (self._dp is not None or train is not None):
            raise ValueError(f"{fn}: sampling='poisson' needs arrays on one process (not "
                             "batches from Python code, not data-parallel MPI)")
        if getattr(self.optimizer, "is_private", False) and train is None:
            # for the noise and the accountant
            self.optimizer.expected_batch_size = min(batch_size, n) if poisson else None
            self.optimizer.sampling_rate = min(1.0, batch_size / n) if n else None
        cbs.on_train_begin()
        if self._initial_epoch is not None:  # set by BackupAndRestore when it restored a run
            initial_epoch = self._initial_epoch
        epoch_logs = {}
        try:
            for epoch in range(initial_epoch, epochs):
                self._reset(self._train_metrics)
                cbs.on_epoch_begin(epoch)
                rng = self._enter_epoch(epoch)  # this epoch's shuffling and dropout (resumable)
                if train is not None:
                    batches = self._source_batches(train, rng, fn, class_weight)
                elif poisson:
                    batches = self._poisson_batches(xs, ys, sws, len(slices), batch_size / n, rng)
                else:
                    order = rng.permutation(n) if shuffle else None
                    batches = self._array_batches(xs, ys, sws, slices, order)
                logs = {}
                step = -1
                try:
                    for step, (xb, yb, swb) in enumerate(batches):
                        cbs.on_train_batch_begin(step)
                        logs = self._train_step(xb, yb, swb)
                        cbs.on_train_batch_end(step, logs)
                        if self.stop_training:
                            break
                finally:
                    batches.close()
                if train is not None and (step < 0 or train.exhausted):
                    wanted = "" if train.steps is None else f" of {train.steps}"
                    warnings.warn(f"{fn}: the input ran out of data in epoch {epoch + 1} "
                                  f"(batches: {step + 1}{wanted}); training stops. Make sure "
                                  "it can give steps_per_epoch * epochs batches", stacklevel=2)
                    self.stop_training = True
                    if step < 0:
                        break
                epoch_logs = dict(logs)
                if val is not None and (epoch + 1) % validation_freq == 0:
                    val_logs = self._run_evaluation(val, validation_batch_size,
                                                    validation_steps, cbs, fn)
                    epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
                cbs.on_epoch_end(epoch, epoch_logs)
                if self.stop_training:
                    break
        finally:
            _random.exit_epoch()
            self._dp = None
            for source in (train, val):
                if isinstance(source, _data.BatchSource):
                    source.close()
            if getattr(self.optimizer, "is_private", False):
                self.optimizer.expected_batch_size = self.optimizer.sampling_rate = None
        cbs.on_train_end(epoch_logs)
        history = next(c for c in cbs if isinstance(c, _callbacks.History))
        self.history = history
        return history

    @staticmethod
    def _check_source_args(fn, y, sample_weight, validation_split=0.0):
        """Arguments that do not apply when x yields batches."""
        for name, value in (("y", y), ("sample_weight", sample_weight)):
            if value is not None:
                raise ValueError(f"{fn}: {name} must be None when x is a generator, an "
                                 f"iterable of batches or a PyDataset (its batches hold the "
                                 f"{name}); got {type(value).__name__}")
        if validation_split:
            raise ValueError(f"{fn}: validation_split is not supported when x is a generator, "
                             f"an iterable of batches or a PyDataset; pass validation_data; "
                             f"got validation_split={validation_split!r}")

    def _array_batches(self, xs, ys, sws, slices, order=None):
        """(x, y, sample_weight) lists of arrays for each slice of the samples, or of the
        samples in ``order`` (each batch gathered when it is due: no copy of the whole epoch);
        this rank's share under nanonet.distributed."""
        for sl in slices:
            if order is not None:
                idx = order[sl]
                xs_b, ys_b, sws_b = _data.gather(xs, idx), _data.gather(ys, idx), \
                    _data.gather(sws, idx)
                sl = slice(0, len(idx))
            else:
                xs_b, ys_b, sws_b = xs, ys, sws
            if self._dp is not None:
                sl = self._dp.shard(sl, xs_b)
            yield _data.take(xs_b, sl), _data.take(ys_b, sl), _data.take(sws_b, sl)

    @staticmethod
    def _poisson_batches(xs, ys, sws, steps, rate, rng):
        """``steps`` batches, each taking every sample independently with probability ``rate``
        (Poisson sampling, for DP-SGD); empty batches are skipped."""
        n = xs[0].shape[0]
        for _ in range(steps):
            idx = np.flatnonzero(rng.random(n) < rate)
            if idx.size:
                yield _data.gather(xs, idx), _data.gather(ys, idx), _data.gather(sws, idx)

    def _source_batches(self, source, rng, fn, class_weight=None):
        """Each batch of a BatchSource checked like arrays are (and sharded like them)."""
        for batch in source.epoch(rng):
            x, y, sw = _data.unpack_batch(batch, fn, source.name)
            xs = self._prepare_x(x, fn)
            n = xs[0].shape[0]
            ys = self._prepare_y(y, n, fn)
            sws = self._prepare_weights(sw, ys, n, fn, class_weight)
            if self._dp is not None:
                sl = self._dp.shard(slice(0, n), xs)
                xs, ys, sws = _data.take(xs, sl), _data.take(ys, sl), _data.take(sws, sl)
            yield xs, ys, sws

    def _eval_batches(self, data, batch_size, max_steps, fn):
        if isinstance(data, _data.BatchSource):
            yield from self._source_batches(data, None, fn)
            return
        xs, ys, sws = data
        for sl in _data.batch_slices(xs[0].shape[0], batch_size, max_steps):
            if self._dp is not None:  # data parallel: this rank's share, metrics summed
                sl = self._dp.shard(sl)
            yield _data.take(xs, sl), _data.take(ys, sl), _data.take(sws, sl)

    def _run_evaluation(self, data, batch_size, max_steps, cbs, fn="evaluate"):
        self._reset(self._test_metrics)
        cbs.on_test_begin()
        logs = {}
        batches = self._eval_batches(data, batch_size, max_steps, fn)
        try:
            for step, (xb, yb, swb) in enumerate(batches):
                cbs.on_test_batch_begin(step)
                if self._dp is not None and xb[0].shape[0] == 0:  # this rank's share is empty
                    logs = self._logs(self._test_metrics)
                else:
                    logs = self._test_step(xb, yb, swb)
                cbs.on_test_batch_end(step, logs)
        finally:
            batches.close()
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: int | str = "auto", sample_weight: Any = None, steps: int | None = None,
                 callbacks: Any = None, return_dict: bool = False) -> Any:
        """Computes the loss and metrics over (x, y) in batches, without training.

        Args:
            x: the inputs: an array, a list of arrays (several inputs, in order) or a dict by
                input name; or batches as in ``fit`` (``steps`` of them; all when None).
            y: the targets, given the same way, per output.
            batch_size (int or None, default None): samples per step (32 if None).
            verbose ("auto", 0, 1 or 2, default "auto"): 0 is silent, 1 and 2 report progress
                (see ``ProgbarLogger``); "auto" means 1.
            sample_weight (array or None, default None): a weight per sample ((B,), or (B, T)
                for sequence outputs), per output for several.
            steps (int or None, default None): cap on the number of batches.
            callbacks (list of Callback or None, default None): called during evaluation.
            return_dict (bool, default False): return a dict.

        Returns:
            float: the loss, when no metrics were compiled and there is one output; else a
            list of floats in ``metrics_names`` order; or a dict ``{name: value}`` with
            ``return_dict=True``.

        Raises:
            RuntimeError: the model was not compiled.
            ValueError: inputs or targets of the wrong shape, dtype or count (named), or a
                bad argument.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> logs = model.evaluate(x, y, verbose=0, return_dict=True)
        >>> sorted(logs)
        ['accuracy', 'loss']
        """
        fn = "evaluate"
        self._require_compiled(fn)
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        steps = _check_positive_int(steps, "steps", fn)
        if _data.is_batch_source(x):
            self._check_source_args(fn, y, sample_weight)
            data = _data.BatchSource(x, steps, fn)
            n_steps = data.steps
        else:
            xs = self._prepare_x(x, fn)
            n = xs[0].shape[0]
            ys = self._prepare_y(y, n, fn)
            sws = self._prepare_weights(sample_weight, ys, n, fn)
            data = (xs, ys, sws)
            n_steps = math.ceil(n / batch_size)
            n_steps = n_steps if steps is None else min(steps, n_steps)
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=1, steps=n_steps)
        dp, self._dp = self._dp, self._dp or _distributed.DataParallel.start(self, broadcast=False)
        try:
            logs = self._run_evaluation(data, batch_size, steps, cbs, fn)
        finally:
            self._dp = dp
            if isinstance(data, _data.BatchSource):
                data.close()
        return self._flatten_logs(logs, return_dict)

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = "auto",
                steps: int | None = None, callbacks: Any = None) -> Any:
        """Computes the model's outputs for x, in batches.

        Args:
            x: the inputs: an array, a list of arrays (several inputs, in order) or a dict by
                input name; or batches as in ``fit`` (x or tuples whose first item is x;
                ``steps`` of them), whose outputs are joined.
            batch_size (int or None, default None): samples per step (32 if None).
            verbose ("auto", 0, 1 or 2, default "auto"): 0 is silent, 1 and 2 report progress
                (see ``ProgbarLogger``); "auto" means 1.
            steps (int or None, default None): cap on the number of batches.
            callbacks (list of Callback or None, default None): called per batch.

        Returns:
            ndarray: the output, (B, ...), or a list / dict of arrays for several outputs.

        Raises:
            ValueError: inputs of the wrong shape, dtype or count (named), or a bad argument.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> probs = model.predict(x, batch_size=16, verbose=0)
        >>> probs.shape, bool(np.allclose(probs.sum(axis=1), 1.0))
        ((32, 2), True)
        """
        fn = "predict"
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        steps = _check_positive_int(steps, "steps", fn)
        if _data.is_batch_source(x):
            return self._predict_batches(_data.BatchSource(x, steps, fn), verbose, callbacks)
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

    def _predict_batches(self, source, verbose, callbacks):
        """predict over a generator, iterable or PyDataset: the outputs of every batch, joined."""
        fn = "predict"
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=1, steps=source.steps)
        cbs.on_predict_begin()
        parts = []
        try:
            for step, batch in enumerate(source.epoch()):
                cbs.on_predict_batch_begin(step)
                ybs = self._execute(self._prepare_x(_data.unpack_batch(batch, fn)[0], fn),
                                    False)[0]
                parts.append(ybs)
                cbs.on_predict_batch_end(step, {"outputs": self._pack(ybs)})
        finally:
            source.close()
        if not parts:
            raise ValueError(f"{fn}: x gave no batches")
        cbs.on_predict_end()
        return self._pack([np.concatenate(p) for p in zip(*parts)])

    # -- saving ------------------------------------------------------------------------------
    def save(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Saves the whole model to one file; ``nanonet.load_model`` reads it back.

        The file holds the architecture (as JSON data, never code), the weights, the compile
        settings, the optimizer's state and the training seed, so training resumes exactly.
        The write is atomic: a failed save leaves the previous file intact.

        Args:
            filepath (str or path): the file (".nnet" is the usual suffix).
            overwrite (bool, default True): replace an existing file.

        Raises:
            FileExistsError: the file exists and overwrite=False.
            TypeError: filepath is not a str or os.PathLike.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.save("model.nnet")
        >>> restored = nn.load_model("model.nnet")
        >>> bool(np.array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0)))
        True
        """
        from .. import saving
        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
        """Saves the weights alone to a file (atomically); ``load_weights`` reads them.

        Args:
            filepath (str or path): the file.
            overwrite (bool, default True): replace an existing file.

        Raises:
            FileExistsError: the file exists and overwrite=False.
            TypeError: filepath is not a str or os.PathLike.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.save_weights("model.weights.nnet")
        >>> model.load_weights("model.weights.nnet")
        """
        from .. import saving
        saving.save_weights(self, filepath, overwrite=overwrite)

    def to_json(self, **kwargs: Any) -> Any:
        """The architecture as a JSON string (no weights; plain data, no code);
        ``nanonet.models.model_from_json`` rebuilds it. kwargs go to ``json.dumps``."""
        from .cloning import model_to_json
        return model_to_json(self, **kwargs)

    def load_weights(self, filepath: str | os.PathLike[str], allow_nan: bool = False) -> None:
        """Sets the weights from a file written by ``save_weights`` or ``save``.

        Weights are matched by position; layer classes, weight names and shapes must agree.

        Args:
            filepath (str or path): the file.
            allow_nan (bool, default False): accept NaN or inf weights.

        Raises:
            ValueError: a corrupt or mismatched file, or NaN / inf weights without allow_nan.
            FileNotFoundError: no such file.

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.save_weights("w.nnet")
        >>> other = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> other.load_weights("w.nnet")
        >>> bool(np.array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0)))
        True
        """
        from .. import saving
        saving.load_weights(self, filepath, allow_nan=allow_nan)

    def _enter_epoch(self, epoch):
        """Epoch ``epoch``'s Generator for fit, derived from (training seed, epoch): the seed is
        drawn once from nanonet's Generator and saved with the model, so that a model loaded
        from a checkpoint and trained with fit(initial_epoch=k) repeats the original run."""
        if getattr(self, "_train_seed", None) is None:
            self._train_seed = _random.draw_seed()
        return _random.enter_epoch(self._train_seed, epoch)

    def summary(self, line_length: int | None = None, positions: Any = None,
                print_fn: Any = None) -> None:
        """Prints a table of the layers and the parameter totals.

        Each row gives a layer's name and type, its output shape, its parameter count and, for
        graph models, the tensors it consumes.

        Args:
            line_length (int or None, default None): width of the table.
            positions (list or None, default None): where the columns end (fractions of the
                width or absolute positions).
            print_fn (callable or None, default None): called with each line (print if None).

        Example:

        >>> x = np.random.rand(32, 3).astype("float32")
        >>> y = (x.sum(axis=1) > 1.5).astype("int32")
        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(8, activation="relu"),
        ...                        nn.layers.Dense(2, activation="softmax")])
        >>> model.summary()
        Model: "sequential..."
        ...
        Total params: 50 (200.00 B)
        ...
        """
        from .summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

