"""Convolution: the Fashion-MNIST showcase CNN (without its augmentation layers) training step
and inference at batch 64, and Conv2D forward alone on 3x3 "same" layers with 1-128 channels on
28x28 and 56x56 images; nanonet (NHWC, packed-GEMM kernels) against PyTorch CPU (NCHW, its
default layout) when torch is importable. float32, threads pinned on every side
(conftest.threads).

Groups: "cnn train B64 t{n}", "cnn predict B64 t{n}", "conv2d fwd {shape} t{n}". The conv
answers are checked against torch.nn.functional.conv2d with the converted kernel, and the
model step against the float64 twin's loss, so --benchmark-disable turns this file into a test.
extra_info holds flops (2 * multiply-adds; training = 3x the forward) and, after the run, gflops.

    KERAS_BACKEND=torch PYTHONPATH=python /work/.venv-peers/bin/python -m pytest \
        benchmarks/bench_conv.py --benchmark-only --benchmark-json=bench_conv.json
    python benchmarks/report.py bench_conv.json
"""
import numpy as np
import pytest

import nanonet as nn
from nanonet import reference

from conftest import record, torch

SIDES = ["nanonet", "torch"]
B_CNN = 64
# (label, B, H, C_in, F): the showcase's first layer, then C -> C layers
CONVS = [("B32 28x28 1->32", 32, 28, 1, 32), ("B32 28x28 32->32", 32, 28, 32, 32),
         ("B32 28x28 64->64", 32, 28, 64, 64), ("B8 28x28 128->128", 8, 28, 128, 128),
         ("B8 56x56 16->16", 8, 56, 16, 16), ("B8 56x56 64->64", 8, 56, 64, 64),
         ("B4 56x56 128->128", 4, 56, 128, 128)]
# forward multiply-adds of the showcase CNN per image: conv 26*26*32*9, conv 11*11*64*288,
# dense 1600*10
CNN_FLOPS = 2.0 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 288 + 1600 * 10)


def _run(benchmark, fn, *args):
    return benchmark.pedantic(fn, args=args, rounds=5, iterations=1, warmup_rounds=1)


def _gflops(benchmark, flops):
    stats = getattr(benchmark, "stats", None)  # None with --benchmark-disable
    if stats is not None:
        benchmark.extra_info["gflops"] = round(flops / stats.stats.median / 1e9, 2)


def _nanonet_cnn():
    nn.set_seed(0)
    L = nn.layers
    model = nn.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                           L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"),
                           L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5),
                           L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _torch_cnn():
    torch.manual_seed(0)
    t = torch.nn
    model = t.Sequential(t.Conv2d(1, 32, 3), t.ReLU(), t.MaxPool2d(2), t.Conv2d(32, 64, 3),
                         t.ReLU(), t.MaxPool2d(2), t.Flatten(), t.Dropout(0.5),
                         t.Linear(1600, 10))
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)


def _batch():
    rng = np.random.default_rng(0)
    return rng.random((B_CNN, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, B_CNN)


@pytest.mark.parametrize("side", SIDES)
def test_cnn_train_step(benchmark, threads, side):
    if side == "torch" and torch is None:
        pytest.skip("torch is not installed")
    x, y = _batch()
    flops = 3 * B_CNN * CNN_FLOPS
    benchmark.group = f"cnn train B{B_CNN} t{threads}"
    record(benchmark, side, threads, flops=flops, shape=f"B{B_CNN} 28x28x1")
    if side == "torch":
        model, opt = _torch_cnn()
        loss_fn = torch.nn.CrossEntropyLoss()
        tx, ty = torch.tensor(x.transpose(0, 3, 1, 2).copy()), torch.tensor(y)

        def step():
            opt.zero_grad()
            loss = loss_fn(model(tx), ty)
            loss.backward()
            opt.step()
            return float(loss)
        loss = _run(benchmark, step)
    else:
        model = _nanonet_cnn()
        loss = float(_run(benchmark, model.train_on_batch, x, y))
    _gflops(benchmark, flops)
    assert np.isfinite(loss) and 0 < loss < 2 * np.log(10) + 1


@pytest.mark.parametrize("side", SIDES)
def test_cnn_predict(benchmark, threads, side):
    if side == "torch" and torch is None:
        pytest.skip("torch is not installed")
    x, _ = _batch()
    flops = B_CNN * CNN_FLOPS
    benchmark.group = f"cnn predict B{B_CNN} t{threads}"
    record(benchmark, side, threads, flops=flops, shape=f"B{B_CNN} 28x28x1")
    if side == "torch":
        model, _ = _torch_cnn()
        model.eval()
        tx = torch.tensor(x.transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            p = _run(benchmark, lambda: torch.softmax(model(tx), 1)).numpy()
    else:
        p = _run(benchmark, _nanonet_cnn().predict_on_batch, x)
    _gflops(benchmark, flops)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("label,B,H,C,F", CONVS, ids=[c[0] for c in CONVS])
def test_conv2d_forward(benchmark, threads, side, label, B, H, C, F):
    if side == "torch" and torch is None:
        pytest.skip("torch is not installed")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, H, H, C)).astype(np.float32)
    k = (rng.standard_normal((3, 3, C, F)) / np.sqrt(9 * C)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    flops = 2.0 * B * H * H * 9 * C * F
    benchmark.group = f"conv2d fwd {label} t{threads}"
    record(benchmark, side, threads, flops=flops, shape=label)
    if side == "torch":
        tx = torch.tensor(x.transpose(0, 3, 1, 2).copy())
        tk = torch.tensor(k.transpose(3, 2, 0, 1).copy())
        tb = torch.tensor(b)
        with torch.no_grad():
            got = _run(benchmark, torch.nn.functional.conv2d, tx, tk, tb, 1, 1)
        got = got.numpy().transpose(0, 2, 3, 1)
    else:
        got = _run(benchmark, nn.ops.conv2d_forward, x, k, b, 1, "same")
    _gflops(benchmark, flops)
    if B * H * H * C <= 32 * 28 * 28 * 32:
        want = reference.conv2d_forward(x.astype(np.float64), k.astype(np.float64), b,
                                        padding="same")
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * (np.abs(want).max() + 1))
