"""The graph model: nanonet.Input / nanonet.Model (Keras 3's Functional API).

Gradients through graphs (fan-out, shared layers, nesting, two inputs, two outputs) are checked
against central finite differences in float64 through the public layer protocol
(``model.forward(x, training=True)`` -> ``model.backprop(ctx, R)``) with the loss sum(out * R).
"""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L

from .tolerances import TOL

DATA = os.path.join(os.path.dirname(__file__), "data")
F64 = {"dtype": "float64"}


def _randomize(model, rng, scale=0.5):
    model.set_weights([scale * rng.standard_normal(w.shape).astype(w.dtype)
                       for w in model.weights])


def _loss(model, xs, rs):
    outs = model(xs)
    outs = outs if isinstance(outs, list) else [outs]
    return sum(float(np.sum(o * r)) for o, r in zip(outs, rs))


def _check_gradients(model, xs, rng, eps=1e-6):
    """Analytic gradients (weights and float inputs) vs central differences of sum(out * R)."""
    outs = model(xs)
    single = not isinstance(outs, list)
    outs = [outs] if single else outs
    rs = [rng.standard_normal(o.shape) for o in outs]
    y, ctx = model.forward(xs, training=True)
    dxs, grads = model.backprop(ctx, rs[0] if single else rs, need_dx=True)
    tol = TOL["float64"]["grad_fd"]
    pairs = list(zip(model.trainable_weights, grads))
    x_list = xs if isinstance(xs, list) else [xs]
    d_list = dxs if isinstance(dxs, list) else [dxs]
    pairs += [(x, d) for x, d in zip(x_list, d_list) if x.dtype.kind == "f"]
    for arr, g in pairs:  # every weight and float input, perturbed in place
        assert g is not None and g.shape == arr.shape
        num = np.zeros_like(arr)
        for i in range(arr.size):
            old = arr.flat[i]
            arr.flat[i] = old + eps
            up = _loss(model, xs, rs)
            arr.flat[i] = old - eps
            down = _loss(model, xs, rs)
            arr.flat[i] = old
            num.flat[i] = (up - down) / (2 * eps)
        _assert_close_fd(g, num, tol)


def _assert_close_fd(got, want, tol):
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1.0)
    assert err <= tol, f"gradient differs from finite differences by {err:.2e} (tol {tol})"


def _assert_rel(got, want, tol):
    err = np.max(np.abs(np.asarray(got) - want)) / (np.max(np.abs(want)) + 1.0)
    assert err <= tol, f"relative error {err:.2e} > {tol}"


# -- gradients through graphs ---------------------------------------------------------------------

def test_gradients_fan_out_and_residual():
    rng = np.random.default_rng(0)
    x = nn.Input((4,), dtype="float64")
    h = L.Dense(5, activation="tanh", **F64)(x)
    r = L.Add(**F64)([h, L.Dense(5, **F64)(h)])          # h is used twice
    out = L.Dense(3, activation="sigmoid", **F64)(L.Concatenate(**F64)([r, h]))
    model = nn.Model(x, out)
    _randomize(model, rng)
    _check_gradients(model, rng.standard_normal((3, 4)), rng)


def test_gradients_shared_layer_accumulates_both_call_sites():
    rng = np.random.default_rng(1)
    a, b = nn.Input((4,), dtype="float64"), nn.Input((4,), dtype="float64")
    shared = L.Dense(3, activation="tanh", **F64)
    out = L.Multiply(**F64)([shared(a), shared(b)])
    model = nn.Model([a, b], out)
    assert len(model.trainable_weights) == 2  # one kernel and one bias, shared
    _randomize(model, rng)
    _check_gradients(model, [rng.standard_normal((2, 4)), rng.standard_normal((2, 4))], rng)


def test_gradients_nested_model_two_inputs_two_outputs():
    rng = np.random.default_rng(2)
    inner_in = nn.Input((3,), dtype="float64")
    inner = nn.Model(inner_in, L.Dense(4, activation="relu", **F64)(inner_in), name="inner")
    a, b = nn.Input((3,), dtype="float64"), nn.Input((3,), dtype="float64")
    ha, hb = inner(a), inner(b)                           # a nested model, called twice
    o1 = L.Dense(2, **F64)(L.Subtract(**F64)([ha, hb]))
    o2 = L.Dot(axes=1, normalize=True, **F64)([ha, L.Dense(4, **F64)(hb)])
    model = nn.Model([a, b], [o1, o2])
    _randomize(model, rng)
    # Keep relu away from its kink so central differences are exact enough.
    xs = [rng.standard_normal((3, 3)), rng.standard_normal((3, 3))]
    _check_gradients(model, xs, rng)


def test_gradients_lstm_with_initial_state_from_another_lstm():
    """Encoder-decoder: the encoder's final states start the decoder (tensors by keyword)."""
    rng = np.random.default_rng(3)
    src, tgt = nn.Input((4, 2), dtype="float64"), nn.Input((3, 2), dtype="float64")
    _, h, c = L.LSTM(3, return_state=True, **F64)(src)
    dec = L.LSTM(3, return_sequences=True, **F64)(tgt, initial_state=[h, c])
    model = nn.Model([src, tgt], L.Dense(2, **F64)(dec))
    _randomize(model, rng)
    _check_gradients(model, [rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 3, 2))],
                     rng)


# -- the issue's model, end to end ----------------------------------------------------------------

def _two_tower(vocab=50, T=12):
    tokens = nn.Input(shape=(T,), dtype="int32", name="tokens")
    extra = nn.Input(shape=(8,), name="extra")
    x = L.Embedding(vocab, 16, mask_zero=True)(tokens)
    h = L.LSTM(16, return_sequences=True)(x)
    h = L.Add()([h, L.LSTM(16, return_sequences=True)(h)])      # residual
    h = L.LayerNormalization()(h)
    v = L.GlobalAveragePooling1D()(h)                              # mask-aware
    v = L.Concatenate()([v, L.Dense(16, activation="relu")(extra)])
    out = L.Dense(4, activation="softmax", name="label")(v)
    aux = L.Dense(1, name="score")(v)
    return nn.Model(inputs=[tokens, extra], outputs=[out, aux])


def _two_tower_data(rng, n=96, vocab=50, T=12):
    lengths = rng.integers(3, T + 1, n)
    xt = np.zeros((n, T), np.int64)
    for i, k in enumerate(lengths):
        xt[i, T - k:] = rng.integers(1, vocab, k)
    xe = rng.standard_normal((n, 8)).astype(np.float32)
    y = (xt[:, -1] % 4).astype(np.int64)
    s = (xe[:, 0] + 0.1 * lengths).astype(np.float32)
    return xt, xe, y, s


def test_issue_example_fit_evaluate_summary_save_load(tmp_path):
    nn.set_seed(0)
    rng = np.random.default_rng(0)
    model = _two_tower()
    xt, xe, y, s = _two_tower_data(rng)
    model.compile(optimizer="adam",
                  loss={"label": "sparse_categorical_crossentropy", "score": "mse"},
                  loss_weights={"label": 1.0, "score": 0.2}, metrics={"label": ["accuracy"]})
    history = model.fit({"tokens": xt, "extra": xe}, {"label": y, "score": s}, epochs=3,
                        batch_size=16, validation_split=0.1, verbose=0)
    keys = {"loss", "label_loss", "score_loss", "label_accuracy"}
    assert set(history.history) == keys | {"val_" + k for k in keys}
    h = history.history
    for e in range(3):  # the total is the weighted sum of the per-output losses
        np.testing.assert_allclose(h["loss"][e], h["label_loss"][e] + 0.2 * h["score_loss"][e],
                                   rtol=1e-6)
    assert h["loss"][-1] < h["loss"][0]
    logs = model.evaluate({"tokens": xt, "extra": xe}, {"label": y, "score": s},
                          return_dict=True, verbose=0)
    assert set(logs) == keys
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and " (Add) " in text and "tokens[0][0]" in text
    path = tmp_path / "m.nnet"
    model.save(path)
    loaded = nn.load_model(path)
    assert type(loaded) is nn.Model and loaded.input_names == ["tokens", "extra"]
    assert loaded.output_names == ["label", "score"]
    p0, p1 = model.predict([xt, xe], verbose=0), loaded.predict({"tokens": xt, "extra": xe},
                                                                verbose=0)
    for a, b in zip(p0, p1):
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate([xt, xe], [y, s], return_dict=True, verbose=0) == logs
    # Training continues identically after loading (optimizer state and seed restored).
    model.fit([xt, xe], [y, s], epochs=4, initial_epoch=3, batch_size=16, verbose=0)
    loaded.fit([xt, xe], [y, s], epochs=4, initial_epoch=3, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_masks_flow_through_merges_to_the_pooling():
    """Extra padding changes nothing: Embedding's mask reaches the LSTMs, Add and the pooling."""
    nn.set_seed(1)
    rng = np.random.default_rng(1)
    model = _two_tower(T=None)
    xt, xe, _, _ = _two_tower_data(rng, n=8, T=12)
    pad = np.concatenate([np.zeros((8, 4), np.int64), xt], axis=1)
    a = model.predict([xt, xe], verbose=0)
    b = model.predict([pad, xe], verbose=0)
    for u, v in zip(a, b):
        _assert_rel(u, v, TOL["float32"]["graph"])
    # Without the mask the padding would count: a model without mask_zero differs.
    tokens, extra = nn.Input((None,), dtype="int32"), nn.Input((8,))
    emb = L.Embedding(50, 16)(tokens)
    v = L.GlobalAveragePooling1D()(L.Add()([emb, emb]))
    plain = nn.Model([tokens, extra], L.Concatenate()([v, extra]))
    assert not np.allclose(plain.predict([xt, xe], verbose=0), plain.predict([pad, xe], verbose=0))


def test_sequential_and_functional_chain_train_identically():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    nn.set_seed(7)
    seq = nn.Sequential([nn.Input((6,)), L.Dense(8, activation="relu"),
                         L.Dense(3, activation="softmax")])
    nn.set_seed(7)
    inp = nn.Input((6,))
    fun = nn.Model(inp, L.Dense(3, activation="softmax")(L.Dense(8, activation="relu")(inp)))
    fun.set_weights(seq.get_weights())
    for m in (seq, fun):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert seq._fused() and fun._fused()
    nn.set_seed(3)  # the same shuffling seed for both
    h1 = seq.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    nn.set_seed(3)
    h2 = fun.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert h1 == h2
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_layer_order_and_model_properties():
    a = nn.Input((3,), name="a")
    b = nn.Input((5,), name="b")
    da = L.Dense(2, name="da")(a)
    db = L.Dense(2, name="db")(b)
    out = L.Add(name="sum")([da, db])
    model = nn.Model({"a": a, "b": b}, {"out": out})
    assert [lay.name for lay in model.layers] == ["a", "b", "da", "db", "sum"]
    assert model.input_shape == [(None, 3), (None, 5)] and model.output_shape == (None, 2)
    assert model.get_layer("db").name == "db" and model.get_layer(index=2).name == "da"
    pred = model.predict({"a": np.ones((2, 3)), "b": np.ones((2, 5))}, verbose=0)
    assert set(pred) == {"out"} and pred["out"].shape == (2, 2)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.get_layer("nope")


# -- errors at construction --------------------------------------------------------------------

def test_bad_graphs_get_clear_errors():
    a = nn.Input((4,), name="in_a")
    b = nn.Input((4,), name="in_b")
    h = L.Dense(3)(a)
    with pytest.raises(ValueError, match="graph disconnected.*in_b"):
        nn.Model(a, L.Add()([h, L.Dense(3)(b)]))
    with pytest.raises(ValueError, match=r"inputs\[0\] must be a tensor made by nanonet.Input"):
        nn.Model(h, L.Dense(2)(h))
    with pytest.raises(ValueError, match=r"Add 'bad_add'.*\(None, 3\).*\(None, 4\)"):
        L.Add(name="bad_add")([h, a])
    with pytest.raises(ValueError, match=r"Concatenate 'cat'.*\(None, 3, 2\).*\(None, 4, 2\)"):
        L.Concatenate(axis=-1, name="cat")([nn.Input((3, 2)), nn.Input((4, 2))])
    with pytest.raises(ValueError, match="must not be empty"):
        nn.Model([], h)
    with pytest.raises(TypeError, match="symbolic tensor"):
        nn.Model(a, np.zeros(3))
    with pytest.raises(ValueError, match="was built for inputs of shape"):
        shared = L.Dense(2)
        shared(nn.Input((4,)))
        shared(nn.Input((5,)))
    with pytest.raises(ValueError, match="name 'twin' is used 2 times"):
        nn.Model(a, L.Add()([L.Dense(3, name="twin")(a), L.Dense(3, name="twin")(a)]))


def test_dict_keys_must_name_inputs_and_outputs():
    a, b = nn.Input((2,), name="a"), nn.Input((2,), name="b")
    model = nn.Model({"a": a, "b": b}, {"y": L.Dense(1)(L.Add()([a, b]))})
    model.compile(optimizer="sgd", loss={"y": "mse"})
    x = {"a": np.ones((4, 2)), "b": np.ones((4, 2))}
    with pytest.raises(ValueError, match=r"key\(s\) \['c'\] that name no model input"):
        model.predict({"a": np.ones((4, 2)), "c": np.ones((4, 2))}, verbose=0)
    with pytest.raises(ValueError, match=r"missing the model input\(s\) \['b'\]"):
        model.predict({"a": np.ones((4, 2))}, verbose=0)
    with pytest.raises(ValueError, match=r"key\(s\) \['z'\] that name no model output"):
        model.fit(x, {"z": np.ones((4, 1))}, verbose=0)
    with pytest.raises(ValueError, match=r"key\(s\) \['z'\] that name no model output"):
        model.compile(optimizer="sgd", loss={"z": "mse"})
    with pytest.raises(ValueError, match=r"x\['a'\] must have shape \(B, 2\)"):
        model.predict({"a": np.ones((4, 3)), "b": np.ones((4, 2))}, verbose=0)


def test_from_config_refuses_bad_graphs():
    a = nn.Input((3,), name="a")
    model = nn.Model(a, L.Dense(2, name="d")(L.Dense(4, name="c")(a)))
    config = model.get_config()
    rebuilt = nn.Model.from_config(config)
    assert [lay.name for lay in rebuilt.layers] == ["a", "c", "d"]

    import copy
    bad = copy.deepcopy(config)
    bad["layers"][2]["inbound_nodes"][0]["inputs"] = [["ghost", 0, 0]]
    with pytest.raises(ValueError, match="missing layer 'ghost'"):
        nn.Model.from_config(bad)
    cyc = copy.deepcopy(config)  # c consumes d, d consumes c
    cyc["layers"][1]["inbound_nodes"][0]["inputs"] = [["d", 0, 0]]
    with pytest.raises(ValueError, match="no layer produces"):
        nn.Model.from_config(cyc)
    unknown = copy.deepcopy(config)
    unknown["layers"][1]["class_name"] = "subprocess.Popen"
    with pytest.raises(ValueError, match="unknown layer class 'subprocess.Popen'"):
        nn.Model.from_config(unknown)


def test_old_0_1_files_load_and_resume_bit_exactly():
    """Files written by nanonet 0.1 (Sequential) load; training resumes to the weights 0.1
    reached (tests/data/*_expected.npz were written by 0.1 itself, on an AVX2 machine)."""
    # Bit-exactness holds between identical builds on the same SIMD path only: the -O1 build of
    # tools/check_sanitizers.sh and the other ISAs (NANONET_ISA=ref, AVX-512) round differently.
    exact = not os.environ.get("NANONET_SANITIZED") and nn.ops.active_isa() == "avx2"

    def same(got, want):
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

    exp = np.load(os.path.join(DATA, "v0_1_sequential_lstm_expected.npz"))
    model = nn.load_model(os.path.join(DATA, "v0_1_sequential_lstm.nnet"))
    assert isinstance(model, nn.Sequential) and isinstance(model, nn.Model)
    same(model.predict(exp["x"], verbose=0), exp["pred"])
    model.fit(exp["x"], exp["y"], epochs=3, initial_epoch=2, batch_size=8, verbose=0)
    same(np.concatenate([w.ravel() for w in model.get_weights()]), exp["after"])
    mlp = np.load(os.path.join(DATA, "v0_1_sequential_mlp_expected.npz"))
    model = nn.load_model(os.path.join(DATA, "v0_1_sequential_mlp.nnet"))
    same(model.predict(mlp["x"], verbose=0), mlp["pred"])


# -- losses: one definition in training and evaluation ------------------------------------------

def test_train_and_test_loss_agree_with_a_saturated_softmax():
    rng = np.random.default_rng(5)
    model = nn.Sequential([nn.Input((4,)), L.Dense(3, activation="softmax")])
    model.set_weights([rng.standard_normal((4, 3)).astype(np.float32) * 400,
                       np.zeros(3, np.float32)])
    model.compile(optimizer=nn.optimizers.SGD(1e-30), loss="sparse_categorical_crossentropy")
    assert model._fused()
    x = rng.standard_normal((16, 4)).astype(np.float32)
    p = model.predict(x, verbose=0)
    y = np.argmin(p, axis=1)                   # the least likely class: saturated, huge logit loss
    test = model.test_on_batch(x, y)
    train = model.train_on_batch(x, y)
    np.testing.assert_allclose(train, test, rtol=1e-6)
    assert test < 17.0                          # clipped at -log(1e-7) per sample, as Keras


# -- threads ----------------------------------------------------------------------------------

def _run_threads(fn, n=8):
    errors = []
    barrier = threading.Barrier(n)

    def work(i):
        try:
            barrier.wait()
            fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("how", ["predict", "call", "fit", "summary"])
def test_concurrent_first_calls_build_once(how, tmp_path):
    x = np.random.default_rng(6).standard_normal((32, 12)).astype(np.float32)
    y = np.random.default_rng(7).integers(0, 10, 32)
    for _ in range(3):
        model = nn.Sequential([L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

        def go(i):
            if how == "predict":
                model.predict(x, verbose=0)
            elif how == "call":
                model(x[:2])
            elif how == "fit":
                if i == 0:
                    model.fit(x, y, epochs=1, verbose=0)
                else:
                    model.predict(x, verbose=0)
            else:
                model.build((None, 12))
                model.summary(print_fn=lambda s: None)
        _run_threads(go)
        assert len(model.weights) == 4 and model.built
        model.fit(x, y, epochs=1, verbose=0)
        model.save(tmp_path / "m.nnet")
        np.testing.assert_array_equal(nn.load_model(tmp_path / "m.nnet").predict(x, verbose=0),
                                      model.predict(x, verbose=0))


def test_predict_from_threads_while_another_trains():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((256, 12)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    model = nn.Sequential([nn.Input((12,)), L.Dense(32, activation="relu"),
                           L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    reference = model.predict(x[:8], verbose=0)
    results = []

    def go(i):
        if i == 0:
            model.fit(x, y, epochs=3, batch_size=16, verbose=0)
        else:
            for _ in range(20):
                p = model.predict(x[:8], verbose=0)
                results.append(p)
    _run_threads(go, n=4)
    assert results and all(np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1, atol=1e-5)
                           for p in results)
    assert not np.allclose(model.predict(x[:8], verbose=0), reference)  # training happened


def test_failed_build_leaves_no_half_built_layers():
    model = nn.Sequential([L.Dense(4), L.LSTM(3)])  # LSTM needs 3-D input
    with pytest.raises(ValueError, match="LSTM"):
        model.build((None, 5))
    assert not model.built and all(not lay.built and not lay.weights for lay in model.layers)
    model2 = nn.Sequential([L.Dense(4), L.Dense(2)])
    model2.build((None, 5))
    assert len(model2.weights) == 4


def test_a_callback_that_raises_leaves_no_epoch_state_behind():
    """fit releases its epoch Generator in a finally: set_seed repeats afterwards."""
    class Boom(nn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    x = np.random.default_rng(9).standard_normal((16, 3)).astype(np.float32)
    model = nn.Sequential([nn.Input((3,)), L.Dropout(0.5), L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[Boom()])
    nn.set_seed(0)
    a = nn.random.get_generator().random(3)
    nn.set_seed(0)
    b = nn.random.get_generator().random(3)
    np.testing.assert_array_equal(a, b)


def test_gradients_through_activations_that_keep_their_input():
    """gelu / silu need the forward input in backward: Dense keeps z, Activation keeps x, in
    their ctx (nothing rides on the output array)."""
    rng = np.random.default_rng(10)
    x = nn.Input((3,), dtype="float64")
    h = L.Dense(4, activation="gelu", **F64)(x)
    h = L.Activation("silu", **F64)(h)
    model = nn.Model(x, L.Dense(2, activation="gelu_approximate", **F64)(h))
    _randomize(model, rng)
    y = model(rng.standard_normal((2, 3)))
    assert y.base is None or y.base.shape == y.shape  # a plain array, no hidden copy
    _check_gradients(model, rng.standard_normal((3, 3)), rng)
