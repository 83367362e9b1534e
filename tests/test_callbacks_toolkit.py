"""ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, CSVLogger and TerminateOnNaN
against hand-computed values (Keras 3 semantics)."""
import csv
import math
import os
import warnings

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks as C
from nanonet import layers as L


def _model(lr=0.1, metrics=("accuracy",), seed=0):
    nn.set_seed(seed)
    model = nn.Sequential([L.Input((4,)), L.Dense(6, activation="relu"),
                           L.Dense(3, activation="softmax")])
    model.compile(optimizer=nn.optimizers.SGD(lr), loss="sparse_categorical_crossentropy",
                  metrics=list(metrics))
    return model


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def _drive(callback, model, logs_per_epoch, key="val_loss"):
    """Call the epoch hooks by hand with the given monitored values; returns (lr after each
    epoch, the logs dicts)."""
    callback.set_model(model)
    callback.on_train_begin()
    lrs, all_logs = [], []
    for epoch, value in enumerate(logs_per_epoch):
        callback.on_epoch_begin(epoch)
        logs = {"loss": 1.0, key: value}
        callback.on_epoch_end(epoch, logs)
        lrs.append(model.optimizer.learning_rate)
        all_logs.append(logs)
    callback.on_train_end()
    return lrs, all_logs


# -- ReduceLROnPlateau --------------------------------------------------------------------------
def test_reduce_lr_factor_patience_cooldown_min_lr():
    model = _model(lr=0.1)
    cb = C.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1,
                             min_lr=0.02)
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
    lrs, logs = _drive(cb, model, values)
    # e0, e1 improve; e2 wait 1; e3 wait 2 -> 0.05, cooldown 1; e4 cooldown ends, wait 1;
    # e5 wait 2 -> 0.025; e6 wait 1; e7 -> max(0.0125, 0.02) = 0.02; e8 wait 1; e9 stays 0.02.
    want = [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)
    # logs get the learning rate in force during the epoch (before a reduction at its end)
    np.testing.assert_allclose([g["learning_rate"] for g in logs],
                               [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02])


def test_reduce_lr_min_delta_and_improvement_resets_wait():
    model = _model(lr=1.0)
    cb = C.ReduceLROnPlateau(factor=0.1, patience=1, min_delta=0.1)
    # 0.95 is not below 1.0 - 0.1 -> reduce; 0.8 improves on 1.0 by 0.2 -> no reduction; 0.75
    # improves by 0.05 only -> reduce.
    lrs, _ = _drive(cb, model, [1.0, 0.95, 0.8, 0.75])
    np.testing.assert_allclose(lrs, [1.0, 0.1, 0.1, 0.01], rtol=1e-12)
    assert cb.best == 0.8


def test_reduce_lr_max_mode_and_auto_direction_from_metric():
    x, y = _data()
    for mode in ("max", "auto"):
        model = _model(lr=0.2)
        model.fit(x, y, epochs=1, verbose=0)  # the model now knows its metrics' directions
        cb = C.ReduceLROnPlateau(monitor="val_accuracy", mode=mode, factor=0.5, patience=1)
        lrs, _ = _drive(cb, model, [0.5, 0.6, 0.55, 0.7], key="val_accuracy")
        np.testing.assert_allclose(lrs, [0.2, 0.2, 0.1, 0.1], rtol=1e-12)


def test_reduce_lr_in_fit_records_learning_rate():
    x, y = _data()
    model = _model(lr=0.05)
    cb = C.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    # epoch 0 sets the best value; every later epoch fails to beat it by 10 and halves the rate
    # at its end (the logs show the rate the epoch trained with)
    np.testing.assert_allclose(h.history["learning_rate"], [0.05, 0.05, 0.025])
    assert model.optimizer.learning_rate == pytest.approx(0.0125)


def test_reduce_lr_errors_and_warnings():
    with pytest.raises(ValueError, match="factor must be in"):
        C.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        C.ReduceLROnPlateau(mode="up")
    with pytest.raises(ValueError, match="patience"):
        C.ReduceLROnPlateau(patience=-1)
    with pytest.raises(ValueError, match="min_lr"):
        C.ReduceLROnPlateau(min_lr=-1.0)
    model = _model()
    cb = C.ReduceLROnPlateau(monitor="val_mystery")
    cb.set_model(model)
    with pytest.raises(ValueError, match="maximized or minimized"):
        cb.on_epoch_end(0, {"val_mystery": 1.0})
    cb = C.ReduceLROnPlateau(monitor="val_loss")
    cb.set_model(model)
    with pytest.warns(UserWarning, match="val_loss"):
        cb.on_epoch_end(0, {"loss": 1.0})
    scheduled = _model()
    scheduled.compile(optimizer=nn.optimizers.SGD(nn.schedules.ExponentialDecay(0.1, 10, 0.5)),
                      loss="mse")
    cb = C.ReduceLROnPlateau(patience=0)
    with pytest.raises(TypeError, match="schedule"):
        _drive(cb, scheduled, [1.0, 2.0])


# -- LearningRateScheduler ----------------------------------------------------------------------
def test_learning_rate_scheduler_two_and_one_argument():
    x, y = _data()
    model = _model(lr=0.1)
    seen = []

    def halve_after_first(epoch, lr):
        seen.append((epoch, lr))
        return lr if epoch == 0 else lr * 0.5

    h = model.fit(x, y, epochs=4, verbose=0,
                  callbacks=[C.LearningRateScheduler(halve_after_first)])
    np.testing.assert_allclose(h.history["learning_rate"], [0.1, 0.05, 0.025, 0.0125])
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    np.testing.assert_allclose([lr for _, lr in seen], [0.1, 0.1, 0.05, 0.025])

    model = _model(lr=0.1)
    h = model.fit(x, y, epochs=3, initial_epoch=1, verbose=0,
                  callbacks=[C.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    np.testing.assert_allclose(h.history["learning_rate"], [0.02, 0.03])


def test_learning_rate_scheduler_changes_training():
    x, y = _data()
    a, b = _model(lr=0.1), _model(lr=0.1)
    a.fit(x, y, epochs=2, verbose=0, shuffle=False)
    b.fit(x, y, epochs=2, verbose=0, shuffle=False,
          callbacks=[C.LearningRateScheduler(lambda epoch, lr: 1e-9)])
    assert not np.allclose(a.get_weights()[0], b.get_weights()[0])


def test_learning_rate_scheduler_verbose_and_errors(capsys):
    x, y = _data()
    model = _model(lr=0.1)
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[C.LearningRateScheduler(lambda e, lr: 0.5, verbose=1)])
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.5." in capsys.readouterr().out
    for bad in ("0.1", -0.1, float("nan"), None, True):
        with pytest.raises(ValueError, match="positive finite float"):
            model.fit(x, y, epochs=1, verbose=0,
                      callbacks=[C.LearningRateScheduler(lambda e, lr, v=bad: v)])
    with pytest.raises(ValueError, match="callable"):
        C.LearningRateScheduler(0.1)
    # a TypeError raised inside the schedule is not mistaken for the one-argument form
    def broken(epoch, lr):
        raise TypeError("inside the schedule")
    with pytest.raises(TypeError, match="inside the schedule"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[C.LearningRateScheduler(broken)])


# -- CSVLogger ----------------------------------------------------------------------------------
def _read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_contents_with_validation(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    model = _model()
    h = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25,
                  callbacks=[C.CSVLogger(path)])
    rows = _read(path)
    keys = sorted(h.history)
    assert rows[0] == ["epoch"] + keys == ["epoch", "accuracy", "loss", "val_accuracy",
                                           "val_loss"]
    assert len(rows) == 4
    for epoch, row in enumerate(rows[1:]):
        assert row == [str(epoch)] + [str(h.history[k][epoch]) for k in keys]
        assert [float(v) for v in row[1:]] == [h.history[k][epoch] for k in keys]


def test_csv_logger_without_validation_adds_na_columns_and_appends(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    model = _model(metrics=())
    h = model.fit(x, y, epochs=2, verbose=0, callbacks=[C.CSVLogger(path, separator=";")])
    rows = _read(path)
    assert rows[0] == ["epoch;loss;val_loss"]
    assert rows[1] == [f"0;{h.history['loss'][0]};NA"]
    h2 = model.fit(x, y, epochs=4, initial_epoch=2, verbose=0,
                   callbacks=[C.CSVLogger(path, separator=";", append=True)])
    rows = _read(path)
    assert len(rows) == 5 and rows[0] == ["epoch;loss;val_loss"]  # header written once
    assert rows[3] == [f"2;{h2.history['loss'][0]};NA"]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(path)])  # overwrite
    assert len(_read(path)) == 2


def test_csv_logger_append_to_new_file_writes_header(tmp_path):
    x, y = _data()
    path = tmp_path / "new.csv"
    _model(metrics=()).fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(path, append=True)])
    assert _read(path)[0] == ["epoch", "loss", "val_loss"]
    with pytest.raises(ValueError, match="separator"):
        C.CSVLogger(path, separator=",,")


# -- TerminateOnNaN -----------------------------------------------------------------------------
def test_terminate_on_nan_stops_after_the_bad_batch(capsys):
    x, y = _data(64)
    x[20, 0] = np.nan  # in batch 1 (batch_size 16, no shuffling)
    model = _model()
    batches = []

    class Count(C.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    h = model.fit(x, y, epochs=5, batch_size=16, shuffle=False, verbose=0,
                  callbacks=[C.TerminateOnNaN(), Count()])
    assert batches == [0, 1]
    assert h.epoch == [0] and math.isnan(h.history["loss"][0])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    cb = C.TerminateOnNaN()
    cb.set_model(model)
    model.stop_training = False
    cb.on_batch_end(0, {"loss": float("inf")})
    assert model.stop_training
    model.stop_training = False
    cb.on_batch_end(0, {"loss": 0.5})
    cb.on_batch_end(0, {})
    assert not model.stop_training


# -- ModelCheckpoint ----------------------------------------------------------------------------
def test_checkpoint_save_best_only_min_and_filename(tmp_path):
    model = _model()
    pattern = str(tmp_path / "sub" / "m-{epoch:02d}-{val_loss:.2f}.nnet")
    cb = C.ModelCheckpoint(pattern, save_best_only=True)
    _drive(cb, model, [0.5, 0.7, 0.3, 0.3, 0.29])
    assert sorted(os.listdir(tmp_path / "sub")) == ["m-01-0.50.nnet", "m-03-0.30.nnet",
                                                    "m-05-0.29.nnet"]
    assert cb.best == 0.29
    loaded = nn.load_model(tmp_path / "sub" / "m-05-0.29.nnet")
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_checkpoint_max_and_auto_modes_and_threshold(tmp_path):
    x, y = _data()
    values = [0.5, 0.4, 0.6, 0.6]
    for mode in ("max", "auto"):
        model = _model()
        model.fit(x, y, epochs=1, verbose=0)
        d = tmp_path / mode
        cb = C.ModelCheckpoint(str(d / "{epoch}.nnet"), monitor="val_accuracy", mode=mode,
                               save_best_only=True)
        _drive(cb, model, values, key="val_accuracy")
        assert sorted(os.listdir(d)) == ["1.nnet", "3.nnet"]
    model = _model()
    d = tmp_path / "threshold"
    cb = C.ModelCheckpoint(str(d / "{epoch}.nnet"), mode="min", save_best_only=True,
                           initial_value_threshold=0.45)
    _drive(cb, model, [0.5, 0.4, 0.6, 0.3])
    assert sorted(os.listdir(d)) == ["2.nnet", "4.nnet"]


def test_checkpoint_every_epoch_weights_only_and_verbose(tmp_path, capsys):
    model = _model()
    cb = C.ModelCheckpoint(str(tmp_path / "w{epoch}.nnet"), save_weights_only=True, verbose=1)
    _drive(cb, model, [0.5, 0.7])
    assert sorted(os.listdir(tmp_path)) == ["w1.nnet", "w2.nnet"]
    assert f"Epoch 2: saving model to {tmp_path / 'w2.nnet'}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="weights-only"):
        nn.load_model(tmp_path / "w1.nnet")
    other = _model(seed=5)
    other.load_weights(tmp_path / "w2.nnet")
    np.testing.assert_array_equal(other.get_weights()[0], model.get_weights()[0])
    cb = C.ModelCheckpoint(str(tmp_path / "best.nnet"), save_best_only=True, verbose=1)
    _drive(cb, model, [0.5, 0.7])
    out = capsys.readouterr().out
    assert "Epoch 1: val_loss improved from inf to 0.50000, saving model to" in out
    assert "Epoch 2: val_loss did not improve from 0.50000" in out


def test_checkpoint_in_fit_saves_the_model_of_that_epoch(tmp_path):
    x, y = _data()
    model = _model()
    snapshots = []

    class Snapshot(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    model.fit(x, y, epochs=3, verbose=0, validation_split=0.25,
              callbacks=[C.ModelCheckpoint(str(tmp_path / "e{epoch}.nnet")), Snapshot()])
    for epoch in range(3):
        loaded = nn.load_model(tmp_path / f"e{epoch + 1}.nnet")
        for a, b in zip(loaded.get_weights(), snapshots[epoch]):
            np.testing.assert_array_equal(a, b)


def test_checkpoint_save_freq_batches(tmp_path):
    x, y = _data(48)
    model = _model()
    cb = C.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.nnet"), save_freq=2)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb])  # 3 batches per epoch
    # batches seen: e1 b1 b2* b3, e2 b1* b2 b3* (every second batch overall)
    assert sorted(os.listdir(tmp_path)) == ["e1-b2.nnet", "e2-b1.nnet", "e2-b3.nnet"]


def test_checkpoint_errors_and_warnings(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="save_freq"):
        C.ModelCheckpoint(str(tmp_path / "m.nnet"), save_freq="batch")
    with pytest.raises(ValueError, match="save_freq"):
        C.ModelCheckpoint(str(tmp_path / "m.nnet"), save_freq=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        C.ModelCheckpoint(str(tmp_path / "m.nnet"), mode="best")
    cb = C.ModelCheckpoint(str(tmp_path / "m-{val_acc:.2f}.nnet"))
    with pytest.raises(KeyError, match="val_acc"):
        _drive(cb, model, [0.5])
    cb = C.ModelCheckpoint(str(tmp_path / "m.nnet"), monitor="val_auc", mode="max",
                           save_best_only=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _drive(cb, model, [0.5])
    assert any("val_auc" in str(m.message) for m in w)
    assert not os.path.exists(tmp_path / "m.nnet")
