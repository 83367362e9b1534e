"""nn.utils.plot_history / plot_model: real PNGs, checked by their pixels and artists."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nanonet as nn

pytest.importorskip("matplotlib")
from matplotlib.image import imread

HISTORY = {"loss": [1.2, 0.8, 0.6, 0.5], "accuracy": [0.4, 0.6, 0.7, 0.75],
           "val_loss": [1.3, 0.9, 0.8, 0.85], "val_accuracy": [0.35, 0.55, 0.6, 0.62]}


def check_png(path, min_w=200, min_h=150):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    h, w = img.shape[:2]
    assert min_w <= w <= 5000 and min_h <= h <= 5000, (w, h)
    rgb = img[..., :3]
    ink = (rgb < 0.9).any(axis=-1).mean()  # share of pixels that are not (near) white
    assert 0.003 < ink < 0.6, ink
    return img


def test_plot_history_draws_train_and_validation(tmp_path):
    path = tmp_path / "h.png"
    fig = nn.utils.plot_history(HISTORY, path=path)
    check_png(path, min_w=600)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    for ax, m in zip(axes, ["loss", "accuracy"]):
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == ["train", "validation"]
        np.testing.assert_allclose(lines[0].get_ydata(), HISTORY[m])
        np.testing.assert_allclose(lines[1].get_ydata(), HISTORY["val_" + m])
        np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4])
        assert ax.get_xlabel() == "epoch"


def test_plot_history_of_a_real_fit_and_metric_choice(tmp_path):
    nn.set_seed(0)
    model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    history = model.fit(x, x[:, :1], epochs=3, verbose=0)
    fig = nn.utils.plot_history(history, metrics=["mae"])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "mae"
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["train"]
    with pytest.raises(ValueError, match="'accuracy' is not in the history"):
        nn.utils.plot_history(history, metrics=["accuracy"])
    with pytest.raises(TypeError, match="History or its .history dict"):
        nn.utils.plot_history([1, 2])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nn.utils.plot_history(history, path=tmp_path / "no" / "h.png")


def _texts(fig):
    return {t.get_gid(): t.get_text() for t in fig.axes[0].texts}


def _edges(fig):
    return sorted(a.get_gid() for a in fig.axes[0].texts if (a.get_gid() or "").startswith("edge:"))


def test_plot_model_sequential(tmp_path):
    model = nn.Sequential([nn.Input((None,), dtype="int32"), nn.layers.Embedding(30, 8),
                           nn.layers.LSTM(6), nn.layers.Dense(3, activation="softmax")],
                          name="seq")
    path = tmp_path / "m.png"
    fig = nn.utils.plot_model(model, path)
    check_png(path, min_w=150)
    names = [lay.name for lay in model.layers]
    texts = _texts(fig)
    for lay in model.layers:
        assert type(lay).__name__ in texts[f"layer:{lay.name}"]
    assert "(None, 3)" in texts[f"layer:{names[-1]}"]
    chain = [model._nodes[0].layer.name] + names
    assert _edges(fig) == sorted(f"edge:{a}->{b}" for a, b in zip(chain, chain[1:]))


def test_plot_model_graph_with_a_merge(tmp_path):
    i = nn.Input((4,), name="features")
    a = nn.layers.Dense(5, name="left")(i)
    b = nn.layers.Dense(5, name="right")(i)
    o = nn.layers.Dense(2, name="head")(nn.layers.Concatenate(name="join")([a, b]))
    fig = nn.utils.plot_model(nn.Model(i, o), tmp_path / "g.png", show_shapes=False)
    check_png(tmp_path / "g.png")
    assert _edges(fig) == sorted(["edge:features->left", "edge:features->right",
                                  "edge:left->join", "edge:right->join", "edge:join->head"])
    texts = fig.axes[0].texts
    y = {t.get_gid(): t.get_position()[1] for t in texts}
    x = {t.get_gid(): t.get_position()[0] for t in texts}
    assert y["layer:left"] == y["layer:right"] < y["layer:features"]   # side by side, below
    assert x["layer:left"] != x["layer:right"] and y["layer:head"] < y["layer:join"]


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "nanonet\[plot\]"'):
        nn.utils.plot_history(HISTORY)


def test_demo_plot_option(tmp_path):
    path = tmp_path / "history.png"
    out = subprocess.run([sys.executable, "-m", "nanonet", "demo", "--max-samples", "600",
                          "--epochs", "2", "--maxlen", "8", "--units", "8", "--threads", "1",
                          "--plot", str(path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MPLBACKEND": ""})
    assert out.returncode == 0, out.stderr
    assert "training curves drawn to" in out.stdout
    check_png(path, min_w=600)
