"""Data from Python code: fit / evaluate / predict over generators, iterables of (x, y) or
(x, y, sample_weight) batches and utils.PyDataset (worker threads and processes), with
steps_per_epoch, validation_steps and validation_data given as batches. The same batches as
arrays give the same weights, bit for bit."""
import math
import warnings

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L

BATCH = 8


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.integers(0, 3, n)
    sw = rng.uniform(0.5, 2.0, n)
    return x, y, sw


def _model(seed=7):
    nn.set_seed(seed)
    model = nn.Sequential([L.Input((5,)), L.Dense(6, activation="relu"), L.Dropout(0.2),
                           L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _batches(x, y, sw=None, batch=BATCH, repeat=1):
    for _ in range(repeat):
        for i in range(0, len(x), batch):
            if sw is None:
                yield x[i:i + batch], y[i:i + batch]
            else:
                yield x[i:i + batch], y[i:i + batch], sw[i:i + batch]


def _same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


class Batches(nn.utils.PyDataset):
    """A module-level PyDataset, so that worker processes can unpickle it."""

    def __init__(self, x, y, sw=None, batch=BATCH, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.sw, self.batch = x, y, sw, batch
        self.epochs_ended = 0
        self.seen = []

    def __len__(self):
        return math.ceil(len(self.x) / self.batch)

    def __getitem__(self, i):
        self.seen.append(i)
        sl = slice(i * self.batch, (i + 1) * self.batch)
        if self.sw is None:
            return self.x[sl], self.y[sl]
        return self.x[sl], self.y[sl], self.sw[sl]

    def on_epoch_end(self):
        self.epochs_ended += 1


class Reiterable:
    """An iterable (no __next__): iterated afresh every epoch."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return _batches(self.x, self.y)


def test_generator_with_steps_per_epoch_matches_arrays():
    x, y, _ = _data()
    ref = _model()
    h_ref = ref.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    got = _model()
    h = got.fit(_batches(x, y, repeat=3), steps_per_epoch=len(x) // BATCH, epochs=3,
                verbose=0)
    _same_weights(got, ref)
    assert h.history == h_ref.history


def test_sample_weight_batches_match_arrays():
    x, y, sw = _data()
    ref = _model()
    ref.fit(x, y, sample_weight=sw, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    got = _model()
    got.fit(_batches(x, y, sw, repeat=2), steps_per_epoch=5, epochs=2, verbose=0)
    _same_weights(got, ref)
    unweighted = _model()
    unweighted.fit(_batches(x, y, repeat=2), steps_per_epoch=5, epochs=2, verbose=0)
    assert not np.array_equal(unweighted.get_weights()[0], got.get_weights()[0])


def test_reiterable_runs_every_epoch_and_list_batches():
    x, y, _ = _data()
    ref = _model()
    ref.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    got = _model()
    h = got.fit(Reiterable(x, y), epochs=3, verbose=0)
    _same_weights(got, ref)
    assert h.epoch == [0, 1, 2]
    listed = _model()
    listed.fit(iter([[x[i:i + BATCH], y[i:i + BATCH]] for i in range(0, 40, BATCH)]),
               epochs=1, verbose=0)
    once = _model()
    once.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    _same_weights(listed, once)


def test_generator_that_runs_out_stops_training_with_a_warning():
    x, y, _ = _data()
    model = _model()
    with pytest.warns(UserWarning, match=r"ran out of data in epoch 2 \(batches: 0\)"):
        h = model.fit(_batches(x, y), epochs=3, verbose=0)  # no steps: epoch 1 takes all
    assert h.epoch == [0]
    model = _model()
    with pytest.warns(UserWarning, match=r"ran out of data in epoch 2 \(batches: 1 of 4\)"):
        h = model.fit(_batches(x, y), steps_per_epoch=4, epochs=3, verbose=0)  # 5 batches
    assert h.epoch == [0, 1]


@pytest.mark.parametrize("workers,processes", [(1, False), (3, False), (2, True)])
def test_pydataset_matches_arrays(workers, processes):
    x, y, sw = _data()
    ref = _model()
    h_ref = ref.fit(x, y, sample_weight=sw, batch_size=BATCH, epochs=2, shuffle=False,
                    verbose=0)
    ds = Batches(x, y, sw, workers=workers, use_multiprocessing=processes, max_queue_size=2)
    got = _model()
    h = got.fit(ds, epochs=2, shuffle=False, verbose=0)
    _same_weights(got, ref)
    assert h.history == h_ref.history
    assert ds.epochs_ended == 2
    if not processes:
        assert ds.seen == list(range(5)) * 2


def test_pydataset_shuffles_batches_repeatably():
    x, y, _ = _data(80)
    runs = []
    for _ in range(2):
        ds = Batches(x, y)
        model = _model()
        model.fit(ds, epochs=3, verbose=0)  # shuffle=True: batch order drawn every epoch
        runs.append((ds.seen, model.get_weights()))
    assert runs[0][0] == runs[1][0]
    orders = [runs[0][0][k * 10:(k + 1) * 10] for k in range(3)]
    assert all(sorted(o) == list(range(10)) for o in orders)
    assert orders[0] != list(range(10)) or orders[1] != list(range(10))
    for u, v in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(u, v)
    capped = Batches(x, y)
    _model().fit(capped, steps_per_epoch=4, epochs=1, shuffle=False, verbose=0)
    assert capped.seen == [0, 1, 2, 3]


def test_validation_data_as_batches():
    x, y, _ = _data()
    xv, yv, _ = _data(24, seed=1)
    ref = _model()
    h_ref = ref.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                    validation_data=(xv, yv), validation_batch_size=BATCH)
    for val, steps in ((Batches(xv, yv), None), (_batches(xv, yv, repeat=2), 3)):
        got = _model()
        h = got.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                    validation_data=val, validation_steps=steps)
        assert h.history["val_loss"] == h_ref.history["val_loss"]
        assert h.history["val_accuracy"] == h_ref.history["val_accuracy"]


def test_evaluate_and_predict_take_batches():
    x, y, sw = _data()
    model = _model()
    model.fit(x, y, epochs=1, verbose=0)
    want = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert model.evaluate(_batches(x, y), verbose=0, return_dict=True) == want
    assert model.evaluate(Batches(x, y, workers=2), verbose=0, return_dict=True) == want
    part = model.evaluate(x[:16], y[:16], batch_size=BATCH, verbose=0)
    assert model.evaluate(_batches(x, y), steps=2, verbose=0) == part
    weighted = model.evaluate(x, y, sample_weight=sw, batch_size=BATCH, verbose=0)
    assert model.evaluate(_batches(x, y, sw), verbose=0) == weighted
    p = model.predict(x, batch_size=BATCH, verbose=0)
    np.testing.assert_array_equal(model.predict(_batches(x, y), verbose=0), p)
    np.testing.assert_array_equal(model.predict((x[i:i + 7] for i in range(0, 40, 7)),
                                                verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(model.predict(Batches(x, y), steps=2, verbose=0), p[:16])


def test_graph_model_with_dict_batches():
    x, y, _ = _data()
    nn.set_seed(3)
    a, b = nn.Input((2,), name="a"), nn.Input((3,), name="b")
    out = L.Dense(3, activation="softmax")(L.concatenate([a, b]))
    model = nn.Model({"a": a, "b": b}, out)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    w0 = model.get_weights()
    model.fit(({"a": x[i:i + 8, :2], "b": x[i:i + 8, 2:]}, y[i:i + 8]) for i in range(0, 40, 8))
    got = model.get_weights()
    model.set_weights(w0)
    model.fit({"a": x[:, :2], "b": x[:, 2:]}, y, batch_size=8, shuffle=False, verbose=0)
    for u, v in zip(got, model.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_errors_name_the_argument():
    x, y, sw = _data()
    model = _model()
    with pytest.raises(ValueError, match=r"fit: y must be None when x is a generator"):
        model.fit(_batches(x, y), y, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: sample_weight must be None"):
        model.evaluate(Batches(x, y), sample_weight=sw, verbose=0)
    with pytest.raises(ValueError, match=r"fit: validation_split is not supported"):
        model.fit(_batches(x, y), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"batch of x must be x, \(x,\), \(x, y\) or "
                                         r"\(x, y, sample_weight\); got a tuple of 4"):
        model.fit(iter([(x, y, sw, sw)]), verbose=0)
    with pytest.raises(ValueError, match=r"fit: y is required"):
        model.fit(iter([(x,)]), verbose=0)
    with pytest.raises(ValueError, match=r"fit: x must have shape \(B, 5\)"):
        model.fit(iter([(x[:, :4], y)]), verbose=0)
    with pytest.raises(ValueError, match="predict: x gave no batches"):
        model.predict(iter([]), verbose=0)
    with pytest.raises(ValueError, match=r"PyDataset: workers must be a positive int; got 0"):
        Batches(x, y, workers=0)
    with pytest.raises(ValueError, match=r"validation_data must be a tuple"):
        model.fit(x, y, validation_data=x, verbose=0)


def test_a_failing_batch_propagates_and_the_pool_closes():
    x, y, _ = _data()

    class Broken(Batches):
        def __getitem__(self, i):
            if i == 3:
                raise RuntimeError("disk gone")
            return super().__getitem__(i)

    model = _model()
    with pytest.raises(RuntimeError, match="disk gone"):
        model.fit(Broken(x, y, workers=2), epochs=1, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=1, verbose=0)  # the model is still usable
