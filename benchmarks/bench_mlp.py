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


class NumpyMLP:
    """A plain NumPy MLP with the same maths as the nanonet model (Keras semantics)."""

    def __init__(self, cfg, params):
        self.cfg = cfg
        self.p = [q.copy() for q in params]
        self.m = [np.zeros_like(q) for q in params]
        self.v = [np.zeros_like(q) for q in params]
        self.t = 0

    def step(self, x, y):
        w1, b1, w2, b2 = self.p
        z1 = x @ w1 + b1
        if self.cfg["hidden"] == "sigmoid":
            h = 1.0 / (1.0 + np.exp(-z1))
        else:
            h = np.maximum(z1, 0.0)
        z2 = h @ w2 + b2
        n = x.shape[0]
        if self.cfg["out"] == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-z2))
            loss = np.mean((out - y) ** 2)
            dz2 = 2.0 * (out - y) / (n * C) * out * (1.0 - out)
        else:
            e = np.exp(z2 - z2.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
            loss = -np.mean(np.sum(y * np.log(np.clip(out, 1e-7, 1.0)), axis=1))
            dz2 = (out - y) / n
        dw2 = h.T @ dz2
        db2 = dz2.sum(axis=0)
        dh = dz2 @ w2.T
        dz1 = dh * h * (1.0 - h) if self.cfg["hidden"] == "sigmoid" else dh * (z1 > 0)
        dw1 = x.T @ dz1
        db1 = dz1.sum(axis=0)
        grads = [dw1, db1, dw2, db2]
        lr = self.cfg["lr"]
        if self.cfg["opt"] == "sgd":
            for q, g in zip(self.p, grads):
                q -= lr * g
        else:
            self.t += 1
            alpha = lr * np.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
            for q, g, m, v in zip(self.p, grads, self.m, self.v):
                m += (g - m) * 0.1
                v += (g * g - v) * 0.001
                q -= alpha * m / (np.sqrt(v) + 1e-7)
        return float(loss)


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
    torch = pytest.importorskip("torch")
    act = {"sigmoid": torch.nn.Sigmoid(), "relu": torch.nn.ReLU()}[cfg["hidden"]]
    l1, l2 = torch.nn.Linear(I, H), torch.nn.Linear(H, C)
    with torch.no_grad():
        l1.weight.copy_(torch.from_numpy(params[0].T.copy()))
        l1.bias.copy_(torch.from_numpy(params[1]))
        l2.weight.copy_(torch.from_numpy(params[2].T.copy()))
        l2.bias.copy_(torch.from_numpy(params[3]))
    net = torch.nn.Sequential(l1, act, l2)
    if cfg["opt"] == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"])
    else:
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], eps=1e-7)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        z = net(x)
        if cfg["out"] == "sigmoid":
            loss = torch.nn.functional.mse_loss(torch.sigmoid(z), y)
        else:
            loss = torch.nn.functional.cross_entropy(z, y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


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
