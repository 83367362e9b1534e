"""Model files: save / load_model round trips for every layer and optimizer, save_weights /
load_weights, atomic saving (errors and SIGKILL mid-save), and corrupt, truncated and hostile
archives (each a ValueError naming the problem; nothing from the file is executed)."""
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L
from nanonet import optimizers as O
from nanonet import saving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The folder holding the nanonet under test (the source tree or site-packages), for subprocesses.
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(nn.__file__)))


# -- models, one per layer class ----------------------------------------------------------------
def _float_x(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _ids(rng, shape, vocab):
    x = rng.integers(1, vocab, size=shape).astype(np.int32)
    x[:, -2:] = 0  # padding at the end (masked with mask_zero=True)
    return x


def _case_dense(rng):
    return [L.Input((5,)), L.Dense(4, activation="tanh", kernel_regularizer="l2")], \
        _float_x(rng, (6, 5))


def _case_activation(rng):
    return [L.Input((5,)), L.Dense(4), L.Activation("relu"), L.Dense(3, activation="softmax")], \
        _float_x(rng, (6, 5))


def _case_dropout(rng):
    return [L.Input((5,)), L.Dense(4), L.Dropout(0.5, seed=1), L.Dense(2)], _float_x(rng, (6, 5))


def _case_flatten(rng):
    return [L.Input((3, 4)), L.Flatten(), L.Dense(2)], _float_x(rng, (6, 3, 4))


def _case_batchnorm(rng):
    return [L.Input((5,)), L.Dense(4), L.BatchNormalization(), L.Dense(2)], _float_x(rng, (6, 5))


def _case_layernorm(rng):
    return [L.Input((6,)), L.LayerNormalization(), L.Dense(2)], _float_x(rng, (6, 6))


def _case_gap(rng):
    return [L.Input((7, 3)), L.Dense(4), L.GlobalAveragePooling1D(), L.Dense(2)], \
        _float_x(rng, (6, 7, 3))


def _case_gmp(rng):
    return [L.Input((7, 3)), L.Dense(4), L.GlobalMaxPooling1D(), L.Dense(2)], \
        _float_x(rng, (6, 7, 3))


def _case_reshape(rng):
    return [L.Input((6,)), L.Reshape((2, 3)), L.Dense(2)], _float_x(rng, (6, 6))


def _case_time_distributed(rng):
    return [L.Input((5, 3)), L.TimeDistributed(L.Dense(4, activation="relu"))], \
        _float_x(rng, (6, 5, 3))


def _case_embedding(rng):
    return [L.Input((7,), dtype="int32"), L.Embedding(11, 4, mask_zero=True), L.LSTM(3),
            L.Dense(2)], _ids(rng, (6, 7), 11)


def _case_lstm(rng):
    return [L.Input((7, 3)), L.LSTM(5, return_sequences=True, dropout=0.2,
                                     recurrent_dropout=0.2, seed=3),
            L.LSTM(4, go_backwards=True), L.Dense(2)], _float_x(rng, (6, 7, 3))


def _case_gru(rng):
    return [L.Input((7, 3)), L.GRU(5, return_sequences=True, dropout=0.2, recurrent_dropout=0.2,
                                   seed=3),
            L.GRU(4, go_backwards=True, reset_after=False), L.Dense(2)], _float_x(rng, (6, 7, 3))


def _case_simple_rnn(rng):
    return [L.Input((7, 3)), L.SimpleRNN(5, return_sequences=True, activation="relu",
                                         dropout=0.2, seed=3),
            L.SimpleRNN(4), L.Dense(2)], _float_x(rng, (6, 7, 3))


def _case_bidirectional(rng):
    return [L.Input((7,), dtype="int32"), L.Embedding(11, 4, mask_zero=True),
            L.Bidirectional(L.GRU(5, return_sequences=True, recurrent_dropout=0.2, seed=2)),
            L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="ave"),
            L.Bidirectional(L.LSTM(3), merge_mode="sum",
                            backward_layer=L.LSTM(3, go_backwards=True, name="back")),
            L.Dense(2)], _ids(rng, (6, 7), 11)


def _case_masking(rng):
    x = _float_x(rng, (6, 7, 3))
    x[:, -2:] = 0.0
    return [L.Input((7, 3)), L.Masking(0.0), L.LSTM(4), L.Dense(2)], x


def _graph(build):
    """A graph-model case: build(rng) -> (inputs, outputs, x)."""
    def case(rng):
        inputs, outputs, x = build(rng)
        return nn.Model(inputs, outputs), x
    return case


def _merge_case(cls, **kwargs):
    def build(rng):
        inp = L.Input((5, 3))
        a = L.Dense(4)(inp)
        b = L.Dense(4, activation="tanh")(inp)
        merged = cls(**kwargs)([a, b])
        return inp, L.Dense(2)(L.Flatten()(merged)), _float_x(rng, (6, 5, 3))
    return _graph(build)


def _mha_graph(rng):
    ids = L.Input((7,), dtype="int32")
    emb = L.Embedding(11, 6, mask_zero=True)(ids)  # its mask becomes the key mask
    h = L.MultiHeadAttention(2, 3, dropout=0.2, seed=4, name="self_att")(emb, emb,
                                                                    use_causal_mask=True)
    ctx = L.Dense(4)(emb)
    h = L.MultiHeadAttention(3, 2, value_dim=4, output_shape=5, name="cross_att")(
        h, ctx, key=L.Dense(2)(ctx))
    return ids, L.Dense(2)(L.GlobalAveragePooling1D()(h)), _ids(rng, (6, 7), 11)


_WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]


def _texts(rng, n):
    return np.array([" ".join(rng.choice(_WORDS + ["unseen"], size=rng.integers(1, 6)))
                     for _ in range(n)], dtype=object)


def _case_text_vectorization(rng):
    tv = L.TextVectorization(max_tokens=9, output_sequence_length=5)
    tv.adapt(_texts(rng, 20))
    return [L.Input((1,), dtype="string"), tv, L.Embedding(9, 3), L.GlobalAveragePooling1D(),
            L.Dense(2)], _texts(rng, 6).reshape(6, 1)


def _case_string_lookup(rng):
    return [L.Input((3,), dtype="string"), L.StringLookup(vocabulary=_WORDS, mask_token=""),
            L.Embedding(10, 2), L.Flatten(), L.Dense(2)], \
        rng.choice(_WORDS + ["", "unseen"], size=(6, 3)).astype(object)


def _case_integer_lookup(rng):
    return [L.Input((4,), dtype="int64"),
            L.IntegerLookup(vocabulary=[3, 17, 42, 99], output_mode="multi_hot"), L.Dense(2)], \
        rng.choice([3, 17, 42, 99, 5], size=(6, 4))


def _luong_graph(rng):
    ids = L.Input((7,), dtype="int32")
    x = L.TokenAndPositionEmbedding(11, 9, 6, mask_zero=True)(ids)  # the mask reaches both
    h = L.Attention(use_scale=True, score_mode="concat", dropout=0.2, seed=4)(
        [x, x], use_causal_mask=True)
    h = L.AdditiveAttention()([h, x, L.Dense(6)(x)])
    h = L.Add()([h, L.PositionEmbedding(9)(h, start_index=1)])
    return ids, L.Dense(2)(L.GlobalAveragePooling1D()(h)), _ids(rng, (6, 7), 11)


CASES = {
    "TextVectorization": _case_text_vectorization, "StringLookup": _case_string_lookup,
    "IntegerLookup": _case_integer_lookup,
    "MultiHeadAttention": _graph(_mha_graph),
    "Attention": _graph(_luong_graph), "AdditiveAttention": _graph(_luong_graph),
    "PositionEmbedding": _graph(_luong_graph), "TokenAndPositionEmbedding": _graph(_luong_graph),
    "Add": _merge_case(L.Add), "Subtract": _merge_case(L.Subtract),
    "Multiply": _merge_case(L.Multiply), "Average": _merge_case(L.Average),
    "Maximum": _merge_case(L.Maximum), "Minimum": _merge_case(L.Minimum),
    "Concatenate": _merge_case(L.Concatenate, axis=1), "Dot": _merge_case(L.Dot, axes=2),
    "Dense": _case_dense, "Activation": _case_activation, "Dropout": _case_dropout,
    "Flatten": _case_flatten, "BatchNormalization": _case_batchnorm,
    "LayerNormalization": _case_layernorm, "GlobalAveragePooling1D": _case_gap,
    "GlobalMaxPooling1D": _case_gmp, "Reshape": _case_reshape,
    "TimeDistributed": _case_time_distributed, "Embedding": _case_embedding, "LSTM": _case_lstm,
    "Masking": _case_masking,
    "GRU": _case_gru, "SimpleRNN": _case_simple_rnn, "Bidirectional": _case_bidirectional,
}


def _image_case(*middle, shape=(6, 6, 2)):
    def case(rng):
        return [L.Input(shape), *(m() for m in middle), L.Flatten(), L.Dense(2)], \
            _float_x(rng, (6,) + shape)
    return case


CASES.update({
    "Conv2D": _image_case(lambda: L.Conv2D(3, 3, padding="same", activation="relu")),
    "Conv1D": _image_case(lambda: L.Conv1D(3, 3, padding="causal", dilation_rate=2),
                          shape=(7, 3)),
    "DepthwiseConv2D": _image_case(lambda: L.DepthwiseConv2D(3, depth_multiplier=2)),
    "SeparableConv2D": _image_case(lambda: L.SeparableConv2D(3, 3, activation="tanh")),
    "MaxPooling2D": _image_case(lambda: L.MaxPooling2D(padding="same")),
    "AveragePooling2D": _image_case(lambda: L.AveragePooling2D(3, strides=1)),
    "MaxPooling1D": _image_case(lambda: L.MaxPooling1D(), shape=(7, 3)),
    "AveragePooling1D": _image_case(lambda: L.AveragePooling1D(padding="same"), shape=(7, 3)),
    "GlobalAveragePooling2D": _image_case(lambda: L.GlobalAveragePooling2D(keepdims=True)),
    "GlobalMaxPooling2D": _image_case(lambda: L.GlobalMaxPooling2D()),
    "ZeroPadding2D": _image_case(lambda: L.ZeroPadding2D(((1, 0), (2, 1)))),
    "Cropping2D": _image_case(lambda: L.Cropping2D(1)),
    "UpSampling2D": _image_case(lambda: L.UpSampling2D()),
    "Rescaling": _image_case(lambda: L.Rescaling(0.5, offset=1.0)),
    "Resizing": _image_case(lambda: L.Resizing(4, 5)),
    "RandomFlip": _image_case(lambda: L.RandomFlip(seed=2)),
    "RandomRotation": _image_case(lambda: L.RandomRotation(0.1, seed=2)),
    "RandomZoom": _image_case(lambda: L.RandomZoom(0.2, fill_mode="constant", seed=2)),
    "RandomTranslation": _image_case(lambda: L.RandomTranslation(0.1, 0.2, seed=2)),
    "RandomContrast": _image_case(lambda: L.RandomContrast(0.3, seed=2)),
    "RandomCrop": _image_case(lambda: L.RandomCrop(4, 5, seed=2)),
})
AVAILABLE = {name: f for name, f in CASES.items() if hasattr(L, name)}


def _layer_classes():
    out = set()
    for name in L.__all__:
        obj = getattr(L, name)
        if isinstance(obj, type) and issubclass(obj, L.Layer) and obj not in (L.Layer,
                                                                               L.InputLayer):
            out.add(obj.__name__)
    return out


def test_every_layer_class_has_a_round_trip_case():
    missing = _layer_classes() - set(CASES)
    assert not missing, (f"add a save/load round-trip case to tests/test_saving.py CASES for "
                         f"{sorted(missing)}")


def _randomize(model, rng):
    """Random values for every weight, biases and statistics included (variances positive)."""
    for layer in model.layers:
        values = []
        for w, name in zip(layer.weights, layer.weight_names):
            if "variance" in name:
                values.append(rng.uniform(0.5, 1.5, w.shape))
            else:
                values.append(0.5 * rng.standard_normal(w.shape))
        layer.set_weights([v.astype(w.dtype) for v, w in zip(values, layer.weights)])


def _canonical(obj):
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else
                                 str(o)))


def _train_steps(model, x, y, steps=2, seed=5):
    for _ in range(steps):
        nn.set_seed(seed)  # unseeded dropout draws from nanonet's Generator outside fit
        model.train_on_batch(x, y)


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("name", sorted(AVAILABLE))
def test_round_trip_every_layer(name, tmp_path):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    nn.set_seed(0)
    stack, x = AVAILABLE[name](rng)
    model = nn.Sequential(stack) if isinstance(stack, list) else stack
    _randomize(model, rng)
    model.compile(optimizer=O.Adam(0.01), loss="mse", metrics=["mae"])
    y = rng.standard_normal((x.shape[0],) + tuple(model.output_shape[1:])).astype(np.float32)
    _train_steps(model, x, y)
    path = tmp_path / "model.nnet"
    model.save(path)
    loaded = nn.load_model(path)

    assert type(loaded) is type(model) and loaded.name == model.name
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    assert _canonical(loaded.get_config()) == _canonical(model.get_config())
    _assert_same_weights(model, loaded)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded.optimizer.iterations == model.optimizer.iterations == 2
    for u, v in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(u, v)
    assert loaded.metrics_names == model.metrics_names
    # Training continues identically (optimizer slots, iterations, seeded generators restored).
    _train_steps(model, x, y)
    _train_steps(loaded, x, y)
    _assert_same_weights(model, loaded)


def _optimizer_cases():
    S = nn.schedules
    return {
        "SGD": O.SGD(0.05),
        "SGD-momentum-nesterov": O.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0),
        "Adam": O.Adam(0.01, beta_1=0.8, epsilon=1e-6, clipvalue=0.5),
        "AdamW": O.AdamW(0.01, weight_decay=0.01, global_clipnorm=2.0),
        "RMSprop": O.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True),
        "Adam-ExponentialDecay": O.Adam(S.ExponentialDecay(0.01, 3, 0.5, staircase=True)),
        "SGD-PiecewiseConstantDecay": O.SGD(S.PiecewiseConstantDecay([2, 4], [0.1, 0.05, 0.01]),
                                            momentum=0.5),
        "RMSprop-CosineDecay-warmup": O.RMSprop(S.CosineDecay(0.001, 10, alpha=0.1,
                                                              warmup_target=0.02,
                                                              warmup_steps=3)),
        "AdamW-InverseTimeDecay": O.AdamW(S.InverseTimeDecay(0.01, 2, 0.5)),
        "Adagrad": O.Adagrad(0.05, initial_accumulator_value=0.2, clipnorm=1.0),
        "Adamax": O.Adamax(0.01, beta_1=0.8, weight_decay=0.01),
        "Nadam": O.Nadam(0.01, epsilon=1e-6, clipvalue=0.5),
        "Lion": O.Lion(0.001, beta_2=0.95),
        # DP optimizers: no noise, so the two runs continue identically (the noise generator
        # is seeded afresh, never saved)
        "DPSGD": O.DPSGD(0.05, l2_norm_clip=0.5, noise_multiplier=0.0, momentum=0.9),
        "DPAdam": O.DPAdam(0.01, l2_norm_clip=0.5, noise_multiplier=0.0),
    }


def test_every_optimizer_class_has_a_round_trip_case():
    classes = {getattr(O, n).__name__ for n in O.__all__
               if isinstance(getattr(O, n), type) and issubclass(getattr(O, n), O.Optimizer)
               and getattr(O, n) is not O.Optimizer}
    covered = {type(o).__name__ for o in _optimizer_cases().values()}
    assert classes <= covered, f"add round-trip cases for {sorted(classes - covered)}"
    schedules = {getattr(nn.schedules, n).__name__ for n in nn.schedules.__all__
                 if isinstance(getattr(nn.schedules, n), type)
                 and getattr(nn.schedules, n) is not nn.schedules.LearningRateSchedule}
    used = {type(o.learning_rate_schedule).__name__ for o in _optimizer_cases().values()
            if o.learning_rate_schedule is not None}
    assert schedules <= used, f"add round-trip cases for schedules {sorted(schedules - used)}"


@pytest.mark.parametrize("label", sorted(_optimizer_cases()))
def test_round_trip_every_optimizer_continues_identically(label, tmp_path):
    rng = np.random.default_rng(7)
    nn.set_seed(1)
    model = nn.Sequential([L.Input((6,)), L.Dense(8, activation="relu"),
                           L.Dense(3, activation="softmax")])
    _randomize(model, rng)
    model.compile(optimizer=_optimizer_cases()[label], loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = _float_x(rng, (40, 6))
    y = rng.integers(0, 3, 40)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "m.nnet"
    model.save(path)
    loaded = nn.load_model(path)
    opt, lopt = model.optimizer, loaded.optimizer
    assert type(lopt) is type(opt)
    assert _canonical(O.serialize(lopt)) == _canonical(O.serialize(opt))
    assert lopt.iterations == opt.iterations == 6
    assert lopt.learning_rate == opt.learning_rate  # a schedule resumes at the same step
    model.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    loaded.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    _assert_same_weights(model, loaded)
    for u, v in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(u, v)


# -- compile settings, weights files, options ---------------------------------------------------
def _small_model(seed=0, compile=True):
    nn.set_seed(seed)
    model = nn.Sequential([L.Input((4,)), L.Dense(5, activation="relu"), L.Dense(3)])
    if compile:
        model.compile(optimizer=O.Adam(0.01),
                      loss=nn.losses.CategoricalCrossentropy(from_logits=True,
                                                             label_smoothing=0.1),
                      metrics=["accuracy", nn.metrics.CategoricalAccuracy(name="cat_acc")])
    return model


def _small_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = _float_x(rng, (n, 4))
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


def test_compile_settings_round_trip(tmp_path):
    model = _small_model()
    x, y = _small_data()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.nnet")
    loaded = nn.load_model(tmp_path / "m.nnet")
    assert loaded.compiled
    assert type(loaded.loss) is nn.losses.CategoricalCrossentropy
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.metrics_names == ["loss", "accuracy", "cat_acc"]
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_uncompiled_and_compile_false(tmp_path):
    model = _small_model(compile=False)
    model.save(tmp_path / "a.nnet")
    loaded = nn.load_model(tmp_path / "a.nnet")
    assert not loaded.compiled
    _assert_same_weights(model, loaded)
    compiled = _small_model()
    compiled.save(tmp_path / "b.nnet")
    bare = nn.load_model(tmp_path / "b.nnet", compile=False)
    assert not bare.compiled and bare.optimizer is None
    _assert_same_weights(compiled, bare)


def test_unbuilt_model_round_trip(tmp_path):
    model = nn.Sequential([L.Dense(3), L.Dense(2)])
    model.save(tmp_path / "u.nnet")
    loaded = nn.load_model(tmp_path / "u.nnet")
    assert not loaded.built and [type(a) for a in loaded.layers] == [L.Dense, L.Dense]


def test_model_built_from_data_round_trip(tmp_path):
    nn.set_seed(2)
    model = nn.Sequential([L.Dense(3), L.Dense(2)])
    x = np.ones((2, 7), np.float32)
    model.predict(x, verbose=0)
    model.save(tmp_path / "d.nnet")
    loaded = nn.load_model(tmp_path / "d.nnet")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_float64_model_round_trip(tmp_path):
    nn.set_seed(4)
    model = nn.Sequential([L.Input((3,)), L.Dense(4, dtype="float64"),
                           L.Dense(2, dtype="float64")])
    model.save(tmp_path / "f.nnet")
    loaded = nn.load_model(tmp_path / "f.nnet")
    assert all(w.dtype == np.float64 for w in loaded.get_weights())
    _assert_same_weights(model, loaded)


def test_loading_does_not_consume_the_random_stream(tmp_path):
    _small_model().save(tmp_path / "m.nnet")
    nn.set_seed(9)
    want = nn.random.get_generator().random(3)
    nn.set_seed(9)
    nn.load_model(tmp_path / "m.nnet")
    np.testing.assert_array_equal(nn.random.get_generator().random(3), want)


def test_identical_models_give_identical_files(tmp_path):
    model = _small_model()
    model.save(tmp_path / "a.nnet")
    time.sleep(0.01)
    model.save(tmp_path / "b.nnet")
    assert (tmp_path / "a.nnet").read_bytes() == (tmp_path / "b.nnet").read_bytes()


def test_any_suffix_and_pathlike(tmp_path):
    model = _small_model()
    for name in ("model", "model.bin", "model.zip"):  # Keras's names are refused: test_keras_names
        model.save(str(tmp_path / name))
        _assert_same_weights(model, nn.load_model(tmp_path / name))


def test_save_weights_load_weights(tmp_path):
    model = _small_model(seed=1)
    x, _ = _small_data()
    model.save_weights(tmp_path / "w.nnet")
    other = _small_model(seed=2)  # different values and (automatic) layer names
    assert not np.array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    other.load_weights(tmp_path / "w.nnet")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    # An unbuilt model is built for the stored input shape.
    fresh = nn.Sequential([L.Dense(5, activation="relu"), L.Dense(3)])
    fresh.load_weights(tmp_path / "w.nnet")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    # A full model file also carries weights.
    model.save(tmp_path / "m.nnet")
    third = _small_model(seed=3)
    third.load_weights(tmp_path / "m.nnet")
    _assert_same_weights(model, third)
    # A weights file is not a model.
    with pytest.raises(ValueError, match="weights-only"):
        nn.load_model(tmp_path / "w.nnet")
    with zipfile.ZipFile(tmp_path / "w.nnet") as zf:
        assert not any(n.startswith("optimizer/") for n in zf.namelist())


def test_load_weights_mismatch(tmp_path):
    _small_model().save_weights(tmp_path / "w.nnet")
    wider = nn.Sequential([L.Input((4,)), L.Dense(6, activation="relu"), L.Dense(3)])
    with pytest.raises(ValueError, match=r"weights\[0\].*shape \(4, 5\).*\(4, 6\)"):
        wider.load_weights(tmp_path / "w.nnet")
    deeper = nn.Sequential([L.Input((4,)), L.Dense(5), L.Dense(5), L.Dense(3)])
    with pytest.raises(ValueError, match="has 4 weights; model .* has 6"):
        deeper.load_weights(tmp_path / "w.nnet")
    unbuilt = nn.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match="has 4 weights"):
        unbuilt.load_weights(tmp_path / "w.nnet")


def test_save_weights_needs_a_built_model(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        nn.Sequential([L.Dense(2)]).save_weights(tmp_path / "w.nnet")


def test_unsaveable_learning_rate(tmp_path):
    model = _small_model(compile=False)
    model.compile(optimizer=O.SGD(lambda step: 0.1), loss="mse")
    with pytest.raises(ValueError, match="not a nanonet.schedules schedule"):
        model.save(tmp_path / "m.nnet")
    assert not os.listdir(tmp_path)
    model.save_weights(tmp_path / "w.nnet")  # weights alone still work


# -- atomic saving ------------------------------------------------------------------------------
def test_overwrite_false_and_missing_directory(tmp_path):
    model = _small_model()
    model.save(tmp_path / "m.nnet")
    with pytest.raises(FileExistsError, match="overwrite=False"):
        model.save(tmp_path / "m.nnet", overwrite=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "no" / "such" / "m.nnet")
    with pytest.raises(IsADirectoryError):
        model.save(tmp_path)


def test_failed_save_keeps_previous_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.nnet"
    old = _small_model(seed=1)
    old.save(path)
    before = path.read_bytes()
    calls = []
    real = np.lib.format.write_array

    def failing(fp, arr, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real(fp, arr, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        _small_model(seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.nnet"]  # no temporary file left behind
    _assert_same_weights(old, nn.load_model(path))


_CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import nanonet as nn
    from nanonet import layers as L
    path, mode = sys.argv[1], sys.argv[2]
    nn.set_num_threads(1)
    model = nn.Sequential([L.Input((600,)), L.Dense(600), L.Dense(600), L.Dense(600)])
    def fill(v):
        model.set_weights([np.full(w.shape, v, w.dtype) for w in model.get_weights()])
    if mode == "pause-write":
        real_write = np.lib.format.write_array
        calls = []
        def paused_write(fp, arr, *args, **kwargs):
            real_write(fp, arr, *args, **kwargs)
            calls.append(1)
            if len(calls) == 2:
                fp.flush()
                print("READY", flush=True)
                time.sleep(120)
        np.lib.format.write_array = paused_write
        fill(3.0)
        model.save(path)
    elif mode == "pause":
        real = os.replace
        def paused_replace(src, dst):
            print("READY", src, flush=True)
            time.sleep(120)
            real(src, dst)
        os.replace = paused_replace
        fill(2.0)
        model.save(path)
    else:
        for i in range(2, 10**6):
            fill(float(i))
            print("SAVING", i, flush=True)
            model.save(path)
""")


def _spawn(path, mode):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _first_weight_value(path):
    model = nn.load_model(path)
    values = {float(v) for w in model.get_weights() for v in np.unique(w)}
    assert len(values) == 1, "a loaded file must hold one consistent version"
    return values.pop()


def _old_model_file(path):
    model = nn.Sequential([L.Input((600,)), L.Dense(600), L.Dense(600), L.Dense(600)])
    model.set_weights([np.full(w.shape, 1.0, w.dtype) for w in model.get_weights()])
    model.save(path)


def test_sigkill_between_write_and_rename_keeps_old_file(tmp_path):
    path = tmp_path / "big.nnet"
    _old_model_file(path)
    child = _spawn(path, "pause")
    try:
        line = child.stdout.readline()
        assert line.startswith("READY"), (line, child.stderr.read())
        tmp = line.split(None, 1)[1].strip()
        assert os.path.dirname(tmp) == str(tmp_path)  # written beside the target
        assert zipfile.ZipFile(tmp).testzip() is None  # complete and fsync'ed before renaming
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert _first_weight_value(path) == 1.0


def test_sigkill_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "big.nnet"
    _old_model_file(path)
    child = _spawn(path, "pause-write")
    try:
        line = child.stdout.readline()
        assert line.startswith("READY"), (line, child.stderr.read())
        leftovers = [n for n in os.listdir(tmp_path) if n != "big.nnet"]
        assert len(leftovers) == 1 and leftovers[0].startswith(".big.nnet.")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert _first_weight_value(path) == 1.0
    with pytest.raises(ValueError, match="not a zip archive"):  # the half-written temp file
        nn.load_model(tmp_path / leftovers[0])


def test_sigkill_at_random_times_never_corrupts(tmp_path):
    path = tmp_path / "big.nnet"
    _old_model_file(path)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3):
        child = _spawn(path, "loop")
        try:
            assert child.stdout.readline().startswith("SAVING"), child.stderr.read()
            time.sleep(float(rng.uniform(0.0, 0.4)))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()
            child.stderr.close()
        value = _first_weight_value(path)  # always a complete file, old or new
        assert value == int(value) and value >= 1
        seen.add(value)
    assert seen


# -- corrupt, truncated and hostile files -------------------------------------------------------
@pytest.fixture
def good_file(tmp_path):
    model = _small_model()
    x, y = _small_data()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "good.nnet"
    model.save(path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write_zip(path, members, compress=None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data,
                        compress_type=(compress or {}).get(name, zipfile.ZIP_STORED))
    return path


def _with_manifest(path, out, edit):
    members = _members(path)
    manifest = json.loads(members["nanonet.json"])
    edit(manifest)
    members["nanonet.json"] = json.dumps(manifest).encode()
    return _write_zip(out, list(members.items()))


def _npy(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _replace_member(path, out, name, data, compress=None):
    members = _members(path)
    members[name] = data
    return _write_zip(out, list(members.items()), compress)


def _load_error(path, match, **kwargs):
    with pytest.raises(ValueError, match=match):
        nn.load_model(path, **kwargs)


def test_good_file_loads(good_file):
    loaded = nn.load_model(good_file)
    model = _small_model()  # the fixture's model again: same seed, same data, same fit
    x, y = _small_data()
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_not_a_zip_empty_and_truncated(good_file, tmp_path):
    (tmp_path / "junk.nnet").write_bytes(b"this is not a zip archive at all" * 10)
    _load_error(tmp_path / "junk.nnet", "not a zip archive")
    (tmp_path / "empty.nnet").write_bytes(b"")
    _load_error(tmp_path / "empty.nnet", "not a zip archive")
    data = good_file.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 10):
        (tmp_path / "cut.nnet").write_bytes(data[:cut])
        _load_error(tmp_path / "cut.nnet", "not a valid nanonet file")


def test_corrupt_member_data_fails_crc(good_file, tmp_path):
    data = bytearray(good_file.read_bytes())
    with zipfile.ZipFile(good_file) as zf:
        info = zf.getinfo("weights/00002.npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size - 3] ^= 0xFF  # inside the array data
    (tmp_path / "flip.nnet").write_bytes(bytes(data))
    _load_error(tmp_path / "flip.nnet", r"'weights/00002.npy'.*corrupt")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        nn.load_model(tmp_path / "absent.nnet")
    with pytest.raises(IsADirectoryError):
        nn.load_model(tmp_path)


def test_bad_magic_and_versions(good_file, tmp_path):
    out = tmp_path / "x.nnet"
    _load_error(_with_manifest(good_file, out, lambda m: m.update(format="keras")),
                "wrong format magic.*'keras'")
    _load_error(_with_manifest(good_file, out, lambda m: m.pop("format")), "wrong format magic")
    _load_error(_with_manifest(good_file, out, lambda m: m.update(format_version=99)),
                "unsupported format version 99")
    _load_error(_with_manifest(good_file, out, lambda m: m.update(format_version=0)),
                "unsupported format version 0")
    _load_error(_with_manifest(good_file, out, lambda m: m.update(format_version="1")),
                "format_version must be an int")
    _load_error(_with_manifest(good_file, out, lambda m: m.update(kind="pickle")),
                "kind must be")
    members = _members(good_file)
    members.pop("nanonet.json")
    _load_error(_write_zip(out, list(members.items())), "no 'nanonet.json' member")
    _load_error(_replace_member(good_file, out, "nanonet.json", b"{not json"),
                "not valid JSON")
    _load_error(_replace_member(good_file, out, "nanonet.json", b"[1, 2]"), "wrong format magic")
    _load_error(_replace_member(good_file, out, "nanonet.json", b"\xff\xfe"), "not valid JSON")
    _load_error(_replace_member(good_file, out, "nanonet.json", b"[" * 100000 + b"]" * 100000),
                "not valid JSON")


@pytest.mark.parametrize("name", ["../evil.npy", "/abs/evil.npy", "weights/../../evil.npy",
                                  "weights//00000.npy", "..\\evil.npy", "C:/evil.npy",
                                  "weights/./x.npy", "dir/"])
def test_path_tricks(good_file, tmp_path, name):
    members = list(_members(good_file).items()) + [(name, b"x")]
    _load_error(_write_zip(tmp_path / "p.nnet", members), "unsafe member name")


def test_duplicate_and_unlisted_members(good_file, tmp_path):
    members = list(_members(good_file).items())
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = _write_zip(tmp_path / "d.nnet", members + [members[1]])
    _load_error(dup, f"{members[1][0]}.*duplicate member name")
    extra = _write_zip(tmp_path / "e.nnet", members + [("weights/99999.npy", _npy(np.ones(2)))])
    _load_error(extra, "'weights/99999.npy'.*not listed in the manifest")


def test_missing_member(good_file, tmp_path):
    members = _members(good_file)
    members.pop("weights/00001.npy")
    _load_error(_write_zip(tmp_path / "m.nnet", list(members.items())),
                r"'weights/00001.npy'.*member is missing")
    members = _members(good_file)
    members.pop("optimizer/00003.npy")
    _load_error(_write_zip(tmp_path / "m.nnet", list(members.items())),
                r"'optimizer/00003.npy'.*member is missing")


def test_zip_bomb_member_is_refused_before_reading(good_file, tmp_path, monkeypatch):
    bomb = b"\x00" * (64 << 20)  # 64 MiB of zeros deflate ~1000:1
    path = _replace_member(good_file, tmp_path / "bomb.nnet", "weights/00000.npy", bomb,
                           compress={"weights/00000.npy": zipfile.ZIP_DEFLATED})
    assert path.stat().st_size < (1 << 20)

    def no_reads(self, *args, **kwargs):
        raise AssertionError("a member was read before the archive was checked")

    monkeypatch.setattr(saving._Archive, "read", no_reads)
    _load_error(path, r"'weights/00000.npy'.*compression ratio .* zip bomb")


def test_size_and_count_limits(good_file, monkeypatch):
    monkeypatch.setattr(saving, "MAX_TOTAL_BYTES", 200)
    _load_error(good_file, "add up to more than 200 bytes")
    monkeypatch.undo()
    monkeypatch.setattr(saving, "MAX_MEMBERS", 3)
    _load_error(good_file, "over the limit of 3")


def test_member_larger_than_its_manifest_entry(good_file, tmp_path):
    big = _npy(np.zeros((4, 5000), np.float32))  # weights/00000.npy is (4, 5)
    _load_error(_replace_member(good_file, tmp_path / "b.nnet", "weights/00000.npy", big),
                r"'weights/00000.npy'.*expected at most")


def test_unsupported_compression(good_file, tmp_path):
    members = _members(good_file)
    path = _write_zip(tmp_path / "bz.nnet", list(members.items()),
                      compress={"weights/00000.npy": zipfile.ZIP_BZIP2})
    _load_error(path, "unsupported compression method")


def test_nan_and_inf_weights(good_file, tmp_path):
    w = nn.load_model(good_file).get_weights()[0].copy()
    w[1, 2] = np.nan
    path = _replace_member(good_file, tmp_path / "nan.nnet", "weights/00000.npy", _npy(w))
    _load_error(path, r"'weights/00000.npy'.*'kernel' contains NaN or inf.*allow_nan=True")
    loaded = nn.load_model(path, allow_nan=True)
    assert np.isnan(loaded.get_weights()[0][1, 2])
    slot = nn.load_model(good_file).optimizer.variables[1].copy()
    slot[0, 0] = np.inf
    path = _replace_member(good_file, tmp_path / "inf.nnet", "optimizer/00001.npy", _npy(slot))
    _load_error(path, r"'optimizer/00001.npy'.*contains NaN or inf")
    with pytest.raises(ValueError, match="NaN"):
        _small_model().load_weights(tmp_path / "nan.nnet")


def test_shape_and_dtype_mismatches(good_file, tmp_path):
    out = tmp_path / "s.nnet"
    _load_error(_replace_member(good_file, out, "weights/00001.npy",
                                _npy(np.zeros(4, np.float32))),
                r"'weights/00001.npy'.*shape \(5,\).*\.npy header has shape \(4,\)")
    _load_error(_replace_member(good_file, out, "weights/00001.npy",
                                _npy(np.zeros(5, np.float64))),
                r"'weights/00001.npy'.*dtype float32.*dtype float64")

    def claim(m):
        m["arrays"][0]["shape"] = [4, 6]
    _load_error(_with_manifest(good_file, out, claim), r"weights\[0\].*\(4, 6\).*\(4, 5\)")

    def rename(m):
        m["arrays"][1]["name"] = "gamma"
    _load_error(_with_manifest(good_file, out, rename), r"weight 'gamma'.*weight 'bias'")

    def bad_dtype(m):
        m["arrays"][1]["dtype"] = "object"
    _load_error(_with_manifest(good_file, out, bad_dtype), "unsupported dtype 'object'")

    def bad_shape(m):
        m["arrays"][1]["shape"] = [-1]
    _load_error(_with_manifest(good_file, out, bad_shape), "invalid shape")

    def bad_member(m):
        m["arrays"][1]["member"] = "../weights/00001.npy"
    _load_error(_with_manifest(good_file, out, bad_member), "invalid or repeated member")


def test_not_npy_member(good_file, tmp_path):
    path = _replace_member(good_file, tmp_path / "n.nnet", "weights/00001.npy", b"\x00" * 200)
    _load_error(path, r"'weights/00001.npy'.*not a valid .npy array")


class _Exploit:
    """Unpickling this creates a file: proof that loading executed code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_arrays_are_refused(good_file, tmp_path):
    marker = tmp_path / "pwned"
    evil = np.empty(5, dtype=object)
    evil[:] = [_Exploit(str(marker))] * 5
    data = _npy(evil, allow_pickle=True)
    assert b"pwned" in data
    path = _replace_member(good_file, tmp_path / "evil.nnet", "weights/00001.npy", data)
    _load_error(path, r"'weights/00001.npy'.*Python objects.*refusing to unpickle")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        _small_model().load_weights(path)
    # A pickle in place of the manifest is just invalid JSON.
    path = _replace_member(good_file, tmp_path / "evil2.nnet", "nanonet.json",
                           pickle.dumps(_Exploit(str(marker))))
    _load_error(path, "not valid JSON")
    assert not marker.exists()


def test_unknown_classes_and_bad_configs(good_file, tmp_path):
    out = tmp_path / "c.nnet"

    def layer_class(m):
        m["model"]["config"]["layers"][1]["class_name"] = "os.system"
    _load_error(_with_manifest(good_file, out, layer_class), "unknown layer class 'os.system'")

    def layer_kwarg(m):
        m["model"]["config"]["layers"][1]["config"]["__import__"] = "os"
    _load_error(_with_manifest(good_file, out, layer_kwarg), "architecture cannot be rebuilt")

    def layer_value(m):
        m["model"]["config"]["layers"][1]["config"]["units"] = -3
    _load_error(_with_manifest(good_file, out, layer_value), "units must be a positive int")

    def model_class(m):
        m["model"]["class_name"] = "os.system"
    _load_error(_with_manifest(good_file, out, model_class), "must describe a model")

    def graph_class(m):  # a Sequential's config is not a graph's
        m["model"]["class_name"] = "Functional"
    _load_error(_with_manifest(good_file, out, graph_class), "input_layers must be a non-empty")

    def optimizer_class(m):
        m["compile"]["optimizer"]["class_name"] = "Evil"
    _load_error(_with_manifest(good_file, out, optimizer_class), "unknown optimizer 'Evil'")

    def schedule_class(m):
        m["compile"]["optimizer"]["config"]["learning_rate"] = {"class_name": "Evil",
                                                                "config": {}}
    _load_error(_with_manifest(good_file, out, schedule_class), "compile settings are invalid")

    def loss_class(m):
        m["compile"]["loss"] = {"class_name": "Evil", "config": {}}
    _load_error(_with_manifest(good_file, out, loss_class), "unknown loss 'Evil'")

    def metric(m):
        m["compile"]["metrics"] = ["evil"]
    _load_error(_with_manifest(good_file, out, metric), "Unknown metric 'evil'")

    def slot_name(m):
        m["arrays"][5]["slot"] = "evil"
    _load_error(_with_manifest(good_file, out, slot_name), "slot 'evil'")

    def slot_weight(m):
        m["arrays"][5]["weight"] = 99
    _load_error(_with_manifest(good_file, out, slot_weight), "refers to weight 99")

    def rng_state(m):
        m["rng"]["seed"] = "x"
    _load_error(_with_manifest(good_file, out, rng_state), "training seed")

    def rng_layer(m):
        m["rng"]["layers"] = {"nope": {"_generator": {}}}
    _load_error(_with_manifest(good_file, out, rng_layer), "unknown layer 'nope'")
    # With compile=False, the compile settings are not even looked at.
    nn.load_model(_with_manifest(good_file, out, optimizer_class), compile=False)


def test_invalid_generator_state(tmp_path):
    nn.set_seed(0)
    model = nn.Sequential([L.Input((3,)), L.Dropout(0.5, seed=2), L.Dense(2)])
    model.save(tmp_path / "g.nnet")
    out = tmp_path / "bad.nnet"

    def other_bitgen(m):
        m["rng"]["layers"]["dropout" if "dropout" in m["rng"]["layers"] else
                           next(iter(m["rng"]["layers"]))]["_generator"]["bit_generator"] = "MT"
    _load_error(_with_manifest(tmp_path / "g.nnet", out, other_bitgen), "does not match")

    def broken(m):
        state = next(iter(m["rng"]["layers"].values()))["_generator"]
        state["state"] = {"state": "x"}
    _load_error(_with_manifest(tmp_path / "g.nnet", out, broken), "invalid random state")
