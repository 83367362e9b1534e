"""Architectures as data: get_config / from_config round trips (through JSON) for every layer
class nanonet registers, model.to_json / nanonet.models.model_from_json and
nanonet.models.clone_model (same config, new weights; Sequential and graph models, shared and
nested layers, clone_function and call_function as Keras's)."""
import json

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L
from nanonet.layers.base import _LAYER_CLASSES

MODEL_CLASSES = {"Model", "Functional", "Sequential"}

# class name -> (a configured instance, the input shapes without batch axis, the input dtype).
# Non-default arguments wherever a layer has them, so that the config carries them.
EXAMPLES = {
    "Dense": (lambda: L.Dense(3, activation="tanh", use_bias=False,
                              kernel_regularizer="l2"), [(4,)], "float32"),
    "Activation": (lambda: L.Activation("sigmoid"), [(4,)], "float32"),
    "Dropout": (lambda: L.Dropout(0.3, seed=2), [(4,)], "float32"),
    "Flatten": (lambda: L.Flatten(), [(2, 3)], "float32"),
    "InputLayer": (None, [(4,)], "float32"),  # every example model starts with one
    "Embedding": (lambda: L.Embedding(10, 3, mask_zero=True), [(5,)], "int32"),
    "LSTM": (lambda: L.LSTM(3, return_sequences=True, go_backwards=True,
                            recurrent_dropout=0.1, unit_forget_bias=False), [(5, 2)],
             "float32"),
    "Masking": (lambda: L.Masking(mask_value=0.5), [(5, 2)], "float32"),
    "BatchNormalization": (lambda: L.BatchNormalization(momentum=0.8, epsilon=1e-2),
                           [(4,)], "float32"),
    "LayerNormalization": (lambda: L.LayerNormalization(epsilon=1e-4), [(4,)], "float32"),
    "GlobalAveragePooling1D": (lambda: L.GlobalAveragePooling1D(), [(5, 2)], "float32"),
    "GlobalMaxPooling1D": (lambda: L.GlobalMaxPooling1D(), [(5, 2)], "float32"),
    "Reshape": (lambda: L.Reshape((2, 2)), [(4,)], "float32"),
    "TimeDistributed": (lambda: L.TimeDistributed(L.Dense(2, activation="relu")), [(5, 3)],
                        "float32"),
    "Add": (lambda: L.Add(), [(4,), (4,)], "float32"),
    "Subtract": (lambda: L.Subtract(), [(4,), (4,)], "float32"),
    "Multiply": (lambda: L.Multiply(), [(4,), (4,)], "float32"),
    "Average": (lambda: L.Average(), [(4,), (4,)], "float32"),
    "Maximum": (lambda: L.Maximum(), [(4,), (4,)], "float32"),
    "Minimum": (lambda: L.Minimum(), [(4,), (4,)], "float32"),
    "Concatenate": (lambda: L.Concatenate(axis=1), [(4,), (3,)], "float32"),
    "Dot": (lambda: L.Dot(axes=1, normalize=True), [(4,), (4,)], "float32"),
    "MultiHeadAttention": (lambda: L.MultiHeadAttention(2, 3, value_dim=2), [(5, 4), (6, 4)],
                           "float32"),
    "Attention": (lambda: L.Attention(use_scale=True, score_mode="concat", dropout=0.1, seed=3),
                  [(5, 4), (6, 4)], "float32"),
    "AdditiveAttention": (lambda: L.AdditiveAttention(use_scale=False), [(5, 4), (6, 4)],
                          "float32"),
    "PositionEmbedding": (lambda: L.PositionEmbedding(7, initializer="he_normal"), [(5, 3)],
                          "float32"),
    "TokenAndPositionEmbedding": (lambda: L.TokenAndPositionEmbedding(10, 7, 3, mask_zero=True),
                                  [(5,)], "int32"),
    "Conv1D": (lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
               [(9, 2)], "float32"),
    "Conv2D": (lambda: L.Conv2D(4, (3, 2), strides=2, padding="same", groups=2,
                                use_bias=False), [(7, 6, 2)], "float32"),
    "DepthwiseConv2D": (lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                        [(5, 5, 2)], "float32"),
    "SeparableConv2D": (lambda: L.SeparableConv2D(3, 2, depth_multiplier=2,
                                                  activation="tanh"), [(5, 5, 2)], "float32"),
    "MaxPooling1D": (lambda: L.MaxPooling1D(3, strides=2, padding="same"), [(7, 2)],
                     "float32"),
    "MaxPooling2D": (lambda: L.MaxPooling2D((2, 3), strides=1), [(5, 6, 2)], "float32"),
    "AveragePooling1D": (lambda: L.AveragePooling1D(2, padding="same"), [(7, 2)], "float32"),
    "AveragePooling2D": (lambda: L.AveragePooling2D(3, strides=2, padding="same"), [(5, 6, 2)],
                         "float32"),
    "GlobalAveragePooling2D": (lambda: L.GlobalAveragePooling2D(keepdims=True), [(4, 5, 2)],
                               "float32"),
    "GlobalMaxPooling2D": (lambda: L.GlobalMaxPooling2D(keepdims=True), [(4, 5, 2)],
                           "float32"),
    "ZeroPadding2D": (lambda: L.ZeroPadding2D(((1, 2), (0, 3))), [(4, 5, 2)], "float32"),
    "Cropping2D": (lambda: L.Cropping2D(((1, 0), (2, 1))), [(4, 5, 2)], "float32"),
    "UpSampling2D": (lambda: L.UpSampling2D((2, 3)), [(3, 2, 2)], "float32"),
    "Rescaling": (lambda: L.Rescaling(1 / 255, offset=-0.5), [(4, 4, 3)], "float32"),
    "Resizing": (lambda: L.Resizing(3, 5, interpolation="nearest", crop_to_aspect_ratio=True),
                 [(6, 4, 2)], "float32"),
    "RandomFlip": (lambda: L.RandomFlip("horizontal", seed=1), [(4, 4, 2)], "float32"),
    "RandomRotation": (lambda: L.RandomRotation(0.2, fill_mode="constant", fill_value=0.5,
                                                seed=1), [(4, 4, 2)], "float32"),
    "RandomZoom": (lambda: L.RandomZoom((-0.2, 0.1), width_factor=0.3, interpolation="nearest",
                                        seed=1), [(4, 4, 2)], "float32"),
    "RandomTranslation": (lambda: L.RandomTranslation(0.1, (-0.2, 0.3), fill_mode="wrap",
                                                      seed=1), [(4, 4, 2)], "float32"),
    "RandomContrast": (lambda: L.RandomContrast((0.2, 0.5), value_range=(0, 1), seed=1),
                       [(4, 4, 2)], "float32"),
    "RandomCrop": (lambda: L.RandomCrop(3, 2, seed=1), [(4, 4, 2)], "float32"),
    "GRU": (lambda: L.GRU(3, return_sequences=True, reset_after=False, go_backwards=True,
                          activation="relu"), [(5, 2)], "float32"),
    "SimpleRNN": (lambda: L.SimpleRNN(3, activation="relu", dropout=0.2, seed=2), [(5, 2)],
                  "float32"),
    "Bidirectional": (lambda: L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum"),
                      [(5, 2)], "float32"),
    "IntegerLookup": (lambda: L.IntegerLookup(vocabulary=[2, 5, 7], num_oov_indices=2),
                      [(4,)], "int32"),
    "StringLookup": (lambda: L.StringLookup(vocabulary=["a", "b", "c"], mask_token=""),
                     [(4,)], "string"),
    "TextVectorization": (lambda: L.TextVectorization(vocabulary=["a", "b", "c"], ngrams=2,
                                                      output_sequence_length=6), [(1,)],
                          "string"),
}


def _public_layer_classes():
    """nanonet's own layer classes (tests define and register others)."""
    return sorted(n for n, cls in _LAYER_CLASSES.items()
                  if not n.startswith("_") and n not in MODEL_CLASSES and
                  cls.__module__.startswith("nanonet."))


def test_every_registered_layer_has_an_example():
    missing = [n for n in _public_layer_classes() if n not in EXAMPLES]
    assert not missing, f"add a configured example of {missing} to EXAMPLES"


def _inputs(shapes, dtype, rng):
    if dtype == "string":  # words for the text layers (StringLookup, TextVectorization)
        return [rng.choice(np.array(["a", "b c", "d"], object), (3,) + s) for s in shapes]
    if dtype.startswith("int"):
        return [rng.integers(0, 10, (3,) + s).astype(dtype) for s in shapes]
    return [rng.standard_normal((3,) + s).astype(dtype) for s in shapes]


def _example_model(name):
    make, shapes, dtype = EXAMPLES[name]
    nn.set_seed(1)
    ins = [nn.Input(s, dtype=dtype) for s in shapes]
    if make is None:
        out = L.Dense(2)(ins[0])
    else:
        layer = make()
        out = layer(ins[0]) if len(ins) == 1 else layer(*ins) if name == "MultiHeadAttention" \
            else layer(ins)
    return nn.Model(ins if len(ins) > 1 else ins[0], out), shapes, dtype


def _randomise(model, rng):
    """Every weight random (biases and normalisation statistics included)."""
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_layer_config_round_trip(name):
    model, shapes, dtype = _example_model(name)
    rng = np.random.default_rng(0)
    _randomise(model, rng)
    for layer in model.layers:
        config = json.loads(json.dumps(layer.get_config()))
        again = type(layer).from_config(config)
        assert again.get_config() == layer.get_config(), type(layer).__name__
    rebuilt = nn.Model.from_config(json.loads(json.dumps(model.get_config())))
    assert [type(a).__name__ for a in rebuilt.layers] == [type(b).__name__
                                                          for b in model.layers]
    rebuilt.set_weights(model.get_weights())
    xs = _inputs(shapes, dtype, rng)
    x = xs if len(xs) > 1 else xs[0]
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))


def _graph():
    """Two inputs (a dict), a shared Dense, a nested Sequential, two outputs."""
    nn.set_seed(4)
    a, b = nn.Input((4,), name="a"), nn.Input((4,), name="b")
    shared = L.Dense(5, activation="relu", name="shared")
    inner = nn.Sequential([L.Input((5,)), L.Dense(3, name="inner_dense")], name="inner")
    h = L.Add(name="sum")([shared(a), shared(b)])
    return nn.Model({"a": a, "b": b}, {"y": inner(h), "z": L.Dense(1, name="z")(h)},
                    name="graph")


def _graph_data():
    rng = np.random.default_rng(2)
    return {"a": rng.standard_normal((6, 4)).astype(np.float32),
            "b": rng.standard_normal((6, 4)).astype(np.float32)}


def _sequential():
    nn.set_seed(5)
    return nn.Sequential([L.Input((4,)), L.Dense(6, activation="relu"), L.Dropout(0.1),
                          L.Dense(2, activation="softmax")], name="seq")


@pytest.mark.parametrize("make", [_sequential, _graph])
def test_to_json_and_model_from_json(make):
    model = make()
    text = model.to_json()
    spec = json.loads(text)  # plain JSON
    assert spec["class_name"] == type(model).__name__
    again = nn.models.model_from_json(text)
    assert type(again) is type(model) and again.get_config() == model.get_config()
    assert json.loads(again.to_json())["config"] == spec["config"]
    again.set_weights(model.get_weights())
    x = _graph_data() if make is _graph else np.ones((3, 4), np.float32)
    want, got = model.predict(x, verbose=0), again.predict(x, verbose=0)
    for k in (want if isinstance(want, dict) else {"": None}):
        np.testing.assert_array_equal(got[k] if k else got, want[k] if k else want)
    assert model.to_json(indent=2).count("\n") > 3  # kwargs go to json.dumps


def test_model_from_json_refuses_what_is_not_a_model():
    with pytest.raises(ValueError, match="model_from_json: json_string must be a JSON string"):
        nn.models.model_from_json("{not json")
    with pytest.raises(ValueError, match=r"model_from_json: expected a model architecture .* "
                                         r"got 'Dense'"):
        nn.models.model_from_json(json.dumps({"class_name": "Dense", "config": {}}))
    bad = json.loads(_sequential().to_json())
    bad["config"]["layers"][1]["class_name"] = "os.system"
    with pytest.raises(ValueError, match="unknown layer class 'os.system'"):
        nn.models.model_from_json(json.dumps(bad))


@pytest.mark.parametrize("make", [_sequential, _graph])
def test_clone_model_same_config_new_weights(make):
    model = make()
    clone = nn.models.clone_model(model)
    assert type(clone) is type(model) and clone.get_config() == model.get_config()
    assert len(clone.weights) == len(model.weights)
    assert all(c is not w for c, w in zip(clone.weights, model.weights))
    assert any(not np.array_equal(c, w) for c, w in zip(clone.get_weights(),
                                                       model.get_weights()))
    clone.set_weights(model.get_weights())
    x = _graph_data() if make is _graph else np.ones((3, 4), np.float32)
    want, got = model.predict(x, verbose=0), clone.predict(x, verbose=0)
    for k in (want if isinstance(want, dict) else {"": None}):
        np.testing.assert_array_equal(got[k] if k else got, want[k] if k else want)


def test_clone_keeps_shared_layers_shared_and_nested_models():
    model = _graph()
    clone = nn.models.clone_model(model)
    shared = clone.get_layer("shared")
    assert len(shared.weights) == 2 and len(clone.weights) == len(model.weights)
    assert isinstance(clone.get_layer("inner"), nn.Sequential)
    deep = nn.models.clone_model(model, recursive=True,
                                 clone_function=lambda layer: type(layer).from_config(
                                     {**layer.get_config(), "name": "c_" + layer.name}))
    names = [layer.name for layer in deep.layers]
    assert "c_shared" in names and "c_inner" not in names  # the nested model: layer by layer
    assert [layer.name for layer in deep.get_layer("inner").layers] == ["c_inner_dense"]


def test_clone_function_and_call_function():
    model = _sequential()
    calls = []

    def more_units(layer):
        calls.append(layer.name)
        config = layer.get_config()
        if isinstance(layer, L.Dense) and config["units"] == 6:
            config["units"] = 7
        return type(layer).from_config(config)

    clone = nn.models.clone_model(model, clone_function=more_units)
    assert calls == [layer.name for layer in model.layers]
    assert clone.layers[0].kernel.shape == (4, 7)
    graph = _graph()
    seen = []
    clone = nn.models.clone_model(graph, call_function=lambda layer, x: seen.append(
        layer.name) or layer(x))
    assert seen.count("shared") == 2 and "sum" in seen
    a = nn.Input((4,), name="mine")
    single = nn.Model(a, L.Dense(2)(a))
    new_in = nn.Input((4,), name="given")
    clone = nn.models.clone_model(single, input_tensors=new_in)
    assert clone.inputs[0] is new_in
    with pytest.raises(ValueError, match=r"clone_model: input_tensors must hold 1 tensors"):
        nn.models.clone_model(single, input_tensors=[new_in, new_in])
    with pytest.raises(TypeError, match=r"clone_model: clone_function must return a nanonet "
                                        r"layer; got int"):
        nn.models.clone_model(model, clone_function=lambda layer: 3)
    with pytest.raises(TypeError, match=r"clone_model: model must be a nanonet"):
        nn.models.clone_model(L.Dense(2))
