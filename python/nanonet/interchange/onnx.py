"""Export a nanonet model to ONNX (``model.export(path, format="onnx")``; ``nanonet[onnx]``).

The graph is built with ``onnx.helper`` at opset 17 (or ``opset_version``), checked with
``onnx.checker`` and written atomically. Inputs and outputs carry the model's names; the batch
axis is dynamic, and so is every other axis the model leaves as None (the sequence length of an
``Input(shape=(None,))``). Float tensors are float32 (float64 weights are cast); token ids for
an Embedding are int32 unless the Input says another integer dtype (an input read only by
Embedding layers is taken for ids, whatever float dtype a Sequential gave it).

How it works. The exporter walks the model's nodes in order, as ``predict`` does, keeping for
every tensor its ONNX value name and the name of its (B, T) boolean mask, or None. Each layer
class has a converter in a table (``register_converter``): it receives the graph being built,
the layer, the input value name(s) and mask name(s), emits ONNX nodes, and returns the output
name(s) and mask name(s), following the layer's ``compute_mask``. A layer without a converter
raises ValueError naming the layer and its class.

Masks follow nanonet's predict: Embedding(mask_zero=True) and Masking make them; Dense,
Activation, Dropout, normalization, TimeDistributed pass them on; merges OR them; pooling and an
LSTM without return_sequences consume them. nanonet's LSTM skips a masked step (it carries h and
c and outputs the carried h), wherever the step lies. ONNX's LSTM only knows ``sequence_lens``
(valid steps first), so a masked LSTM is exported as: order each row's valid steps first
(TopK on the step index, masked steps keyed past the end; GatherElements), run ``LSTM`` with
``sequence_lens`` = the number of valid steps, then read each output step t from the state after
the last valid step <= t (the initial state before the first one). Post-padded, pre-padded or
holey masks all give nanonet's answer. go_backwards reverses the steps (and the mask) first, as
nanonet processes them; its outputs stay in processing order, as in nanonet and Keras. A row
with no valid step returns the initial state, as in nanonet.

Adding a layer: write ``convert(g, layer, x, mask) -> (y, y_mask)`` and register it (see
``register_converter``); ``activation(g, x, name)`` emits any nanonet activation, and a recurrent
layer reuses ``RecurrentSteps`` (mask compaction, go_backwards, the outputs at masked steps) and
``rnn_activations`` around ONNX's GRU or RNN operator. A layer's call options recorded on its
graph node (Layer.call_kwargs: MultiHeadAttention's use_causal_mask, an embedding's start_index)
are ``g.options`` while its converter runs.

Images are channels_last (NHWC) as in nanonet; Conv and the window pools run between a
transpose to NCHW and one back. Resizing and RandomCrop (its centre crop at inference) need the
image size known in the graph; the Random* augmentations are the identity. Layers on string
inputs (TextVectorization, StringLookup) cannot be exported and say so.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

__all__ = ["to_onnx", "export", "register_converter", "get_converter", "activation",
           "RecurrentSteps", "rnn_activations", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
_MIN_OPSET = 17
_NEG = -1e30  # the score of a masked attention key (finite: an all-masked row stays NaN-free)

_CONVERTERS: dict = {}   # layer class -> (converter, keeps_ids)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "nanonet[onnx]"') \
            from None
    return onnx


def register_converter(layer_class, converter=None, keeps_ids=False):
    """Register ``converter`` as the ONNX converter of ``layer_class`` (exact class; a subclass
    needs its own). Usable as a decorator: ``@register_converter(MyLayer)``.

    ``converter(g, layer, x, mask) -> (y, y_mask)``: g is the graph being built (``g.op``,
    ``g.const``, ...); x the ONNX name of the input, or a list of names for a layer called on a
    list; mask the name of its (B, T) bool mask or None (a list for a list of inputs, or None when
    no input has one). y is a name, or a list for a layer with several outputs; y_mask likewise
    (what the layer's ``compute_mask`` returns). Integer inputs (token ids) are cast to float
    before the converter runs unless ``keeps_ids``.
    """
    def add(fn):
        _CONVERTERS[layer_class] = (fn, bool(keeps_ids))
        return fn
    return add if converter is None else add(converter)


def get_converter(layer_class):
    """The converter registered for ``layer_class``, or None."""
    entry = _CONVERTERS.get(layer_class)
    return None if entry is None else entry[0]


# --------------------------------------------------------------------------------------------
# the graph being built

class Graph:
    """ONNX nodes, initializers and unique names; what converters write into."""

    def __init__(self, onnx, opset):
        self.onnx = onnx
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.int_names = set()      # value names holding integers (token ids)
        self._used = set()
        self._consts = {}
        self._floats = {}
        self.options = {}           # the call options of the node being converted

    def name(self, hint):
        """A value name not used yet, from hint."""
        base = "".join(ch if ch.isalnum() or ch in "_./:-" else "_" for ch in hint) or "t"
        n, k = base, 0
        while n in self._used:
            k += 1
            n = f"{base}_{k}"
        self._used.add(n)
        return n

    def op(self, op_type, inputs, hint=None, outputs=1, **attrs):
        """Emit one node; its output name (a list of names when outputs > 1). An input "" is an
        omitted optional input."""
        hint = hint or op_type.lower()
        outs = [self.name(f"{hint}_out{j}" if outputs > 1 else hint) for j in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs,
                                                     name=self.name(f"{hint}_node"), **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value, hint="const", dtype=np.float32):
        """An initializer holding value. Equal constants are stored once (a layer shared by
        several call sites writes its weights once)."""
        arr = np.array(value, dtype=dtype, order="C")
        key = (arr.dtype.str, arr.shape, hashlib.sha256(arr.tobytes()).digest())
        hit = self._consts.get(key)
        if hit is not None and np.array_equal(hit[1], arr):
            return hit[0]
        n = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, n))
        self._consts[key] = (n, arr)
        return n

    def ints(self, values):
        return self.const(np.asarray(values, np.int64).reshape(-1), "ints", np.int64)

    def scalar(self, value, dtype=np.float32):
        return self.const(np.asarray(value, dtype).reshape(()), "scalar", dtype)

    def cast(self, x, to):
        return self.op("Cast", [x], "cast", to=getattr(self.onnx.TensorProto, to))

    def float(self, x):
        """x as float32 (integer values are cast once)."""
        if x not in self.int_names:
            return x
        if x not in self._floats:
            self._floats[x] = self.cast(x, "FLOAT")
        return self._floats[x]

    def reduce(self, op_type, x, axes, keepdims=True):
        """ReduceSum / ReduceMax / ReduceMean over axes (attribute or input by opset)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes)], op_type.lower(),
                           keepdims=int(keepdims))
        return self.op(op_type, [x], op_type.lower(), axes=list(axes), keepdims=int(keepdims))

    def unsqueeze(self, x, axes):
        return self.op("Unsqueeze", [x, self.ints(axes)], "unsqueeze")

    def squeeze(self, x, axes):
        return self.op("Squeeze", [x, self.ints(axes)], "squeeze")

    def dims(self, x, start, end=None):
        """Shape(x)[start:end] as an int64 vector."""
        attrs = {"start": start} if end is None else {"start": start, "end": end}
        return self.op("Shape", [x], "shape", **attrs)

    def dim(self, x, axis):
        """Shape(x)[axis] as an int64 scalar."""
        return self.squeeze(self.dims(x, axis, axis + 1), [0])

    def reverse_steps(self, x):
        """x with axis 1 (the steps) reversed."""
        return self.op("Slice", [x, self.ints([-1]), self.ints([-(2 ** 63)]), self.ints([1]),
                                 self.ints([-1])], "reverse")

    def gather_steps(self, x, idx):
        """x[b, idx[b, t], ...] for x (B, T, F) and int64 idx (B, T)."""
        full = self.op("Expand", [self.unsqueeze(idx, [2]), self.dims(x, 0)], "index")
        return self.op("GatherElements", [x, full], "gather", axis=1)

    def mask_and(self, a, b):
        if a is None:
            return b
        return a if b is None else self.op("And", [a, b], "and")


# --------------------------------------------------------------------------------------------
# walking a model

def _convert_layer(g, layer, x, mask, options=None):
    """Convert one call of layer; options are the call options of its node (Layer.call_kwargs),
    which the converter reads as ``g.options``."""
    entry = _CONVERTERS.get(type(layer))
    if entry is None:
        raise ValueError(f"export: layer {layer.name!r} of class {type(layer).__name__} has no "
                         "ONNX converter; write one and register it with "
                         "nanonet.interchange.onnx.register_converter")
    fn, keeps_ids = entry
    if not keeps_ids:
        x = [g.float(v) for v in x] if isinstance(x, list) else g.float(x)
    outer, g.options = g.options, dict(options or {})
    try:
        return fn(g, layer, x, mask)
    finally:
        g.options = outer


def _walk(g, model, names, masks):
    """Emit the nodes of model (a Model or Sequential) on input names; (output names, masks)."""
    env = {}
    for t, n, m in zip(model.inputs, names, masks):
        env[id(t)] = (n, m)
    for node in model._nodes:
        if node.is_input:
            continue
        ins = [env[id(t)] for t in node.inputs]
        if node.single_input:
            x, m = ins[0]
        else:
            x, m = [n for n, _ in ins], [m for _, m in ins]
            if all(v is None for v in m):
                m = None
        y, ym = _convert_layer(g, node.layer, x, m, node.kwargs)
        if node.single_output:
            env[id(node.outputs[0])] = (y, ym)
        else:
            for j, t in enumerate(node.outputs):
                env[id(t)] = (y[j], ym[j] if isinstance(ym, (list, tuple)) else ym)
    return [env[id(t)][0] for t in model.outputs], [env[id(t)][1] for t in model.outputs]


def _input_elem_type(model, t):
    """The ONNX element type of a model input: its integer dtype; int32 for a float input read
    only by Embedding layers (token ids: a Sequential's input, or a loaded model's); else
    float32."""
    from ..layers.embedding import Embedding, TokenAndPositionEmbedding
    users = [n.layer for n in model._nodes if any(u is t for u in n.inputs)]
    if str(t.dtype) in ("string", "str", "object"):
        readers = ", ".join(f"{u.name!r} of class {type(u).__name__}" for u in users)
        raise ValueError(f"export: input {t.name!r} takes strings (read by layer {readers}); "
                         "layers on string inputs cannot be exported to ONNX. Apply them in "
                         "Python before the model (a model from their output on) and export "
                         "the rest")
    dt = np.dtype(t.dtype)
    if dt.kind in "iu":
        return dt
    if users and all(isinstance(u, (Embedding, TokenAndPositionEmbedding)) for u in users):
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def _value_info(onnx, name, dtype, shape, prefix):
    dims = []
    for i, d in enumerate(shape):
        if d is not None:
            dims.append(int(d))
        else:
            dims.append("batch" if i == 0 else f"{prefix}_{'steps' if i == 1 else f'dim{i}'}")
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return onnx.helper.make_tensor_value_info(name, elem, dims)


def to_onnx(model, opset_version=None):
    """The ONNX ModelProto of a built nanonet model (Sequential or graph Model)."""
    onnx = _import_onnx()
    from ..models.functional import Model
    if not isinstance(model, Model):
        raise TypeError(f"export: model must be a nanonet Model or Sequential; got "
                        f"{type(model).__name__}")
    if not model.built or model._plan is None:
        raise ValueError(f"export: model {model.name!r} is not built; build it (model.build("
                         "input_shape), an Input, or a call on data) before exporting")
    opset = DEFAULT_OPSET if opset_version is None else opset_version
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not _MIN_OPSET <= opset <= newest:
        raise ValueError(f"export: opset_version must be an int in [{_MIN_OPSET}, {newest}]; got "
                         f"{opset_version!r}")
    g = Graph(onnx, opset)
    inputs, names = [], []
    for t, n in zip(model.inputs, model.input_names):
        dt = _input_elem_type(model, t)
        n = g.name(n)
        inputs.append(_value_info(onnx, n, dt, t.shape, n))
        names.append(n)
        if dt.kind in "iu":
            g.int_names.add(n)
    outs, _ = _walk(g, model, names, [None] * len(names))
    outputs = []
    for t, n, y in zip(model.outputs, model.output_names, outs):
        n = g.name(n)
        g.nodes.append(onnx.helper.make_node("Identity", [g.float(y)], [n],
                                             name=g.name(f"{n}_node")))
        outputs.append(_value_info(onnx, n, np.float32, t.shape, n))
    used = {v for node in g.nodes for v in node.input}
    weights = [w for w in g.initializers if w.name in used]  # shared constants nobody read
    graph = onnx.helper.make_graph(g.nodes, model.name, inputs, outputs, weights)
    from .. import __version__
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, producer_name="nanonet", producer_version=__version__,
                                   opset_imports=opsets)
    # the oldest IR version that knows the opset: readable by the most runtimes
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    return proto


def export(model, filepath, opset_version=None):
    """Write ``to_onnx(model)`` to filepath, checked by onnx.checker, atomically (a failed
    export leaves an existing file as it was)."""
    import os
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"export: filepath must be a str or path; got {type(filepath).__name__}")
    onnx = _import_onnx()
    proto = to_onnx(model, opset_version)
    onnx.checker.check_model(proto)
    from ..saving import _atomic_write
    data = proto.SerializeToString()
    _atomic_write(os.fspath(filepath), lambda f: f.write(data), True, "export")


# --------------------------------------------------------------------------------------------
# converters: core layers

def _pass_mask(layer, mask):
    return mask if layer.supports_masking else None


def activation(g, x, name):
    """ONNX nodes for nanonet's activation ``name`` (Keras 3 definitions) applied to x."""
    if name == "linear":
        return x
    simple = {"sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}), "relu": ("Relu", {}),
              "softmax": ("Softmax", {"axis": -1}), "log_softmax": ("LogSoftmax", {"axis": -1}),
              "elu": ("Elu", {"alpha": 1.0}),
              "selu": ("Selu", {"alpha": 1.67326324, "gamma": 1.05070098}),
              "leaky_relu": ("LeakyRelu", {"alpha": 0.2}), "softplus": ("Softplus", {}),
              "softsign": ("Softsign", {}), "exponential": ("Exp", {}),
              "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5})}
    if name in simple:
        op, attrs = simple[name]
        return g.op(op, [x], name, **attrs)
    if name in ("silu", "swish"):
        return g.op("Mul", [x, g.op("Sigmoid", [x], "silu")], "silu")
    if name == "gelu":  # x (1 + erf(x / sqrt 2)) / 2
        e = g.op("Erf", [g.op("Mul", [x, g.scalar(1 / math.sqrt(2))], "gelu")], "gelu")
        half = g.op("Mul", [x, g.scalar(0.5)], "gelu")
        return g.op("Mul", [half, g.op("Add", [e, g.scalar(1.0)], "gelu")], "gelu")
    if name == "gelu_approximate":  # x sigmoid(2 sqrt(2 / pi) (x + 0.044715 x^3))
        cube = g.op("Mul", [g.op("Mul", [x, x], "gelu"), x], "gelu")
        inner = g.op("Add", [x, g.op("Mul", [cube, g.scalar(0.044715)], "gelu")], "gelu")
        u2 = g.op("Mul", [inner, g.scalar(2 * math.sqrt(2 / math.pi))], "gelu")
        return g.op("Mul", [x, g.op("Sigmoid", [u2], "gelu")], "gelu")
    raise ValueError(f"export: activation {name!r} has no ONNX form")


def _dense(g, layer, x):
    y = g.op("MatMul", [x, g.const(layer.kernel, f"{layer.name}/kernel")], layer.name)
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer.bias, f"{layer.name}/bias")], layer.name)
    return y


def _register_core():
    from ..layers import core, embedding, recurrent, reshaping

    @register_converter(core.Dense)
    def dense(g, layer, x, mask):
        return activation(g, _dense(g, layer, x), layer.activation), mask

    @register_converter(core.Activation)
    def activation_layer(g, layer, x, mask):
        return activation(g, x, layer.activation), mask

    @register_converter(core.Dropout, keeps_ids=True)
    def dropout(g, layer, x, mask):
        return x, mask  # the identity at inference

    @register_converter(core.InputLayer, keeps_ids=True)
    def input_layer(g, layer, x, mask):
        return x, None

    @register_converter(core.Flatten)
    def flatten(g, layer, x, mask):
        return g.op("Flatten", [x], layer.name, axis=1), None

    @register_converter(reshaping.Reshape)
    def reshape(g, layer, x, mask):
        return g.op("Reshape", [x, g.ints((0,) + layer.target_shape)], layer.name), None

    @register_converter(embedding.Embedding, keeps_ids=True)
    def embedding_layer(g, layer, x, mask):
        ids = g.cast(x, "INT64")
        y = g.op("Gather", [g.const(layer.embeddings, f"{layer.name}/embeddings"), ids],
                 layer.name, axis=0)
        if not layer.mask_zero:
            return y, None
        zero = g.const(np.zeros((), np.int64), "zero", np.int64)
        return y, g.op("Not", [g.op("Equal", [ids, zero], "mask")], f"{layer.name}/mask")

    @register_converter(recurrent.Masking)
    def masking(g, layer, x, mask):
        same = g.op("Equal", [x, g.scalar(layer.mask_value)], "masking")
        keep = g.reduce("ReduceMax", g.cast(g.op("Not", [same], "masking"), "FLOAT"), [-1])
        y = g.op("Mul", [x, keep], layer.name)
        return y, g.cast(g.squeeze(keep, [-1]), "BOOL")

    @register_converter(recurrent.LSTM)
    def lstm(g, layer, x, mask):
        return _lstm(g, layer, x, mask)


# --------------------------------------------------------------------------------------------
# LSTM

_RNN_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "linear": "Affine"}


def _onnx_gates(w):
    """(..., 4H) in Keras's gate order i, f, c, o -> ONNX's i, o, f, c."""
    i, f, c, o = np.split(np.asarray(w, np.float32), 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


class RecurrentSteps:
    """The steps an ONNX recurrent operator (LSTM, GRU, RNN) runs for a nanonet RNN layer, and
    the way back to nanonet's outputs; shared by the recurrent converters.

    ``steps = RecurrentSteps(g, x, mask, go_backwards, name)``: ``steps.x`` is the (T, B, I)
    time-major input to feed the operator and ``steps.lens`` its ``sequence_lens`` ("" without a
    mask). Then ``steps.sequence(Y, h0)`` turns the operator's Y (T, 1, B, H) into nanonet's
    (B, T, H) return_sequences output and ``steps.final(Y_h, h0)`` its Y_h (1, B, H) into the
    last state (B, H); h0 is the initial state's name or None (zeros).
    """

    def __init__(self, g, x, mask, go_backwards, name):
        self.g, self.n = g, name
        if go_backwards:       # nanonet processes t = T-1 .. 0
            x = g.reverse_steps(x)
            mask = None if mask is None else g.reverse_steps(mask)
        self.count = self.valid_lens = None
        self.lens = ""
        if mask is not None:
            zero, one = g.const(0, "zero", np.int64), g.const(1, "one", np.int64)
            valid = g.cast(mask, "INT64")                                       # (B, T)
            T = g.dim(valid, 1)
            t = g.op("Range", [zero, T, one], f"{name}/steps")
            # valid steps first, in order: key = t, or T + t for a masked step
            invalid = g.op("Sub", [one, valid], f"{name}/invalid")
            key = g.op("Add", [t, g.op("Mul", [invalid, T], f"{name}/key")], f"{name}/key")
            _, order = g.op("TopK", [key, g.unsqueeze(T, [0])], f"{name}/order", outputs=2,
                            axis=1, largest=0, sorted=1)
            x = g.gather_steps(x, order)
            self.count = g.op("CumSum", [valid, one], f"{name}/count")        # (B, T)
            self.valid_lens = g.reduce("ReduceSum", valid, [1], keepdims=False)  # (B,)
            # at least 1 step: a row with none takes the initial state (final, sequence)
            self.lens = g.cast(g.op("Max", [self.valid_lens, one], f"{name}/lens"), "INT32")
        self.x = g.op("Transpose", [x], f"{name}/time_major", perm=[1, 0, 2])

    def final(self, Yh, h0):
        g = self.g
        h = g.squeeze(Yh, [0])
        if self.valid_lens is None:
            return h
        some = g.op("Greater", [self.valid_lens, g.const(0, "zero", np.int64)], f"{self.n}/some")
        return g.op("Where", [g.unsqueeze(some, [1]), h, g.scalar(0.0) if h0 is None else h0],
                    f"{self.n}/final")

    def sequence(self, Y, h0):
        g = self.g
        y = g.op("Transpose", [g.squeeze(Y, [1])], f"{self.n}/batch_major", perm=[1, 0, 2])
        if self.count is None:
            return y
        # step t outputs the state after the last valid step <= t (h0 before the first)
        zero, one = g.const(0, "zero", np.int64), g.const(1, "one", np.int64)
        last = g.op("Max", [g.op("Sub", [self.count, one], f"{self.n}/last"), zero],
                    f"{self.n}/last")
        y = g.gather_steps(y, last)
        seen = g.unsqueeze(g.op("Greater", [self.count, zero], f"{self.n}/seen"), [2])
        return g.op("Where", [seen, y, g.scalar(0.0) if h0 is None else g.unsqueeze(h0, [1])],
                    f"{self.n}/sequence")


def rnn_activations(names):
    """ONNX activation attributes for nanonet activation names: {"activations": [...]} plus
    alpha / beta for "linear" (ONNX's Affine with alpha 1, beta 0)."""
    acts = [_RNN_ACTIVATIONS[a] for a in names]
    attrs = {"activations": acts}
    if "Affine" in acts:
        attrs["activation_alpha"] = [1.0] * acts.count("Affine")
        attrs["activation_beta"] = [0.0] * acts.count("Affine")
    return attrs


def _lstm(g, layer, x, mask):
    n = layer.name
    H = layer.units
    if isinstance(x, list):       # [x, h0, c0]: an initial state
        x, h0, c0 = x
        mask = mask[0] if isinstance(mask, list) else mask
    else:
        h0 = c0 = None
    steps = RecurrentSteps(g, x, mask, layer.go_backwards, n)
    W = g.const(_onnx_gates(layer.kernel).T[None], f"{n}/W")
    R = g.const(_onnx_gates(layer.recurrent_kernel).T[None], f"{n}/R")
    bias = (_onnx_gates(layer.bias) if layer.use_bias else np.zeros(4 * H, np.float32))
    Bw = g.const(np.concatenate([bias, np.zeros(4 * H, np.float32)])[None], f"{n}/B")
    ih = "" if h0 is None else g.unsqueeze(h0, [0])
    ic = "" if c0 is None else g.unsqueeze(c0, [0])
    # ONNX f (gates i, o, f), g (candidate), h (output): nanonet's ra, a, a
    acts = rnn_activations([layer.recurrent_activation, layer.activation, layer.activation])
    Y, Yh, Yc = g.op("LSTM", [steps.x, W, R, Bw, steps.lens, ih, ic], n, outputs=3,
                     hidden_size=H, **acts)
    h_n, c_n = steps.final(Yh, h0), steps.final(Yc, c0)
    y = steps.sequence(Y, h0) if layer.return_sequences else h_n
    out_mask = mask if layer.return_sequences else None
    if layer.return_state:
        return [y, h_n, c_n], [out_mask, None, None]
    return y, out_mask


# --------------------------------------------------------------------------------------------
# normalization, pooling, wrappers

def _register_more():
    from ..layers import normalization, pooling, wrappers
    from ..models.functional import Model
    from ..models.sequential import Sequential

    @register_converter(normalization.BatchNormalization)
    def batch_norm(g, layer, x, mask):
        # inference: (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta
        F = layer.moving_mean.shape[0]
        gamma = layer.gamma if layer.scale else np.ones(F)
        beta = layer.beta if layer.center else np.zeros(F)
        inv = 1.0 / np.sqrt(layer.moving_variance.astype(np.float64) + layer.epsilon)
        scale = gamma * inv
        shift = beta - layer.moving_mean * scale
        y = g.op("Mul", [x, g.const(scale, f"{layer.name}/scale")], layer.name)
        return g.op("Add", [y, g.const(shift, f"{layer.name}/shift")], layer.name), mask

    @register_converter(normalization.LayerNormalization)
    def layer_norm(g, layer, x, mask):
        F = layer._features
        gamma = layer.gamma if layer.scale else np.ones(F)
        beta = layer.beta if layer.center else np.zeros(F)
        y = g.op("LayerNormalization", [x, g.const(gamma, f"{layer.name}/gamma"),
                                        g.const(beta, f"{layer.name}/beta")],
                 layer.name, axis=-1, epsilon=layer.epsilon)
        return y, mask

    def pool(g, layer, x, mask, average):
        if layer.data_format == "channels_first":
            x = g.op("Transpose", [x], layer.name, perm=[0, 2, 1])
        if mask is None:
            y = g.reduce("ReduceMean" if average else "ReduceMax", x, [1], keepdims=False)
        else:
            m = g.unsqueeze(mask, [2])                                       # (B, T, 1)
            mf = g.cast(m, "FLOAT")
            count = g.reduce("ReduceSum", mf, [1], keepdims=False)           # (B, 1)
            if average:  # over the unmasked steps; 0 for a row with none
                total = g.reduce("ReduceSum", g.op("Mul", [x, mf], layer.name), [1],
                                 keepdims=False)
                y = g.op("Div", [total, g.op("Max", [count, g.scalar(1.0)], layer.name)],
                         layer.name)
            else:
                low = g.op("Where", [m, x, g.scalar(-np.inf)], layer.name)
                top = g.reduce("ReduceMax", low, [1], keepdims=False)
                some = g.op("Greater", [count, g.scalar(0.0)], layer.name)
                y = g.op("Where", [some, top, g.scalar(0.0)], layer.name)
        if layer.keepdims:
            y = g.unsqueeze(y, [1 if layer.data_format == "channels_last" else 2])
        return y, None

    register_converter(pooling.GlobalAveragePooling1D,
                       lambda g, layer, x, mask: pool(g, layer, x, mask, True))
    register_converter(pooling.GlobalMaxPooling1D,
                       lambda g, layer, x, mask: pool(g, layer, x, mask, False))

    @register_converter(wrappers.TimeDistributed)
    def time_distributed(g, layer, x, mask):
        # (B, T, ...) -> (B * T, ...) -> the wrapped layer -> (B, T, ...)
        rows = g.op("Reshape", [x, g.op("Concat", [g.ints([-1]), g.dims(x, 2)], "rows",
                                        axis=0)], f"{layer.name}/rows")
        y2, _ = _convert_layer(g, layer.layer, rows, None)
        shape = g.op("Concat", [g.dims(x, 0, 2), g.dims(y2, 1)], "steps", axis=0)
        return g.op("Reshape", [y2, shape], layer.name), mask

    def nested(g, model, x, mask):
        xs = x if isinstance(x, list) else [x]
        masks = mask if isinstance(mask, list) else [mask]
        if len(masks) != len(xs):
            masks = [None] * len(xs)
        outs, _ = _walk(g, model, xs, masks)
        if len(outs) == 1:
            return outs[0], None
        return outs, [None] * len(outs)

    register_converter(Model, nested, keeps_ids=True)
    register_converter(Sequential, nested, keeps_ids=True)


# --------------------------------------------------------------------------------------------
# merges and attention

def _or_masks(g, mask):
    if not isinstance(mask, list) or any(m is None for m in mask):
        return None
    out = mask[0]
    for m in mask[1:]:
        out = g.op("Or", [out, m], "mask_or")
    return out


def _register_merges():
    from ..layers import attention, merging

    def elementwise(op_type):
        def convert(g, layer, xs, mask):
            y = xs[0]
            for v in xs[1:]:
                y = g.op(op_type, [y, v], layer.name)
            return y, _or_masks(g, mask)
        return convert

    for cls, op_type in ((merging.Add, "Add"), (merging.Subtract, "Sub"),
                         (merging.Multiply, "Mul"), (merging.Maximum, "Max"),
                         (merging.Minimum, "Min")):
        register_converter(cls, elementwise(op_type))

    @register_converter(merging.Average)
    def average(g, layer, xs, mask):
        y, m = elementwise("Add")(g, layer, xs, mask)
        return g.op("Mul", [y, g.scalar(1.0 / len(xs))], layer.name), m

    @register_converter(merging.Concatenate)
    def concatenate(g, layer, xs, mask):
        # ranks are known from the graph; the layer resolves the axis
        rank = len(layer._inbound_nodes[0].inputs[0].shape)
        ax = layer._axis(rank)
        y = g.op("Concat", xs, layer.name, axis=ax)
        if mask is None or all(m is None for m in mask):
            return y, None
        # Keras: each input's mask (all True where it has none) broadcast to its shape, joined
        # along the axis, then any() over the last axis
        parts = []
        for x, m in zip(xs, mask):
            if m is None:
                m = g.const(np.ones((), bool), "true", bool)
            else:
                m = g.unsqueeze(m, [-1])
            parts.append(g.cast(g.op("Expand", [m, g.dims(x, 0)], "mask"), "FLOAT"))
        joined = g.op("Concat", parts, "mask", axis=ax)
        any_ = g.reduce("ReduceMax", joined, [-1], keepdims=False)
        return y, g.cast(any_, "BOOL")

    @register_converter(merging.Dot)
    def dot(g, layer, xs, mask):
        rank = len(layer._inbound_nodes[0].inputs[0].shape)
        a0, a1 = (a if a >= 0 else rank + a for a in layer.axes)
        x0, x1 = xs
        if layer.normalize:
            x0, x1 = (g.op("Mul", [v, g.op("Reciprocal", [g.op("Sqrt", [g.op(
                "Max", [g.reduce("ReduceSum", g.op("Mul", [v, v], "dot"), [a]),
                        g.scalar(1e-12)], "dot")], "dot")], "dot")], "dot")
                      for v, a in ((x0, a0), (x1, a1)))
        if rank == 2:
            return g.reduce("ReduceSum", g.op("Mul", [x0, x1], layer.name), [1]), None
        if a0 != 2:
            x0 = g.op("Transpose", [x0], layer.name, perm=[0, 2, 1])
        if a1 != 1:
            x1 = g.op("Transpose", [x1], layer.name, perm=[0, 2, 1])
        return g.op("MatMul", [x0, x1], layer.name), None

    @register_converter(attention.MultiHeadAttention)
    def mha(g, layer, xs, mask):
        return _attention(g, layer, xs, mask)


def _attention(g, layer, xs, mask):
    from ..layers.attention import _DEFAULT_OPTS
    n = layer.name
    opts = {**_DEFAULT_OPTS, **g.options}
    opts["key"], opts["attention_mask"] = opts["has_key"], opts["has_attention_mask"]
    query, value = xs[0], xs[1]
    key = xs[2] if opts["key"] else value
    am = xs[-1] if opts["attention_mask"] else None
    masks = list(mask) if isinstance(mask, list) else [None] * len(xs)
    qm, vm = masks[0], masks[1]
    km = masks[2] if opts["key"] else None
    Hn, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim

    def project(x, kernel, bias, width, what):
        d = kernel.shape[0]
        y = g.op("MatMul", [x, g.const(kernel.reshape(d, Hn * width), f"{n}/{what}_kernel")],
                 f"{n}/{what}")
        if bias is not None:
            y = g.op("Add", [y, g.const(bias.reshape(-1), f"{n}/{what}_bias")], f"{n}/{what}")
        y = g.op("Reshape", [y, g.ints([0, 0, Hn, width])], f"{n}/{what}")
        return g.op("Transpose", [y], f"{n}/{what}", perm=[0, 2, 1, 3])      # (B, H, T, w)

    Q = project(query, layer.query_kernel, layer.query_bias, kd, "query")
    K = project(key, layer.key_kernel, layer.key_bias, kd, "key")
    V = project(value, layer.value_kernel, layer.value_bias, vd, "value")
    Kt = g.op("Transpose", [K], f"{n}/key", perm=[0, 1, 3, 2])
    scores = g.op("Mul", [g.op("MatMul", [Q, Kt], f"{n}/scores"),
                          g.scalar(1.0 / math.sqrt(kd))], f"{n}/scores")        # (B, H, Tq, Tv)
    # True = may attend: value and key masks on keys, the query mask on rows, attention_mask,
    # the causal mask; all ANDed (Keras)
    ok = None
    for m in (vm, km):
        if m is not None:
            ok = g.mask_and(ok, g.unsqueeze(m, [1, 2]))
    if qm is not None:
        ok = g.mask_and(ok, g.unsqueeze(qm, [1, 3]))
    if am is not None:
        am = g.cast(am, "BOOL")
        rank = len(layer._inbound_nodes[0].inputs[-1].shape)
        ok = g.mask_and(ok, g.unsqueeze(am, [1]) if rank == 3 else am)
    if opts["use_causal_mask"]:
        zero, one = g.const(0, "zero", np.int64), g.const(1, "one", np.int64)
        qi = g.op("Range", [zero, g.dim(query, 1), one], f"{n}/causal")
        vj = g.op("Range", [zero, g.dim(value, 1), one], f"{n}/causal")
        ok = g.mask_and(ok, g.op("LessOrEqual", [g.unsqueeze(vj, [0]), g.unsqueeze(qi, [1])],
                                 f"{n}/causal"))
    if ok is not None:
        scores = g.op("Where", [ok, scores, g.scalar(_NEG)], f"{n}/masked")
    P = g.op("Softmax", [scores], f"{n}/probs", axis=-1)
    if ok is not None:  # a row with no visible key gives zeros
        P = g.op("Where", [ok, P, g.scalar(0.0)], f"{n}/probs")
    O = g.op("Transpose", [g.op("MatMul", [P, V], f"{n}/attend")], f"{n}/attend",
             perm=[0, 2, 1, 3])
    O = g.op("Reshape", [O, g.ints([0, 0, Hn * vd])], f"{n}/attend")
    out_dim = layer.output_kernel.shape[-1]
    y = g.op("MatMul", [O, g.const(layer.output_kernel.reshape(Hn * vd, out_dim),
                                   f"{n}/output_kernel")], n)
    if layer.output_bias is not None:
        y = g.op("Add", [y, g.const(layer.output_bias, f"{n}/output_bias")], n)
    if opts["return_attention_scores"]:
        return [y, P], [qm, None]
    return y, qm


# --------------------------------------------------------------------------------------------
# GRU, SimpleRNN, Bidirectional

def _one_state_rnn(g, layer, x, mask, op_type, W, R, B, **attrs):
    """A GRU or SimpleRNN (one state h) through ONNX's GRU / RNN operator."""
    n = layer.name
    if isinstance(x, list):       # [x, h0]: an initial state
        x, h0 = x
        mask = mask[0] if isinstance(mask, list) else mask
    else:
        h0 = None
    steps = RecurrentSteps(g, x, mask, layer.go_backwards, n)
    ih = "" if h0 is None else g.unsqueeze(h0, [0])
    Y, Yh = g.op(op_type, [steps.x, g.const(W[None], f"{n}/W"), g.const(R[None], f"{n}/R"),
                           g.const(B[None], f"{n}/B"), steps.lens, ih], n, outputs=2,
                 hidden_size=layer.units, **attrs)
    h_n = steps.final(Yh, h0)
    y = steps.sequence(Y, h0) if layer.return_sequences else h_n
    out_mask = mask if layer.return_sequences else None
    if layer.return_state:
        return [y, h_n], [out_mask, None]
    return y, out_mask


def _gru(g, layer, x, mask):
    # Keras's gate order z, r, h is ONNX's; reset_after is linear_before_reset
    H = layer.units
    if not layer.use_bias:
        b = np.zeros(6 * H, np.float32)
    elif layer.reset_after:
        b = np.asarray(layer.bias, np.float32).reshape(-1)        # [input bias, recurrent bias]
    else:
        b = np.concatenate([layer.bias, np.zeros(3 * H)])
    acts = rnn_activations([layer.recurrent_activation, layer.activation])
    return _one_state_rnn(g, layer, x, mask, "GRU", np.asarray(layer.kernel).T,
                          np.asarray(layer.recurrent_kernel).T, b,
                          linear_before_reset=int(layer.reset_after), **acts)


def _simple_rnn(g, layer, x, mask):
    H = layer.units
    b = np.zeros(2 * H) if not layer.use_bias else np.concatenate([layer.bias, np.zeros(H)])
    return _one_state_rnn(g, layer, x, mask, "RNN", np.asarray(layer.kernel).T,
                          np.asarray(layer.recurrent_kernel).T, b,
                          **rnn_activations([layer.activation]))


def _bidirectional(g, layer, x, mask):
    fw, bw = layer.forward_layer, layer.backward_layer
    if isinstance(x, list):       # [x, forward states..., backward states...]
        nf = len(fw._state_names)
        m = mask[0] if isinstance(mask, list) else mask
        f_in, b_in = [x[0]] + x[1:1 + nf], [x[0]] + x[1 + nf:]
        mask = m
    else:
        f_in = b_in = x
    yf, _ = _convert_layer(g, fw, f_in, mask)
    yb, _ = _convert_layer(g, bw, b_in, mask)
    states = []
    if layer.return_state:
        states = yf[1:] + yb[1:]
        yf, yb = yf[0], yb[0]
    if layer.return_sequences:
        yb = g.reverse_steps(yb)               # back to time order
        if mask is not None:                   # masked steps output zeros
            keep = g.cast(g.unsqueeze(mask, [2]), "FLOAT")
            yf = g.op("Mul", [yf, keep], f"{layer.name}/forward")
            yb = g.op("Mul", [yb, keep], f"{layer.name}/backward")
    out_mask = mask if layer.return_sequences else None
    mode, n = layer.merge_mode, layer.name
    if mode == "concat":
        merged = [g.op("Concat", [yf, yb], n, axis=-1)]
    elif mode == "sum":
        merged = [g.op("Add", [yf, yb], n)]
    elif mode == "ave":
        merged = [g.op("Mul", [g.op("Add", [yf, yb], n), g.scalar(0.5)], n)]
    elif mode == "mul":
        merged = [g.op("Mul", [yf, yb], n)]
    else:
        merged = [yf, yb]
    outs = merged + states
    masks = [out_mask] * len(merged) + [None] * len(states)
    return (outs[0], masks[0]) if len(outs) == 1 else (outs, masks)


def _register_recurrent():
    from ..layers import recurrent
    register_converter(recurrent.GRU, _gru)
    register_converter(recurrent.SimpleRNN, _simple_rnn)
    register_converter(recurrent.Bidirectional, _bidirectional)


# --------------------------------------------------------------------------------------------
# convolution, pooling and image layers (channels_last: NHWC <-> NCHW around ONNX's ops)

def _channels_first(g, x, rank, name):
    return g.op("Transpose", [x], f"{name}/nchw", perm=[0, rank + 1] + list(range(1, rank + 1)))


def _channels_last(g, x, rank, name):
    return g.op("Transpose", [x], f"{name}/nhwc", perm=[0] + list(range(2, rank + 2)) + [1])


def _window_attrs(layer, window, padding, dilation=None):
    """kernel_shape / strides / padding attributes of ONNX Conv and the pools. Keras's "same"
    puts the extra zero at the end (SAME_UPPER); "causal" pads dilation * (k - 1) in front.
    (Strides > 1 with "same" use auto_pad, which onnxruntime runs only without dilation; nanonet
    and Keras refuse strides > 1 with dilation > 1 anyway.)"""
    attrs = {"kernel_shape": list(window), "strides": list(layer.strides)}
    if dilation is not None:
        attrs["dilations"] = list(dilation)
    if padding == "same" and all(st == 1 for st in layer.strides):
        # stride 1: the total pad is d * (k - 1) whatever the size (onnxruntime refuses
        # SAME_UPPER with dilations)
        total = [(1 if dilation is None else d) * (k - 1)
                 for d, k in zip(dilation or window, window)]
        attrs["pads"] = [p // 2 for p in total] + [p - p // 2 for p in total]
    elif padding == "same":
        attrs["auto_pad"] = "SAME_UPPER"
    elif padding == "causal":
        attrs["pads"] = [d * (k - 1) for d, k in zip(dilation, window)] + [0] * len(window)
    else:
        attrs["pads"] = [0] * (2 * len(window))
    return attrs


def _conv_nchw(g, layer, x, kernel, groups):
    """One ONNX Conv of the conv layer (x and the result NCHW); kernel in ONNX's
    (F, C / groups, k...) layout."""
    n = layer.name
    ins = [x, g.const(kernel, f"{n}/kernel")]
    if layer.use_bias:
        ins.append(g.const(layer.bias, f"{n}/bias"))
    return g.op("Conv", ins, n, group=int(groups),
                **_window_attrs(layer, layer.kernel_size, layer.padding, layer.dilation_rate))


def _keras_kernel(layer):
    """Conv1D / Conv2D kernel (k..., C / groups, F) -> ONNX (F, C / groups, k...)."""
    k = np.asarray(layer.kernel, np.float32)
    return np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))


def _depthwise_kernel(layer):
    """(kh, kw, C, M) -> (C * M, 1, kh, kw): output channel c * M + m, as Keras."""
    kh, kw, C, M = layer.kernel.shape
    k = np.asarray(layer.kernel, np.float32).reshape(kh, kw, C * M)
    return np.transpose(k, (2, 0, 1))[:, None]


def _static_image_size(layer, what):
    shape = layer._inbound_nodes[0].inputs[0].shape if layer._inbound_nodes else (None,) * 4
    H, W = shape[1], shape[2]
    if H is None or W is None:
        raise ValueError(f"export: layer {layer.name!r} of class {type(layer).__name__} needs "
                         f"the image height and width known in the graph to {what}; got input "
                         f"shape {shape}")
    return int(H), int(W)


def _resize_matrices(g, x, mh, mw, name):
    """y[b, o, p, c] = sum mh[o, h] x[b, h, w, c] mw[p, w] (x NHWC)."""
    t = _channels_first(g, x, 2, name)
    t = g.op("MatMul", [g.const(mh, f"{name}/rows"), t], name)
    t = g.op("MatMul", [t, g.const(np.ascontiguousarray(mw.T), f"{name}/cols")], name)
    return _channels_last(g, t, 2, name)


def _register_vision():
    from ..layers import convolutional as conv
    from ..layers import image_preprocessing as aug
    from ..layers import pooling, reshaping

    def conv_layer(g, layer, x, mask):
        groups = layer.groups
        kernel = _depthwise_kernel(layer) if isinstance(layer, conv.DepthwiseConv2D) \
            else _keras_kernel(layer)
        y = _conv_nchw(g, layer, _channels_first(g, x, layer.rank, layer.name), kernel, groups)
        return activation(g, _channels_last(g, y, layer.rank, layer.name), layer.activation), None

    for cls in (conv.Conv1D, conv.Conv2D, conv.DepthwiseConv2D):
        register_converter(cls, conv_layer)

    @register_converter(conv.SeparableConv2D)
    def separable(g, layer, x, mask):
        dw, pw = layer._depthwise, layer._pointwise
        t = _conv_nchw(g, dw, _channels_first(g, x, 2, layer.name), _depthwise_kernel(dw),
                       dw.groups)
        t = _conv_nchw(g, pw, t, _keras_kernel(pw), 1)
        return activation(g, _channels_last(g, t, 2, layer.name), pw.activation), None

    def window_pool(op_type):
        def convert(g, layer, x, mask):
            attrs = _window_attrs(layer, layer.pool_size, layer.padding)
            if op_type == "AveragePool":
                attrs["count_include_pad"] = 0   # Keras's "same" averages the real values only
            t = g.op(op_type, [_channels_first(g, x, layer.rank, layer.name)], layer.name,
                     **attrs)
            return _channels_last(g, t, layer.rank, layer.name), None
        return convert

    for cls, op_type in ((pooling.MaxPooling1D, "MaxPool"), (pooling.MaxPooling2D, "MaxPool"),
                         (pooling.AveragePooling1D, "AveragePool"),
                         (pooling.AveragePooling2D, "AveragePool")):
        register_converter(cls, window_pool(op_type))

    def global_pool(op_type):
        def convert(g, layer, x, mask):
            return g.reduce(op_type, x, [1, 2], keepdims=layer.keepdims), None
        return convert

    register_converter(pooling.GlobalAveragePooling2D, global_pool("ReduceMean"))
    register_converter(pooling.GlobalMaxPooling2D, global_pool("ReduceMax"))

    @register_converter(reshaping.ZeroPadding2D)
    def zero_padding(g, layer, x, mask):
        (t, b), (l, r) = layer.padding
        return g.op("Pad", [x, g.ints([0, t, l, 0, 0, b, r, 0])], layer.name,
                    mode="constant"), None

    @register_converter(reshaping.Cropping2D)
    def cropping(g, layer, x, mask):
        (t, b), (l, r) = layer.cropping
        end = [-b if b else 2 ** 62, -r if r else 2 ** 62]
        return g.op("Slice", [x, g.ints([t, l]), g.ints(end), g.ints([1, 2])],
                    layer.name), None

    @register_converter(reshaping.UpSampling2D)
    def upsampling(g, layer, x, mask):
        # nearest: out[i] = in[floor(i / size)], repeats as np.repeat
        scales = g.const([1.0, layer.size[0], layer.size[1], 1.0], f"{layer.name}/scales")
        return g.op("Resize", [x, "", scales], layer.name, mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor"), None

    @register_converter(aug.Rescaling)
    def rescaling(g, layer, x, mask):
        y = g.op("Mul", [x, g.scalar(layer.scale)], layer.name)
        if layer.offset:
            y = g.op("Add", [y, g.scalar(layer.offset)], layer.name)
        return y, mask

    @register_converter(aug.Resizing)
    def resizing(g, layer, x, mask):
        H, W = _static_image_size(layer, "build its interpolation")
        t, b, l, r = layer._crop(H, W)
        if (t, b, l, r) != (0, H, 0, W):
            x = g.op("Slice", [x, g.ints([t, l]), g.ints([b, r]), g.ints([1, 2])], layer.name)
        make = aug._bilinear_matrix if layer.interpolation == "bilinear" else aug._nearest_matrix
        mh = make(layer.height, b - t, np.float64)
        mw = make(layer.width, r - l, np.float64)
        return _resize_matrices(g, x, mh, mw, layer.name), None

    @register_converter(aug.RandomCrop)
    def random_crop(g, layer, x, mask):
        # inference: the centre crop, or a bilinear resize of a smaller image
        H, W = _static_image_size(layer, "place its centre crop")
        if H < layer.height or W < layer.width:
            mh = aug._bilinear_matrix(layer.height, H, np.float64)
            mw = aug._bilinear_matrix(layer.width, W, np.float64)
            return _resize_matrices(g, x, mh, mw, layer.name), None
        t, l = (H - layer.height) // 2, (W - layer.width) // 2
        return g.op("Slice", [x, g.ints([t, l]), g.ints([t + layer.height, l + layer.width]),
                              g.ints([1, 2])], layer.name), None

    def identity(g, layer, x, mask):
        return x, _pass_mask(layer, mask)   # augmentation is off at inference

    for cls in (aug.RandomFlip, aug.RandomRotation, aug.RandomZoom, aug.RandomTranslation,
                aug.RandomContrast):
        register_converter(cls, identity)


# --------------------------------------------------------------------------------------------
# Attention, AdditiveAttention, position embeddings; preprocessing layers that cannot export

def _luong_bahdanau(g, layer, xs, mask):
    """Attention / AdditiveAttention on [query, value(, key)], masks [query, value]."""
    n = layer.name
    causal = bool(g.options.get("use_causal_mask", False))
    scores_out = bool(g.options.get("return_attention_scores", False))
    q, v = xs[0], xs[1]
    k = xs[2] if len(xs) > 2 else v
    masks = list(mask) if isinstance(mask, list) else [None] * len(xs)
    qm, vm = masks[0], masks[1]
    if layer.score_mode == "dot":
        a = float(layer.scale) if layer.use_scale else 1.0
        kt = g.op("Transpose", [k], f"{n}/key", perm=[0, 2, 1])
        scores = g.op("MatMul", [q, kt], f"{n}/scores")
        if a != 1.0 or layer.use_scale:
            scores = g.op("Mul", [scores, g.scalar(a)], f"{n}/scores")
    else:   # c sum_d w_d tanh(a (q_i + k_j))
        a, w, c = layer._concat_params()
        u = g.op("Add", [g.unsqueeze(q, [2]), g.unsqueeze(k, [1])], f"{n}/sum")  # (B,Tq,Tv,d)
        t = g.op("Tanh", [g.op("Mul", [u, g.scalar(float(a))], f"{n}/sum")], f"{n}/tanh")
        if np.ndim(w):
            scores = g.op("MatMul", [t, g.const(np.asarray(w).reshape(-1), f"{n}/scale")],
                          f"{n}/scores")
        else:
            scores = g.reduce("ReduceSum", t, [-1], keepdims=False)
        scores = g.op("Mul", [scores, g.scalar(float(c))], f"{n}/scores")
    ok = None if vm is None else g.unsqueeze(vm, [1])                     # (B, 1, Tv)
    if causal:
        zero, one = g.const(0, "zero", np.int64), g.const(1, "one", np.int64)
        qi = g.op("Range", [zero, g.dim(q, 1), one], f"{n}/causal")
        vj = g.op("Range", [zero, g.dim(v, 1), one], f"{n}/causal")
        ok = g.mask_and(ok, g.op("LessOrEqual", [g.unsqueeze(vj, [0]), g.unsqueeze(qi, [1])],
                                 f"{n}/causal"))
    if ok is not None:
        scores = g.op("Where", [ok, scores, g.scalar(_NEG)], f"{n}/masked")
    P = g.op("Softmax", [scores], f"{n}/probs", axis=-1)
    if ok is not None:  # a query with no visible value gives zeros
        P = g.op("Where", [ok, P, g.scalar(0.0)], f"{n}/probs")
    y = g.op("MatMul", [P, v], n)
    if qm is not None:
        y = g.op("Where", [g.unsqueeze(qm, [2]), y, g.scalar(0.0)], n)
    if scores_out:
        return [y, P], [qm, None]
    return y, qm


def _position_rows(g, layer, table, T):
    """table[start_index : start_index + T] (start_index: the node's call option)."""
    s = int(g.options.get("start_index", 0))
    end = g.op("Add", [g.unsqueeze(T, [0]), g.ints([s])], f"{layer.name}/end")
    return g.op("Slice", [g.const(table, f"{layer.name}/position_embeddings"), g.ints([s]),
                          end, g.ints([0])], f"{layer.name}/positions")


def _register_attention_embeddings():
    from ..layers import attention, embedding, preprocessing

    register_converter(attention.Attention, _luong_bahdanau)
    register_converter(attention.AdditiveAttention, _luong_bahdanau)

    @register_converter(embedding.PositionEmbedding)
    def position_embedding(g, layer, x, mask):
        rows = _position_rows(g, layer, layer.position_embeddings, g.dim(x, 1))
        return g.op("Expand", [rows, g.dims(x, 0)], layer.name), mask

    @register_converter(embedding.TokenAndPositionEmbedding, keeps_ids=True)
    def token_and_position(g, layer, x, mask):
        ids = g.cast(x, "INT64")
        y = g.op("Gather", [g.const(layer.token_embeddings, f"{layer.name}/token_embeddings"),
                            ids], layer.name, axis=0)
        y = g.op("Add", [y, _position_rows(g, layer, layer.position_embeddings,
                                           g.dim(ids, 1))], layer.name)
        if not layer.mask_zero:
            return y, None
        zero = g.const(np.zeros((), np.int64), "zero", np.int64)
        return y, g.op("Not", [g.op("Equal", [ids, zero], "mask")], f"{layer.name}/mask")

    def not_exportable(why):
        def convert(g, layer, x, mask):
            raise ValueError(f"export: layer {layer.name!r} of class {type(layer).__name__} "
                             f"cannot be exported to ONNX: {why}. Apply it in Python before "
                             "the model (a model from its output on) and export the rest")
        return convert

    register_converter(preprocessing.TextVectorization, not_exportable(
        "it takes string inputs (and splits and looks up words), which this exporter does "
        "not translate"))
    register_converter(preprocessing.StringLookup, not_exportable(
        "it takes string inputs, which this exporter does not translate"))
    register_converter(preprocessing.IntegerLookup, not_exportable(
        "its vocabulary lookup has no converter"))


_register_core()
_register_more()
_register_merges()
_register_recurrent()
_register_vision()
_register_attention_embeddings()


# --------------------------------------------------------------------------------------------
# command line: python -m nanonet export model.nnet model.onnx

def add_arguments(parser):
    """Add the ``export`` command's arguments to an argparse parser (sets func=run)."""
    parser.add_argument("model", help="model file written by model.save (e.g. model.nnet)")
    parser.add_argument("output", help="ONNX file to write (e.g. model.onnx)")
    parser.add_argument("--opset", type=int, default=None,
                        help=f"ONNX opset version (default {DEFAULT_OPSET})")
    parser.set_defaults(func=run)


def run(args) -> int:
    import sys
    from ..saving import load_model
    try:
        export(load_model(args.model), args.output, opset_version=args.opset)
    except (ImportError, ValueError, TypeError, OSError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    print(f"exported {args.model} to {args.output} (ONNX opset "
          f"{DEFAULT_OPSET if args.opset is None else args.opset})")
    return 0
