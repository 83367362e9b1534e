"""Callbacks: hook order through fit / evaluate / predict, History, ProgbarLogger, EarlyStopping
(patience, min_delta, mode, baseline, restore_best_weights, start_from_epoch) on hand-built
sequences and in fit, stopping from a batch hook, errors."""
import io

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks, layers


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name.startswith("on_") and callable(attr):
            calls = super().__getattribute__("calls")

            def wrapper(*args, **kwargs):
                calls.append((name,) + tuple(a for a in args if isinstance(a, int)))
                return attr(*args, **kwargs)
            return wrapper
        return attr


def _model():
    nn.set_seed(0)
    model = nn.Sequential([layers.Input((3,)), layers.Dense(4, activation="tanh"),
                           layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(n=10):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def test_hook_order_in_fit():
    rec = Recorder()
    x, y = _data(10)
    _model().fit(x, y, epochs=2, batch_size=5, validation_data=(x[:4], y[:4]), callbacks=[rec],
                 verbose=0)
    epoch = ["on_epoch_begin", "on_train_batch_begin", "on_batch_begin", "on_train_batch_end",
             "on_batch_end", "on_train_batch_begin", "on_batch_begin", "on_train_batch_end",
             "on_batch_end", "on_test_begin", "on_test_batch_begin", "on_test_batch_end",
             "on_test_end", "on_epoch_end"]
    names = [c[0] for c in rec.calls]
    assert names == ["on_train_begin"] + epoch + epoch + ["on_train_end"]
    assert [c for c in rec.calls if c[0] == "on_epoch_end"] == [("on_epoch_end", 0),
                                                                 ("on_epoch_end", 1)]
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 2}


def test_hooks_in_evaluate_and_predict():
    rec = Recorder()
    x, y = _data(10)
    model = _model()
    model.evaluate(x, y, batch_size=4, callbacks=[rec], verbose=0)
    assert [c[0] for c in rec.calls] == ["on_test_begin"] + \
        ["on_test_batch_begin", "on_test_batch_end"] * 3 + ["on_test_end"]
    rec.calls.clear()
    model.predict(x, batch_size=6, callbacks=[rec], verbose=0)
    assert [c[0] for c in rec.calls] == ["on_predict_begin"] + \
        ["on_predict_batch_begin", "on_predict_batch_end"] * 2 + ["on_predict_end"]


def test_logs_passed_to_hooks():
    seen = {}

    class Grab(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.setdefault("batch", []).append(dict(logs))

        def on_epoch_end(self, epoch, logs=None):
            seen["epoch"] = dict(logs)

        def on_predict_batch_end(self, batch, logs=None):
            seen["outputs"] = logs["outputs"]

    x, y = _data(10)
    model = _model()
    model.fit(x, y, epochs=1, batch_size=5, validation_split=0.2, callbacks=[Grab()], verbose=0)
    assert set(seen["epoch"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(isinstance(v, float) for v in seen["epoch"].values())
    assert seen["epoch"]["loss"] == seen["batch"][-1]["loss"]  # running mean at the last batch
    model.predict(x[:3], callbacks=[Grab()], verbose=0)
    assert seen["outputs"].shape == (3, 2)


def test_stop_training_from_batch_hook():
    class StopAfter(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = _data(20)
    model = _model()
    h = model.fit(x, y, epochs=5, batch_size=5, callbacks=[StopAfter()], verbose=0)
    assert h.epoch == [0] and model.optimizer.iterations == 2


def test_history_reused_and_callback_list():
    hist = callbacks.History()
    x, y = _data(10)
    model = _model()
    got = model.fit(x, y, epochs=2, callbacks=[hist], verbose=0)
    assert got is hist and hist.epoch == [0, 1] and len(hist.history["loss"]) == 2
    cl = callbacks.CallbackList([callbacks.Callback()], add_history=True, add_progbar=True,
                                model=model, verbose=1)
    assert sum(isinstance(c, callbacks.History) for c in cl) == 1
    assert sum(isinstance(c, callbacks.ProgbarLogger) for c in cl) == 1
    assert all(c.model is model for c in cl)
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a nanonet.callbacks.Callback"):
        callbacks.CallbackList([callbacks.Callback(), "early"])


def test_progbar_logger_stream():
    buf = io.StringIO()
    bar = callbacks.ProgbarLogger(stream=buf)
    bar.set_params({"verbose": 1, "epochs": 10})
    bar.on_train_begin()
    bar.on_epoch_begin(2)
    bar.on_epoch_end(2, {"loss": 0.12345678, "accuracy": 0.965, "tiny": 1e-5})
    bar.on_test_begin()
    bar.on_test_end({"loss": 1.0})  # inside fit: the validation pass prints nothing
    bar.on_train_end()
    line = buf.getvalue().strip()
    assert line.startswith("Epoch 3/10 - 0/Unknown - ") and line.endswith(
        "s - loss: 0.1235 - accuracy: 0.9650 - tiny: 1.0000e-05")
    buf.truncate(0)
    buf.seek(0)
    bar.set_params({"verbose": 0, "epochs": 1})
    bar.on_epoch_begin(0)
    bar.on_epoch_end(0, {"loss": 1.0})
    assert buf.getvalue() == ""


# -- EarlyStopping on hand-built sequences ------------------------------------------------------

class FakeModel:
    """Just what EarlyStopping touches: weights that record the epoch, stop_training, metrics."""

    def __init__(self):
        self.stop_training = False
        self.weights_epoch = -1
        self.metrics = [nn.metrics.Mean(name="loss"),
                        nn.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def get_weights(self):
        return [np.array(self.weights_epoch)]

    def set_weights(self, w):
        self.weights_epoch = int(w[0])


def _drive(cb, values, key="val_loss"):
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin()
    last = None
    for epoch, v in enumerate(values):
        model.weights_epoch = epoch
        cb.on_epoch_end(epoch, {key: v})
        last = epoch
        if model.stop_training:
            break
    cb.on_train_end()
    return model, last


def test_early_stopping_patience():
    cb = callbacks.EarlyStopping(patience=2)
    model, last = _drive(cb, [1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    assert last == 3 and cb.stopped_epoch == 3 and model.stop_training
    assert cb.best == 0.8 and cb.best_epoch == 1
    assert model.weights_epoch == 3  # restore_best_weights=False leaves the last weights

    cb = callbacks.EarlyStopping(patience=0)
    _, last = _drive(cb, [1.0, 0.9, 0.95])
    assert last == 2


def test_early_stopping_restore_best_weights():
    cb = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    model, last = _drive(cb, [1.0, 0.5, 0.7, 0.6])
    assert last == 3 and model.weights_epoch == 1
    # restored even when training ends without stopping
    cb = callbacks.EarlyStopping(patience=10, restore_best_weights=True)
    model, last = _drive(cb, [1.0, 0.5, 0.7])
    assert last == 2 and not model.stop_training and model.weights_epoch == 1


def test_early_stopping_min_delta_mode_baseline_start():
    cb = callbacks.EarlyStopping(patience=1, min_delta=0.1)
    _, last = _drive(cb, [1.0, 0.95, 0.92])  # improvements smaller than min_delta don't count
    assert last == 1 and cb.best == 1.0

    cb = callbacks.EarlyStopping(monitor="val_accuracy", patience=1)  # auto -> max
    _, last = _drive(cb, [0.5, 0.6, 0.55, 0.58], key="val_accuracy")
    assert last == 2 and cb.best == 0.6

    cb = callbacks.EarlyStopping(monitor="score", mode="max", patience=1)
    _, last = _drive(cb, [1, 2, 1, 1], key="score")
    assert last == 2 and cb.best == 2

    # improvements that stay above the baseline do not restart the wait counter
    cb = callbacks.EarlyStopping(patience=2, baseline=0.5)
    _, last = _drive(cb, [0.9, 0.8, 0.85, 0.84])
    assert last == 2
    cb = callbacks.EarlyStopping(patience=2)
    _, last = _drive(cb, [0.9, 0.8, 0.85, 0.84])
    assert last == 3 and cb.stopped_epoch == 3

    cb = callbacks.EarlyStopping(patience=0, start_from_epoch=3)
    _, last = _drive(cb, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert last == 4  # epochs 0-2 are not monitored; 3 sets best, 4 is worse -> stop


def test_early_stopping_missing_key_and_errors():
    cb = callbacks.EarlyStopping(monitor="val_loss")
    with pytest.warns(UserWarning, match="val_loss.*not available. Available metrics are: loss"):
        _drive(cb, [1.0, 0.5], key="loss")
    cb = callbacks.EarlyStopping(monitor="score")
    with pytest.raises(ValueError, match="pass mode='max' or mode='min'"):
        _drive(cb, [1.0], key="score")
    with pytest.raises(ValueError, match="mode must be one of"):
        callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience must be an int >= 0"):
        callbacks.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be a finite number"):
        callbacks.EarlyStopping(min_delta="a")


def test_early_stopping_in_fit(capsys):
    x, y = _data(40)
    model = _model()
    model.compile(optimizer=nn.optimizers.SGD(learning_rate=1e-9),
                  loss="sparse_categorical_crossentropy")
    cb = callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=1.0, verbose=1,
                                 restore_best_weights=True)
    h = model.fit(x, y, epochs=20, callbacks=[cb], verbose=0)
    assert h.epoch == [0, 1, 2]  # nothing improves by 1.0: stops after patience epochs
    out = capsys.readouterr().out
    assert "Epoch 3: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 1." in out


# -- ModelCheckpoint never overwrites a good checkpoint with a diverged model -------------------
def _diverging():
    """A linear regression with SGD far above its stable step: the weights grow ~1e4x per
    epoch and overflow float32 (inf, then NaN) after about 9 epochs."""
    nn.set_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 3)) * 100).astype(np.float32)
    y = x @ np.ones((3, 1), np.float32)
    model = nn.Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile(optimizer=nn.optimizers.SGD(learning_rate=1.0), loss="mse")
    return model, x, y


class _Snapshots(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights, self.finite = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        self.finite.append(all(np.isfinite(w).all() for w in self.weights[-1]) and
                           np.isfinite(logs["loss"]))


@pytest.mark.parametrize("save_weights_only", [False, True])
def test_model_checkpoint_keeps_the_last_finite_model_when_training_diverges(
        tmp_path, save_weights_only):
    model, x, y = _diverging()
    path = tmp_path / "ckpt.nnet"
    snaps = _Snapshots()
    cb = callbacks.ModelCheckpoint(str(path), monitor="loss",
                                   save_weights_only=save_weights_only)
    with pytest.warns(RuntimeWarning, match=r"ModelCheckpoint: epoch \d+: not saving to "
                                            r".*ckpt.nnet': (loss is (nan|inf)|weight .* holds "
                                            r"NaN or inf); the last checkpoint is kept"):
        model.fit(x, y, epochs=14, batch_size=32, callbacks=[snaps, cb], verbose=0)
    assert snaps.finite[0] and not snaps.finite[-1]
    last_good = max(k for k, ok in enumerate(snaps.finite) if ok)
    if save_weights_only:
        loaded = _diverging()[0]
        loaded.load_weights(path)  # allow_nan=False: the file holds no NaN or inf
    else:
        loaded = nn.load_model(path)
    for a, b in zip(loaded.get_weights(), snaps.weights[last_good]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_best_only_ignores_a_nan_monitored_value(tmp_path):
    model = _model()
    path = tmp_path / "best.nnet"
    cb = callbacks.ModelCheckpoint(str(path), save_best_only=True)
    cb.set_model(model)
    with pytest.warns(RuntimeWarning, match="val_loss is nan"):
        cb.on_epoch_end(0, {"val_loss": float("nan")})
    assert not path.exists() and cb.best is None  # a NaN never becomes the best value
    cb.on_epoch_end(1, {"val_loss": 0.7})
    assert path.exists() and cb.best == 0.7
    before = path.read_bytes()
    with pytest.warns(RuntimeWarning, match="val_loss is -inf"):
        cb.on_epoch_end(2, {"val_loss": float("-inf")})
    assert path.read_bytes() == before and cb.best == 0.7


def test_model_checkpoint_refuses_nan_weights_and_optimizer_slots(tmp_path):
    x, y = _data(10)
    model = _model()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.nnet"
    cb = callbacks.ModelCheckpoint(str(path), monitor="loss")
    cb.set_model(model)
    cb.on_epoch_end(0, {"loss": 0.5})
    before = path.read_bytes()
    kernel = model.layers[1].weights[0]
    good = kernel.copy()
    kernel[0, 0] = np.nan
    with pytest.warns(RuntimeWarning, match="weight 'kernel' of layer 'dense.*' holds NaN"):
        cb.on_epoch_end(1, {"loss": 0.4})
    assert path.read_bytes() == before
    kernel[...] = good
    variables = model.optimizer.variables
    variables[1] = np.full_like(variables[1], np.inf)  # Adam's first moment of one weight
    model.optimizer.set_variables(variables)
    with pytest.warns(RuntimeWarning, match=r"optimizer variables\[1\] holds NaN or inf"):
        cb.on_epoch_end(2, {"loss": 0.3})
    assert path.read_bytes() == before
    weights_only = callbacks.ModelCheckpoint(str(tmp_path / "w.nnet"), monitor="loss",
                                             save_weights_only=True)
    weights_only.set_model(model)
    weights_only.on_epoch_end(3, {"loss": 0.3})  # the weights alone are finite: saved
    assert (tmp_path / "w.nnet").exists()
