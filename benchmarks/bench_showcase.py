"""The showcase model: Embedding(20000, 128) -> LSTM(128, return_sequences=True) -> LSTM(128) ->
Dense(4, softmax), batch 32, sequence length 100, adam + categorical cross-entropy.

Groups: one training step, inference at batch 32, and inference latency at batch 1; nanonet vs a
NumPy implementation of the same model (input projections and weight gradients as whole-sequence
BLAS products, a Python loop over time steps) vs PyTorch's CPU build (nn.Embedding, nn.LSTM
batch_first, nn.Linear, Adam; skipped when torch is absent); 1 and 2 threads, pinned on all sides.
The LSTM work of a training step is recorded as flops so the report shows achieved GFLOP/s
(fp32 peak here is about 116 GFLOP/s per core).
"""
import numpy as np
import pytest

import nanonet as nn
from nanonet.bench import NumpyShowcase, torch_showcase

from conftest import record

V, E, H, C, B, T = 20000, 128, 128, 4, 32, 100
# LSTM multiply-adds per (sample, step): (I + H) * 4H for each layer (I = E = H = 128).
LSTM_FWD_FLOPS = 2 * 2.0 * (E + H) * 4 * H * T  # per sample, both layers
TRAIN_FLOPS = 3 * LSTM_FWD_FLOPS * B  # backward ~ twice forward


def _data(batch=B):
    rng = np.random.default_rng(0)
    x = rng.integers(1, V, size=(batch, T)).astype(np.int32)
    y = np.eye(C, dtype=np.float32)[rng.integers(0, C, batch)]
    return x, y


def _nanonet_model():
    nn.set_seed(0)
    model = nn.Sequential([
        nn.layers.Embedding(V, E),
        nn.layers.LSTM(H, return_sequences=True),
        nn.layers.LSTM(H),
        nn.layers.Dense(C, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.build((None, T))
    return model


def _torch_model(weights):
    torch = pytest.importorskip("torch")
    return torch, torch_showcase(torch, weights)


@pytest.mark.parametrize("side", ["numpy", "nanonet", "torch"])
def test_train_step(benchmark, threads, side):
    x, y = _data()
    model = _nanonet_model()
    benchmark.group = f"showcase train step b{B} T{T} t{threads}"
    record(benchmark, side, threads, flops=TRAIN_FLOPS)
    if side == "nanonet":
        first = float(model.train_on_batch(x, y)[0])
        benchmark(model.train_on_batch, x, y)
        last = float(model.train_on_batch(x, y)[0])
    elif side == "numpy":
        ref = NumpyShowcase(model.get_weights())
        first = ref.train_step(x, y)
        benchmark(ref.train_step, x, y)
        last = ref.train_step(x, y)
    else:
        torch, net = _torch_model(model.get_weights())
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(xt), yt)
            loss.backward()
            opt.step()
            return float(loss.detach())

        first = step()
        benchmark(step)
        last = step()
    assert last < first  # every side learns the fixed batch


@pytest.mark.parametrize("batch", [B, 1], ids=["b32", "b1"])
@pytest.mark.parametrize("side", ["numpy", "nanonet", "torch"])
def test_inference(benchmark, threads, side, batch):
    x, _ = _data(batch)
    model = _nanonet_model()
    want = NumpyShowcase(model.get_weights()).predict(x)
    benchmark.group = f"showcase inference b{batch} T{T} t{threads}"
    record(benchmark, side, threads, flops=LSTM_FWD_FLOPS * batch)
    if side == "nanonet":
        # batch 32 through predict_on_batch; batch 1 through a direct call, the serving path
        fn = model.predict_on_batch if batch > 1 else model
        out = np.asarray(benchmark(fn, x))
    elif side == "numpy":
        out = benchmark(NumpyShowcase(model.get_weights()).predict, x)
    else:
        torch, net = _torch_model(model.get_weights())
        xt = torch.from_numpy(x.astype(np.int64))

        def infer():
            with torch.inference_mode():
                return torch.softmax(net(xt), dim=1).numpy()

        out = benchmark(infer)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
