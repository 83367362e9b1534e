"""TensorBoard writes Keras's tags into event files under log_dir/train and log_dir/validation
(read back with tensorboard's reader when installed, else by parsing the TFRecord file with
tensorboardX's protobufs); LambdaCallback runs plain functions as hooks."""
import glob
import os
import struct

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks as C
from nanonet import layers as L


def _model():
    nn.set_seed(0)
    model = nn.Sequential([L.Input((4,)), L.Dense(3, activation="softmax", name="out")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def _read_events(directory):
    """{tag: [(step, value)]} for scalars, and the set of histogram tags, of every event file
    in directory."""
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto import event_pb2
    scalars, histograms = {}, set()
    files = glob.glob(os.path.join(directory, "events.out.tfevents.*"))
    assert files, f"no event file in {directory}"
    for path in files:
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):  # TFRecord: length, crc, payload, crc
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            payload = data[pos + 12:pos + 12 + length]
            pos += 12 + length + 4
            event = event_pb2.Event.FromString(payload)
            for v in event.summary.value:
                if v.HasField("histo"):
                    histograms.add(v.tag)
                else:
                    scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars, histograms


def test_epoch_scalars_validation_and_histograms(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = _data()
    model = _model()
    tb = C.TensorBoard(tmp_path, histogram_freq=1, write_steps_per_second=True)
    history = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                        callbacks=[tb]).history
    train, hist = _read_events(tmp_path / "train")
    val, _ = _read_events(tmp_path / "validation")
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in train["epoch_accuracy"]], history["accuracy"],
                               rtol=1e-6)
    np.testing.assert_allclose([v for _, v in val["epoch_loss"]], history["val_loss"],
                               rtol=1e-6)
    assert "epoch_val_loss" not in train and "epoch_loss" in val
    np.testing.assert_allclose([v for _, v in train["epoch_learning_rate"]], [0.001] * 3)
    assert all(v > 0 for _, v in train["epoch_steps_per_second"])
    assert hist == {"out/kernel", "out/bias"}


def test_batch_scalars_and_evaluate(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = _data()
    model = _model()
    seen = []
    log = C.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["loss"]))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[C.TensorBoard(tmp_path, update_freq=2), log])
    train, _ = _read_events(tmp_path / "train")
    assert [s for s, _ in train["batch_loss"]] == [2, 4, 6, 8, 10]
    np.testing.assert_allclose([v for _, v in train["batch_loss"]], seen[1::2], rtol=1e-6)
    loss = model.evaluate(x, y, verbose=0, callbacks=[C.TensorBoard(tmp_path / "ev")])[0]
    val, _ = _read_events(tmp_path / "ev" / "validation")
    assert val["evaluation_loss_vs_iterations"][0][0] == 10
    np.testing.assert_allclose(val["evaluation_loss_vs_iterations"][0][1], loss, rtol=1e-6)


def test_tensorboard_arguments():
    with pytest.raises(ValueError, match=r"TensorBoard: update_freq must be 'epoch', 'batch' or"):
        C.TensorBoard(update_freq=0)
    with pytest.raises(ValueError, match=r"TensorBoard: write_images is not supported"):
        C.TensorBoard(write_images=True)
    with pytest.raises(ValueError, match=r"TensorBoard: histogram_freq must be an int >= 0"):
        C.TensorBoard(histogram_freq=-1)


def test_missing_tensorboardx_names_the_extra(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    x, y = _data()
    with pytest.raises(ImportError, match=r'pip install "nanonet\[tensorboard\]"'):
        _model().fit(x, y, verbose=0, callbacks=[C.TensorBoard(tmp_path)])


def test_lambda_callback_hooks():
    x, y = _data()
    calls = []
    cb = C.LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                          on_epoch_end=lambda epoch, logs: calls.append((epoch,
                                                                         "loss" in logs)),
                          on_train_end=lambda logs: calls.append("end"),
                          on_test_end=lambda logs: calls.append("test"))
    _model().fit(x, y, epochs=2, validation_split=0.25, verbose=0, callbacks=[cb])
    assert calls == ["begin", "test", (0, True), "test", (1, True), "end"]
    with pytest.raises(ValueError, match=r"LambdaCallback: unknown hook 'on_epoch_ending'"):
        C.LambdaCallback(on_epoch_ending=print)
    with pytest.raises(ValueError, match=r"LambdaCallback: on_epoch_end must be callable"):
        C.LambdaCallback(on_epoch_end=3)
