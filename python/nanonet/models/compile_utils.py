"""What ``compile`` sets up: the per-output losses (with loss weights) and the metrics.

``CompiledLoss`` resolves ``loss`` and ``loss_weights`` against the model's outputs (Keras 3):
one loss for every output, a list in output order, or a dict by output name (an output without
a loss is not trained on); it also owns the fused softmax + cross-entropy decision and computes
one step's value and gradients.

The fused decision. When an output's layer ends in a softmax (``Dense(..., activation=
"softmax")``, ``Activation("softmax")``, ``TimeDistributed`` of either), its tensor feeds nothing
else, and its loss is (sparse_)categorical_crossentropy with ``from_logits=False``, training asks
that layer for its logits and takes the gradient wrt the logits from one stable kernel
(``ops.softmax_cross_entropy``). The value reported is still Keras's definition on the clipped
probabilities, the same number ``evaluate`` and ``test_on_batch`` give for the same batch.

``CompiledMetrics`` resolves ``metrics`` (a list for a single output; for several, a list with
one entry per output or a dict by output name) and makes the metric objects once the shapes of
targets and predictions are known ("accuracy" picks its kind from them). Names follow Keras's
history keys: "loss", "accuracy" for one output; "loss", "<output>_loss", "<output>_accuracy"
for several.

Sequence outputs (B, T, C) with an output mask (B, T) weigh the loss as Keras does: masked steps
count zero and the mean is over the unmasked steps.
"""
from __future__ import annotations

import copy
import numbers
from typing import Any

import numpy as np

from .. import losses as _losses
from .. import metrics as _metrics
from .. import ops

__all__ = ["CompiledLoss", "CompiledMetrics", "mask_weights"]

_EPSILON = 1e-7  # Keras's backend epsilon, used when rescaling masked losses


def mask_weights(sw: Any, mask: Any, pred_ndim: Any, rescale: Any) -> Any:
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


def softmax(logits: Any) -> Any:
    """softmax over the last axis."""
    shape = logits.shape
    return ops.activation_forward(logits.reshape(-1, shape[-1]), "softmax").reshape(shape)


def _per_output(value, names, what, fn, allow_single=True):
    """value given once, as a list in output order, or as a dict by output name -> list."""
    k = len(names)
    if isinstance(value, dict) and not ("class_name" in value and "class_name" not in names):
        unknown = [n for n in value if n not in names]
        if unknown:
            raise ValueError(f"{fn}: {what} has key(s) {unknown} that name no model output; the "
                             f"model's outputs are {names}")
        return [value.get(n) for n in names], "dict"
    if isinstance(value, (list, tuple)):
        if len(value) != k:
            raise ValueError(f"{fn}: {what} as a list needs one entry per output ({k}: {names}); "
                             f"got {len(value)}")
        return list(value), "list"
    if not allow_single and k > 1:
        raise ValueError(f"{fn}: {what} for a model with {k} outputs must be a list with one "
                         f"entry per output or a dict by output name ({names}); got {value!r}")
    return [value] * k, "single"


class CompiledLoss:
    """Per output: the Loss (or None) and its weight."""

    def __init__(self, loss: Any, loss_weights: Any, output_names: Any,
                 fn: Any = "compile") -> None:
        self.output_names = list(output_names)
        if loss is None:
            self.losses = [None] * len(self.output_names)
            self.kind = "single"
        else:
            raw, self.kind = _per_output(loss, self.output_names, "loss", fn)
            self.losses = [None if v is None else _losses.get(v) for v in raw]
            if all(v is None for v in self.losses):
                raise ValueError(f"{fn}: loss names no output of {self.output_names}")
        if loss_weights is None:
            self.weights = [1.0] * len(self.output_names)
        else:
            raw, _ = _per_output(loss_weights, self.output_names, "loss_weights", fn,
                                 allow_single=len(self.output_names) == 1)
            self.weights = []
            for n, w in zip(self.output_names, raw):
                if w is None:
                    w = 1.0
                if isinstance(w, bool) or not isinstance(w, numbers.Real) or not np.isfinite(w):
                    raise ValueError(f"{fn}: loss_weights for output {n!r} must be a finite "
                                     f"number; got {w!r}")
                self.weights.append(float(w))
        self.fused = None  # per output, decided at the first training step

    @property
    def empty(self) -> Any:
        return all(v is None for v in self.losses)

    def decide_fused(self, model: Any) -> Any:
        self.fused = [loss is not None and model._fused_output(k, loss)
                      for k, loss in enumerate(self.losses)]
        return self.fused

    def train_values(self, ys: Any, outs: Any, masks: Any, sws: Any) -> Any:
        """(total, per-output values, d total / d outputs); ``outs`` hold logits for fused
        outputs and are replaced by probabilities in place (for the metrics)."""
        total = 0.0
        values, douts = [], []
        for k, loss in enumerate(self.losses):
            if loss is None:
                values.append(None)
                douts.append(None)
                continue
            out = outs[k]
            lw = mask_weights(sws[k], masks[k], out.ndim, True)
            if self.fused[k]:
                _, grad = loss.value_and_grad_from_logits(ys[k], out, lw)
                probs = softmax(out)
                # Keras's definition on the clipped probabilities, as evaluate reports it.
                value = loss(ys[k], probs, lw)
                outs[k] = probs
            else:
                value, grad = loss.value_and_grad(ys[k], out, lw)
            w = self.weights[k]
            if w != 1.0:
                grad = grad * grad.dtype.type(w)
            total += w * value
            values.append(value)
            douts.append(grad)
        return total, values, douts

    def test_values(self, ys: Any, outs: Any, masks: Any, sws: Any) -> Any:
        total = 0.0
        values = []
        for k, loss in enumerate(self.losses):
            if loss is None:
                values.append(None)
                continue
            lw = mask_weights(sws[k], masks[k], outs[k].ndim, True)
            value = loss(ys[k], outs[k], lw)
            total += self.weights[k] * value
            values.append(value)
        return total, values

    def get_config(self) -> dict[str, Any]:
        """JSON-able loss / loss_weights as compile takes them back."""
        ser = [None if v is None else _losses.serialize(v) for v in self.losses]
        if len(self.output_names) == 1:
            return ser[0], (None if self.weights == [1.0] else self.weights[0])
        return dict(zip(self.output_names, ser)), dict(zip(self.output_names, self.weights))


class CompiledMetrics:
    """The metric identifiers per output and, once shapes are known, the metric objects."""

    def __init__(self, metrics: Any, output_names: Any, losses: Any, fn: Any = "compile") -> None:
        self.output_names = list(output_names)
        multi = len(self.output_names) > 1
        if metrics is None:
            per = [[] for _ in self.output_names]
        elif isinstance(metrics, (str, _metrics.Metric)):
            raise ValueError(f"{fn}: metrics must be a list; got {metrics!r} (wrap it in a "
                             "list)")
        elif not multi:
            if isinstance(metrics, dict):
                raw, _ = _per_output(metrics, self.output_names, "metrics", fn)
                per = [[] if raw[0] is None else _listify(raw[0])]
            else:
                per = [list(metrics)]
        else:
            raw, _ = _per_output(metrics, self.output_names, "metrics", fn, allow_single=False)
            per = [[] if v is None else _listify(v) for v in raw]
        self.identifiers = per
        names = ["loss"]
        if multi:
            names += [f"{n}_loss" for n, loss in zip(self.output_names, losses)
                      if loss is not None]
        for n, ids in zip(self.output_names, per):
            for ident in ids:
                base = _metrics.check_identifier(ident)
                names.append(f"{n}_{base}" if multi else base)
        if len(set(names)) != len(names):
            raise ValueError(f"{fn}: metric names must be unique and differ from 'loss'; got "
                             f"{names[1:]}")
        self.names = names
        self.losses_present = [loss is not None for loss in losses]

    def build(self, y_shapes: Any, pred_shapes: Any, share_objects: Any) -> None:
        """The flat metric list: loss tracker(s), then the compiled metrics output by output. A
        Metric object passed to compile is updated itself during training (share_objects) and
        copied for evaluation."""
        out = [_metrics.Mean(name="loss")]
        if len(self.output_names) > 1:
            out += [_metrics.Mean(name=f"{n}_loss")
                    for n, p in zip(self.output_names, self.losses_present) if p]
        owners = []
        for k, ids in enumerate(self.identifiers):
            for ident in ids:
                if isinstance(ident, _metrics.Metric):
                    m = ident if share_objects else copy.deepcopy(ident)
                    m.reset_state()
                else:
                    if y_shapes[k] is None:
                        raise ValueError(f"metric {ident!r} of output {self.output_names[k]!r} "
                                         "needs targets for that output")
                    m = _metrics.get(ident, y_shapes[k], pred_shapes[k])
                out.append(m)
                owners.append(k)
        return out, owners

    def get_config(self) -> dict[str, Any]:
        ser = [[m if isinstance(m, (str, dict)) else _metrics.serialize(m) for m in ids]
               for ids in self.identifiers]
        if len(self.output_names) == 1:
            return ser[0]
        return dict(zip(self.output_names, ser))


def _listify(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]
