"""Keras 3 files in: nanonet.load_model("x.keras"), model.load_weights("x.weights.h5").

The fixtures in tests/data/keras/ were written by Keras 3 itself (make_fixtures.py there), with
Keras's predictions for fixed inputs beside them, so these tests need only h5py."""
import json
import os
import zipfile

import numpy as np
import pytest

import nanonet as nn

from .peers import keras_or_skip

h5py = pytest.importorskip("h5py")

DATA = os.path.join(os.path.dirname(__file__), "data", "keras")
FIXTURES = ["mlp", "showcase", "showcase_masked", "functional_merge", "norm", "mha",
            "recurrent", "recurrent_masked", "conv1d", "conv2d", "resizing", "attention"]
TOL = 1e-5  # float32 predictions, Keras vs nanonet


def fixture(name):
    d = np.load(os.path.join(DATA, f"{name}_expected.npz"))
    return os.path.join(DATA, f"{name}.keras"), os.path.join(DATA, f"{name}.weights.h5"), \
        d["x"], d["y"]


@pytest.mark.parametrize("name", FIXTURES)
def test_load_model_predicts_as_keras(name):
    path, _, x, y = fixture(name)
    model = nn.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), y, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", FIXTURES)
def test_load_weights_h5_into_a_nanonet_model(name):
    path, weights, x, y = fixture(name)
    model = nn.load_model(path)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    assert not np.allclose(model.predict(x, verbose=0), y, atol=TOL)
    model.load_weights(weights)
    np.testing.assert_allclose(model.predict(x, verbose=0), y, atol=TOL, rtol=0)


def test_load_weights_into_a_model_built_in_nanonet():
    _, weights, x, y = fixture("showcase_masked")
    model = nn.Sequential([nn.Input((None,), dtype="int32"),
                           nn.layers.Embedding(30, 8, mask_zero=True),
                           nn.layers.LSTM(6, return_sequences=True), nn.layers.LSTM(5),
                           nn.layers.Dense(4, activation="softmax")])
    model.load_weights(weights)
    np.testing.assert_allclose(model.predict(x, verbose=0), y, atol=TOL, rtol=0)


def test_masked_fixture_differs_from_unmasked():
    # the padded rows are where mask_zero matters: the two fixtures must not agree there
    m = nn.load_model(fixture("showcase_masked")[0])
    _, _, x, _ = fixture("showcase_masked")
    assert m.layers[0].mask_zero
    u = nn.load_model(fixture("showcase")[0])
    u.set_weights(m.get_weights())
    diff = np.abs(m.predict(x, verbose=0) - u.predict(x, verbose=0)).max(axis=1)
    assert diff[1] > 1e-4 and diff[0] < 1e-6  # row 1 is post-padded, row 0 has no padding


def test_call_options_of_graph_nodes_are_kept(tmp_path):
    # Keras stores use_causal_mask=True in the Attention and MultiHeadAttention nodes' kwargs;
    # without it the predictions are not Keras's
    _, _, x, y = fixture("attention")

    def drop(c):
        for lc in c["config"]["layers"]:
            for node in lc.get("inbound_nodes") or []:
                node["kwargs"].pop("use_causal_mask", None)
    model = nn.load_model(_edited(tmp_path, "attention", drop))
    assert np.abs(model.predict(x, verbose=0) - y).max() > 1e-3


def test_augmentation_and_rescaling_configs_are_keras():
    model = nn.load_model(fixture("conv2d")[0])
    conf = {type(la).__name__: la.get_config() for la in model.layers}
    assert (conf["Rescaling"]["scale"], conf["Rescaling"]["offset"]) == (0.5, -0.25)
    assert conf["RandomFlip"]["mode"] == "horizontal_and_vertical"
    # Keras writes the factors as given (0.1) or as the ranges it made of them ([-0.1, 0.1])
    assert list(conf["RandomRotation"]["factor"]) == [-0.1, 0.1]
    assert (conf["RandomTranslation"]["height_factor"],
            conf["RandomTranslation"]["width_factor"]) == ((-0.1, 0.1), (-0.2, 0.2))
    assert conf["RandomZoom"]["height_factor"] == (-0.1, 0.1)
    # Keras 3.15 turns RandomContrast(0.2) into [0, 0.2]: contrast drawn from [1, 1.2]
    assert list(conf["RandomContrast"]["factor"]) == [0, 0.2]
    assert conf["RandomRotation"]["fill_mode"] == "reflect"
    # in training they change the images, as in Keras
    x = fixture("conv2d")[2]
    aug = nn.Sequential([la for la in model.layers
                         if type(la).__name__.startswith("Random")])
    assert np.abs(aug(x, training=True) - x).max() > 1e-3
    np.testing.assert_array_equal(aug(x, training=False), x)


def test_bidirectional_wraps_the_keras_sublayers():
    model = nn.load_model(fixture("recurrent")[0])
    bi = [la for la in model.layers if type(la).__name__ == "Bidirectional"]
    assert [type(b.forward_layer).__name__ for b in bi] == ["GRU", "LSTM"]
    assert [b.merge_mode for b in bi] == ["concat", "sum"]
    assert bi[0].backward_layer.go_backwards and not bi[0].forward_layer.go_backwards
    gru = [la for la in model.layers if type(la).__name__ == "GRU"]
    assert [g.reset_after for g in gru] == [True, False]


def test_mismatching_weights_are_refused():
    _, weights, _, _ = fixture("mlp")
    model = nn.Sequential([nn.Input((6,)), nn.layers.Dense(8), nn.layers.Dense(4),
                           nn.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"weight .kernel. must have shape \(8, 4\); "
                                         r".layers/dense_1/vars/0. has shape \(8, 5\)"):
        model.load_weights(weights)
    lstm = nn.Sequential([nn.Input((3, 6)), nn.layers.LSTM(2)])
    with pytest.raises(ValueError, match="no weights for layer"):
        lstm.load_weights(weights)


def test_lambda_layer_is_refused():
    with pytest.raises(ValueError, match="Lambda.*never executes code"):
        nn.load_model(os.path.join(DATA, "lambda.keras"))


def _edited(tmp_path, name, edit):
    """A copy of fixture name with config.json changed by edit(config)."""
    src = fixture(name)[0]
    out = tmp_path / f"{name}.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(info.filename, data)
    return out


def _dense(config):
    return next(lc for lc in config["config"]["layers"] if lc["class_name"] == "Dense")


@pytest.mark.parametrize("edit, message", [
    (lambda c: _dense(c).update(module="my_package.layers", registered_name="Custom>MyDense"),
     "custom object"),
    (lambda c: _dense(c).update(registered_name="Custom>MyDense"), "Custom>MyDense"),
    (lambda c: _dense(c).update(class_name="SpectralDense"), "'SpectralDense' has no nanonet"),
    (lambda c: _dense(c)["config"].update(kernel_constraint={
        "module": "keras.constraints", "class_name": "NonNeg", "config": {}}),
     "constraints are not supported"),
    (lambda c: _dense(c)["config"].update(activation={
        "module": "builtins", "class_name": "function", "config": "evil"}), "Python code"),
    (lambda c: _dense(c)["config"].update(lora_rank=4), "lora_rank=4 is not supported"),
    (lambda c: c.update(class_name="MyModel", module="my_models"), "custom object"),
])
def test_hostile_or_unsupported_configs_are_refused(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        nn.load_model(_edited(tmp_path, "mlp", edit))


def test_keras_ops_on_values_are_refused(tmp_path):
    def edit(c):
        add = next(lc for lc in c["config"]["layers"] if lc["class_name"] == "Add")
        add["module"] = "keras.src.ops.numpy"
    with pytest.raises(ValueError, match="Keras op 'Add'.*no nanonet layer"):
        nn.load_model(_edited(tmp_path, "functional_merge", edit))


KERAS_COMPILE_CONFIG = {  # as Keras 3.15 writes model.compile(Adam(0.003), "categorical_...")
    "optimizer": {"module": "keras.optimizers", "class_name": "Adam", "registered_name": "Adam",
                  "config": {"name": "adam", "learning_rate": 0.003, "weight_decay": None,
                             "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                             "use_ema": False, "ema_momentum": 0.99,
                             "ema_overwrite_frequency": None, "loss_scale_factor": None,
                             "gradient_accumulation_steps": None, "beta_1": 0.9,
                             "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}},
    "loss": "categorical_crossentropy", "loss_weights": None, "metrics": ["accuracy"],
    "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
    "jit_compile": False}


def test_compile_settings_are_restored(tmp_path):
    path = _edited(tmp_path, "mlp", lambda c: c.update(compile_config=KERAS_COMPILE_CONFIG))
    model = nn.load_model(path)
    assert model.compiled and type(model.optimizer).__name__ == "Adam"
    assert model.optimizer.learning_rate == pytest.approx(0.003)
    assert model.compiled_metrics.get_config() == ["accuracy"]
    x = fixture("mlp")[2]
    y = nn.utils.to_categorical([0, 1, 2, 0, 1], 3)
    before = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=5, verbose=0)
    assert model.evaluate(x, y, verbose=0)[0] < before
    assert not nn.load_model(path, compile=False).compiled


def test_unsupported_compile_settings_name_the_way_out(tmp_path):
    bad = {**KERAS_COMPILE_CONFIG, "optimizer": {
        **KERAS_COMPILE_CONFIG["optimizer"],
        "config": {**KERAS_COMPILE_CONFIG["optimizer"]["config"], "use_ema": True}}}
    path = _edited(tmp_path, "mlp", lambda c: c.update(compile_config=bad))
    with pytest.raises(ValueError, match="use_ema=True is not supported.*compile=False"):
        nn.load_model(path)
    assert not nn.load_model(path, compile=False).compiled


def test_stateful_lstm_is_refused(tmp_path):
    def edit(c):
        next(lc for lc in c["config"]["layers"]
             if lc["class_name"] == "LSTM")["config"]["stateful"] = True
    with pytest.raises(ValueError, match="stateful=True is not supported"):
        nn.load_model(_edited(tmp_path, "showcase", edit))


def test_not_a_keras_file(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        nn.load_model(bad)
    with pytest.raises(FileNotFoundError):
        nn.load_model(tmp_path / "missing.keras")
    m = nn.Sequential([nn.Input((6,)), nn.layers.Dense(2)])
    (tmp_path / "bad.weights.h5").write_bytes(b"\x89HDF garbage")
    with pytest.raises(ValueError, match="not a valid HDF5"):
        m.load_weights(tmp_path / "bad.weights.h5")


def test_keras_2_files_are_named(tmp_path):
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.create_group("dense")
    m = nn.Sequential([nn.Input((6,)), nn.layers.Dense(2)])
    with pytest.raises(ValueError, match="Keras 2 .legacy HDF5"):
        m.load_weights(legacy)
    src = fixture("mlp")[0]
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(old, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "keras_version": "2.15.0"}).encode()
            zout.writestr(info.filename, data)
    with pytest.raises(ValueError, match="written by Keras 2.15.0"):
        nn.load_model(old)


def test_missing_h5py_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r'pip install "nanonet\[keras-files\]"'):
        nn.load_model(fixture("mlp")[0])


# -- live: a file Keras writes now -----------------------------------------------------------
def test_live_keras_file(tmp_path):
    keras = keras_or_skip()
    keras.utils.set_random_seed(1)
    i = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, 6, mask_zero=True)(i)
    h = keras.layers.LSTM(5, return_sequences=True)(h)
    g = keras.layers.MultiHeadAttention(2, 3)(h, h)
    h = keras.layers.Concatenate()([h, g])
    h = keras.layers.LayerNormalization()(keras.layers.LSTM(4)(h))
    o = keras.layers.Dense(3, activation="softmax")(keras.layers.BatchNormalization()(h))
    model = keras.Model(i, o)
    model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(3)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in
                       model.get_weights()])
    x = rng.integers(1, 20, size=(4, 6)).astype("int32")
    x[1, 3:] = 0
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    want = np.asarray(model.predict(x, verbose=0))
    ours = nn.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(ours.predict(x, verbose=0), want, atol=TOL, rtol=0)
    assert type(ours.optimizer).__name__ == "RMSprop" and ours.optimizer.learning_rate == \
        pytest.approx(0.01)
    ours.set_weights([np.zeros_like(w) for w in ours.get_weights()])
    ours.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), want, atol=TOL, rtol=0)


def test_live_nested_time_distributed_and_unbuilt_input_models(tmp_path):
    keras = keras_or_skip()
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 4)).astype("float32")
    seq = keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.Dropout(0.2),
                            keras.layers.Flatten(), keras.layers.Dense(2)])
    seq.build((None, 4))                          # no Input: the shape comes from build_config
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh")])
    i = keras.Input((4,))
    nested = keras.Model(i, keras.layers.Dense(2)(inner(i)))
    td = keras.Sequential([keras.Input((4, 1)),
                           keras.layers.TimeDistributed(keras.layers.Dense(3)),
                           keras.layers.Reshape((12,)), keras.layers.Dense(2)])
    for k, model in enumerate((seq, nested, td)):
        x = x.reshape((5,) + model.input_shape[1:])
        model.set_weights([rng.normal(size=w.shape).astype("float32")
                           for w in model.get_weights()])
        path = tmp_path / f"m{k}.keras"
        model.save(path)
        ours = nn.load_model(path)
        np.testing.assert_allclose(ours.predict(x, verbose=0), model.predict(x, verbose=0),
                                   atol=TOL, rtol=0)


# The lookup layers need TensorFlow in Keras 3 (absent here), so no Keras-written fixture: the
# configs below carry the keys Keras 3.15's get_config writes (index_lookup.py, string_lookup.py,
# text_vectorization.py), with the vocabulary given at construction.
_INDEX_LOOKUP = {"invert": False, "max_tokens": None, "num_oov_indices": 1, "mask_token": None,
                 "output_mode": "int", "sparse": False, "pad_to_max_tokens": False,
                 "idf_weights": None, "vocabulary_size": 4, "oov_method": "floormod",
                 "salt": None}


def _keras_layer(cls, **config):
    from nanonet.interchange.keras_files import _build_layer
    return _build_layer({"module": "keras.layers", "class_name": cls, "registered_name": cls,
                         "config": {"name": cls.lower(), "trainable": True, **config}}, "test")


def test_lookup_layers_from_keras_configs():
    s = _keras_layer("StringLookup", **_INDEX_LOOKUP, oov_token="[UNK]", encoding="utf-8",
                     vocabulary=["b", "a", "c"])
    np.testing.assert_array_equal(s(np.array([["a", "z", "c"]])), [[2, 0, 3]])
    i = _keras_layer("IntegerLookup", **_INDEX_LOOKUP, oov_token=-1, vocabulary_dtype="int64",
                     vocabulary=[7, 3, 5])
    np.testing.assert_array_equal(i(np.array([[3, 4, 7]])), [[2, 0, 1]])
    t = _keras_layer("TextVectorization", max_tokens=None,
                     standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None,
                     output_mode="int", output_sequence_length=4, pad_to_max_tokens=False,
                     sparse=False, ragged=False, vocabulary=["the", "cat"], idf_weights=None,
                     encoding="utf-8", vocabulary_size=4)
    np.testing.assert_array_equal(t(np.array(["The cat, the DOG!"])), [[2, 3, 2, 1]])


def test_lookup_layers_without_vocabulary_or_with_hashed_oov_are_refused():
    with pytest.raises(ValueError, match="no vocabulary in its config.*assets"):
        _keras_layer("StringLookup", **_INDEX_LOOKUP, oov_token="[UNK]", encoding="utf-8",
                     vocabulary=None)
    with pytest.raises(ValueError, match="num_oov_indices=2"):
        _keras_layer("StringLookup", **{**_INDEX_LOOKUP, "num_oov_indices": 2},
                     oov_token="[UNK]", encoding="utf-8", vocabulary=["a"])


def test_live_wrappers_recurrent_and_conv_layers(tmp_path):
    keras = keras_or_skip()
    keras.utils.set_random_seed(3)
    L = keras.layers
    i = keras.Input((None,), dtype="int32")
    h = L.Embedding(20, 4, mask_zero=True)(i)
    h = L.TimeDistributed(L.Dense(3))(h)
    h = L.Bidirectional(L.SimpleRNN(2, return_sequences=True),
                        backward_layer=L.SimpleRNN(2, return_sequences=True, go_backwards=True))(h)
    h = L.Bidirectional(L.GRU(3, return_sequences=True, reset_after=False), merge_mode="ave")(h)
    h = L.Conv1D(2, 2, padding="causal")(h)
    o = L.Dense(2)(L.GlobalAveragePooling1D()(h))
    model = keras.Model(i, o)
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    x = rng.integers(1, 20, size=(4, 6)).astype("int32")
    x[1, 3:] = 0
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    want = np.asarray(model.predict(x, verbose=0))
    ours = nn.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(ours.predict(x, verbose=0), want, atol=TOL, rtol=0)
    ours.set_weights([np.zeros_like(w) for w in ours.get_weights()])
    ours.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), want, atol=TOL, rtol=0)
