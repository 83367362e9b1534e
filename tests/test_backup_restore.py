"""BackupAndRestore: a fit interrupted mid-epoch (an exception from a callback) and run again
with a BackupAndRestore on the same directory continues from the last finished epoch and ends
bit-identical to an uninterrupted run, in the same model object or a new one (as a new process
would build); the backups, double_checkpoint and delete_checkpoint behave as Keras's."""
import os

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks as C
from nanonet import layers as L

EPOCHS = 4
FIT = dict(batch_size=8, epochs=EPOCHS, validation_split=0.25, verbose=0)


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((48, 5, 3)).astype(np.float32), rng.integers(0, 3, 48)


def _model(seed=11):
    """Dropout (unseeded and seeded), LSTM recurrent dropout and a decaying learning rate: every
    kind of state a resumed run must restore."""
    nn.set_seed(seed)
    model = nn.Sequential([
        L.Input((5, 3)),
        L.LSTM(6, recurrent_dropout=0.2),
        L.Dropout(0.3),
        L.Dense(8, activation="relu"),
        L.Dropout(0.2, seed=5),
        L.Dense(3, activation="softmax"),
    ])
    lr = nn.schedules.ExponentialDecay(0.03, decay_steps=4, decay_rate=0.8)
    model.compile(optimizer=nn.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class Interrupt(C.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("interrupted")


@pytest.fixture(scope="module")
def uninterrupted():
    x, y = _data()
    model = _model()
    history = model.fit(x, y, **FIT)
    return model, history.history


def _assert_same(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("new_object", [False, True])
@pytest.mark.parametrize("epoch", [1, 3])
def test_interrupted_fit_resumes_bit_identical(uninterrupted, tmp_path, epoch, new_object):
    full, full_history = uninterrupted
    x, y = _data()
    backup = str(tmp_path / "backup")
    model = _model()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, callbacks=[C.BackupAndRestore(backup), Interrupt(epoch, 2)], **FIT)
    assert os.listdir(backup) == [f"backup-e{epoch:06d}-b{0:09d}.nnet"]
    assert not np.array_equal(model.get_weights()[0], full.get_weights()[0])
    if new_object:  # a new process: another seed, other weights, the global stream moved on
        model = _model(seed=999)
        nn.random.get_generator().random(13)
    history = model.fit(x, y, callbacks=[C.BackupAndRestore(backup)], **FIT)
    _assert_same(model, full)
    assert history.epoch == list(range(epoch, EPOCHS))
    for key, values in full_history.items():
        assert history.history[key] == values[epoch:], key
    assert model.optimizer.iterations == full.optimizer.iterations
    assert not os.path.exists(backup)  # delete_checkpoint=True: gone after a finished fit


def test_without_a_backup_fit_starts_at_the_beginning(uninterrupted, tmp_path):
    full, _ = uninterrupted
    x, y = _data()
    model = _model()
    cb = C.BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    history = model.fit(x, y, callbacks=[cb], **FIT)
    _assert_same(model, full)
    assert history.epoch == list(range(EPOCHS))
    assert os.listdir(tmp_path / "b") == [f"backup-e{EPOCHS:06d}-b{0:09d}.nnet"]
    # Run again: everything was done, so no epoch runs and nothing changes.
    history = model.fit(x, y, callbacks=[cb], **FIT)
    assert history.epoch == []
    _assert_same(model, full)


def test_batch_frequency_and_double_checkpoint(tmp_path):
    x, y = _data()
    backup = tmp_path / "b"
    model = _model()
    cb = C.BackupAndRestore(backup, save_freq=2, double_checkpoint=True)
    with pytest.raises(RuntimeError):
        model.fit(x, y, callbacks=[cb, Interrupt(1, 4)], **FIT)  # 5 batches per epoch
    names = sorted(os.listdir(backup))
    assert names == [f"backup-e000001-b{2:09d}.nnet", f"backup-e000001-b{4:09d}.nnet"]
    # The latest backup is damaged: the previous one is used, with a warning.
    with open(backup / names[1], "wb") as f:
        f.write(b"not a zip")
    resumed = _model(seed=3)
    with pytest.warns(RuntimeWarning, match="trying the previous backup"):
        history = resumed.fit(x, y, callbacks=[C.BackupAndRestore(backup)], **FIT)
    assert history.epoch == [1, 2, 3]  # an in-epoch backup restarts its epoch


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"BackupAndRestore: save_freq must be 'epoch' or a "
                                         r"positive int; got 0"):
        C.BackupAndRestore(tmp_path, save_freq=0)
    with pytest.raises(ValueError, match=r"BackupAndRestore: backup_dir must be a non-empty"):
        C.BackupAndRestore("")
    model = nn.Sequential([L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"BackupAndRestore: model .* must be built"):
        model.fit(iter([(np.zeros((4, 3)), np.zeros((4, 2)))]), verbose=0,  # unbuilt until then
                  callbacks=[C.BackupAndRestore(tmp_path / "b")])
