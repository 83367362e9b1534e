"""Weights by name: safetensors files and PyTorch state dicts.

``model.save_weights("w.safetensors")`` / ``model.load_weights("w.safetensors")``
(``pip install "nanonet[safetensors]"``) store one tensor per weight under its Keras 3 variable
path, in the weight's own dtype (so a round trip is bit-identical):

    <key>/<weight name>                  Dense: dense/kernel, dense/bias, dense_1/kernel, ...;
                                         Embedding: embedding/embeddings;
                                         BatchNormalization: batch_normalization/gamma, beta,
                                         moving_mean, moving_variance; ...
    <key>/lstm_cell/<weight name>        LSTM: lstm/lstm_cell/kernel,
                                         lstm/lstm_cell/recurrent_kernel, lstm/lstm_cell/bias;
                                         GRU: gru/gru_cell/...; SimpleRNN:
                                         simple_rnn/simple_rnn_cell/...
    <key>/forward_<k>/<cell>/<weight>, <key>/backward_<k>/<cell>/<weight>
                                         Bidirectional(layer) (k: the wrapped layer's key;
                                         a given backward_layer is named by its own key)
    <key>/<k>/<weight name>              TimeDistributed(layer)
    <key>/kernel, <key>/bias             Conv1D, Conv2D, DepthwiseConv2D (its depthwise_kernel
                                         is Keras's "kernel"); SeparableConv2D:
                                         depthwise_kernel, pointwise_kernel, bias
    <key>/scale, <key>/concat_score_weight   Attention, AdditiveAttention
    <key>/{query,key,value,attention_output}/{kernel,bias}
                                         MultiHeadAttention

where ``<key>`` is the name Keras gives a layer in a fresh session: the snake_case class name,
then ``_1``, ``_2``, ... for later layers of the same class in ``model.layers`` order, a
wrapper's layers counted just before the wrapper (the names Keras 3 shows as
``variable.path``). It depends on the architecture only, not on the layers'
actual names (which count up across every model made in a process), so the file loads into
any model of the same architecture; ``keras_weight_names(model)`` lists them. The header's
metadata holds "format": "nanonet" and the model's input shape (JSON), so an unbuilt model can
be built before loading. Loading matches by name: a missing, unexpected or differently shaped
tensor is a ValueError naming it; values are cast to the model's dtypes; NaN or inf are refused
unless ``allow_nan=True``.

PyTorch state dicts (``from_torch_state_dict(model, state_dict)``, values as NumPy arrays,
e.g. ``{k: v.numpy() for k, v in module.state_dict().items()}``): the torch modules are taken in
state-dict order and matched to the model's layers that have weights, in order:

    torch.nn.Linear      weight (units, I), bias (units)    -> Dense kernel = weight.T, bias
    torch.nn.Embedding   weight (V, E)                      -> Embedding embeddings = weight
    torch.nn.LSTM        weight_ih_l{k} (4H, I),            -> one nanonet LSTM per layer k:
                         weight_hh_l{k} (4H, H),               kernel = weight_ih.T (I, 4H),
                         bias_ih_l{k}, bias_hh_l{k} (4H)       recurrent_kernel = weight_hh.T,
                                                               bias = bias_ih + bias_hh
    torch.nn.GRU         the same keys, 3H rows              -> one GRU(reset_after=True) per
                                                               layer: kernel, recurrent_kernel
                                                               as LSTM's, gate blocks reordered;
                                                               bias = [bias_ih; bias_hh] (2, 3H)
    torch.nn.RNN         the same keys, H rows               -> SimpleRNN (tanh or relu), as LSTM
    bidirectional=True   also weight_ih_l{k}_reverse, ...    -> Bidirectional(LSTM / GRU /
                                                               SimpleRNN, merge_mode="concat"):
                                                               forward from the plain keys,
                                                               backward from the _reverse ones
    torch.nn.Conv1d / Conv2d  weight (out, in, k...), bias  -> Conv1D / Conv2D kernel =
                                                               weight transposed to
                                                               (k..., in, out), bias
    torch.nn.LayerNorm / BatchNorm1d  weight, bias (, running_mean, running_var)
                                                        -> gamma, beta (, moving_mean,
                                                           moving_variance)

PyTorch's LSTM gate order (i, f, g, o) is Keras's and nanonet's (i, f, c, o), so those gate
blocks keep their place; torch's GRU order (r, z, n) becomes Keras's (z, r, h) by swapping the
first two blocks, and its equations are Keras's reset_after=True (reset_after=False has no torch
twin and is refused). LSTM and GRU must use tanh / sigmoid (torch's only activations); torch's
RNN nonlinearity is not in the state dict, so build the SimpleRNN with the same one. Projected
(proj_size) torch LSTMs and torch's packed MultiheadAttention are refused. Convolution padding
is not in the state dict either: torch's padding="same" / padding=0 are Keras's "same" (odd
kernels, stride 1) / "valid". Epsilons differ between the libraries (torch 1e-5, Keras 1e-3):
build the nanonet layer with torch's. ``to_torch_state_dict(model)`` is the inverse (bias_hh
set to zeros except for a GRU, module names = layer names).
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

__all__ = [
    "from_torch_state_dict",
    "keras_weight_names",
    "load_safetensors",
    "safetensors_bytes",
    "to_torch_state_dict",
]

MAX_BYTES = 4 << 30
_MHA_PARTS = {"query": "query", "key": "key", "value": "value", "output": "attention_output"}


def _safetensors_numpy():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError('safetensors files need the safetensors package: '
                          'pip install "nanonet[safetensors]"') from None
    return st


_CELLS = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}


def _keras_layer_names(model):
    """{id(layer): (key, wrapped key(s)...)} for ``model.layers``: the names Keras gives the
    layers in a fresh session, counting a wrapper's layers as Keras creates them (before the
    wrapper): TimeDistributed -> (key, its layer's key); Bidirectional -> (key, forward name,
    backward name), the backward name "backward_<layer>" unless a backward_layer was given."""
    from .keras_files import keras_snake_case
    counts, out = {}, {}

    def take(layer):
        base = keras_snake_case(type(layer).__name__)
        k = counts.get(base, 0)
        counts[base] = k + 1
        return base + (f"_{k}" if k else "")
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "TimeDistributed":
            inner = take(layer.layer)
            out[id(layer)] = (take(layer), inner)
        elif kind == "Bidirectional":
            fw = take(layer.forward_layer)
            bw = take(layer.backward_layer) if layer._backward_config is not None \
                else "backward_" + fw
            out[id(layer)] = (take(layer), "forward_" + fw, bw)
        else:
            out[id(layer)] = (take(layer),)
    return out


def _weight_path(keys, layer, name, index):
    """Keras's variable path of the layer's weight ``name``, its ``index``-th weight."""
    kind, key = type(layer).__name__, keys[0]
    if kind in _CELLS:
        return f"{key}/{_CELLS[kind]}/{name}"
    if kind == "Bidirectional":
        n_forward = len(layer.forward_layer.weights)
        sub = layer.forward_layer if index < n_forward else layer.backward_layer
        leaf = name.rpartition("/")[2]
        return f"{key}/{keys[1 if index < n_forward else 2]}/{_CELLS[type(sub).__name__]}/{leaf}"
    if kind == "TimeDistributed":
        inner = type(layer.layer).__name__
        return f"{key}/{keys[1]}/" + (f"{_CELLS[inner]}/{name}" if inner in _CELLS else name)
    if kind == "DepthwiseConv2D" and name == "depthwise_kernel":
        return f"{key}/kernel"  # Keras's variable is "kernel" (its config says depthwise_)
    if kind == "MultiHeadAttention":
        part, _, leaf = name.rpartition("_")
        if part in _MHA_PARTS:
            return f"{key}/{_MHA_PARTS[part]}/{leaf}"
    return f"{key}/{name}"


def keras_weight_names(model):
    """The Keras-style name of every weight, in ``model.weights`` order (see the module
    docstring): what a Keras 3 model of the same architecture built in a fresh session calls
    its variables (``variable.path``)."""
    keys = _keras_layer_names(model)
    names, index = [], {}
    for layer, _, name in model.named_weights():
        i = index.get(id(layer), 0)
        index[id(layer)] = i + 1
        names.append(_weight_path(keys[id(layer)], layer, name, i))
    return names


def safetensors_bytes(model):
    """The model's weights as a safetensors file (bytes)."""
    st = _safetensors_numpy()
    names = keras_weight_names(model)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"save_weights: model {model.name!r} has weights with the same name "
                         f"{dup}; give its layers unique names")
    # np.asarray, not np.ascontiguousarray: that one makes a scalar weight (Attention's
    # scale) 1-D
    tensors = {n: np.asarray(w, order="C") for n, (_, w, _) in zip(names,
                                                                     model.named_weights())}
    shape = model.input_shape
    meta = {"format": "nanonet", "input_shape": json.dumps(None if shape is None
                                                           else list(shape))}
    return st.save(tensors, metadata=meta)


def _read_header_metadata(data):
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    return header.get("__metadata__") or {}


def load_safetensors(model, filepath, allow_nan=False):
    """Set the model's weights from a safetensors file, matched by Keras-style name."""
    st = _safetensors_numpy()
    fn = "load_weights"
    path = os.fspath(filepath)
    where = f"{fn}: {path!r}"
    size = os.path.getsize(path)  # FileNotFoundError names the path
    if size > MAX_BYTES:
        raise ValueError(f"{where} is {size} bytes, above the limit of {MAX_BYTES}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        tensors = st.load(data)
        meta = _read_header_metadata(data)
    except Exception as e:  # safetensors raises its own SafetensorError (and others)
        raise ValueError(f"{where} is not a valid safetensors file ({type(e).__name__}: "
                         f"{e})") from None
    if not model.built:
        try:
            shape = json.loads(meta.get("input_shape", "null"))
        except ValueError:
            shape = None
        if not isinstance(shape, list):
            raise ValueError(f"{where}: model {model.name!r} is not built and the file does not "
                             "record an input shape; build the model first")
        model.build(tuple(shape))
    names = keras_weight_names(model)
    own = model.named_weights()
    missing = [n for n in names if n not in tensors]
    extra = sorted(set(tensors) - set(names))
    if missing or extra:
        raise ValueError(f"{where} does not match model {model.name!r}: missing "
                         f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
                         f"{extra[:5]}{' ...' if len(extra) > 5 else ''} (names follow "
                         "the architecture; see nanonet.interchange.keras_weight_names(model))")
    values = []
    for n, (layer, w, _) in zip(names, own):
        v = tensors[n]
        if v.shape != w.shape:
            raise ValueError(f"{where}: {n!r} has shape {v.shape}; model {model.name!r} needs "
                             f"{w.shape}")
        if v.dtype.kind not in "biuf":
            raise ValueError(f"{where}: {n!r} has dtype {v.dtype}; a number type is needed")
        if v.dtype.kind == "f" and not allow_nan and not np.isfinite(v).all():
            raise ValueError(f"{where}: {n!r} contains NaN or inf values; pass allow_nan=True "
                             "to load it anyway")
        values.append(v.astype(w.dtype, copy=False))
    model.set_weights(values)


# -- PyTorch ------------------------------------------------------------------------------------
_RNN_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l([0-9]+)(_reverse)?$")
_RNN_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# torch's GRU gates are (r, z, n), Keras's (z, r, h): swap the first two H-blocks
_GRU_BLOCKS = (1, 0, 2)


def _torch_modules(state_dict):
    """[(module name, {param: array})] in state-dict order, a torch LSTM / GRU / RNN split per
    layer k (module name "lstm.l{k}"; a bidirectional one keeps its "*_reverse" parameters)."""
    groups = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"from_torch_state_dict: state_dict keys must be str; got {key!r}")
        module, _, param = key.rpartition(".")
        m = _RNN_KEY.match(param)
        if m:
            module, param = f"{module}.l{m.group(2)}", m.group(1) + (m.group(3) or "")
        elif param.startswith("weight_hr_l"):
            raise ValueError(f"from_torch_state_dict: {key!r}: torch LSTMs with proj_size are "
                             "not supported")
        if param == "num_batches_tracked":
            continue
        groups.setdefault(module, {})[param] = np.asarray(value)
    return list(groups.items())


def _expect(module, params, names, layer):
    if set(params) != set(names):
        raise ValueError(f"from_torch_state_dict: torch module {module!r} has parameters "
                         f"{sorted(params)}; nanonet {type(layer).__name__} layer {layer.name!r} "
                         f"needs {sorted(names)}")


def _gate_blocks(a, layer, axis=0):
    """a with its gate blocks (along axis) moved between torch's order and Keras's: GRU swaps
    (r, z) and (z, r); LSTM and SimpleRNN keep theirs."""
    if type(layer).__name__ != "GRU":
        return a
    blocks = np.split(a, 3, axis=axis)
    return np.concatenate([blocks[i] for i in _GRU_BLOCKS], axis=axis)


def _check_torch_rnn(layer, who):
    kind = type(layer).__name__
    if kind == "SimpleRNN":
        if layer.activation not in ("tanh", "relu"):
            raise ValueError(f"{who}: SimpleRNN {layer.name!r} must use tanh or relu (torch's "
                             f"RNN nonlinearities); got {layer.activation!r}")
        return
    if layer.activation != "tanh" or layer.recurrent_activation != "sigmoid":
        raise ValueError(f"{who}: {kind} {layer.name!r} must use tanh and sigmoid (torch's "
                         f"{kind} has no other activations)")
    if kind == "GRU" and not layer.reset_after:
        raise ValueError(f"{who}: GRU {layer.name!r} must have reset_after=True (torch's GRU "
                         "applies the reset gate after the recurrent product)")


def _convert_rnn(params, layer, suffix=""):
    """A recurrent layer's weights from torch's weight_ih, weight_hh, bias_ih, bias_hh (with
    the given suffix): kernel = weight_ih.T, recurrent_kernel = weight_hh.T (gate blocks in
    Keras's order); bias = bias_ih + bias_hh, or the pair stacked (2, 3H) for a GRU."""
    _check_torch_rnn(layer, "from_torch_state_dict")
    out = [_gate_blocks(params["weight_ih" + suffix], layer).T,
           _gate_blocks(params["weight_hh" + suffix], layer).T]
    if layer.use_bias:
        b_ih, b_hh = (_gate_blocks(params[n + suffix], layer) for n in ("bias_ih", "bias_hh"))
        out.append(np.stack([b_ih, b_hh]) if type(layer).__name__ == "GRU"
                   else b_ih.astype(np.float64) + b_hh)
    return out


def _convert(module, params, layer):
    """The layer's weights (in ``layer.weights`` order) from one torch module's parameters."""
    kind = type(layer).__name__
    if kind == "Dense":
        _expect(module, params, ["weight", "bias"] if layer.use_bias else ["weight"], layer)
        return [params["weight"].T] + ([params["bias"]] if layer.use_bias else [])
    if kind == "Embedding":
        _expect(module, params, ["weight"], layer)
        return [params["weight"]]
    if kind in ("LSTM", "GRU", "SimpleRNN"):
        if any(n.endswith("_reverse") for n in params):
            raise ValueError(f"from_torch_state_dict: torch module {module!r} is a "
                             f"bidirectional RNN; nanonet {kind} {layer.name!r} is one direction "
                             "(wrap it in Bidirectional)")
        names = list(_RNN_PARAMS if layer.use_bias else _RNN_PARAMS[:2])
        _expect(module, params, names, layer)
        return _convert_rnn(params, layer)
    if kind == "Bidirectional":
        fw, bw = layer.forward_layer, layer.backward_layer
        if type(fw) is not type(bw) or fw.use_bias != bw.use_bias or layer.merge_mode != "concat":
            raise ValueError(f"from_torch_state_dict: Bidirectional {layer.name!r} must have "
                             "forward and backward layers of one kind and merge_mode='concat' "
                             "(torch's bidirectional RNN concatenates)")
        names = list(_RNN_PARAMS if fw.use_bias else _RNN_PARAMS[:2])
        _expect(module, params, names + [n + "_reverse" for n in names], layer)
        return _convert_rnn(params, fw) + _convert_rnn(params, bw, "_reverse")
    if kind in ("Conv1D", "Conv2D"):
        # torch (out, in / groups, k...) -> Keras (k..., in / groups, out)
        _expect(module, params, ["weight", "bias"] if layer.use_bias else ["weight"], layer)
        w = params["weight"]
        return [w.transpose(tuple(range(2, w.ndim)) + (1, 0))] + \
            ([params["bias"]] if layer.use_bias else [])
    if kind in ("LayerNormalization", "BatchNormalization"):
        names = [n for n, w in zip(layer.weight_names, layer.weights)]
        torch_of = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                    "moving_variance": "running_var"}
        _expect(module, params, [torch_of[n] for n in names], layer)
        return [params[torch_of[n]] for n in names]
    raise ValueError(f"from_torch_state_dict: no PyTorch mapping for {kind} layer "
                     f"{layer.name!r} (Dense, Embedding, LSTM, GRU, SimpleRNN, Bidirectional, "
                     "Conv1D, Conv2D, LayerNormalization, BatchNormalization have one)")
def from_torch_state_dict(model, state_dict, set_weights=True):
    """Convert a PyTorch state dict (NumPy arrays) to the model's weights (see the module
    docstring for the mapping); sets them on the model unless ``set_weights=False``, and
    returns them in ``model.get_weights()`` order. The model must be built."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"from_torch_state_dict: state_dict must be a dict of arrays; got "
                        f"{type(state_dict).__name__}")
    if not model.built:
        raise ValueError(f"from_torch_state_dict: model {model.name!r} is not built; build it "
                         "first")
    modules = _torch_modules(state_dict)
    layers = [layer for layer in model.layers if layer.weights]
    if len(modules) != len(layers):
        raise ValueError(f"from_torch_state_dict: the state dict has {len(modules)} modules with "
                         f"parameters ({[m for m, _ in modules]}); model {model.name!r} has "
                         f"{len(layers)} layers with weights ({[la.name for la in layers]})")
    values = []
    for (module, params), layer in zip(modules, layers):
        converted = _convert(module, params, layer)
        for w, wname, v in zip(layer.weights, layer.weight_names, converted):
            if v.shape != w.shape:
                raise ValueError(f"from_torch_state_dict: torch module {module!r} gives "
                                 f"{layer.name!r} weight {wname!r} shape {v.shape}; the layer "
                                 f"needs {w.shape}")
            values.append(np.ascontiguousarray(v, dtype=w.dtype))
    if set_weights:
        model.set_weights(values)
    return values


def _rnn_to_torch(layer, prefix, suffix=""):
    """{"<prefix>.weight_ih_l0<suffix>": ...} for one direction of a recurrent layer; bias_hh
    is zero except for a GRU, whose two biases are torch's bias_ih and bias_hh."""
    _check_torch_rnn(layer, "to_torch_state_dict")
    ws = dict(zip((n.rpartition("/")[2] for n in layer.weight_names), layer.weights))
    out = {f"{prefix}.weight_ih_l0{suffix}": _gate_blocks(ws["kernel"].T, layer).copy(),
           f"{prefix}.weight_hh_l0{suffix}": _gate_blocks(ws["recurrent_kernel"].T,
                                                          layer).copy()}
    if "bias" in ws:
        b = ws["bias"]
        b_ih, b_hh = (b[0], b[1]) if type(layer).__name__ == "GRU" else (b, np.zeros_like(b))
        out[f"{prefix}.bias_ih_l0{suffix}"] = _gate_blocks(b_ih, layer).copy()
        out[f"{prefix}.bias_hh_l0{suffix}"] = _gate_blocks(b_hh, layer).copy()
    return out


def to_torch_state_dict(model):
    """The inverse of ``from_torch_state_dict``: {"<layer name>.<torch param>": array}, ready for
    ``torch_module.load_state_dict({k: torch.from_numpy(v) ...})`` when the torch modules carry
    the layer names (an LSTM / SimpleRNN layer maps to a one-layer torch LSTM / RNN with
    bias_hh = 0, a GRU to a GRU, a Bidirectional to a bidirectional one, a Conv1D / Conv2D to a
    Conv1d / Conv2d)."""
    out = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        kind, ws = type(layer).__name__, dict(zip(layer.weight_names, layer.weights))
        p = layer.name
        if kind == "Dense":
            out[f"{p}.weight"] = ws["kernel"].T.copy()
            if "bias" in ws:
                out[f"{p}.bias"] = ws["bias"].copy()
        elif kind == "Embedding":
            out[f"{p}.weight"] = ws["embeddings"].copy()
        elif kind in ("LSTM", "GRU", "SimpleRNN"):
            out.update(_rnn_to_torch(layer, p))
        elif kind == "Bidirectional":
            out.update(_rnn_to_torch(layer.forward_layer, p))
            out.update(_rnn_to_torch(layer.backward_layer, p, "_reverse"))
        elif kind in ("Conv1D", "Conv2D"):
            k = ws["kernel"]
            out[f"{p}.weight"] = np.ascontiguousarray(
                k.transpose((k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2))))
            if "bias" in ws:
                out[f"{p}.bias"] = ws["bias"].copy()
        elif kind in ("LayerNormalization", "BatchNormalization"):
            for ours, theirs in (("gamma", "weight"), ("beta", "bias"),
                                 ("moving_mean", "running_mean"),
                                 ("moving_variance", "running_var")):
                if ours in ws:
                    out[f"{p}.{theirs}"] = ws[ours].copy()
        else:
            raise ValueError(f"to_torch_state_dict: no PyTorch mapping for {kind} layer "
                             f"{layer.name!r}")
    return out
