"""Sequential: whole-model float64 gradient checks, the fused softmax + cross-entropy path,
fit / evaluate / predict semantics (Keras 3 return values, validation_split, History, seeding,
sample and class weights, masks), weights, summary, config and every error path."""
import re
import zlib

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers, losses, metrics, optimizers, regularizers

from .tolerances import TOL

HIDDEN_ACTS = ["linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax"]


def _targets(rng, loss, n, c):
    if loss == "sparse_categorical_crossentropy":
        return rng.integers(0, c, n)
    if loss in ("categorical_crossentropy",):
        return np.eye(c)[rng.integers(0, c, n)]
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, (n, c)).astype(np.float64)
    return rng.standard_normal((n, c))


def _randomize(model, rng):
    model.set_weights([rng.standard_normal(w.shape) * 0.5 for w in model.weights])


def _model_gradients(model, x, y, sw=None):
    """The gradient train_on_batch applies, read back through SGD(learning_rate=1):
    w_new = w - g. Also returns the loss it reported."""
    before = [w.copy() for w in model.trainable_weights]
    value = model.train_on_batch(x, y, sample_weight=sw)
    grads = [b - w for b, w in zip(before, model.trainable_weights)]
    model.set_weights(before)
    return value, grads


def _fd_model(model, x, y, sw=None, h=1e-6):
    out = []
    for w in model.trainable_weights:
        g = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + h
            fp = model.test_on_batch(x, y, sample_weight=sw, return_dict=True)["loss"]
            w[i] = old - h
            fm = model.test_on_batch(x, y, sample_weight=sw, return_dict=True)["loss"]
            w[i] = old
            g[i] = (fp - fm) / (2 * h)
        out.append(g)
    return out


def _assert_grads_close(got, want):
    tol = TOL["float64"]["grad_fd"]
    for g, w in zip(got, want):
        scale = max(np.linalg.norm(w), 1e-3)
        # the table's bound itself, no slack: measured worst 3.6e-9 relative (0.0036 * tol)
        # over the 206 weight arrays of the gradient checks below
        assert np.linalg.norm(g - w) <= tol * scale, (g, w)


def _mlp(hidden_act, out_units, out_act, reg=None, dtype="float64", in_dim=3):
    return nn.Sequential([
        layers.Input((in_dim,), dtype=dtype),
        layers.Dense(4, activation=hidden_act, kernel_regularizer=reg, bias_regularizer=reg,
                     dtype=dtype),
        layers.Dense(out_units, activation=out_act, kernel_regularizer=reg, dtype=dtype),
    ])


LOSS_CASES = [
    ("mse", "linear", {}),
    ("mae", "tanh", {}),
    ("binary_crossentropy", "sigmoid", {}),
    ("categorical_crossentropy", "softmax", {}),            # fused path
    ("sparse_categorical_crossentropy", "softmax", {}),     # fused path
    ("categorical_crossentropy", "linear", {"from_logits": True}),
    ("sparse_categorical_crossentropy", "linear", {"from_logits": True}),
    ("binary_crossentropy", "linear", {"from_logits": True}),
]


def _loss_obj(name, kwargs):
    return losses.get(name).__class__(**kwargs) if kwargs else name


@pytest.mark.parametrize("hidden_act", HIDDEN_ACTS)
@pytest.mark.parametrize("loss,out_act,kwargs", LOSS_CASES)
def test_model_gradient_finite_differences(hidden_act, loss, out_act, kwargs):
    rng = np.random.default_rng(zlib.crc32(f"{hidden_act} {loss} {out_act}".encode()))
    reg = regularizers.L1L2(l1=0.01, l2=0.05)
    model = _mlp(hidden_act, 3, out_act, reg=reg)
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss=_loss_obj(loss, kwargs))
    _randomize(model, rng)  # random biases included
    x = rng.standard_normal((5, 3))
    y = _targets(rng, loss, 5, 3)
    value, grads = _model_gradients(model, x, y)
    assert value == pytest.approx(model.test_on_batch(x, y), rel=1e-12)
    _assert_grads_close(grads, _fd_model(model, x, y))


@pytest.mark.parametrize("loss", ["mse", "categorical_crossentropy",
                                  "sparse_categorical_crossentropy"])
def test_model_gradient_with_sample_weight(loss):
    rng = np.random.default_rng(8)
    model = _mlp("tanh", 3, "softmax" if "entropy" in loss else "linear")
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss=loss)
    _randomize(model, rng)
    x = rng.standard_normal((6, 3))
    y = _targets(rng, loss, 6, 3)
    sw = rng.uniform(0.1, 2.0, 6)
    _, grads = _model_gradients(model, x, y, sw)
    _assert_grads_close(grads, _fd_model(model, x, y, sw))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("last", ["dense", "activation"])
def test_fused_softmax_path_matches_unfused(sparse, last, monkeypatch):
    rng = np.random.default_rng(9)
    if last == "dense":
        stack = [layers.Input((4,), dtype="float64"),
                 layers.Dense(5, activation="relu", dtype="float64"),
                 layers.Dense(3, activation="softmax", dtype="float64")]
    else:
        stack = [layers.Input((4,), dtype="float64"),
                 layers.Dense(5, activation="relu", dtype="float64"),
                 layers.Dense(3, dtype="float64"), layers.Activation("softmax")]
    model = nn.Sequential(stack)
    loss = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss=loss, metrics=["accuracy"])
    _randomize(model, rng)
    x = rng.standard_normal((7, 4))
    y = _targets(rng, loss, 7, 3)
    assert model._fused()
    fused_value, fused = _model_gradients(model, x, y)
    monkeypatch.setattr(model, "_fused", lambda: False)  # force the softmax-backward path
    plain_value, plain = _model_gradients(model, x, y)
    assert fused_value[0] == pytest.approx(plain_value[0], rel=1e-12)
    assert fused_value[1] == plain_value[1]
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_fused_path_reports_probability_metrics():
    rng = np.random.default_rng(10)
    model = _mlp("tanh", 3, "softmax")
    model.compile(optimizer=optimizers.SGD(learning_rate=1e-9), loss="categorical_crossentropy",
                  metrics=["mse", "accuracy"])
    _randomize(model, rng)
    x = rng.standard_normal((8, 3))
    y = _targets(rng, "categorical_crossentropy", 8, 3)
    logs = model.train_on_batch(x, y, return_dict=True)
    p = model.predict(x, verbose=0)
    assert logs["mse"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-6)
    assert logs["accuracy"] == np.mean(p.argmax(1) == y.argmax(1))


def test_not_fused_when_from_logits_or_other_loss():
    model = _mlp("relu", 3, "softmax")
    model.compile(loss=losses.CategoricalCrossentropy(from_logits=True))
    assert not model._fused()
    model.compile(loss="mse")
    assert not model._fused()
    model.compile(loss="sparse_categorical_crossentropy")
    assert model._fused()


# -- training ---------------------------------------------------------------------------------

def _toy(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return x, y


def _classifier(seed=0, dropout=0.0):
    nn.set_seed(seed)
    stack = [layers.Input((4,)), layers.Dense(16, activation="relu")]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(3, activation="softmax"))
    return nn.Sequential(stack)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_fit_reduces_loss(optimizer):
    x, y = _toy()
    model = _classifier()
    opt = optimizers.get(optimizer)
    opt.learning_rate = 0.1 if optimizer == "sgd" else 0.01
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    losses_ = history.history["loss"]
    assert losses_[-1] < 0.6 * losses_[0]
    assert history.history["accuracy"][-1] > 0.8
    assert opt.iterations == 15 * 8


def test_seeding_makes_runs_bit_identical():
    x, y = _toy()

    def run():
        model = _classifier(seed=42, dropout=0.3)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        h = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
        return model.get_weights(), h.history

    w1, h1 = run()
    w2, h2 = run()
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    nn.set_seed(43)
    model = _classifier(seed=43, dropout=0.3)
    assert not np.array_equal(model.get_weights()[0], w1[0])


def test_history_keys_epochs_params():
    x, y = _toy(100)
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "sparse_categorical_accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=30, validation_data=(x[:20], y[:20]), verbose=0)
    assert isinstance(h, nn.callbacks.History)
    assert list(h.history) == ["loss", "accuracy", "sparse_categorical_accuracy", "val_loss",
                               "val_accuracy", "val_sparse_categorical_accuracy"]
    assert all(len(v) == 3 and all(isinstance(e, float) for e in v) for v in h.history.values())
    assert h.history["accuracy"] == h.history["sparse_categorical_accuracy"]
    assert h.epoch == [0, 1, 2]
    assert h.params == {"verbose": 0, "epochs": 3, "steps": 4}
    assert h.model is model and model.history is h
    h2 = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert h2.epoch == [3, 4] and list(h2.history) == ["loss", "accuracy",
                                                       "sparse_categorical_accuracy"]


def test_epoch_loss_is_sample_weighted_mean_of_batches():
    x, y = _toy(50)
    model = _classifier()
    model.compile(optimizer=optimizers.SGD(learning_rate=1e-9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(x, y, epochs=1, batch_size=20, shuffle=False, verbose=0)  # batches 20, 20, 10
    parts = [model.test_on_batch(x[a:b], y[a:b], return_dict=True)
             for a, b in [(0, 20), (20, 40), (40, 50)]]
    want_loss = (20 * parts[0]["loss"] + 20 * parts[1]["loss"] + 10 * parts[2]["loss"]) / 50
    assert h.history["loss"][0] == pytest.approx(want_loss, rel=1e-5)
    preds = model.predict(x, verbose=0).argmax(1)
    assert h.history["accuracy"][0] == pytest.approx(np.mean(preds == y))


def test_validation_split_takes_last_fraction_before_shuffling():
    x, y = _toy(100)
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seen = []

    class Spy(nn.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(batch)

    h = model.fit(x, y, epochs=2, batch_size=10, validation_split=0.25, callbacks=[Spy()],
                  verbose=0)
    assert max(seen) == 7 and len(seen) == 16          # 75 training samples -> 8 batches
    want = model.evaluate(x[75:], y[75:], verbose=0, return_dict=True)
    assert h.history["val_loss"][-1] == pytest.approx(want["loss"], rel=1e-6)
    assert h.history["val_accuracy"][-1] == pytest.approx(want["accuracy"])
    # validation_data overrides validation_split
    h = model.fit(x, y, epochs=1, validation_split=0.5, validation_data=(x[:10], y[:10]),
                  verbose=0)
    want = model.evaluate(x[:10], y[:10], verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(want[0], rel=1e-6)


def test_validation_freq_and_steps_per_epoch():
    x, y = _toy(64)
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    h = model.fit(x, y, epochs=4, batch_size=8, validation_data=(x, y), validation_freq=2,
                  steps_per_epoch=3, verbose=0)
    assert len(h.history["loss"]) == 4 and len(h.history["val_loss"]) == 2
    assert model.optimizer.iterations == 12


def test_evaluate_and_on_batch_return_types():
    x, y = _toy(40)
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    assert isinstance(model.train_on_batch(x, y), float)
    assert isinstance(model.test_on_batch(x, y), float)
    assert model.metrics_names == ["loss"]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["acc", metrics.SparseCategoricalAccuracy(name="sca")])
    assert model.metrics_names == ["loss", "acc", "sca"]
    res = model.evaluate(x, y, verbose=0)
    assert isinstance(res, list) and len(res) == 3 and res[1] == res[2]
    d = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(d) == ["loss", "acc", "sca"] and d["loss"] == res[0]
    t = model.train_on_batch(x[:8], y[:8], return_dict=True)
    assert set(t) == {"loss", "acc", "sca"}
    # train_on_batch reports this batch alone (metrics reset per call)
    a = model.test_on_batch(x[:8], y[:8], return_dict=True)
    b = model.test_on_batch(x[8:16], y[8:16], return_dict=True)
    assert b == model.test_on_batch(x[8:16], y[8:16], return_dict=True)
    assert a["loss"] != b["loss"]
    assert model.predict_on_batch(x[:5]).shape == (5, 3)
    # evaluate's loss is the sample-weighted mean over batches
    full = model.evaluate(x, y, batch_size=40, verbose=0)
    batched = model.evaluate(x, y, batch_size=7, verbose=0)
    np.testing.assert_allclose(full, batched, rtol=1e-5)


def test_accuracy_resolution_by_shapes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    binary = nn.Sequential([layers.Input((4,)), layers.Dense(1, activation="sigmoid")])
    binary.compile(loss="binary_crossentropy", metrics=["accuracy"])
    yb = rng.integers(0, 2, 20)
    binary.evaluate(x, yb, verbose=0)  # (B,) targets for a (B, 1) output are accepted
    assert type(binary._test_metrics[1]) is metrics.BinaryAccuracy
    onehot = nn.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    onehot.compile(loss="mse", metrics=["accuracy"])
    res = onehot.evaluate(x, np.eye(3)[rng.integers(0, 3, 20)], verbose=0)
    assert type(onehot._test_metrics[1]) is metrics.CategoricalAccuracy
    assert 0 <= res[1] <= 1


def test_predict_and_direct_call():
    x, _ = _toy(70)
    model = _classifier()
    p = model.predict(x, batch_size=16, verbose=0)
    assert p.shape == (70, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(model(x), p, rtol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), p, rtol=1e-6)
    assert model.predict(x, batch_size=16, steps=2, verbose=0).shape == (32, 3)
    np.testing.assert_allclose(model(x.astype(np.float64)), p, rtol=1e-6)


def test_sample_weight_and_class_weight():
    x, y = _toy(60)
    model = _classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    sw = np.where(y == 1, 3.0, 0.5)
    a = model.evaluate(x, y, sample_weight=sw, verbose=0)
    plain = model.evaluate(x, y, verbose=0)
    assert a[0] != plain[0]
    start = model.get_weights()
    r1 = model.train_on_batch(x, y, class_weight={0: 0.5, 1: 3.0, 2: 0.5})
    w1 = model.get_weights()
    model.set_weights(start)
    r2 = model.train_on_batch(x, y, sample_weight=sw)
    for p, q in zip(w1, model.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert r1 == r2
    # zero weight on every sample of a class removes it from the loss
    sw0 = (y != 2).astype(float)
    keep = y != 2
    model.set_weights(start)
    sub = model.evaluate(x[keep], y[keep], verbose=0)[0]
    full = model.evaluate(x, y, sample_weight=sw0, verbose=0)[0]
    assert full == pytest.approx(sub * keep.mean(), rel=1e-5)  # sum_over_batch_size


def test_regularization_is_added_to_reported_loss():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 3))
    y = rng.standard_normal((10, 2))
    model = nn.Sequential([layers.Input((3,), dtype="float64"),
                           layers.Dense(2, kernel_regularizer=regularizers.L2(0.5),
                                        dtype="float64")])
    model.compile(loss="mse")
    k, b = model.get_weights()
    mse = np.mean((x @ k + b - y) ** 2)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(mse + 0.5 * np.sum(k * k), rel=1e-12)
    assert model.losses == [pytest.approx(0.5 * np.sum(k * k))]


def test_rank3_dense_and_mask_weighting():
    class MaskFirstFeature(layers.Layer):
        """Test layer: passes x through and masks steps whose first feature is 0."""
        supports_masking = True

        def call(self, x, training=False, mask=None):
            return np.asarray(x, np.float64)

        def compute_mask(self, x, mask=None):
            return np.asarray(x)[..., 0] != 0

        def backward(self, dy):
            self.grads = []
            return dy

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 2))
    x[0, 3:, 0] = 0
    x[2, 1:, 0] = 0
    y = rng.standard_normal((3, 5, 4))
    model = nn.Sequential([layers.Input((5, 2), dtype="float64"), MaskFirstFeature(),
                           layers.Dense(4, dtype="float64")])
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse", metrics=["mae"])
    _randomize(model, rng)
    out = model.predict(x, verbose=0)
    assert out.shape == (3, 5, 4)
    mask = x[..., 0] != 0
    per_step = np.mean((out - y) ** 2, axis=-1)
    want = per_step[mask].mean()
    res = model.evaluate(x, y, verbose=0)
    assert res[0] == pytest.approx(want, rel=1e-6)
    assert res[1] == pytest.approx(np.mean(np.abs(out - y), -1)[mask].mean(), rel=1e-12)
    _, grads = _model_gradients(model, x, y)
    _assert_grads_close(grads, _fd_model(model, x, y))


# -- structure, weights, summary, config ------------------------------------------------------

def test_build_paths_and_layers_list():
    m = nn.Sequential([layers.Dense(3, input_shape=(5,)), layers.Dense(2)])
    assert m.built and m.input_shape == (None, 5) and m.output_shape == (None, 2)
    lazy = nn.Sequential()
    lazy.add(layers.Dense(3))
    assert not lazy.built
    lazy.predict(np.ones((2, 7)), verbose=0)
    assert lazy.built and lazy.layers[0].kernel.shape == (7, 3)
    explicit = nn.Sequential([layers.Dense(4)])
    explicit.build((None, 6))
    assert explicit.count_params() == 28
    withinput = nn.Sequential([layers.Input((2,)), layers.Dense(1)])
    assert len(withinput.layers) == 1  # the InputLayer is not listed
    withinput.add(layers.Dense(5))
    assert withinput.output_shape == (None, 5)
    popped = withinput.pop()
    assert popped.units == 5 and withinput.output_shape == (None, 1)


def test_model_get_set_weights_round_trip_and_errors():
    model = _classifier()
    w = model.get_weights()
    assert [a.shape for a in w] == [(4, 16), (16,), (16, 3), (3,)]
    other = _classifier(seed=5)
    other.set_weights(w)
    x, _ = _toy(10)
    np.testing.assert_array_equal(model.predict(x, verbose=0), other.predict(x, verbose=0))
    with pytest.raises(ValueError, match="has 4 weights; set_weights got 3"):
        other.set_weights(w[:3])
    bad = list(w)
    bad[2] = np.zeros((3, 16))
    with pytest.raises(ValueError, match=r"weights\[2\] is layer 'dense_\d+' weight 'kernel' of "
                                         r"shape \(16, 3\); got \(3, 16\)"):
        other.set_weights(bad)
    np.testing.assert_array_equal(other.get_weights()[0], w[0])  # nothing changed


def test_summary_output():
    model = nn.Sequential([layers.Input((64,)), layers.Dense(32, activation="relu", name="hid"),
                           layers.Dropout(0.5, name="drop"),
                           layers.Dense(10, activation="softmax", name="out")], name="mlp")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "mlp"'
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    assert any("hid (Dense)" in ln and "(None, 32)" in ln and "2,080" in ln for ln in lines)
    assert any("drop (Dropout)" in ln and "(None, 32)" in ln for ln in lines)
    assert any("out (Dense)" in ln and "(None, 10)" in ln and "330" in ln for ln in lines)
    assert "Total params: 2,410 (9.41 KB)" in text
    assert "Trainable params: 2,410" in text and "Non-trainable params: 0" in text
    with pytest.raises(ValueError, match="has not been built yet"):
        nn.Sequential([layers.Dense(2)]).summary()


def test_sequential_config_round_trip():
    model = nn.Sequential([layers.Input((4,)), layers.Dense(8, activation="tanh"),
                           layers.Dropout(0.1), layers.Dense(2, activation="softmax")])
    config = model.get_config()
    assert config["layers"][0]["class_name"] == "InputLayer"
    clone = nn.Sequential.from_config(config)
    assert clone.built and [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(clone(x), model(x))


def test_non_trainable_layer_is_frozen():
    x, y = _toy(32)
    model = _classifier()
    model.layers[0].trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    frozen = model.layers[0].get_weights()
    last = model.layers[-1].get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(last[0], model.layers[-1].get_weights()[0])
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2


def test_verbose_line_per_epoch(capsys):
    x, y = _toy(40)
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, validation_split=0.25, verbose=1)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2
    pat = (r"^Epoch 2/2 - 1/1 - \d+\.\ds - \d+[mu]s/step - loss: \d\.\d{4} - accuracy: "
           r"\d\.\d{4} - val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}$")
    assert re.match(pat, out[1]), out[1]
    model.fit(x, y, epochs=1, verbose=2)
    assert capsys.readouterr().out.startswith("Epoch 1/1 - ")
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
    model.evaluate(x, y)
    assert re.match(r"^2/2 - \d+\.\ds - \d+[mu]s/step - loss: \d\.\d{4} - "
                    r"accuracy: \d\.\d{4}$",
                    capsys.readouterr().out.strip())
    model.predict(x)
    assert re.match(r"^2/2 - \d+\.\ds - \d+[mu]s/step$", capsys.readouterr().out.strip())


# -- errors -----------------------------------------------------------------------------------

def test_fit_before_compile_and_without_loss():
    x, y = _toy(8)
    model = _classifier()
    with pytest.raises(RuntimeError, match="must be compiled before fit"):
        model.fit(x, y)
    with pytest.raises(RuntimeError, match="must be compiled before evaluate"):
        model.evaluate(x, y)
    with pytest.raises(RuntimeError, match="must be compiled before train_on_batch"):
        model.train_on_batch(x, y)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="compiled without a loss"):
        model.fit(x, y)


@pytest.mark.parametrize("call,exc,match", [
    (lambda m, x, y: m.fit(x, y[:-1]), ValueError,
     "x and y must have the same number of samples; got 16 in x and 15 in y"),
    (lambda m, x, y: m.fit(x[:, :3], y), ValueError,
     r"x must have shape \(B, 4\) to match the model input \(None, 4\); got \(16, 3\)"),
    (lambda m, x, y: m.fit(x[:, :, None], y), ValueError, r"x must have shape \(B, 4\)"),
    (lambda m, x, y: m.fit(x.astype(str), y), ValueError, "x must be a numeric array"),
    (lambda m, x, y: m.fit(x[:0], y[:0]), ValueError, "x is empty"),
    (lambda m, x, y: m.fit(x, y + 5), ValueError,
     r"class ids must be in \[0, 3\) for the model output \(None, 3\); got values in"),
    (lambda m, x, y: m.fit(x, y + 0.5), ValueError, "whole-number class ids"),
    (lambda m, x, y: m.fit(x, np.eye(3)[y]), ValueError, r"must hold class ids of shape \(B,\)"),
    (lambda m, x, y: m.fit(x, y, batch_size=0), ValueError, "batch_size must be a positive int"),
    (lambda m, x, y: m.fit(x, y, epochs=-1), ValueError, "epochs must be an int >= 0"),
    (lambda m, x, y: m.fit(x, y, validation_split=1.0), ValueError,
     r"validation_split must be a float in \[0, 1\)"),
    (lambda m, x, y: m.fit(x, y, validation_split=0.95), ValueError,
     "leaves 0 for training and 16 for validation"),
    (lambda m, x, y: m.fit(x, y, validation_data=(x,)), ValueError,
     "validation_data must be a tuple"),
    (lambda m, x, y: m.fit(x, y, validation_data=(x[:, :2], y)), ValueError,
     r"validation_data\[0\] must have shape \(B, 4\)"),
    (lambda m, x, y: m.fit(x, y, verbose=3), ValueError, "verbose must be 0, 1, 2 or 'auto'"),
    (lambda m, x, y: m.fit(x, y, sample_weight=np.ones(3)), ValueError,
     r"sample_weight must have one entry per sample \(16\)"),
    (lambda m, x, y: m.fit(x, y, sample_weight=np.ones(16), class_weight={0: 1}), ValueError,
     "class_weight or sample_weight, not both"),
    (lambda m, x, y: m.fit(x, y, class_weight=[1, 2]), ValueError, "class_weight must be a dict"),
    (lambda m, x, y: m.fit(x, y, callbacks=[print]), TypeError,
     r"callbacks\[0\] must be a nanonet.callbacks.Callback"),
    (lambda m, x, y: m.evaluate(x, y, batch_size=-2), ValueError, "batch_size"),
    (lambda m, x, y: m.predict(x[:, :1]), ValueError, r"x must have shape \(B, 4\)"),
    (lambda m, x, y: m.predict(None), ValueError, "x is required"),
])
def test_bad_input_errors(call, exc, match):
    x, y = _toy(16)
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(exc, match=match):
        call(model, x, y)


def test_categorical_target_shape_error_has_hint():
    x, y = _toy(16)
    model = _classifier()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"y must have shape \(B, 3\) to match the model output "
                                         r"\(None, 3\) for loss 'categorical_crossentropy'; got "
                                         r"\(16,\) \(for integer class ids use loss="
                                         r"'sparse_categorical_crossentropy'"):
        model.fit(x, y)


def test_compile_and_structure_errors():
    model = _classifier()
    with pytest.raises(ValueError, match=r"Unknown loss 'focal_loss'; valid names: .*'mse'"):
        model.compile(loss="focal_loss")
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adadelta'"):
        model.compile(optimizer="adadelta", loss="mse")
    with pytest.raises(ValueError, match=r"Unknown metric 'f1'; valid names: .*'accuracy'"):
        model.compile(loss="mse", metrics=["f1"])
    with pytest.raises(ValueError, match="metrics must be a list"):
        model.compile(loss="mse", metrics="accuracy")
    with pytest.raises(ValueError, match="metric names must be unique"):
        model.compile(loss="mse", metrics=["mse", "mse"])
    with pytest.raises(TypeError, match="expected a nanonet layer; got int"):
        model.add(3)
    with pytest.raises(ValueError, match="must have unique names"):
        model.add(model.layers[0])
    with pytest.raises(ValueError, match="InputLayer .* may only be the first"):
        model.add(layers.Input((3,)))
    with pytest.raises(TypeError, match="must be a list of layers"):
        nn.Sequential(layers.Dense(2))
    with pytest.raises(ValueError, match="input_shape is unknown"):
        nn.Sequential([layers.Dense(2)]).build()
    with pytest.raises(ValueError, match="has no layers"):
        nn.Sequential().build((None, 3))
    with pytest.raises(ValueError, match="not built yet"):
        nn.Sequential([layers.Dense(2)]).count_params()


def test_loss_objects_direct():
    y = np.array([0, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    want = -(np.log(0.7) + np.log(0.8)) / 2
    assert losses.SparseCategoricalCrossentropy()(y, p) == pytest.approx(want, rel=1e-6)
    assert losses.CategoricalCrossentropy()(np.eye(3)[y], p) == pytest.approx(want, rel=1e-6)
    assert losses.MeanSquaredError()(np.zeros((2, 3)), p) == pytest.approx(np.mean(p ** 2))
    assert losses.get("mae").name == "mean_absolute_error"
    cfg = losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1).get_config()
    assert losses.deserialize({"class_name": "BinaryCrossentropy", "config": cfg}).get_config() \
        == cfg
    smooth = losses.CategoricalCrossentropy(label_smoothing=0.3)
    t = np.eye(3)[y] * 0.7 + 0.1
    assert smooth(np.eye(3)[y], p) == pytest.approx(-np.mean(np.sum(t * np.log(p), 1)), rel=1e-6)
    with pytest.raises(ValueError, match="from_logits must be True or False"):
        losses.CategoricalCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\]"):
        losses.BinaryCrossentropy(label_smoothing=2)
    with pytest.raises(ValueError, match=r"sparse y_true must hold one class id per row"):
        losses.SparseCategoricalCrossentropy()(np.zeros((2, 3)), p)
    with pytest.raises(ValueError, match=r"y_true must have the shape of y_pred \(2, 3\)"):
        losses.MeanSquaredError()(np.zeros((2, 2)), p)


def test_metric_objects_direct():
    m = metrics.BinaryAccuracy(threshold=0.7)
    m.update_state(np.array([[1], [0], [1]]), np.array([[0.8], [0.75], [0.6]]))
    assert m.result() == pytest.approx(1 / 3)
    m.update_state(np.array([[1]]), np.array([[0.9]]), sample_weight=[3.0])
    assert m.result() == pytest.approx((1 + 3) / 6)
    m.reset_state()
    assert m.result() == 0.0
    mse = metrics.get("mse")
    assert mse.name == "mse" and mse.direction == "down"
    mse.update_state(np.zeros((2, 2)), np.ones((2, 2)) * 2)
    assert mse.result() == 4.0
    assert metrics.get("accuracy", (4,), (4, 3)).direction == "up"
    assert metrics.deserialize(metrics.serialize(metrics.BinaryAccuracy(threshold=0.2))) \
        .threshold == 0.2
    with pytest.raises(ValueError, match="needs y_true_shape and y_pred_shape"):
        metrics.get("accuracy")
    with pytest.raises(ValueError, match="Could not interpret metric"):
        metrics.get(3)


def test_summary_never_cuts_the_parameter_count():
    model = nn.Sequential([nn.layers.Embedding(20000, 128), nn.layers.Dense(4)])
    model.build((None, 10))
    lines = []
    model.summary(print_fn=lines.append)
    assert any(line.rstrip().endswith("2,560,000") for line in lines), lines
