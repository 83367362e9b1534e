"""One training step of a 784-256-10 MLP at batch 64: nanonet vs NumPy vs PyTorch CPU.

Two classic configurations: sigmoid hidden + sigmoid output + MSE + plain SGD, and relu hidden +
softmax output + categorical cross-entropy + Adam. The NumPy baseline is the straightforward
implementation a user would write (float32, BLAS matmuls). After the timed steps every side is
checked to have reduced its loss on the fixed batch, and nanonet's first step is checked against
NumPy's update.
"""
import numpy as np
import pytest

import nanonet as nn
from nanonet.bench import NumpyMLP, torch_mlp_step

from conftest import record

B, I, H, C = 64, 784, 256, 10
CONFIGS = {
    "sigmoid-mse-sgd": dict(hidden="sigmoid", out="sigmoid", loss="mse", opt="sgd", lr=0.1),
    "relu-softmax-adam": dict(hidden="relu", out="softmax", loss="categorical_crossentropy",
                              opt="adam", lr=1e-3),
}
FLOPS = 3 * 2.0 * B * (I * H + H * C)  # forward + two backward GEMMs per layer


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((B, I), dtype=np.float32)
    y = np.eye(C, dtype=np.float32)[rng.integers(0, C, B)]
    w1 = (rng.standard_normal((I, H)) * np.sqrt(2.0 / (I + H))).astype(np.float32)
    w2 = (rng.standard_normal((H, C)) * np.sqrt(2.0 / (H + C))).astype(np.float32)
    b1 = (rng.standard_normal(H) * 0.01).astype(np.float32)
    b2 = (rng.standard_normal(C) * 0.01).astype(np.float32)
    return x, y, [w1, b1, w2, b2]


def _nanonet_model(cfg, params):
    model = nn.Sequential([
        nn.layers.Dense(H, activation=cfg["hidden"]),
        nn.layers.Dense(C, activation=cfg["out"]),
    ])
    model.build((None, I))
    model.set_weights(params)
    opt = nn.optimizers.SGD(cfg["lr"]) if cfg["opt"] == "sgd" else nn.optimizers.Adam(cfg["lr"])
    model.compile(optimizer=opt, loss=cfg["loss"])
    return model


def _torch_model(cfg, params):
    return torch_mlp_step(pytest.importorskip("torch"), cfg, params)


@pytest.mark.parametrize("side", ["numpy", "nanonet", "torch"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_mlp_train_step(benchmark, threads, config, side):
    cfg = CONFIGS[config]
    x, y, params = _data()
    benchmark.group = f"mlp 784-256-10 b64 {config} train step t{threads}"
    record(benchmark, side, threads, flops=FLOPS)
    if side == "numpy":
        model = NumpyMLP(cfg, params)
        first = model.step(x, y)
        benchmark(model.step, x, y)
        last = model.step(x, y)
    elif side == "nanonet":
        model = _nanonet_model(cfg, params)
        first = float(model.train_on_batch(x, y))
        # nanonet's first update equals the NumPy implementation's
        ref = NumpyMLP(cfg, params)
        ref.step(x, y)
        for got, want in zip(model.get_weights(), ref.p):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        benchmark(model.train_on_batch, x, y)
        last = float(model.train_on_batch(x, y))
    else:
        import torch
        step = _torch_model(cfg, params)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        first = step(xt, yt)
        benchmark(step, xt, yt)
        last = step(xt, yt)
    assert last < first
