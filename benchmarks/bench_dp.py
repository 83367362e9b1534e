"""DP-SGD training step: nanonet's private step vs its non-private step, and vs Opacus, on the
MLP of bench_mlp.py (784-256-10, relu + softmax, batch 64) and the showcase LSTM of
bench_showcase.py (Embedding(20000, 128) -> LSTM(128) x 2 -> Dense(4), batch 32, T = 100),
SGD, l2_norm_clip 1.0, noise_multiplier 1.1, at 1 and 2 threads pinned on every side (nanonet's
OpenMP, NumPy's BLAS via threadpoolctl, torch's intra-op threads). One process measures all
sides in the same run; the headline is a ratio of medians.

Opacus side: torch.nn.Linear / opacus.layers.DPLSTM (2 layers, batch_first) wrapped by
PrivacyEngine.make_private (per-sample gradients by hooks), fixed batches (no Poisson sampling,
so the same work per step as nanonet's).

Run (torch + opacus live in a separate venv; nanonet from the working tree):
    PYTHONPATH=python /work/.venv-peers/bin/python benchmarks/bench_dp.py [--repeats 5]
Without torch / opacus only the nanonet columns are measured.
"""
import argparse
import contextlib
import statistics
import time

import numpy as np

import nanonet as nn

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # NumPy's BLAS is not on nanonet's path; pinning it only affects peers
    threadpool_limits = None
try:
    import opacus
    import torch
except ImportError:
    torch = opacus = None

CLIP, SIGMA = 1.0, 1.1


@contextlib.contextmanager
def pinned(n):
    before = nn.get_num_threads()
    nn.set_num_threads(n)
    if torch is not None:
        torch_before = torch.get_num_threads()
        torch.set_num_threads(n)
    limits = threadpool_limits(limits=n) if threadpool_limits is not None else \
        contextlib.nullcontext()
    try:
        with limits:
            yield
    finally:
        nn.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(torch_before)


def median_time(step, repeats, warmup=1):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---- the models ------------------------------------------------------------------------------

def mlp_data():
    rng = np.random.default_rng(0)
    return rng.random((64, 784), dtype=np.float32), rng.integers(0, 10, 64)


def mlp_nanonet(optimizer):
    nn.set_seed(0)
    m = nn.Sequential([nn.layers.Dense(256, activation="relu"),
                       nn.layers.Dense(10, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    m.build((None, 784))
    return m


def mlp_torch():
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 10))


def lstm_data():
    rng = np.random.default_rng(0)
    return rng.integers(1, 20000, size=(32, 100)).astype(np.int32), rng.integers(0, 4, 32)


def lstm_nanonet(optimizer):
    nn.set_seed(0)
    m = nn.Sequential([nn.layers.Embedding(20000, 128),
                       nn.layers.LSTM(128, return_sequences=True), nn.layers.LSTM(128),
                       nn.layers.Dense(4, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    m.build((None, 100))
    return m


def lstm_torch():
    from opacus.layers import DPLSTM

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(20000, 128)
            self.lstm = DPLSTM(128, 128, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(128, 4)

        def forward(self, ids):
            y, _ = self.lstm(self.emb(ids))
            return self.fc(y[:, -1])
    return Net()


def gru_nanonet(optimizer):
    nn.set_seed(0)
    m = nn.Sequential([nn.layers.Embedding(20000, 128), nn.layers.GRU(128),
                       nn.layers.Dense(4, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    m.build((None, 100))
    return m


def cnn_data():
    rng = np.random.default_rng(0)
    return rng.random((64, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 64)


def cnn_nanonet(optimizer):
    nn.set_seed(0)
    L = nn.layers
    m = nn.Sequential([L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                       L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                       L.Dense(10, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    m.build((None, 28, 28, 1))
    return m


def opacus_step(make, x, y):
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x).long() if x.dtype.kind == "i" else torch.from_numpy(x), \
        torch.from_numpy(y).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt),
                                         batch_size=len(x))
    engine = opacus.PrivacyEngine()
    model, opt, _ = engine.make_private(module=model, optimizer=opt, data_loader=loader,
                                        noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                        poisson_sampling=False)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--opacus-repeats", type=int, default=3)
    ap.add_argument("--models", default="mlp,lstm,gru,cnn",
                    help="comma-separated subset of mlp, lstm, gru, cnn")
    args = ap.parse_args()
    # GRU and CNN: nanonet's DP / plain ratio only (no Opacus side)
    cases = {"mlp": ("MLP 784-256-10 B64", mlp_data, mlp_nanonet, mlp_torch),
             "lstm": ("showcase LSTM B32 T100", lstm_data, lstm_nanonet, lstm_torch),
             "gru": ("Embedding -> GRU(128) B32 T100", lstm_data, gru_nanonet, None),
             "cnn": ("CNN 28x28 conv16-conv32 B64", cnn_data, cnn_nanonet, None)}
    cases = [cases[k.strip()] for k in args.models.split(",")]
    print(f"nanonet {nn.__version__}, ISA {nn.ops.active_isa()}, "
          f"torch {getattr(torch, '__version__', '-')}, "
          f"opacus {getattr(opacus, '__version__', '-')}")
    print("| model | threads | nanonet step | nanonet DP step | DP / plain | Opacus DP step | "
          "Opacus / nanonet DP |")
    print("|---|---|---|---|---|---|---|")
    for name, data, make, make_torch in cases:
        x, y = data()
        for threads in (1, 2):
            with pinned(threads):
                plain = make(nn.optimizers.SGD(learning_rate=0.01))
                dp = make(nn.optimizers.DPSGD(learning_rate=0.01, l2_norm_clip=CLIP,
                                              noise_multiplier=SIGMA))
                plain.train_on_batch(x, y)  # warm-up: first-call allocations
                dp.train_on_batch(x, y)
                # interleave the two so machine load affects both alike
                t_plain, t_dp = [], []
                for _ in range(args.repeats):
                    t_plain.append(median_time(lambda: plain.train_on_batch(x, y), 1, 0))
                    t_dp.append(median_time(lambda: dp.train_on_batch(x, y), 1, 0))
                t_plain, t_dp = statistics.median(t_plain), statistics.median(t_dp)
                t_op = None
                if opacus is not None and make_torch is not None:
                    t_op = median_time(opacus_step(make_torch, x, y), args.opacus_repeats)
            op = f"{t_op * 1e3:.1f} ms | **{t_op / t_dp:.1f}x**" if t_op else "- | -"
            print(f"| {name} | {threads} | {t_plain * 1e3:.1f} ms | {t_dp * 1e3:.1f} ms | "
                  f"**{t_dp / t_plain:.2f}x** | {op} |", flush=True)


if __name__ == "__main__":
    main()
