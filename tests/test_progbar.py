"""The progress display: utils.Progbar and the ProgbarLogger that fit / evaluate / predict add.
On a terminal a bar redrawn in place (rate-limited); elsewhere a line every log_interval
seconds and one at the end; verbose=2 only the end line."""
import io
import re
import time

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks as C
from nanonet import layers as L
from nanonet.utils import Progbar


class Tty(io.StringIO):
    def isatty(self):
        return True


def _model():
    nn.set_seed(0)
    model = nn.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def test_terminal_bar_redraws_in_place_and_ends_with_the_elapsed_time():
    out = Tty()
    bar = Progbar(4, width=8, stream=out, interval=0.0)
    for i in range(4):
        bar.update(i + 1, {"loss": 1.0 / (i + 1)})
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 4 and text.endswith("\n")
    assert re.match(r"^1/4 \[==>     \] - ETA: \d+\.\ds - \d+(us|ms)/step - loss: 1\.0000 *$",
                    frames[0]), frames[0]
    assert re.match(r"^4/4 \[========\] - \d+\.\ds - \d+(us|ms)/step - loss: 0\.2500 *\n$",
                    frames[3]), frames[3]
    # a shorter line blanks what the longer one before it left on screen
    out = Tty()
    bar = Progbar(2, width=4, stream=out, interval=0.0)
    bar.update(1, {"loss": 1.0, "a_long_metric_name": 2.0})
    bar.update(2, {"loss": 1.0})
    first, second = out.getvalue().split("\r")[1:]
    assert len(second.rstrip("\n")) >= len(first)


def test_terminal_redraws_are_rate_limited():
    out = Tty()
    bar = Progbar(None, stream=out, interval=0.1)
    t0 = time.perf_counter()
    for i in range(20000):
        bar.update(i + 1, {"loss": 0.5})
    elapsed = time.perf_counter() - t0
    redraws = out.getvalue().count("\r")
    assert redraws <= elapsed / 0.1 + 2, (redraws, elapsed)
    bar.update(20000, {"loss": 0.5}, finalize=True)
    last = out.getvalue().split("\r")[-1]
    assert re.match(r"^20000/Unknown - \d+\.\ds - \d+(us|ms)/step - loss: 0\.5000 *\n$", last)


def test_not_a_terminal_logs_a_line_every_log_interval():
    out = io.StringIO()
    bar = Progbar(3, stream=out, log_interval=0.0, prefix="Epoch 1/2 - ")
    for i in range(3):
        bar.update(i + 1, {"loss": 0.5})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert re.match(r"^Epoch 1/2 - 1/3 - \d+\.\ds - ETA: \d+\.\ds - \d+(us|ms)/step - "
                    r"loss: 0\.5000$", lines[0]), lines[0]
    assert re.match(r"^Epoch 1/2 - 3/3 - \d+\.\ds - \d+(us|ms)/step - loss: 0\.5000$",
                    lines[2]), lines[2]
    quiet = io.StringIO()
    bar = Progbar(3, stream=quiet, log_interval=3600.0)
    for i in range(3):
        bar.update(i + 1)
    assert len(quiet.getvalue().splitlines()) == 1  # only the end
    two = Tty()
    bar = Progbar(3, stream=two, verbose=2, interval=0.0)
    for i in range(3):
        bar.update(i + 1)
    assert "\r" not in two.getvalue() and len(two.getvalue().splitlines()) == 1
    silent = Tty()
    bar = Progbar(3, stream=silent, verbose=0)
    bar.update(3)
    assert silent.getvalue() == ""


def test_progbar_checks_its_arguments():
    with pytest.raises(ValueError, match=r"Progbar: target must be an int >= 0 or None; got -1"):
        Progbar(-1)
    with pytest.raises(ValueError, match=r"Progbar: verbose must be 0, 1 or 2; got 3"):
        Progbar(3, verbose=3)


def test_fit_on_a_terminal_shows_the_epoch_then_a_live_bar():
    x, y = _data()
    out = Tty()
    model = _model()
    model.fit(x, y, batch_size=8, epochs=2, validation_split=0.2, verbose=1,
              callbacks=[C.ProgbarLogger(stream=out, interval=0.0)])
    text = out.getvalue()
    assert text.startswith("Epoch 1/2\n")
    assert "\nEpoch 2/2\n" in text
    ends = [f for f in text.split("\r")[1:] if f.endswith("\n")]
    assert len(ends) == 2
    assert re.match(r"^4/4 \[=+\] - \d+\.\ds - \d+(us|ms)/step - loss: \d\.\d{4} - accuracy: "
                    r"\d\.\d{4} - val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}\s*\nEpoch 2/2\n$",
                    ends[0]), ends[0]
    assert text.count("ETA:") >= 3  # steps 1-3 of each epoch


def test_fit_in_a_log_shows_progress_lines_and_the_epoch_line():
    x, y = _data()
    out = io.StringIO()
    model = _model()
    model.fit(x, y, batch_size=8, epochs=1, verbose=1,
              callbacks=[C.ProgbarLogger(stream=out, log_interval=0.0)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 6  # 5 steps, then the end of the epoch
    assert all(line.startswith("Epoch 1/1 - ") for line in lines)
    assert [re.search(r" (\d)/5 ", line).group(1) for line in lines] == list("123455")
    out = io.StringIO()
    model.fit(x, y, batch_size=8, epochs=2, verbose=2,
              callbacks=[C.ProgbarLogger(stream=out, log_interval=0.0)])
    assert [line[:16] for line in out.getvalue().splitlines()] == ["Epoch 1/2 - 5/5 ",
                                                                   "Epoch 2/2 - 5/5 "]


def test_unknown_steps_are_learnt_from_the_first_epoch():
    x, y = _data()

    class Again:
        def __iter__(self):
            return ((x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10))

    out = io.StringIO()
    _model().fit(Again(), epochs=2, verbose=2, callbacks=[C.ProgbarLogger(stream=out)])
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Epoch 1/2 - 4/Unknown - ") and \
        lines[1].startswith("Epoch 2/2 - 4/4 - "), lines


def test_evaluate_and_predict_show_a_bar():
    x, y = _data()
    model = _model()
    out = Tty()
    model.evaluate(x, y, batch_size=8, callbacks=[C.ProgbarLogger(stream=out, interval=0.0)])
    assert re.search(r"\r5/5 \[=+\] - \d+\.\ds - \d+(us|ms)/step - loss: \d\.\d{4} - "
                     r"accuracy: \d\.\d{4}\s*\n$", out.getvalue()), out.getvalue()
    out = Tty()
    model.predict(x, batch_size=8, callbacks=[C.ProgbarLogger(stream=out, interval=0.0)])
    assert re.search(r"\r5/5 \[=+\] - \d+\.\ds - \d+(us|ms)/step\s*\n$", out.getvalue())
    assert out.getvalue().count("\r") == 6  # five steps and the end


def test_batch_hooks_reach_every_callback_that_has_them():
    """CallbackList skips batch hooks that no callback implements (the display's cost per step
    stays small); every callback that has one still gets it."""
    seen = []

    class Legacy(C.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(("legacy", batch))

    class New(C.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(("new", batch))

    plain = C.Callback()
    plain.on_train_batch_end = lambda batch, logs=None: seen.append(("attr", batch))
    cbs = C.CallbackList([Legacy(), C.Callback()])
    cbs.on_train_batch_end(0, {"loss": 1.0})
    cbs.append(New())
    cbs.append(plain)
    cbs.on_train_batch_begin(1, {})
    cbs.on_train_batch_end(1, {})
    cbs.on_test_batch_end(1, {})
    assert seen == [("legacy", 0), ("new", 1), ("legacy", 1), ("attr", 1)]
