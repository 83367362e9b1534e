"""``Sequential``: a stack of layers with Keras 3's compile / fit / evaluate / predict.

One training step (``train_on_batch`` and each batch of ``fit``): every layer's
``call(x, training=True)`` keeps what its backward needs; the loss returns its value and its
gradient wrt the predictions; each layer's ``backward`` (last to first) stores its weight
gradients and hands dx to the layer before; regularizer penalties are added to the reported
loss and their gradients to the weight gradients; the optimizer updates every trainable weight
in place; the metrics see the predictions made before the update.

When the last layer ends in a softmax (``Dense(..., activation="softmax")`` or
``Activation("softmax")``) and the loss is (sparse_)categorical_crossentropy with
``from_logits=False``, training asks that layer for its logits (``call_logits``) and uses the
fused, stable ``ops.softmax_cross_entropy``; its backward then starts from d loss / d logits.
Inference and evaluation always return probabilities.

Sequence outputs (B, T, C) with an output mask (B, T) (e.g. after ``Embedding(mask_zero=True)``
and ``LSTM(return_sequences=True)``) weigh the loss as Keras does: masked steps count zero and
the mean is over the unmasked steps.
"""
from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from . import callbacks as _callbacks
from . import losses as _losses
from . import metrics as _metrics
from . import ops
from . import optimizers as _optimizers
from . import random as _random
from .layers import deserialize as _deserialize_layer
from .layers import serialize as _serialize_layer
from .layers.base import Layer, unique_name
from .layers.core import InputLayer

__all__ = ["Sequential"]

_EPSILON = 1e-7  # Keras's backend epsilon, used when rescaling masked losses


def _fmt_shape(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


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


def _as_array(a, name, fn):
    if a is None:
        raise ValueError(f"{fn}: {name} is required; got None")
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{fn}: {name} must be a numeric array; got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{fn}: {name} must have a batch axis; got a scalar")
    return arr


def _format_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024.0
    return f"{n:.2f} GB"


class Sequential:
    """A linear stack of layers (Keras 3 API).

    >>> model = Sequential([Input((64,)), Dense(32, activation="relu"),
    ...                     Dense(10, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
    ...               metrics=["accuracy"])
    >>> history = model.fit(x, y, epochs=10, validation_split=0.2)   # doctest: +SKIP
    """

    def __init__(self, layers=None, trainable=True, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Sequential: name must be a non-empty string; got {name!r}")
        self.name = name or unique_name("sequential")
        self.trainable = bool(trainable)
        self._layers = []
        self._input_layer = None
        self._batch_input_shape = None
        self._output_shape = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self._metric_ids = []
        self._train_metrics = None
        self._test_metrics = None
        self.stop_training = False
        self.history = None
        if layers is not None:
            if isinstance(layers, (Layer,)):
                raise TypeError("Sequential: layers must be a list of layers; got a single "
                                f"{type(layers).__name__} (wrap it in a list)")
            for layer in layers:
                self.add(layer)

    # -- structure ---------------------------------------------------------------------------
    @property
    def layers(self):
        """The layers, in order (an InputLayer is not listed, as in Keras)."""
        return list(self._layers)

    def add(self, layer):
        """Append a layer (an InputLayer / Input only as the first entry)."""
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("Sequential.add: an InputLayer (Input) may only be the first "
                                 "entry of a Sequential model")
            self._input_layer = layer
            self._batch_input_shape = layer.batch_shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a nanonet layer; got "
                            f"{type(layer).__name__}")
        if any(lay.name == layer.name for lay in self._layers):
            raise ValueError(f"Sequential.add: all layers must have unique names; "
                             f"{layer.name!r} is already in the model")
        if not self._layers and self._batch_input_shape is None and \
                layer._input_shape_arg is not None:
            self._batch_input_shape = (None,) + layer._input_shape_arg
        self._layers.append(layer)
        self.built = False
        if self._batch_input_shape is not None:
            self.build(self._batch_input_shape)

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError("Sequential.pop: the model has no layers")
        layer = self._layers.pop()
        self.built = False
        if self._layers and self._batch_input_shape is not None:
            self.build(self._batch_input_shape)
        return layer

    def build(self, input_shape=None):
        """Build every layer for inputs of ``input_shape`` (batch axis included, e.g.
        (None, 64)); without an argument, the shape from Input / input_shape= is used."""
        if input_shape is None:
            input_shape = self._batch_input_shape
        if input_shape is None:
            raise ValueError("Sequential.build: input_shape is unknown; pass it (with the batch "
                             "axis, e.g. (None, 64)), start the model with Input(shape), or "
                             "call the model on data")
        try:
            shape = tuple(None if d is None else int(d) for d in input_shape)
        except (TypeError, ValueError):
            raise ValueError(f"Sequential.build: input_shape must be a tuple of ints (None for "
                             f"unknown); got {input_shape!r}") from None
        if not shape:
            raise ValueError("Sequential.build: input_shape must include the batch axis; got ()")
        if not self._layers:
            raise ValueError("Sequential.build: the model has no layers")
        self._batch_input_shape = shape
        for i, layer in enumerate(self._layers):
            layer._maybe_build(shape)
            layer.needs_input_grad = i > 0
            shape = tuple(layer.compute_output_shape(shape))
        self._output_shape = shape
        self.built = True

    def _build_from(self, x):
        if not self.built:
            self.build(self._batch_input_shape or ((None,) + tuple(x.shape[1:])))

    @property
    def input_shape(self):
        return self._batch_input_shape

    @property
    def output_shape(self):
        if not self.built:
            raise ValueError(f"Sequential {self.name!r} is not built yet; it has no output shape")
        return self._output_shape

    # -- weights -----------------------------------------------------------------------------
    @property
    def weights(self):
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    def get_weights(self):
        """Copies of every layer's weights, layer by layer."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Set every weight from a list like ``get_weights()``; all shapes are checked before any
        weight changes."""
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Sequential {self.name!r} has {len(own)} weights; set_weights got "
                             f"{len(weights)}")
        k = 0
        for layer in self._layers:
            for w, n in zip(layer.weights, layer.weight_names):
                v = np.asarray(weights[k])
                if v.shape != w.shape:
                    raise ValueError(f"Sequential.set_weights: weights[{k}] is layer "
                                     f"{layer.name!r} weight {n!r} of shape {w.shape}; got "
                                     f"{v.shape}")
                k += 1
        k = 0
        for layer in self._layers:
            m = len(layer.weights)
            layer.set_weights(weights[k:k + m])
            k += m

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"Sequential {self.name!r} is not built yet; call build(input_shape) "
                             "or run it on data first")
        return sum(layer.count_params() for layer in self._layers)

    @property
    def losses(self):
        """Regularization penalties of every layer (floats)."""
        return [p for layer in self._layers for p in layer.losses]

    # -- summary -----------------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None):
        """Print a table of layers (name and type, output shape, parameter count) and totals.
        ``print_fn`` is called with each line (default: print)."""
        if not self.built:
            raise ValueError(f"Sequential {self.name!r} has not been built yet; call "
                             "build(input_shape), start it with Input(shape), or call it on data")
        print_fn = print if print_fn is None else print_fn
        width = 65 if line_length is None else int(line_length)
        fractions = positions or (0.45, 0.85, 1.0)
        stops = [int(width * p) if p <= 1 else int(p) for p in fractions]
        rows = []
        shape = self._batch_input_shape
        for layer in self._layers:
            shape = tuple(layer.compute_output_shape(shape))
            rows.append((f"{layer.name} ({type(layer).__name__})", _fmt_shape(shape),
                         f"{layer.count_params():,}"))

        def line(cols):
            text, start = "", 0
            for k, (col, stop) in enumerate(zip(cols, stops)):
                cell = f" {col}"
                if k < len(stops) - 1:  # inner columns are cut to fit; the last one never is
                    cell = cell[:stop - start - 1].ljust(stop - start)
                text += cell
                start = stop
            return text.rstrip()

        total = sum(w.size for w in self.weights)
        trainable = sum(w.size for w in self.trainable_weights)
        total_bytes = sum(w.nbytes for w in self.weights)
        train_bytes = sum(w.nbytes for w in self.trainable_weights)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * width)
        print_fn(line(("Layer (type)", "Output Shape", "Param #")))
        print_fn("=" * width)
        for i, row in enumerate(rows):
            print_fn(line(row))
            if i < len(rows) - 1:
                print_fn("-" * width)
        print_fn("=" * width)
        print_fn(f"Total params: {total:,} ({_format_bytes(total_bytes)})")
        print_fn(f"Trainable params: {trainable:,} ({_format_bytes(train_bytes)})")
        print_fn(f"Non-trainable params: {total - trainable:,} "
                 f"({_format_bytes(total_bytes - train_bytes)})")
        print_fn("_" * width)

    # -- compile -----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Set the optimizer (name or object), the loss (name or Loss) and metrics (list of
        names or Metric objects) for fit / evaluate."""
        self.optimizer = _optimizers.get(optimizer)
        self.loss = None if loss is None else _losses.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, _metrics.Metric)):
            raise ValueError(f"compile: metrics must be a list; got {metrics!r} (wrap it in a "
                             "list)")
        metrics = list(metrics)
        names = [_metrics.check_identifier(m) for m in metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"compile: metric names must be unique and differ from 'loss'; got "
                             f"{names}")
        self._metric_ids = metrics
        self._metric_names = names
        self._train_metrics = None
        self._test_metrics = None
        self.compiled = True

    @property
    def metrics_names(self):
        """["loss", <metric names in compile order>]."""
        if not self.compiled:
            return []
        return ["loss"] + list(self._metric_names)

    @property
    def metrics(self):
        """The training metric objects: the loss tracker, then the compiled metrics (once the
        model has seen data)."""
        if self._train_metrics is None:
            return []
        return list(self._train_metrics)

    def _make_metrics(self, y_shape, pred_shape, share_objects):
        """The loss tracker and the compiled metrics. A Metric object passed to compile is
        updated itself during training (share_objects) and copied for evaluation."""
        out = [_metrics.Mean(name="loss")]
        for ident in self._metric_ids:
            if isinstance(ident, _metrics.Metric):
                m = ident if share_objects else copy.deepcopy(ident)
                m.reset_state()
            else:
                m = _metrics.get(ident, y_shape, pred_shape)
            out.append(m)
        return out

    def _metric_set(self, which, y_shape, pred_shape):
        if which == "train":
            if self._train_metrics is None:
                self._train_metrics = self._make_metrics(y_shape, pred_shape, True)
            return self._train_metrics
        if self._test_metrics is None:
            self._test_metrics = self._make_metrics(y_shape, pred_shape, False)
        return self._test_metrics

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
        if self.loss is None:
            raise ValueError(f"{fn}: the model was compiled without a loss; pass "
                             "loss=... to compile()")

    # -- input checks ------------------------------------------------------------------------
    def _float_dtype(self):
        for layer in reversed(self._layers):
            if layer._weights:
                return np.dtype(layer.dtype)
        return np.dtype(self._layers[0].dtype) if self._layers else np.dtype("float32")

    def _prepare_x(self, x, fn, name="x"):
        x = _as_array(x, name, fn)
        if not self._layers:
            raise ValueError(f"{fn}: the model has no layers")
        if x.shape[0] == 0:
            raise ValueError(f"{fn}: {name} is empty (0 samples)")
        if self._input_layer is not None:
            if x.dtype != self._input_layer.dtype:
                x = x.astype(self._input_layer.dtype)
        elif x.dtype.kind == "f" and x.dtype != self._layers[0].dtype:
            x = x.astype(self._layers[0].dtype)
        if not self.built:
            self._build_from(x)
        want = self._batch_input_shape
        if x.ndim != len(want) or any(w is not None and w != d
                                      for w, d in zip(want[1:], x.shape[1:])):
            expected = _fmt_shape(("B",) + tuple(want[1:]))
            raise ValueError(f"{fn}: {name} must have shape {expected} to match the model input "
                             f"{_fmt_shape(want)}; got {x.shape}")
        return x

    def _prepare_y(self, y, n, fn, name="y"):
        y = _as_array(y, name, fn)
        if y.shape[0] != n:
            raise ValueError(f"{fn}: x and {name} must have the same number of samples; got {n} "
                             f"in x and {y.shape[0]} in {name}")
        out = self._output_shape
        classes = out[-1]
        if isinstance(self.loss, _losses.SparseCategoricalCrossentropy):
            lead = out[1:-1]
            if y.shape[1:] not in (lead, lead + (1,)):
                raise ValueError(f"{fn}: {name} must hold class ids of shape "
                                 f"{_fmt_shape(('B',) + lead)} for loss "
                                 f"{self.loss.name!r} and model output {_fmt_shape(out)}; got "
                                 f"{y.shape}")
            if y.dtype.kind == "f" and not np.all(y == np.round(y)):
                raise ValueError(f"{fn}: {name} must hold whole-number class ids for loss "
                                 f"{self.loss.name!r}; got non-integer values")
            if y.size and classes is not None:
                lo, hi = int(y.min()), int(y.max())
                if lo < 0 or hi >= classes:
                    raise ValueError(f"{fn}: {name} class ids must be in [0, {classes}) for the "
                                     f"model output {_fmt_shape(out)}; got values in "
                                     f"[{lo}, {hi}]")
            return y
        ok = all(w is None or w == d for w, d in zip(out[1:], y.shape[1:])) and \
            y.ndim == len(out)
        if not ok and y.ndim == len(out) - 1 and classes == 1 and \
                all(w is None or w == d for w, d in zip(out[1:-1], y.shape[1:])):
            y = y.reshape(y.shape + (1,))
            ok = True
        if not ok:
            hint = ""
            if isinstance(self.loss, _losses.CategoricalCrossentropy) and \
                    y.ndim == len(out) - 1:
                hint = (" (for integer class ids use loss='sparse_categorical_crossentropy' or "
                        "one-hot encode them with nanonet.utils.to_categorical)")
            raise ValueError(f"{fn}: {name} must have shape "
                             f"{_fmt_shape(('B',) + tuple(out[1:]))} to "
                             f"match the model output {_fmt_shape(out)} for loss "
                             f"{self.loss.name!r}; got {y.shape}{hint}")
        dt = self._float_dtype()
        return y if y.dtype == dt else y.astype(dt)

    def _prepare_weights(self, sample_weight, y, n, fn, class_weight=None):
        if class_weight is not None and sample_weight is not None:
            raise ValueError(f"{fn}: pass class_weight or sample_weight, not both")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise ValueError(f"{fn}: class_weight must be a dict {{class id: weight}}; got "
                                 f"{type(class_weight).__name__}")
            if y.ndim > 2:
                raise ValueError(f"{fn}: class_weight needs targets of shape (B,) or (B, C); "
                                 f"got {y.shape}")
            if y.ndim == 2 and y.shape[1] > 1:
                labels = np.argmax(y, axis=1)
            else:
                labels = np.round(y.reshape(n)).astype(np.int64)
            try:
                table = {int(k): float(v) for k, v in class_weight.items()}
            except (TypeError, ValueError):
                raise ValueError(f"{fn}: class_weight must map int class ids to numbers; got "
                                 f"{class_weight!r}") from None
            lut = np.ones(max([int(labels.max()) + 1] + [k + 1 for k in table]))
            for k, v in table.items():
                if k >= 0:
                    lut[k] = v
            return lut[labels]
        if sample_weight is None:
            return None
        w = _as_array(sample_weight, "sample_weight", fn)
        if w.shape[0] != n:
            raise ValueError(f"{fn}: sample_weight must have one entry per sample ({n}); got "
                             f"shape {w.shape}")
        return w.astype(np.float64, copy=False)

    # -- steps -------------------------------------------------------------------------------
    @staticmethod
    def _mask_weights(sw, mask, pred_ndim, rescale):
        """Sample weights for sequence outputs (B, T, C) with an output mask (B, T): masked steps
        weigh 0. rescale (for the loss) multiplies by total / valid steps, so that the
        sum-over-batch-size mean becomes the mean over unmasked steps (Keras's apply_mask)."""
        if mask is None or pred_ndim < 3:
            return sw
        m = np.asarray(mask, dtype=np.float64)
        if rescale:
            m = m * (m.size / (m.sum() + _EPSILON))
        if sw is None:
            return m
        sw = np.asarray(sw, dtype=np.float64)
        return sw.reshape(sw.shape + (1,) * (m.ndim - sw.ndim)) * m

    def _forward(self, x, training, logits_last=False):
        mask = None
        last = len(self._layers) - 1
        for i, layer in enumerate(self._layers):
            if i == last and logits_last:
                y = layer.call_logits(x, training=training)
            else:
                y = layer.call(x, training=training, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = y
        return x, mask

    def _fused(self):
        act = self.loss.fused_activation
        return act is not None and self._layers[-1].fused_activation == act

    def _train_step(self, x, y, sw):
        fused = self._fused()
        out, mask = self._forward(x, True, logits_last=fused)
        lw = self._mask_weights(sw, mask, out.ndim, True)
        if fused:
            value, grad = self.loss.value_and_grad_from_logits(y, out, lw)
        else:
            value, grad = self.loss.value_and_grad(y, out, lw)
        value += sum(self.losses)
        d = grad
        for i in range(len(self._layers) - 1, -1, -1):
            layer = self._layers[i]
            d = layer.backward(d)
            if d is None and i > 0:
                raise RuntimeError(f"Layer {layer.name!r} returned no input gradient, so the "
                                   f"layers before it cannot be trained; it must be the first "
                                   f"layer of the model")
        params, grads = [], []
        if self.trainable:
            for layer in self._layers:
                tw = layer.trainable_weights
                if tw:
                    layer.add_regularization_gradients()
                    params.extend(tw)
                    grads.extend(layer.grads)
        if params:
            self.optimizer.apply(grads, params)
        metric_set = self._metric_set("train", y.shape, out.shape)
        if fused and len(metric_set) > 1 and \
                not all(getattr(m, "argmax_only", False) for m in metric_set[1:]):
            out = _softmax(out)
        self._update_metrics(metric_set, value, y, out, sw, mask)
        return self._logs(metric_set)

    def _test_step(self, x, y, sw):
        out, mask = self._forward(x, False)
        lw = self._mask_weights(sw, mask, out.ndim, True)
        value = self.loss(y, out, lw) + sum(self.losses)
        metric_set = self._metric_set("test", y.shape, out.shape)
        self._update_metrics(metric_set, value, y, out, sw, mask)
        return self._logs(metric_set)

    def _update_metrics(self, metric_set, value, y, out, sw, mask):
        metric_set[0].add(float(value), float(y.shape[0]))  # the loss, weighted by batch size
        if len(metric_set) > 1:
            mw = self._mask_weights(sw, mask, out.ndim, False)
            for m in metric_set[1:]:
                m.update_state(y, out, sample_weight=mw)

    @staticmethod
    def _logs(metric_set):
        return {m.name: float(m.result()) for m in metric_set}

    def _flatten_logs(self, logs, return_dict):
        if return_dict:
            return dict(logs)
        values = [logs[k] for k in self.metrics_names]
        return values[0] if len(values) == 1 else values

    # -- public training API -----------------------------------------------------------------
    def __call__(self, x, training=False):
        """Run the model on a batch (inference unless training=True); builds on first use."""
        if not self.built:
            x = self._prepare_x(x, "Sequential.__call__")
        return self._forward(x, training)[0]

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One optimizer step on one batch. Returns the batch loss (no metrics), [loss, metrics...]
        or a dict (return_dict=True)."""
        fn = "train_on_batch"
        self._require_compiled(fn)
        x = self._prepare_x(x, fn)
        y = self._prepare_y(y, x.shape[0], fn)
        sw = self._prepare_weights(sample_weight, y, x.shape[0], fn, class_weight)
        self._reset(self._train_metrics)
        return self._flatten_logs(self._train_step(x, y, sw), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics of one batch, without training (same return rules as evaluate)."""
        fn = "test_on_batch"
        self._require_compiled(fn)
        x = self._prepare_x(x, fn)
        y = self._prepare_y(y, x.shape[0], fn)
        sw = self._prepare_weights(sample_weight, y, x.shape[0], fn)
        self._reset(self._test_metrics)
        return self._flatten_logs(self._test_step(x, y, sw), return_dict)

    def predict_on_batch(self, x):
        """Predictions for one batch, as a NumPy array."""
        x = self._prepare_x(x, "predict_on_batch")
        return self._forward(x, False)[0]

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs`` epochs over (x, y) in batches (Keras 3 arguments).

        validation_split takes the last fraction of the samples (before shuffling) for
        validation; validation_data=(x_val, y_val[, sample_weight_val]) overrides it.
        shuffle reshuffles the training samples every epoch (nanonet's Generator, see
        set_seed). steps_per_epoch caps the number of batches per epoch. Returns a History.
        """
        fn = "fit"
        self._require_compiled(fn)
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"{fn}: epochs must be an int >= 0; got {epochs!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) \
                or initial_epoch < 0:
            raise ValueError(f"{fn}: initial_epoch must be an int >= 0; got {initial_epoch!r}")
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

        x = self._prepare_x(x, fn)
        n = x.shape[0]
        y = self._prepare_y(y, n, fn)
        sw = self._prepare_weights(sample_weight, y, n, fn, class_weight)

        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError(f"{fn}: validation_data must be a tuple (x_val, y_val) or "
                                 f"(x_val, y_val, sample_weight_val); got "
                                 f"{type(validation_data).__name__}")
            xv = self._prepare_x(validation_data[0], fn, "validation_data[0]")
            yv = self._prepare_y(validation_data[1], xv.shape[0], fn, "validation_data[1]")
            swv = (self._prepare_weights(validation_data[2], yv, xv.shape[0], fn)
                   if len(validation_data) == 3 else None)
            val = (xv, yv, swv)
        elif validation_split:
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0:
                raise ValueError(f"{fn}: validation_split={validation_split} of {n} samples "
                                 f"leaves {split} for training and {n - split} for validation; "
                                 "both must be >= 1")
            val = (x[split:], y[split:], None if sw is None else sw[split:])
            x, y = x[:split], y[:split]
            sw = None if sw is None else sw[:split]
            n = split

        steps = math.ceil(n / batch_size)
        if steps_per_epoch is not None:
            steps = min(steps, steps_per_epoch)
        cbs = _callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                      model=self, verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        cbs.on_train_begin()
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            self._reset(self._train_metrics)
            cbs.on_epoch_begin(epoch)
            rng = self._enter_epoch(epoch)  # this epoch's shuffling and dropout (resumable)
            if shuffle:
                order = rng.permutation(n)
                xe, ye = x[order], y[order]
                swe = None if sw is None else sw[order]
            else:
                xe, ye, swe = x, y, sw
            logs = {}
            for step in range(steps):
                lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                cbs.on_train_batch_begin(step)
                logs = self._train_step(xe[lo:hi], ye[lo:hi], None if swe is None else swe[lo:hi])
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_evaluation(*val, validation_batch_size, validation_steps, cbs)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        _random.exit_epoch()
        cbs.on_train_end(epoch_logs)
        history = next(c for c in cbs if isinstance(c, _callbacks.History))
        self.history = history
        return history

    def _run_evaluation(self, x, y, sw, batch_size, max_steps, cbs):
        n = x.shape[0]
        steps = math.ceil(n / batch_size)
        if max_steps is not None:
            steps = min(steps, max_steps)
        self._reset(self._test_metrics)
        cbs.on_test_begin()
        logs = {}
        for step in range(steps):
            lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
            cbs.on_test_batch_begin(step)
            logs = self._test_step(x[lo:hi], y[lo:hi], None if sw is None else sw[lo:hi])
            cbs.on_test_batch_end(step, logs)
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) over (x, y) in batches, without training.

        Returns the loss as a float when no metrics were compiled, else [loss, metric, ...] in
        ``metrics_names`` order, or a dict with return_dict=True (Keras 3).
        """
        fn = "evaluate"
        self._require_compiled(fn)
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        steps = _check_positive_int(steps, "steps", fn)
        x = self._prepare_x(x, fn)
        y = self._prepare_y(y, x.shape[0], fn)
        sw = self._prepare_weights(sample_weight, y, x.shape[0], fn)
        n_steps = math.ceil(x.shape[0] / batch_size)
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=1,
                                      steps=n_steps if steps is None else min(steps, n_steps))
        logs = self._run_evaluation(x, y, sw, batch_size, steps, cbs)
        return self._flatten_logs(logs, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Model outputs for x, computed in batches, as one NumPy array."""
        fn = "predict"
        verbose = _check_verbose(verbose, fn)
        batch_size = _check_positive_int(batch_size, "batch_size", fn) or 32
        steps = _check_positive_int(steps, "steps", fn)
        x = self._prepare_x(x, fn)
        n = x.shape[0]
        n_steps = math.ceil(n / batch_size)
        if steps is not None:
            n_steps = min(n_steps, steps)
            n = min(n, n_steps * batch_size)
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=1, steps=n_steps)
        cbs.on_predict_begin()
        out = None
        for step in range(n_steps):
            lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
            cbs.on_predict_batch_begin(step)
            yb = self._forward(x[lo:hi], False)[0]
            if out is None:
                out = np.empty((n,) + yb.shape[1:], dtype=yb.dtype)
            out[lo:hi] = yb
            cbs.on_predict_batch_end(step, {"outputs": yb})
        cbs.on_predict_end()
        return out

    # -- saving ------------------------------------------------------------------------------
    def save(self, filepath, overwrite=True):
        """Write the whole model (architecture, weights, compile settings, optimizer state,
        training seed) to one file, atomically; ``nanonet.load_model`` reads it back. See
        ``nanonet.saving``."""
        from . import saving
        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        """Write the weights alone, atomically (``load_weights`` reads them back)."""
        from . import saving
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, allow_nan=False):
        """Set the weights from a file written by ``save_weights`` or ``save`` (matched by
        position; layer classes, weight names and shapes must agree)."""
        from . import saving
        saving.load_weights(self, filepath, allow_nan=allow_nan)

    def _enter_epoch(self, epoch):
        """Epoch ``epoch``'s Generator for fit, derived from (training seed, epoch): the seed is
        drawn once from nanonet's Generator and saved with the model, so that a model loaded
        from a checkpoint and trained with fit(initial_epoch=k) repeats the original run."""
        if getattr(self, "_train_seed", None) is None:
            self._train_seed = _random.draw_seed()
        return _random.enter_epoch(self._train_seed, epoch)

    # -- config ------------------------------------------------------------------------------
    def get_config(self):
        layers = []
        if self._input_layer is not None:
            layers.append(_serialize_layer(self._input_layer))
        elif self._batch_input_shape is not None:
            layers.append({"class_name": "InputLayer",
                           "config": {"batch_shape": self._batch_input_shape,
                                      "dtype": self._layers[0].dtype if self._layers
                                      else "float32",
                                      "name": f"{self.name}_input"}})
        layers.extend(_serialize_layer(layer) for layer in self._layers)
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    @classmethod
    def from_config(cls, config):
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for layer_config in config.get("layers", []):
            model.add(_deserialize_layer(layer_config))
        return model

    def __repr__(self):
        return (f"<Sequential name={self.name!r}, layers={len(self._layers)}, "
                f"built={self.built}>")


def _softmax(logits):
    """softmax over the last axis (probabilities for metrics after a fused training step)."""
    shape = logits.shape
    return ops.activation_forward(logits.reshape(-1, shape[-1]), "softmax").reshape(shape)
