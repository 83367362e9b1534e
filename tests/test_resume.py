"""Checkpoint and resume: a run stopped after epoch k, saved, loaded (in this process or a fresh
one) and continued with fit(initial_epoch=k) ends with the same weights, bit for bit, as the
uninterrupted run: shuffling order, dropout masks (Dropout, LSTM dropout and recurrent_dropout,
unseeded and seeded), optimizer slots, iterations and the learning-rate schedule all restore."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks as C
from nanonet import layers as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 4
FIT = dict(batch_size=16, validation_split=0.25, verbose=0)


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((56, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, 56)
    return x, y


def _model(seed=123, seeded_layers=False):
    """LSTM with dropout and recurrent_dropout, Dropout, and a decaying learning rate."""
    nn.set_seed(seed)
    s = (lambda k: k) if seeded_layers else (lambda k: None)
    model = nn.Sequential([
        L.Input((6, 3)),
        L.LSTM(8, return_sequences=True, dropout=0.2, recurrent_dropout=0.3, seed=s(1)),
        L.Dropout(0.25, seed=s(2)),
        L.LSTM(6, recurrent_dropout=0.2, seed=s(3)),
        L.Dense(3, activation="softmax"),
    ])
    lr = nn.schedules.ExponentialDecay(0.02, decay_steps=3, decay_rate=0.7)
    model.compile(optimizer=nn.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _assert_bit_identical(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        np.testing.assert_array_equal(u, v)


@pytest.fixture(scope="module")
def uninterrupted():
    x, y = _data()
    model = _model()
    history = model.fit(x, y, epochs=EPOCHS, **FIT)
    return model, history.history


@pytest.mark.parametrize("k", [1, 2, 3])
def test_resume_in_process_is_bit_identical(uninterrupted, tmp_path, k):
    full, full_history = uninterrupted
    x, y = _data()
    part = _model()
    part.fit(x, y, epochs=k, **FIT)
    part.save(tmp_path / "ckpt.nnet")
    nn.set_seed(999)  # whatever the global stream does meanwhile
    nn.random.get_generator().random(17)
    resumed = nn.load_model(tmp_path / "ckpt.nnet")
    assert resumed.optimizer.iterations == part.optimizer.iterations == 3 * k
    history = resumed.fit(x, y, epochs=EPOCHS, initial_epoch=k, **FIT)
    _assert_bit_identical(resumed, full)
    assert history.epoch == list(range(k, EPOCHS))
    for key, values in full_history.items():
        assert history.history[key] == values[k:], key
    assert resumed.optimizer.iterations == full.optimizer.iterations == 3 * EPOCHS


def test_continuing_the_same_model_object_is_bit_identical(uninterrupted):
    full, _ = uninterrupted
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, **FIT)
    model.fit(x, y, epochs=EPOCHS, initial_epoch=1, **FIT)
    _assert_bit_identical(model, full)


def test_seeded_layers_resume_bit_identical(tmp_path):
    x, y = _data()
    full = _model(seeded_layers=True)
    full.fit(x, y, epochs=3, **FIT)
    part = _model(seeded_layers=True)
    part.fit(x, y, epochs=2, **FIT)
    part.save(tmp_path / "ckpt.nnet")
    resumed = nn.load_model(tmp_path / "ckpt.nnet")
    resumed.fit(x, y, epochs=3, initial_epoch=2, **FIT)
    _assert_bit_identical(resumed, full)


class _StopAfter(C.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


def test_stopped_by_callback_resumed_from_model_checkpoint(uninterrupted, tmp_path):
    full, _ = uninterrupted
    x, y = _data()
    model = _model()
    pattern = str(tmp_path / "ckpt" / "epoch-{epoch:02d}-{val_loss:.3f}.nnet")
    history = model.fit(x, y, epochs=EPOCHS, callbacks=[_StopAfter(2), C.ModelCheckpoint(pattern)],
                        **FIT)
    assert history.epoch == [0, 1]
    files = sorted(os.listdir(tmp_path / "ckpt"))
    assert [f[:9] for f in files] == ["epoch-01-", "epoch-02-"]
    assert files[1] == f"epoch-02-{history.history['val_loss'][1]:.3f}.nnet"
    resumed = nn.load_model(tmp_path / "ckpt" / files[1])
    resumed.fit(x, y, epochs=EPOCHS, initial_epoch=2, **FIT)
    _assert_bit_identical(resumed, full)


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import nanonet as nn
    src, dst, threads, k, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \\
        int(sys.argv[5])
    nn.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((56, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, 56)
    model = nn.load_model(src)
    model.fit(x, y, epochs=epochs, initial_epoch=k, batch_size=16, validation_split=0.25,
              verbose=0)
    model.save(dst)
""")


def test_resume_in_a_fresh_process_is_bit_identical(uninterrupted, tmp_path):
    full, _ = uninterrupted
    x, y = _data()
    part = _model()
    part.fit(x, y, epochs=2, **FIT)
    part.save(tmp_path / "ckpt.nnet")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(nn.__file__))) + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "ckpt.nnet"),
                           str(tmp_path / "done.nnet"), str(nn.get_num_threads()), "2",
                           str(EPOCHS)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    _assert_bit_identical(nn.load_model(tmp_path / "done.nnet"), full)


def test_fit_leaves_the_global_stream_alone_after_training():
    x, y = _data()
    model = _model()
    nn.set_seed(5)
    model.fit(x, y, epochs=1, **FIT)  # draws the training seed once, nothing else
    after_fit = nn.random.get_generator().random(4)
    nn.set_seed(5)
    nn.random.draw_seed()
    np.testing.assert_array_equal(nn.random.get_generator().random(4), after_fit)


def test_random_state_helpers():
    nn.set_seed(3)
    state = nn.random.get_state()
    a = nn.random.get_generator().random(5)
    nn.random.set_state(state)
    np.testing.assert_array_equal(nn.random.get_generator().random(5), a)
    g1 = nn.random.derive_generator(7, 2)
    g2 = nn.random.derive_generator(7, 2)
    assert g1.random() == g2.random()
    assert nn.random.derive_generator(7, 3).random() != nn.random.derive_generator(7, 2).random()
    with pytest.raises(ValueError, match="set_state"):
        nn.random.set_state({"bit_generator": "Evil"})
    with pytest.raises(ValueError, match="set_state"):
        nn.random.set_state({"bit_generator": "PCG64", "state": {"state": "x"}})
    with pytest.raises(ValueError, match="set_state"):
        nn.random.set_state("nope")
