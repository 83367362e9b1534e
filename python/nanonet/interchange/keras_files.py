"""Keras 3 files in: ``nanonet.load_model("model.keras")`` and
``model.load_weights("x.weights.h5")`` (``pip install "nanonet[keras-files]"``: h5py).

A ``.keras`` file is a zip archive with ``config.json`` (the model: class name, config, and for
a Functional model each layer's inbound nodes), ``model.weights.h5`` (HDF5) and
``metadata.json``. The config maps onto nanonet layers of the same class name; the HDF5 file
holds each layer's variables under the path Keras's object tracking gives it:

    layers/<snake_case class name>[_<k>]/vars/<i>       Dense, Embedding, BatchNormalization, ...
    layers/lstm[_<k>]/cell/vars/<i>                     LSTM, GRU, SimpleRNN (kernel,
                                                        recurrent_kernel, bias)
    layers/bidirectional[_<k>]/{forward,backward}_layer/cell/vars/<i>     Bidirectional
    layers/multi_head_attention[_<k>]/{query,key,value,output}_dense/vars/<i>
    layers/time_distributed[_<k>]/layer/vars/<i>        TimeDistributed(layer)
    layers/sequential[_<k>]/layers/...                  a nested model: its layers' paths

(convolutions, Attention, AdditiveAttention and the rest keep their variables in ``vars``;
SeparableConv2D's are depthwise_kernel, pointwise_kernel, bias), where ``k`` counts earlier
layers of the same class in ``model.layers`` order (an InputLayer is listed in a Functional
model, not in a Sequential one) and ``i`` follows the layer's weights (Keras's layouts are
nanonet's, so values are copied as they are).

Loading never executes code from the file: nothing is unpickled, classes are looked up by name
among nanonet's layers, and a ``Lambda`` layer, a custom object (a ``module`` outside Keras or a
``registered_name`` such as ``"MyPackage>MyLayer"``), an unknown class, or a Keras option nanonet
does not implement (a constraint, ``stateful=True``, ``antialias=True`` ...) is refused with a
ValueError naming it. Call options Keras stores in a node's kwargs (``use_causal_mask``,
``return_attention_scores``, ...) become the node's options (Layer.call_kwargs); one the layer
has no option for is refused. Initializers in the config are dropped (the weights come from the
file); regularizers are kept. The compile settings (optimizer class and configuration, loss, loss
weights, metrics) are restored unless ``compile=False``; the optimizer's state (its slots) is
not, so training restarts Adam's moments.
"""
from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np

__all__ = ["is_keras_file", "is_keras_weights_file", "load_keras_model", "load_keras_weights"]

_MAX_CONFIG_BYTES = 64 << 20
_MAX_WEIGHTS_BYTES = 4 << 30

# Keras options nanonet has no argument for, with the value(s) meaning "the plain behaviour":
# any other value is refused.
_NEUTRAL = {"stateful": (False,), "unroll": (False,), "zero_output_for_mask": (False, True),
            "quantization_config": (None,), "lora_rank": (None,), "lora_alpha": (None,),
            "synchronized": (False,), "renorm": (False,), "renorm_clipping": (None,),
            "renorm_momentum": None, "use_gate": (False,), "sliding_window": (None,),
            "sparse": (False,), "ragged": (False,), "optional": (False,),
            "activity_regularizer": (None,), "rms_scaling": (False,), "flash_attention": (None,),
            "input_length": None, "seed": (None,), "data_format": ("channels_last",),
            # Resizing: fill_mode / fill_value only act with pad_to_aspect_ratio=True
            "pad_to_aspect_ratio": (False,), "antialias": (False,), "fill_mode": None,
            "fill_value": None,
            # the lookup layers: vocabulary_size is derived; the OOV bucketing of
            # num_oov_indices > 1 is refused in _layer_config
            "vocabulary_size": None, "oov_method": None, "salt": None}
_LOOKUPS = ("StringLookup", "IntegerLookup", "TextVectorization")
_KERAS_MODULES = ("keras", "keras.src")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError('reading Keras .keras / .weights.h5 files needs h5py: '
                          'pip install "nanonet[keras-files]"') from None
    return h5py


def is_keras_file(path):
    return str(path).lower().endswith(".keras")


def is_keras_weights_file(path):
    return str(path).lower().endswith((".h5", ".hdf5"))


def keras_snake_case(name):
    """Keras's automatic name for a class: ``GlobalAveragePooling1D`` ->
    ``global_average_pooling1d``."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


class _Refused(ValueError):
    pass


def _check_no_code(obj, where):
    """Refuse anything in the config that Keras would import or deserialize as code."""
    if isinstance(obj, dict):
        cls = obj.get("class_name")
        module = obj.get("module")
        if cls in ("Lambda", "__lambda__", "function") or (
                isinstance(cls, str) and cls.startswith("__") and cls != "__keras_tensor__"):
            raise _Refused(f"{where} holds a {cls!r} (Python code); nanonet never executes code "
                           "from a file, so Lambda layers and functions cannot be loaded")
        if isinstance(module, str) and module.split(".")[0] != "keras":
            raise _Refused(f"{where} holds {cls!r} from module {module!r}, a custom object; "
                           "only Keras's own classes are loaded")
        reg = obj.get("registered_name")
        if reg is not None and reg != cls:
            raise _Refused(f"{where} holds the custom object {reg!r}; only Keras's own classes "
                           "are loaded")
        for v in obj.values():
            _check_no_code(v, where)
    elif isinstance(obj, list):
        for v in obj:
            _check_no_code(v, where)


def _layer_class(class_name, where):
    from ..layers.base import Layer, get_registered
    cls = get_registered(class_name) if isinstance(class_name, str) else None
    if cls is None or class_name.startswith("_") or not issubclass(cls, Layer):
        raise _Refused(f"{where}: layer class {class_name!r} has no nanonet equivalent")
    return cls


def _dtype_name(value, where):
    if isinstance(value, dict):  # a DTypePolicy
        value = (value.get("config") or {}).get("name")
    if value not in (None, "float32", "float64"):
        raise _Refused(f"{where}: dtype policy {value!r} is not supported (float32 or float64)")
    return value


def _layer_config(spec, where):
    """nanonet config for one Keras layer spec {"class_name", "config", ...}."""
    import inspect
    cls_name = spec.get("class_name")
    cls = _layer_class(cls_name, where)
    kconf = spec.get("config")
    if not isinstance(kconf, dict):
        raise _Refused(f"{where}: layer {cls_name!r} has no config")
    params = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable", "dtype"}
    conf = {}
    for key, value in kconf.items():
        what = f"{where}: {cls_name} option {key}={value!r}"
        if key == "dtype":
            if cls_name == "InputLayer":
                conf[key] = value
            else:
                dt = _dtype_name(value, where)
                if dt is not None:
                    conf[key] = dt
        elif key.endswith("_initializer"):
            continue  # the weights come from the file
        elif key.endswith("_constraint"):
            if value is not None:
                raise _Refused(f"{what}: constraints are not supported by nanonet")
        elif key.endswith("_regularizer") and value is not None:
            if key not in params:
                raise _Refused(f"{what}: nanonet's {cls_name} has no {key}")
            conf[key] = {"class_name": value.get("class_name"), "config": value.get("config")}
        elif (key == "layer" and cls_name in ("TimeDistributed", "Bidirectional")) or (
                key == "backward_layer" and cls_name == "Bidirectional" and value is not None):
            if not isinstance(value, dict):
                raise _Refused(f"{what}: the wrapped layer must be an object")
            inner_cls, inner_conf = _layer_config(value, f"{where} (wrapped {key})")
            conf[key] = {"class_name": inner_cls.__name__, "config": inner_conf}
        elif key == "attention_axes" and cls_name == "MultiHeadAttention":
            if value not in (None, [1], [-2]):
                raise _Refused(f"{what}: only attention over the sequence axis is supported")
        elif key in params and key not in ("kwargs",):
            conf[key] = value
        elif key in _NEUTRAL:
            allowed = _NEUTRAL[key]
            if allowed is not None and value not in allowed:
                raise _Refused(f"{what} is not supported by nanonet")
        else:
            raise _Refused(f"{what} is not supported by nanonet")
    if cls_name == "InputLayer":
        conf.pop("sparse", None)
    if cls_name in _LOOKUPS:
        if not conf.get("vocabulary"):
            raise _Refused(f"{where}: {cls_name} has no vocabulary in its config (an adapted "
                           "layer keeps it in the file's assets/, which nanonet does not read); "
                           "build the Keras layer with vocabulary=[...] and save it again")
        if (conf.get("num_oov_indices") or 1) > 1:
            raise _Refused(f"{where}: {cls_name} option num_oov_indices="
                           f"{conf['num_oov_indices']!r}: nanonet's OOV buckets are not "
                           "Keras's hashes, so only 0 or 1 OOV index loads")
    return cls, conf


def _build_layer(spec, where):
    if spec.get("class_name") in ("Sequential", "Functional", "Model"):  # a nested model
        return _model_from_config(spec, where)
    cls, conf = _layer_config(spec, where)
    try:
        return cls.from_config(conf)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: cannot make a nanonet {spec.get('class_name')} from the "
                         f"Keras config: {e}") from None


# -- architecture -------------------------------------------------------------------------------
def _model_from_config(top, where):
    _check_no_code(top, where)
    cls = top.get("class_name")
    config = top.get("config")
    if cls not in ("Sequential", "Functional", "Model") or not isinstance(config, dict) or \
            not isinstance(config.get("layers"), list):
        raise _Refused(f"{where}: the model is a {cls!r}; nanonet reads Sequential and "
                       "Functional models")
    if cls == "Sequential":
        build = top.get("build_config")
        return _sequential(config, where, build.get("input_shape") if isinstance(build, dict)
                           else None)
    return _functional(config, where)


def _sequential(config, where, build_shape=None):
    from ..models import Sequential
    model = Sequential(name=config.get("name"), trainable=config.get("trainable", True))
    for k, spec in enumerate(config["layers"]):
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: layers[{k}] must be an object")
        model.add(_build_layer(spec, f"{where}: layers[{k}]"))
    if not model.built and build_shape:
        model.build(tuple(build_shape))
    return model


def _is_tensor_ref(v):
    return isinstance(v, dict) and v.get("class_name") == "__keras_tensor__"


_MASK = object()  # the value of a node of Keras's mask plumbing (see _mask_plumbing)


def _refs(value):
    """The layer names of the tensor references in a node's args or kwargs value."""
    if _is_tensor_ref(value):
        hist = (value.get("config") or {}).get("keras_history")
        return [hist[0]] if isinstance(hist, list) and hist else []
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


def _mask_plumbing(config, where):
    """Names of the op nodes that only compute masks. Keras writes the padding mask of a
    Functional model as op nodes (NotEqual(ids, 0) from Embedding(mask_zero=True), then
    ExpandDims / LogicalOr / Any ... where masks merge) whose results reach layers only as
    ``mask=``; nanonet carries the same masks beside the values itself, so those nodes are
    dropped. Any other op node has no nanonet equivalent and is refused later."""
    layers = config["layers"]
    ops = {lc.get("name") for lc in layers
           if str(lc.get("module", "")).startswith("keras.src.ops")}
    if not ops:
        return set()
    uses = []  # (consumer name, op name, consumed as mask=)
    for lc in layers:
        for node in lc.get("inbound_nodes") or []:
            if not isinstance(node, dict):
                continue
            for r in _refs(node.get("args")):
                uses.append((lc.get("name"), r, False))
            for k, v in (node.get("kwargs") or {}).items():
                for r in _refs(v):
                    uses.append((lc.get("name"), r, k == "mask"))
    plumbing = set(ops) - set(_refs(config.get("output_layers")))
    changed = True
    while changed:
        changed = False
        for consumer, op, as_mask in uses:
            if op in plumbing and not as_mask and consumer not in plumbing:
                plumbing.discard(op)
                changed = True
    if plumbing and not any(
            (lc.get("class_name") == "Embedding" and (lc.get("config") or {}).get("mask_zero"))
            or lc.get("class_name") == "Masking" for lc in layers):
        raise _Refused(f"{where}: the model passes masks computed by ops {sorted(plumbing)} "
                       "without an Embedding(mask_zero=True) or Masking layer; nanonet only "
                       "carries the masks those layers make")
    return plumbing


def _functional(config, where):
    from ..layers.core import InputLayer
    from ..models import Model
    created, pending, mask_ops = {}, [], _mask_plumbing(config, where)
    for k, spec in enumerate(config["layers"]):
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: layers[{k}] must be an object")
        if spec.get("name") in mask_ops:
            continue
        if str(spec.get("module", "")).startswith("keras.src.ops"):
            raise _Refused(f"{where}: layers[{k}] is the Keras op {spec.get('class_name')!r} "
                           "(keras.ops used in a Functional model), which has no nanonet layer")
        layer = _build_layer(spec, f"{where}: layers[{k}]")
        name = spec.get("name", layer.name)
        if name in created:
            raise ValueError(f"{where}: two layers are named {name!r}")
        created[name] = layer
        for node in spec.get("inbound_nodes") or []:
            pending.append((name, node))
    outputs_of = {}

    def lookup(ref):
        hist = ref if isinstance(ref, list) else (ref.get("config") or {}).get("keras_history")
        if not (isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str)):
            raise ValueError(f"{where}: a tensor reference must be [layer name, node index, "
                             f"tensor index]; got {hist!r}")
        if hist[0] in mask_ops:
            return _MASK
        if hist[0] not in created:
            raise ValueError(f"{where}: reference to a missing layer {hist[0]!r}")
        layer = created[hist[0]]
        if isinstance(layer, InputLayer):
            return layer.output
        outs = outputs_of.get((hist[0], hist[1]))
        if outs is None:
            return None
        if not isinstance(hist[2], int) or not 0 <= hist[2] < len(outs):
            raise ValueError(f"{where}: layer {hist[0]!r} has no output {hist[2]!r}")
        return outs[hist[2]]

    class _Missing(Exception):
        pass

    def resolve(v):
        if _is_tensor_ref(v):
            t = lookup(v)
            if t is None:
                raise _Missing
            return t
        if isinstance(v, list):
            return [resolve(x) for x in v]
        if isinstance(v, dict):
            return {k: resolve(x) for k, x in v.items()}
        return v

    count = {}
    while pending:
        progress = []
        for item in pending:
            name, node = item
            if not isinstance(node, dict) or not isinstance(node.get("args", []), list):
                raise ValueError(f"{where}: layer {name!r}: an inbound node must be an object "
                                 "with 'args' and 'kwargs'")
            try:
                args = resolve(node.get("args") or [])
                kwargs = resolve(node.get("kwargs") or {})
            except _Missing:
                continue
            # nanonet carries masks beside the values itself; "training" is the caller's
            kwargs = {k: v for k, v in kwargs.items()
                      if not (k == "mask" and all(m is None or m is _MASK for m in
                                                   (v if isinstance(v, list) else [v])))
                      and not (k == "training" and v in (None, False, True))}
            if any(v is _MASK for v in list(args) + list(kwargs.values())):
                raise _Refused(f"{where}: layer {name!r} uses the padding mask as a value; "
                               "nanonet passes masks only beside the values")
            layer = created[name]
            try:
                out = layer(*args, **kwargs)
            except TypeError as e:
                raise _Refused(f"{where}: layer {name!r} ({type(layer).__name__}) called with "
                               f"options {sorted(kwargs)} nanonet does not support: {e}") from None
            i = count.get(name, 0)
            count[name] = i + 1
            outputs_of[(name, i)] = list(out) if isinstance(out, (list, tuple)) else [out]
            progress.append(item)
        if not progress:
            raise ValueError(f"{where}: layer {pending[0][0]!r} consumes tensors that no layer "
                             "produces (a missing node or a cycle)")
        done = {id(p) for p in progress}
        pending = [p for p in pending if id(p) not in done]

    def pack(refs, what):
        if isinstance(refs, dict):
            return {k: pack(v, what) for k, v in refs.items()}
        if isinstance(refs, list) and refs and isinstance(refs[0], str):
            t = lookup(refs)
            if t is None:
                raise ValueError(f"{where}: {what} references {refs!r}, which no layer produces")
            return t
        if isinstance(refs, list) and refs:
            return [pack(r, what) for r in refs]
        raise ValueError(f"{where}: {what} must be a tensor reference or a list of them")

    inputs = pack(config.get("input_layers"), "input_layers")
    outputs = pack(config.get("output_layers"), "output_layers")
    return Model(inputs, outputs, name=config.get("name"),
                 trainable=config.get("trainable", True))


# -- weights ------------------------------------------------------------------------------------
def keras_layer_keys(model):
    """[(layer, key)] in ``model.layers`` order, key = the name Keras gives a layer of that
    class in a fresh session: snake_case class name, then _1, _2, ... for later layers of the
    same class. It depends on the architecture only, never on the layers' actual names."""
    counts, out = {}, []
    for layer in model.layers:
        base = keras_snake_case(type(layer).__name__)
        k = counts.get(base, 0)
        counts[base] = k + 1
        out.append((layer, base + (f"_{k}" if k else "")))
    return out


_CELL_LAYERS = ("LSTM", "GRU", "SimpleRNN")  # their variables live on a cell


def _is_model(layer):
    from ..models import Model
    return isinstance(layer, Model)


def _h5_paths(model):
    """[(layer, [h5 dataset path per weight])] for the layers with weights, in Keras's
    object-tracking naming (see the module docstring)."""
    out = []
    for layer, key in keras_layer_keys(model):
        path = f"layers/{key}"
        n = len(layer.weights)
        if not n:
            continue
        kind = type(layer).__name__
        if _is_model(layer):  # a nested model: its own layers under <path>/layers/...
            paths = [f"{path}/{p}" for _, inner in _h5_paths(layer) for p in inner]
        elif kind in _CELL_LAYERS:
            paths = [f"{path}/cell/vars/{i}" for i in range(n)]
        elif kind == "Bidirectional":
            paths = [f"{path}/{part}/cell/vars/{i}"
                     for part, sub in (("forward_layer", layer.forward_layer),
                                       ("backward_layer", layer.backward_layer))
                     for i in range(len(sub.weights))]
        elif kind == "MultiHeadAttention":
            per = 2 if layer.use_bias else 1
            paths = [f"{path}/{part}_dense/vars/{i}"
                     for part in ("query", "key", "value", "output") for i in range(per)]
        elif kind == "TimeDistributed":
            inner = "cell/vars" if type(layer.layer).__name__ in _CELL_LAYERS else "vars"
            paths = [f"{path}/layer/{inner}/{i}" for i in range(n)]
        else:
            paths = [f"{path}/vars/{i}" for i in range(n)]
        out.append((layer, paths))
    return out


def _read_h5_weights(h5, model, where):
    """The model's weights, in ``model.weights`` order, read from the open h5py File."""
    h5py = _h5py()
    if "layers" not in h5 and ("model_weights" in h5 or "layer_names" in h5.attrs):
        raise ValueError(f"{where}: this is a Keras 2 (legacy HDF5) weights file; nanonet reads "
                         "the .weights.h5 files of Keras 3 (load it in Keras 3 and save it "
                         "again)")
    values = []
    for layer, paths in _h5_paths(model):
        group = paths[0].rsplit("/", 1)[0]
        stored = h5.get(group)
        if not isinstance(stored, h5py.Group):
            raise ValueError(f"{where}: no weights for layer {layer.name!r} "
                             f"({type(layer).__name__}) at {group!r}; the file's layers are "
                             f"{sorted(h5.get('layers', {}).keys())}")
        for w, wname, p in zip(layer.weights, layer.weight_names, paths):
            ds = h5.get(p)
            if not isinstance(ds, h5py.Dataset):
                raise ValueError(f"{where}: layer {layer.name!r} weight {wname!r} is missing "
                                 f"(expected at {p!r})")
            if ds.dtype.kind not in "fiu" or tuple(ds.shape) != w.shape:
                raise ValueError(f"{where}: layer {layer.name!r} weight {wname!r} must have shape "
                                 f"{w.shape}; {p!r} has shape {tuple(ds.shape)} and dtype "
                                 f"{ds.dtype}")
            arr = np.asarray(ds[()], dtype=w.dtype)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"{where}: layer {layer.name!r} weight {wname!r} ({p!r}) "
                                 "contains NaN or inf values")
            values.append(arr)
        for g in dict.fromkeys(p.rsplit("/", 1)[0] for p in paths):
            held = h5.get(g)
            n_file = len(held.keys()) if isinstance(held, h5py.Group) else 0
            n_ours = sum(p.rsplit("/", 1)[0] == g for p in paths)
            if n_file != n_ours:
                raise ValueError(f"{where}: layer {layer.name!r} ({type(layer).__name__}) has "
                                 f"{n_ours} weights at {g!r}; the file has {n_file}")
    return values


def _set_weights(model, values, where):
    try:
        model.set_weights(values)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _read_zip(path, fn):
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{fn}: {path!r} is not a Keras .keras file (not a zip archive: "
                         f"{e})") from None
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        for member, limit in (("config.json", _MAX_CONFIG_BYTES),
                              ("model.weights.h5", _MAX_WEIGHTS_BYTES)):
            if member not in infos:
                raise ValueError(f"{fn}: {path!r} is not a Keras 3 .keras file: it has no "
                                 f"{member!r}")
            if infos[member].file_size > limit:
                raise ValueError(f"{fn}: {path!r}: {member!r} is {infos[member].file_size} "
                                 f"bytes, above the limit of {limit}")
        try:
            config = json.loads(zf.read("config.json").decode("utf-8"))
            weights = zf.read("model.weights.h5")
            meta = json.loads(zf.read("metadata.json").decode("utf-8")) \
                if "metadata.json" in infos and infos["metadata.json"].file_size < 1 << 20 else {}
        except (ValueError, zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{fn}: {path!r} is corrupt: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{fn}: {path!r}: config.json must hold an object")
    version = meta.get("keras_version") if isinstance(meta, dict) else None
    if isinstance(version, str) and not version.startswith("3."):
        raise ValueError(f"{fn}: {path!r} was written by Keras {version}; nanonet reads the "
                         "files of Keras 3")
    return config, weights


def _open_h5(data_or_path, where):
    h5py = _h5py()
    try:
        return h5py.File(io.BytesIO(data_or_path) if isinstance(data_or_path, bytes)
                         else data_or_path, "r")
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"{where}: not a valid HDF5 weights file ({e})") from None


_OPTIMIZER_NEUTRAL = {"use_ema": (False,), "ema_momentum": None,
                      "ema_overwrite_frequency": (None,), "loss_scale_factor": (None,),
                      "gradient_accumulation_steps": (None, 1), "amsgrad": (False,)}


def _plain(obj):
    """A Keras serialization dict as nanonet's {"class_name", "config"} (module and
    registered_name dropped), recursively through lists and dicts."""
    if isinstance(obj, dict):
        if "class_name" in obj and "config" in obj:
            return {"class_name": obj["class_name"], "config": _plain(obj["config"])}
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _compile_like_keras(model, cc, where):
    """Compile model with a Keras compile_config: optimizer, loss, loss_weights, metrics."""
    import inspect

    from .. import optimizers as _optimizers
    opt = cc.get("optimizer")
    if isinstance(opt, dict):
        cls = _optimizers.get(opt.get("class_name", "").lower()).__class__ \
            if isinstance(opt.get("class_name"), str) else None
        params = set(inspect.signature(cls.__init__).parameters) if cls else set()
        conf = {}
        for key, value in (opt.get("config") or {}).items():
            if key in params:
                conf[key] = _plain(value)
            elif key not in _OPTIMIZER_NEUTRAL or (
                    _OPTIMIZER_NEUTRAL[key] is not None and value not in _OPTIMIZER_NEUTRAL[key]):
                raise ValueError(f"optimizer option {key}={value!r} is not supported by nanonet")
        lr = conf.get("learning_rate")
        if isinstance(lr, dict):
            from .. import schedules as _schedules
            conf["learning_rate"] = _schedules.deserialize(lr)
        opt = _optimizers.deserialize({"class_name": opt.get("class_name"), "config": conf})
    if cc.get("weighted_metrics"):
        raise ValueError("weighted_metrics are not supported by nanonet")
    model.compile(optimizer=opt, loss=_plain(cc.get("loss")),
                  loss_weights=_plain(cc.get("loss_weights")),
                  metrics=_plain(cc.get("metrics")) or None)


def load_keras_model(filepath, compile=True):
    """A nanonet model with the architecture and weights of a Keras 3 ``.keras`` file, compiled
    with the file's compile settings (optimizer, loss, loss weights, metrics; not the optimizer's
    state) unless ``compile=False`` or the file has none. ValueError names the layer or option
    that cannot be loaded."""
    from ..layers.base import skip_initializers
    fn = "load_model"
    path = str(filepath)
    where = f"{fn}: {path!r}"
    config, weights = _read_zip(path, fn)
    h5 = _open_h5(weights, where)  # before building: a missing h5py fails fast
    with h5:
        try:
            with skip_initializers():
                model = _model_from_config(config, where)
        except _Refused as e:
            raise ValueError(str(e)) from None
        except (TypeError, KeyError, AttributeError, IndexError) as e:
            raise ValueError(f"{where}: the architecture cannot be rebuilt: {e}") from None
        if model.built:
            _set_weights(model, _read_h5_weights(h5, model, where), where)
    cc = config.get("compile_config")
    if compile and isinstance(cc, dict) and cc.get("optimizer") is not None:
        try:
            _compile_like_keras(model, cc, where)
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise ValueError(f"{where}: the compile settings cannot be restored: {e}; pass "
                             "compile=False to load the model uncompiled") from None
    return model


def load_keras_weights(model, filepath):
    """Set a built nanonet model's weights from a Keras 3 ``.weights.h5`` file (or the weights
    inside a ``.keras`` file). Layers are matched by class and position (see the module
    docstring), shapes must agree."""
    fn = "load_weights"
    path = str(filepath)
    where = f"{fn}: {path!r}"
    if not model.built:
        raise ValueError(f"{where}: model {model.name!r} is not built; build it (or call it on "
                         "data) before loading Keras weights")
    source = _read_zip(path, fn)[1] if is_keras_file(path) else path
    with _open_h5(source, where) as h5:
        _set_weights(model, _read_h5_weights(h5, model, where), where)
