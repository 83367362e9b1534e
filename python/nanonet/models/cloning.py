"""``clone_model`` and JSON architectures (``model.to_json`` / ``model_from_json``), Keras 3's
names and arguments.

A clone has the same architecture and configuration and new weights (initialised afresh, as
Keras does); ``clone_function(layer)`` chooses how each layer is copied. JSON holds
configuration only (plain data, no code): loading looks classes up by name in nanonet's layer
registry and never executes anything from the text.
"""
from __future__ import annotations

import json
from typing import Any

from ..layers import deserialize as _deserialize_layer
from ..layers.base import Layer
from ..layers.core import InputLayer
from .functional import Model
from .sequential import Sequential

__all__ = ["clone_model", "model_from_json", "model_to_json"]

_MODEL_CLASSES = ("Sequential", "Model", "Functional")


def _fresh_copy(layer):
    """The default clone_function: a new layer from the layer's config (new weights)."""
    return type(layer).from_config(layer.get_config())


def clone_model(model: Any, input_tensors: Any = None, clone_function: Any = None,
                call_function: Any = None, recursive: Any = False) -> Any:
    """A new model with ``model``'s architecture and configuration and new weights.

    Args:
        model: a Sequential or graph Model.
        input_tensors: for a graph model, the ``nanonet.Input`` tensors to build the clone on
            (one, or a list in ``model.inputs`` order); new ones by default.
        clone_function: ``layer -> new layer``, applied to every layer (default: a new layer
            from ``layer.get_config()``). Return the layer itself to share it with the original.
        call_function: for a graph model, ``(layer, inputs) -> outputs``, how each cloned
            layer is called on its (cloned) inputs (default: ``layer(inputs)``).
        recursive: clone nested models layer by layer with the same clone_function (otherwise
            clone_function receives the nested model).

    Returns the new (uncompiled) model; weights are not copied (use
    ``clone.set_weights(model.get_weights())`` for that).
    """
    fn = "clone_model"
    if not isinstance(model, Model):
        raise TypeError(f"{fn}: model must be a nanonet Sequential or Model; got "
                        f"{type(model).__name__}")
    for name, f in (("clone_function", clone_function), ("call_function", call_function)):
        if f is not None and not callable(f):
            raise TypeError(f"{fn}: {name} must be callable; got {f!r}")
    clone_function = clone_function or _fresh_copy

    def clone_layer(layer):
        if recursive and isinstance(layer, Model):
            return clone_model(layer, clone_function=clone_function, recursive=True)
        new = clone_function(layer)
        if not isinstance(new, Layer):
            raise TypeError(f"{fn}: clone_function must return a nanonet layer; got "
                            f"{type(new).__name__} for layer {layer.name!r}")
        return new

    if isinstance(model, Sequential):
        if input_tensors is not None or call_function is not None:
            raise ValueError(f"{fn}: input_tensors and call_function apply to graph models; "
                             f"{model.name!r} is a Sequential")
        layers = [clone_layer(layer) for layer in model.layers]
        clone = Sequential(name=model.name, trainable=model.trainable)
        if model._input_layer is not None:
            clone.add(_fresh_copy(model._input_layer))
        for layer in layers:
            clone.add(layer)
        if not clone.built and model.built and model._batch_input_shape is not None:
            clone.build(model._batch_input_shape)
        return clone
    return _clone_graph(model, input_tensors, clone_layer, call_function, fn)


def _clone_graph(model, input_tensors, clone_layer, call_function, fn):
    new_tensor = {}  # id(original tensor) -> its clone
    if input_tensors is None:
        inputs = [_fresh_copy(t.layer).output for t in model.inputs]
    else:
        inputs = list(input_tensors) if isinstance(input_tensors, (list, tuple)) \
            else [input_tensors]
        if len(inputs) != len(model.inputs):
            raise ValueError(f"{fn}: input_tensors must hold {len(model.inputs)} tensors (one "
                             f"per model input); got {len(inputs)}")
    for old, new in zip(model.inputs, inputs):
        new_tensor[id(old)] = new
    new_layer = {}  # id(original layer) -> its clone (shared layers stay shared)
    for node in model._nodes:
        layer = node.layer
        if node.is_input or isinstance(layer, InputLayer):
            continue
        if id(layer) not in new_layer:
            new_layer[id(layer)] = clone_layer(layer)
        clone = new_layer[id(layer)]
        tensors = [new_tensor[id(t)] for t in node.inputs]
        if not node.single_input and type(layer).__name__ == "LSTM" and len(tensors) == 3:
            out = clone(tensors[0], initial_state=tensors[1:])  # as Model.from_config calls it
        else:
            args = tensors[0] if node.single_input else tensors
            out = call_function(clone, args) if call_function is not None else clone(args)
        outs = out if isinstance(out, (list, tuple)) else [out]
        for old, new in zip(node.outputs, outs):
            new_tensor[id(old)] = new
    outputs = [new_tensor[id(t)] for t in model.outputs]
    if model._input_kind == "dict":
        inputs = dict(zip(model.input_names, inputs))
    elif model._input_kind == "single" and len(inputs) == 1:
        inputs = inputs[0]
    if model._output_kind == "dict":
        outputs = dict(zip(model.output_names, outputs))
    elif model._output_kind == "single" and len(outputs) == 1:
        outputs = outputs[0]
    return Model(inputs, outputs, name=model.name, trainable=model.trainable)


def model_to_json(model: Any, **kwargs: Any) -> Any:
    """The architecture of ``model`` as a JSON string (``model.to_json``); kwargs go to
    ``json.dumps``."""
    from .. import __version__
    shape = model.input_shape if model.built else None
    spec = {"class_name": type(model).__name__, "config": model.get_config(),
            "build_config": {"input_shape": None if shape is None else list(shape)},
            "nanonet_version": __version__}
    try:
        return json.dumps(spec, default=_json_default, allow_nan=False, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"to_json: the configuration of model {model.name!r} is not "
                         f"JSON-serialisable ({e})") from None


def _json_default(obj):
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def model_from_json(json_string: Any, custom_objects: Any = None) -> Any:
    """A new model (new weights, uncompiled) from ``model.to_json()``'s string.

    Layer classes are found by name in nanonet's registry (every Layer subclass registers
    itself when its class is defined, so ``custom_objects`` is not needed and is ignored).
    Raises ValueError for text that is not a model architecture."""
    fn = "model_from_json"
    try:
        spec = json.loads(json_string)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{fn}: json_string must be a JSON string from model.to_json(); "
                         f"{e}") from None
    if not isinstance(spec, dict) or spec.get("class_name") not in _MODEL_CLASSES or \
            not isinstance(spec.get("config"), dict):
        got = spec.get("class_name") if isinstance(spec, dict) else type(spec).__name__
        raise ValueError(f"{fn}: expected a model architecture (class_name one of "
                         f"{_MODEL_CLASSES}); got {got!r}")
    config = spec["config"]
    if spec["class_name"] != "Sequential":
        return Model.from_config(config)
    if not isinstance(config.get("layers", []), list):
        raise ValueError(f"{fn}: the model's 'layers' must be a list")
    model = Sequential(name=config.get("name"), trainable=config.get("trainable", True))
    for k, lc in enumerate(config.get("layers", [])):
        if not isinstance(lc, dict) or not isinstance(lc.get("class_name"), str):
            raise ValueError(f"{fn}: layers[{k}] must be an object with a 'class_name'")
        model.add(_deserialize_layer(lc))
    shape = (spec.get("build_config") or {}).get("input_shape")
    if not model.built and shape is not None:
        model.build(tuple(shape))
    return model
