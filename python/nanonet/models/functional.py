"""The graph model: ``nanonet.Model(inputs, outputs)`` (Keras 3's Functional API).

Building. ``nanonet.Input`` gives a symbolic tensor; calling a layer on symbolic tensors builds
the layer from their shapes and records a node (layers/node.py). ``Model(inputs, outputs)`` walks
back from the outputs depth first, as Keras's ``map_graph`` does: every path must end at one of
``inputs`` (else "graph disconnected", naming the layer and the tensor), cycles are refused, and
layer names must be unique. ``model.layers`` follows Keras's order (by depth from the inputs,
ties in traversal order; InputLayers first), so ``get_weights()`` lists the same arrays in the
same order as the same Keras model.

Execution. The nodes are compiled once into a plan: per node, the layer and the integer slots of
its inbound and outbound tensors. Forward walks the plan keeping each tensor's value and mask in
a slot list; training also keeps every node's ctx (what its backprop needs), inference keeps
none, so concurrent ``predict`` calls share nothing. Backward walks the plan in reverse: the
gradient of a tensor consumed by several nodes is the sum of their contributions; a layer shared
by several nodes gets the sum of its weight gradients (accumulated per weight array); a node no
gradient reaches is skipped; dx is not computed for a model input (need_dx=False) or integer
tensors (token ids).

A Model is itself a Layer: called on symbolic tensors inside another graph it becomes one node,
whose forward and backprop are its own plan (nested models).

The training loop (compile / fit / evaluate / predict) is in models/training.py, the loss and
metric containers in compile_utils.py, input standardisation in data_adapters.py, the table in
summary.py.
"""
from __future__ import annotations

import functools as _functools
import os
from typing import Any

import numpy as _np

from ..layers import deserialize as _deserialize_layer
from ..layers import serialize as _serialize_layer
from ..layers.base import BUILD_LOCK, Layer, unique_name
from ..layers.core import InputLayer
from ..layers.node import SymbolicTensor, fmt_shape, is_symbolic
from .training import Trainer

__all__ = ["Model", "Functional"]


def _structure(value, what):
    """(kind, flat list, keys) of a tensor, a list/tuple of tensors or a dict of them."""
    if isinstance(value, SymbolicTensor):
        return "single", [value], None
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"Model: {what} must not be empty")
        return "list", list(value), None
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"Model: {what} must not be empty")
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"Model: the keys of {what} must be strings; got {k!r}")
        return "dict", list(value.values()), list(value.keys())
    raise TypeError(f"Model: {what} must be a symbolic tensor (from nanonet.Input or a layer), a "
                    f"list or a dict of them; got {type(value).__name__}")


class _Plan:
    """The compiled graph: slots for tensors and one entry per node, in execution order."""

    __slots__ = ("steps", "calls", "n_slots", "input_slots", "output_slots", "slot_float",
                 "produced", "consumers", "needs")

    def __init__(self, nodes, inputs, outputs):
        slot = {}
        for t in inputs:
            slot[id(t)] = len(slot)
        steps, options = [], []
        for node in nodes:
            if node.is_input:
                continue
            ins = tuple(slot[id(t)] for t in node.inputs)
            outs = []
            for t in node.outputs:
                slot.setdefault(id(t), len(slot))
                outs.append(slot[id(t)])
            steps.append((node.layer, ins, tuple(outs), node.single_input, node.single_output))
            options.append(node.kwargs)
        self.steps = steps
        # Per step: the bound forward, the layer's own compute_mask (None for Layer's, which the
        # loop inlines) and supports_masking: the per-node cost of inference is a few lookups.
        # A node's call options (Layer.call_kwargs) are bound into both functions.
        def bind(fn, kw):
            return _functools.partial(fn, **kw) if kw else fn
        self.calls = [(bind(layer.forward, kw),
                       None if type(layer).compute_mask is Layer.compute_mask
                       else bind(layer.compute_mask, kw), layer.supports_masking)
                      for (layer, _, _, _, _), kw in zip(steps, options)]
        self.n_slots = len(slot)
        self.input_slots = tuple(slot[id(t)] for t in inputs)
        self.output_slots = tuple(slot[id(t)] for t in outputs)
        dtype_of = {}
        for node in nodes:
            for t in node.outputs:
                dtype_of[slot[id(t)]] = t.dtype
        self.slot_float = [str(dtype_of.get(s, "float32")).startswith("float")
                           for s in range(self.n_slots)]
        self.produced = [False] * self.n_slots
        for _, _, outs, _, _ in steps:
            for s in outs:
                self.produced[s] = True
        self.consumers = [0] * self.n_slots
        for _, ins, _, _, _ in steps:
            for s in ins:
                self.consumers[s] += 1
        for s in self.output_slots:
            self.consumers[s] += 1
        # needs[need_dx][slot]: whether backward computes that tensor's gradient (float tensors
        # made by a node, and the model's float inputs only when its caller needs dx).
        self.needs = tuple([f and (p or nd) for f, p in zip(self.slot_float, self.produced)]
                           for nd in (False, True))


def _map_graph(inputs, outputs):
    """(nodes in topological order, layers in Keras's order) of the graph from inputs to
    outputs; ValueError for cycles, disconnected tensors and repeated layer names."""
    input_ids = {id(t) for t in inputs}
    finished, in_progress = set(), set()
    ordered = []                 # nodes, inputs -> outputs
    layer_index = {}             # layer id -> first traversal index
    layers_by_id = {}

    def visit(tensor):
        node = tensor.node
        key = id(node)
        if key in finished:
            return
        if key in in_progress:
            raise ValueError(f"Model: tensor {tensor.name!r} from layer {tensor.layer.name!r} is "
                             "part of a cycle")
        layer = tensor.layer
        if id(layer) not in layer_index:
            layer_index[id(layer)] = len(layer_index)
            layers_by_id[id(layer)] = layer
        in_progress.add(key)
        if id(tensor) not in input_ids:
            for t in node.inputs:
                visit(t)
        finished.add(key)
        in_progress.discard(key)
        ordered.append(node)

    for t in outputs:
        visit(t)
    # The depth of a node: 0 at the outputs, parents one deeper (Keras's map_graph).
    in_graph = {id(n) for n in ordered}
    node_depth, layer_depth = {}, {}
    for node in reversed(ordered):
        depth = node_depth.setdefault(id(node), 0)
        depth = max(depth, layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        for parent in node.parent_nodes:
            if id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in inputs:  # an input not used by any output is still a layer of the model
        if id(t.layer) not in layer_depth:
            layer_depth[id(t.layer)] = 0
            layer_index[id(t.layer)] = -1
            layers_by_id[id(t.layer)] = t.layer
    layers = sorted(layers_by_id.values(),
                    key=lambda lay: (-layer_depth[id(lay)], layer_index[id(lay)]))
    # Every tensor must be computable from the inputs.
    computable = set(input_ids)
    for node in ordered:
        if id(node.outputs[0]) in input_ids:
            continue
        for t in node.inputs:
            if id(t) not in computable:
                raise ValueError(
                    f"Model: graph disconnected: layer {node.layer.name!r} needs tensor "
                    f"{t.name!r} (from layer {t.layer.name!r}), which cannot be computed from "
                    f"the model's inputs {[x.name for x in inputs]}; pass that Input in inputs")
        if node.is_input and id(node.outputs[0]) not in input_ids:
            raise ValueError(
                f"Model: graph disconnected: Input {node.layer.name!r} is needed to compute the "
                f"outputs but is not one of the model's inputs {[x.name for x in inputs]}")
        for t in node.outputs:
            computable.add(id(t))
    names = [lay.name for lay in layers]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"Model: the layer name {name!r} is used {names.count(name)} times; "
                             "every layer of a model needs a unique name")
    return ordered, layers


class Model(Trainer, Layer):
    """A graph of layers from inputs to outputs (Keras 3's Functional API).

    Build it by calling layers on symbolic tensors from ``nanonet.Input``, then pass the
    inputs and outputs. The graph may have several inputs and outputs, shared layers (one
    layer called at several places) and nested models (a Model is a layer: call it on
    symbolic tensors to use it inside another). Then ``compile``, ``fit``, ``evaluate``,
    ``predict`` and ``save`` work as in Keras.

    Args:
        inputs: one symbolic tensor from ``nanonet.Input``, a list or a dict of them; data
            for ``fit``, ``predict`` and ``model(x)`` then come the same way (an array, a list
            in order, or a dict by name).
        outputs: one symbolic tensor, a list or a dict of them (a dict names the outputs and
            their history keys).
        name (str or None, default None): the model's name.
        trainable (bool, default True): whether fit updates its weights.

    Raises:
        ValueError: an input not made by ``nanonet.Input``, a graph that does not connect the
            outputs to the inputs (naming the layer and the tensor), a cycle, or two layers
            with one name.

    Example:

    >>> tokens = nn.Input(shape=(10,), dtype="int32", name="tokens")
    >>> h = nn.layers.LSTM(8)(nn.layers.Embedding(50, 4, mask_zero=True)(tokens))
    >>> model = nn.Model(tokens, nn.layers.Dense(3, activation="softmax")(h))
    >>> model.predict(np.ones((2, 10), np.int32), verbose=0).shape
    (2, 3)
    >>> [layer.name for layer in model.layers][0]
    'tokens'
    """

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 trainable: bool = True) -> None:
        Layer.__init__(self, name=name or unique_name(self._default_name()),
                       trainable=trainable)
        Trainer.__init__(self)
        self._class_names = None
        self._plan = None
        self.inputs = []
        self.outputs = []
        if type(self) is Model or inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("Model: pass both inputs and outputs (symbolic tensors from "
                                 "nanonet.Input and layer calls); subclassed models with a "
                                 "custom call() are not supported")
            self._init_graph(inputs, outputs)

    @classmethod
    def _default_name(cls):
        return "functional"

    # -- the graph -----------------------------------------------------------------------------
    def _init_graph(self, inputs, outputs):
        self._input_kind, flat_in, in_keys = _structure(inputs, "inputs")
        self._output_kind, flat_out, out_keys = _structure(outputs, "outputs")
        for i, t in enumerate(flat_in):
            if not isinstance(t, SymbolicTensor) or not t.node.is_input:
                got = (f"the output of layer {t.layer.name!r}" if isinstance(t, SymbolicTensor)
                       else type(t).__name__)
                raise ValueError(f"Model: inputs[{i}] must be a tensor made by nanonet.Input; "
                                 f"got {got}")
        if len({id(t) for t in flat_in}) != len(flat_in):
            raise ValueError("Model: the same Input appears twice in inputs")
        for i, t in enumerate(flat_out):
            if not isinstance(t, SymbolicTensor):
                raise ValueError(f"Model: outputs[{i}] must be a symbolic tensor (the result of "
                                 f"calling a layer); got {type(t).__name__}")
        nodes, layers = _map_graph(flat_in, flat_out)
        self.inputs = flat_in
        self.outputs = flat_out
        self.input_names = in_keys or [t.layer.name for t in flat_in]
        names = out_keys or [t.layer.name if t.tensor_index == 0 else
                             f"{t.layer.name}_{t.tensor_index}" for t in flat_out]
        if len(set(names)) != len(names):
            names = [f"{n}_{i}" for i, n in enumerate(names)]
        self.output_names = names
        self._graph_layers = layers
        self._nodes = nodes
        self._plan = _Plan(nodes, flat_in, flat_out)
        self.built = True

    @property
    def layers(self) -> Any:
        """The layers, in Keras's order (InputLayers first)."""
        return list(self._graph_layers) if self._plan is not None else []

    @property
    def class_names(self) -> Any:
        """The label of each class of the (first) output, in output order, or None: saved with
        the model; ``python -m nanonet serve`` answers the top label of every sample with it.

        >>> model.class_names = ["cat", "dog", "bird"]     # doctest: +SKIP
        """
        return None if self._class_names is None else list(self._class_names)

    @class_names.setter
    def class_names(self, names: Any) -> Any:
        self._class_names = check_class_names(names, f"{type(self).__name__}.class_names")

    def get_layer(self, name: str | None = None, index: int | None = None) -> Any:
        """Returns a layer by its name or by its position in ``layers``.

        Args:
            name (str or None, default None): the layer's name.
            index (int or None, default None): its position in ``layers``; pass exactly one
                of name and index.

        Returns:
            Layer: the layer.

        Raises:
            ValueError: neither or both given, an index out of range, or no layer of that
                name (the message lists the names).

        Example:

        >>> inp = nn.Input((3,), name="features")
        >>> model = nn.Model(inp, nn.layers.Dense(2, name="head")(inp))
        >>> model.get_layer("head").units, model.get_layer(index=0).name
        (2, 'features')
        """
        if (name is None) == (index is None):
            raise ValueError("get_layer: pass exactly one of name and index")
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or \
                    not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer: index must be an int in [0, {len(layers)}); got "
                                 f"{index!r}")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the layers are "
                         f"{[lay.name for lay in layers]}")

    def _shape_of(self, tensors):
        shapes = [t.shape for t in tensors]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_shape(self) -> Any:
        """The input's shape with the batch axis (a list of shapes for several inputs)."""
        return self._shape_of(self.inputs) if self.inputs else None

    @property
    def output_shape(self) -> Any:
        if not self.outputs:
            raise ValueError(f"Model {self.name!r} is not built yet; it has no output shape")
        return self._shape_of(self.outputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def _fused_output(self, k, loss):
        """True when output k may train on its logits: its layer ends in the loss's fused
        activation, and the tensor feeds nothing else in the graph."""
        act = getattr(loss, "fused_activation", None)
        if act is None or self._plan is None:
            return False
        t = self.outputs[k]
        if t.node.is_input or isinstance(t.layer, Model) or not t.node.single_output:
            return False
        slot = self._plan.output_slots[k]
        return self._plan.consumers[slot] == 1 and t.layer.fused_activation == act

    # -- weights ------------------------------------------------------------------------------
    def _unique(self, arrays):
        seen, out = set(), []
        for a in arrays:
            if id(a) not in seen:
                seen.add(id(a))
                out.append(a)
        return out

    @property
    def weights(self) -> Any:
        return self._unique([w for layer in self.layers for w in layer.weights])

    @property
    def trainable_weights(self) -> Any:
        if not self.trainable:
            return []
        return list(self._cached("trainable", lambda layers: self._unique(
            [w for layer in layers for w in layer.trainable_weights])))

    def _cached(self, what, make):
        """make(layers), recomputed only when the layers or their trainable flags change (a
        training step asks for these every time)."""
        layers = self.layers
        key = (what, tuple(id(lay) for lay in layers), tuple(lay.trainable for lay in layers),
               tuple(len(lay._weights) for lay in layers))
        cache = self.__dict__.setdefault("_weight_cache", {})
        hit = cache.get(what)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = make(layers)
        cache[what] = (key, value)
        return value

    @property
    def non_trainable_weights(self) -> Any:
        if not self.trainable:
            return self.weights
        train = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in train]

    def named_weights(self) -> Any:
        """(layer, weight, name) for every weight once, in ``weights`` order."""
        seen, out = set(), []
        for layer in self.layers:
            for w, n in zip(layer.weights, layer.weight_names):
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append((layer, w, n))
        return out

    @property
    def weight_names(self) -> Any:
        return [n for _, _, n in self.named_weights()]

    def get_weights(self) -> list[_np.ndarray]:
        """Returns copies of every weight array, layer by layer, in Keras's order.

        Returns:
            list of ndarray: e.g. kernel then bias for each Dense.

        Example:

        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(2)])
        >>> [w.shape for w in model.get_weights()]
        [(3, 2), (2,)]
        """
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Any) -> None:
        """Sets every weight from a list like ``get_weights()``.

        All shapes are checked before any weight changes.

        Args:
            weights (list of array-like): one array per weight, in ``get_weights()`` order.

        Raises:
            ValueError: the wrong number of arrays or a wrong shape (named).

        Example:

        >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(2)])
        >>> model.set_weights([np.ones((3, 2)), np.zeros(2)])
        >>> model.predict(np.ones((1, 3), np.float32), verbose=0).tolist()
        [[3.0, 3.0]]
        """
        weights = list(weights)
        own = self.named_weights()
        cls = type(self).__name__
        if len(weights) != len(own):
            raise ValueError(f"{cls} {self.name!r} has {len(own)} weights; set_weights got "
                             f"{len(weights)}")
        arrays = []
        for k, ((layer, w, n), v) in enumerate(zip(own, weights)):
            v = _np.asarray(v)
            if v.shape != w.shape:
                raise ValueError(f"{cls}.set_weights: weights[{k}] is layer {layer.name!r} "
                                 f"weight {n!r} of shape {w.shape}; got {v.shape}")
            if v.dtype.kind not in "biuf":
                raise ValueError(f"{cls}.set_weights: weights[{k}] (layer {layer.name!r} weight "
                                 f"{n!r}) must be numeric; got dtype {v.dtype}")
            arrays.append(v)
        for (_, w, _), v in zip(own, arrays):
            w[...] = v

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"{type(self).__name__} {self.name!r} is not built yet; call "
                             "build(input_shape) or run it on data first")
        return int(sum(w.size for w in self.weights))

    @property
    def losses(self) -> Any:
        """Regularization penalties of every layer (floats)."""
        if not self.trainable:
            return []
        return [r(w) for w, r in self.regularized_weights()]

    def regularized_weights(self) -> Any:
        if not self.trainable:
            return []
        return list(self._cached("regularized", self._regularized))

    @staticmethod
    def _regularized(layers):
        seen, out = set(), []
        for layer in layers:
            for w, r in layer.regularized_weights():
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append((w, r))
        return out

    def get_rng_state(self) -> Any:
        """{layer name: that layer's get_rng_state()} for layers that own a Generator."""
        out = {}
        for layer in self.layers:
            state = layer.get_rng_state()
            if state:
                out[layer.name] = state
        return out

    def set_rng_state(self, state: Any) -> Any:
        if not isinstance(state, dict):
            raise ValueError(f"random state of model {self.name!r} must be a dict")
        by_name = {layer.name: layer for layer in self.layers}
        for lname, st in state.items():
            if lname not in by_name:
                raise ValueError(f"random state for unknown layer {lname!r}")
            by_name[lname].set_rng_state(st)

    # -- execution -----------------------------------------------------------------------------
    def _execute(self, xs, training, fused=None, masks=None):
        """Run the plan on input arrays xs (aligned with ``inputs``). Returns (outputs, output
        masks, ctxs); ctxs is None unless training. fused: output indices that return logits."""
        plan = self._plan
        vals = [None] * plan.n_slots
        mks = [None] * plan.n_slots
        for s, x in zip(plan.input_slots, xs):
            vals[s] = x
        if masks is not None:
            for s, m in zip(plan.input_slots, masks):
                mks[s] = m
        logits_slots = ()
        if fused:
            logits_slots = {plan.output_slots[k] for k in fused}
        ctxs = [None] * len(plan.steps) if training else None
        k = 0
        for (layer, ins, outs, single_in, single_out), (forward, mask_fn, passes) in \
                zip(plan.steps, plan.calls):
            if single_in:
                a = vals[ins[0]]
                m = mks[ins[0]]
            else:
                a = [vals[i] for i in ins]
                m = [mks[i] for i in ins]
                if all(v is None for v in m):
                    m = None
            if logits_slots and single_out and outs[0] in logits_slots:
                y, ctx = layer.forward_logits(a, training, m)
            else:
                y, ctx = forward(a, training, m)
            # Layer.compute_mask is inlined: the incoming mask when the layer passes masks on.
            ym = mask_fn(a, m) if mask_fn is not None else (m if passes else None)
            if single_out:
                vals[outs[0]] = y
                mks[outs[0]] = ym
            else:
                for j, s in enumerate(outs):
                    vals[s] = y[j]
                    mks[s] = ym[j] if isinstance(ym, (list, tuple)) else ym
            if training:
                ctxs[k] = ctx
            k += 1
        return ([vals[s] for s in plan.output_slots], [mks[s] for s in plan.output_slots],
                ctxs)

    def _backward(self, ctxs, douts, need_dx, hook=None):
        """Gradients from d loss / d outputs (None entries allowed): (dxs aligned with inputs,
        {id(weight): gradient}). hook(layer), when given, returns the function run in place of
        ``layer.backprop`` (DP-SGD's first pass, nanonet.privacy)."""
        plan = self._plan
        g = [None] * plan.n_slots
        for s, d in zip(plan.output_slots, douts):
            if d is not None:
                g[s] = d if g[s] is None else g[s] + d
        needs = plan.needs[bool(need_dx)]
        wgrads = {}
        for k in range(len(plan.steps) - 1, -1, -1):
            layer, ins, outs, single_in, single_out = plan.steps[k]
            if single_out:
                dy = g[outs[0]]
                if dy is None:
                    continue
            else:
                dy = [g[s] for s in outs]
                if all(d is None for d in dy):
                    continue
            nd = any(needs[i] for i in ins)
            backprop = layer.backprop if hook is None else hook(layer)
            dx, grads = backprop(ctxs[k], dy, need_dx=nd)
            if grads:
                for w, gw in zip(layer.trainable_weights, grads):
                    if gw is None:
                        continue
                    prev = wgrads.get(id(w))
                    wgrads[id(w)] = gw if prev is None else prev + gw
            if not nd:
                continue
            dxs = (dx,) if single_in else dx
            if dxs is None:
                dxs = (None,) * len(ins)
            for i, d in zip(ins, dxs):
                if not needs[i]:
                    continue
                if d is None:
                    if plan.produced[i]:
                        raise RuntimeError(
                            f"Layer {layer.name!r} returned no input gradient, so the layers "
                            "before it cannot be trained; it must take a model input")
                    continue
                g[i] = d if g[i] is None else g[i] + d
        return [g[s] for s in plan.input_slots], wgrads

    # A Model is a layer: forward / backprop run its plan.
    def _as_list(self, inputs, what):
        if self._input_kind == "dict" and isinstance(inputs, dict):
            missing = [k for k in self.input_names if k not in inputs]
            if missing:
                raise ValueError(f"Model {self.name!r}: {what} is missing inputs {missing}")
            return [inputs[k] for k in self.input_names]
        if len(self.inputs) == 1:
            if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
                return [inputs[0]]
            return [inputs]
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.inputs):
            raise ValueError(f"Model {self.name!r} takes {len(self.inputs)} inputs "
                             f"{self.input_names}; got {type(inputs).__name__}")
        return list(inputs)

    def forward(self, inputs: Any, training: bool = False, mask: Any = None) -> Any:
        xs = self._as_list(inputs, "inputs")
        masks = None
        if mask is not None:
            masks = mask if isinstance(mask, list) else [mask]
            if len(masks) != len(xs):
                masks = None
        outs, _, ctxs = self._execute(xs, training, masks=masks)
        return (outs[0] if len(outs) == 1 else outs), ((ctxs,) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        (ctxs,) = ctx
        douts = [dy] if len(self.outputs) == 1 else list(dy)
        dxs, wgrads = self._backward(ctxs, douts, need_dx)
        grads = [wgrads.get(id(w)) for w in self.trainable_weights]
        return (dxs[0] if len(dxs) == 1 else dxs), grads

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return None if len(self.outputs) == 1 else [None] * len(self.outputs)

    def _symbolic_inputs(self, inputs, kwargs):
        if kwargs:
            raise TypeError(f"Model {self.name!r}: unexpected call arguments {sorted(kwargs)} "
                            "on symbolic inputs")
        flat = self._as_list(inputs, "inputs")
        for i, t in enumerate(flat):
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"Model {self.name!r}: inputs[{i}] must be a symbolic tensor; "
                                f"got {type(t).__name__}")
        for t, spec in zip(flat, self.inputs):
            if len(t.shape) != len(spec.shape) or any(
                    a is not None and b is not None and a != b
                    for a, b in zip(t.shape[1:], spec.shape[1:])):
                raise ValueError(f"Model {self.name!r}: input {spec.name!r} expects shape "
                                 f"{fmt_shape(spec.shape)}; got {fmt_shape(t.shape)}")
        return flat, len(flat) == 1, {}

    def _output_dtype_at(self, index):
        return self.outputs[index].dtype

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and type(args[0]) is _np.ndarray:
            return self._call_arrays(args[0], False)  # the common case: inference on an array
        if args and is_symbolic(args[0]) or "inputs" in kwargs and is_symbolic(kwargs["inputs"]):
            return Layer.__call__(self, *args, **kwargs)
        if not args and "inputs" not in kwargs:
            raise TypeError(f"{type(self).__name__}.__call__: missing the inputs")
        x = args[0] if args else kwargs.pop("inputs")
        training = kwargs.pop("training", False)
        kwargs.pop("mask", None)
        if kwargs or len(args) > 1:
            raise TypeError(f"{type(self).__name__}.__call__: unexpected arguments "
                            f"{sorted(kwargs) or list(args[1:])}")
        return self._call_arrays(x, training)

    def call(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        return self._call_arrays(x, training)

    # -- export --------------------------------------------------------------------------------
    def export(self, filepath: str | os.PathLike[str], format: Any = "onnx",
               opset_version: Any = None) -> Any:
        """Writes the model for another runtime (Keras 3's name).

        ``format="onnx"``, the only format, writes an ONNX file for onnxruntime and other
        ONNX runtimes (needs ``pip install "nanonet[onnx]"``); see
        ``nanonet.interchange.onnx``.

        Args:
            filepath (str or path): the file to write.
            format (str, default "onnx"): the format.
            opset_version (int or None, default None): the ONNX opset (a recent one if None).

        Raises:
            ValueError: an unknown format, or a layer the exporter does not know.
            ImportError: the onnx package is missing (the message names the extra).

        Example:

        >>> inp = nn.Input((3,))
        >>> model = nn.Model(inp, nn.layers.Dense(2)(inp))
        >>> model.export("model.onnx")  # doctest: +SKIP
        >>> model.export("model.tflite", format="tflite")
        Traceback (most recent call last):
        ...
        ValueError: export: format must be 'onnx' (the only export format); got 'tflite'
        """
        if format != "onnx":
            raise ValueError(f"export: format must be 'onnx' (the only export format); got "
                             f"{format!r}")
        from ..interchange import onnx as _onnx_export
        _onnx_export.export(self, filepath, opset_version=opset_version)

    # -- config --------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Returns the graph as JSON-able data (no weights); ``from_config`` rebuilds it.

        The dict holds every layer's config and, per call site, the tensors it consumed
        ([layer name, node index, tensor index], node indices counted within this model) and
        its call options ("kwargs", when it has any), and the model's inputs and outputs.

        Returns:
            dict: the configuration.

        Example:

        >>> inp = nn.Input((3,), name="x")
        >>> model = nn.Model(inp, nn.layers.Dense(2, name="d")(inp))
        >>> [layer["name"] for layer in model.get_config()["layers"]]
        ['x', 'd']
        """
        node_index = {}  # id(node) -> index among the layer's nodes in this model
        per_layer = {}
        for node in self._nodes:
            per_layer.setdefault(id(node.layer), []).append(node)
        for nodes in per_layer.values():
            nodes.sort(key=lambda n: n.layer._inbound_nodes.index(n))
            for i, n in enumerate(nodes):
                node_index[id(n)] = i

        def ref(t):
            return [t.layer.name, node_index[id(t.node)], t.tensor_index]

        layers = []
        for layer in self.layers:
            inbound = [{"inputs": [ref(t) for t in n.inputs], "single": n.single_input,
                        **({"kwargs": dict(n.kwargs)} if n.kwargs else {})}
                       for n in per_layer.get(id(layer), []) if not n.is_input]
            layers.append({**_serialize_layer(layer), "name": layer.name,
                           "inbound_nodes": inbound})
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": [ref(t) for t in self.inputs],
                "output_layers": [ref(t) for t in self.outputs],
                "input_keys": self.input_names if self._input_kind == "dict" else None,
                "output_keys": self.output_names if self._output_kind == "dict" else None,
                "input_kind": self._input_kind, "output_kind": self._output_kind}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        """Rebuilds a model (new, unbuilt weights) from ``get_config``'s dict.

        Only registered layer classes can be built; nothing in the config is executed.

        Args:
            config (dict): what ``get_config`` returned.

        Returns:
            Model: a model with the same graph and freshly initialized weights.

        Raises:
            ValueError: an unknown layer type, a reference to a missing layer or tensor, or a
                cycle.

        Example:

        >>> inp = nn.Input((3,))
        >>> model = nn.Model(inp, nn.layers.Dense(2)(inp))
        >>> clone = nn.Model.from_config(model.get_config())
        >>> clone.predict(np.zeros((4, 3), np.float32), verbose=0).shape
        (4, 2)
        """
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Model.from_config: config must be a dict with a 'layers' list")
        with BUILD_LOCK:
            return cls._rebuild(config)

    @classmethod
    def _rebuild(cls, config):
        created, pending = {}, []
        for k, lc in enumerate(config["layers"]):
            if not isinstance(lc, dict) or not isinstance(lc.get("class_name"), str):
                raise ValueError(f"Model.from_config: layers[{k}] must be an object with a "
                                 "'class_name'")
            layer = _deserialize_layer({"class_name": lc["class_name"],
                                        "config": lc.get("config") or {}})
            name = lc.get("name", layer.name)
            if name != layer.name:
                raise ValueError(f"Model.from_config: layers[{k}] is named {name!r} but its "
                                 f"config says {layer.name!r}")
            if name in created:
                raise ValueError(f"Model.from_config: two layers are named {name!r}")
            created[name] = layer
            inbound = lc.get("inbound_nodes") or []
            if not isinstance(inbound, list):
                raise ValueError(f"Model.from_config: layer {name!r}: inbound_nodes must be a "
                                 "list")
            for spec in inbound:
                pending.append((layer, spec))
        outputs_of = {}  # (layer name, node index) -> output tensors

        def lookup(r):
            if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and
                    all(isinstance(v, int) and not isinstance(v, bool) for v in r[1:])):
                raise ValueError(f"Model.from_config: a tensor reference must be [layer name, "
                                 f"node index, tensor index]; got {r!r}")
            if r[0] not in created:
                raise ValueError(f"Model.from_config: reference to a missing layer {r[0]!r}")
            layer = created[r[0]]
            if isinstance(layer, InputLayer):
                if r[1:] != [0, 0]:
                    raise ValueError(f"Model.from_config: Input {r[0]!r} has one tensor; got "
                                     f"reference {r!r}")
                return layer.output
            outs = outputs_of.get((r[0], r[1]))
            if outs is None:
                return None
            if not 0 <= r[2] < len(outs):
                raise ValueError(f"Model.from_config: layer {r[0]!r} has no output {r[2]}")
            return outs[r[2]]

        count = {}
        while pending:
            progress = []
            for item in pending:
                layer, spec = item
                if not isinstance(spec, dict) or not isinstance(spec.get("inputs"), list) or \
                        not spec["inputs"]:
                    raise ValueError(f"Model.from_config: layer {layer.name!r}: each inbound "
                                     "node must be an object with a non-empty 'inputs' list")
                tensors = [lookup(r) for r in spec["inputs"]]
                if any(t is None for t in tensors):
                    continue
                single = bool(spec.get("single", len(tensors) == 1))
                if single and len(tensors) != 1:
                    raise ValueError(f"Model.from_config: layer {layer.name!r}: a single-input "
                                     f"node lists {len(tensors)} inputs")
                args = tensors[0] if single else tensors
                options = spec.get("kwargs") or {}
                if not isinstance(options, dict) or \
                        not set(options) <= set(getattr(layer, "call_kwargs", ())):
                    raise ValueError(f"Model.from_config: layer {layer.name!r}: kwargs must be "
                                     f"a dict of the call options "
                                     f"{list(getattr(layer, 'call_kwargs', ()))}; got "
                                     f"{options!r}")
                if isinstance(layer, Layer) and type(layer).__name__ == "LSTM" and \
                        not single and len(tensors) == 3:
                    out = layer(tensors[0], initial_state=tensors[1:])
                else:
                    out = layer(args, **options)
                i = count.get(layer.name, 0)
                count[layer.name] = i + 1
                outputs_of[(layer.name, i)] = out if isinstance(out, list) else [out]
                progress.append(item)
            if not progress:
                layer, spec = pending[0]
                raise ValueError(f"Model.from_config: layer {layer.name!r} consumes tensors "
                                 f"{spec.get('inputs')!r} that no layer produces (a missing "
                                 "node or a cycle)")
            done = {id(p) for p in progress}
            pending = [p for p in pending if id(p) not in done]

        def pack(refs, kind, keys, what):
            if not isinstance(refs, list) or not refs:
                raise ValueError(f"Model.from_config: {what} must be a non-empty list")
            tensors = []
            for r in refs:
                t = lookup(r)
                if t is None:
                    raise ValueError(f"Model.from_config: {what} references {r!r}, which no "
                                     "layer produces")
                tensors.append(t)
            if kind == "dict":
                if not isinstance(keys, list) or len(keys) != len(tensors):
                    raise ValueError(f"Model.from_config: {what} keys do not match")
                return dict(zip(keys, tensors))
            if kind == "single" and len(tensors) == 1:
                return tensors[0]
            return tensors

        inputs = pack(config.get("input_layers"), config.get("input_kind"),
                      config.get("input_keys"), "input_layers")
        outputs = pack(config.get("output_layers"), config.get("output_kind"),
                       config.get("output_keys"), "output_layers")
        return cls(inputs, outputs, name=config.get("name"),
                   trainable=config.get("trainable", True))

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r}, inputs={self.input_names}, "
                f"outputs={self.output_names}>")


def check_class_names(names: Any, what: Any) -> Any:
    """None, or a list of non-empty strings (a list copy); TypeError / ValueError naming what."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise TypeError(f"{what} must be a list of strings or None; got "
                        f"{type(names).__name__}")
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n:
            raise ValueError(f"{what}[{i}] must be a non-empty string; got {n!r}")
    if not names:
        raise ValueError(f"{what} must name at least one class; got an empty list")
    return list(names)


Functional = Model  # Keras's class name for a graph model (accepted when loading)
