"""``python -m nanonet bench`` and ``python -m nanonet info``: what this machine gives nanonet.

``info`` prints the CPU, the SIMD path each kernel family uses and what the import-time self-check
found, threads and how the extension was built. ``bench`` is a quick (about a minute) run of
matmul, activations, the classic MLP training step and the showcase LSTM training step, each
against the plain NumPy implementation a user would write (and PyTorch's CPU build when it is
installed), with the thread count pinned on every side (NumPy's BLAS through threadpoolctl when
installed), printing time ratios. The pytest-benchmark suite in benchmarks/ is the developers'
full tool; it uses the NumPy models defined here as its baselines.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np


# --------------------------------------------------------------------------------------------
# info

def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux, else platform)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def system_info() -> dict:
    """Machine, SIMD paths, self-check, threads and build of the running nanonet."""
    import nanonet as nn
    ops = nn.ops
    return {
        "nanonet": nn.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "detected_isa": ops.detect_isa(),
        "active_isa": ops.active_isa(),
        "families": {f: ops.family_isa(f) for f in ops.FAMILIES},
        "self_check": ops.self_check_report(),
        "threads": ops.get_num_threads(),
        "openmp_wait": ops.openmp_wait(),
        "build": ops.build_info(),
    }


def print_info(info: dict, out=None) -> None:
    out = out or sys.stdout
    w = out.write
    w(f"nanonet {info['nanonet']} (Python {info['python']}, NumPy {info['numpy']})\n")
    w(f"platform      {info['platform']}\n")
    w(f"cpu           {info['cpu']} ({info['cores']} logical cores)\n")
    w(f"isa           detected {info['detected_isa']}, active {info['active_isa']}\n")
    checks = info["self_check"]
    for family, isa in info["families"].items():
        c = checks.get(family)
        if c is None:
            note = "self-check skipped (NANONET_SELF_CHECK=0)"
        elif not c["checked"]:
            note = "portable path, nothing to check"
        else:
            tried = ", ".join(f"{i}: max rel. error {e:.1e}"
                              for i, e in zip(c["checked"], c["max_error"]))
            note = ("self-check passed" if c["ok"] else "self-check FAILED") + f" ({tried})"
        w(f"  {family:<11} {isa:<7} {note}\n")
    w(f"threads       {info['threads']}\n")
    wait = dict(info["openmp_wait"])
    source = wait.pop("source")
    w(f"openmp wait   {source}" + "".join(f", {k}={v}" for k, v in wait.items()) + "\n")
    b = info["build"]
    w(f"build         {b['compiler']}, C++ {b['cplusplus']}, OpenMP "
      f"{b['openmp'] if b['openmp'] is not None else 'no'}, "
      f"{'optimised' if b['optimized'] else 'not optimised'}, asserts "
      f"{'on' if b['asserts'] else 'off'}"
      + (f", sanitizers {b['sanitizers']}" if b["sanitizers"] else "") + "\n")


def run_info(args) -> int:
    info = system_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_info(info)
    return 0


# --------------------------------------------------------------------------------------------
# Baselines: the straightforward NumPy implementations (float32, BLAS matmuls, Keras maths)

def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class NumpyMLP:
    """A dense net (one hidden layer) in plain NumPy with the nanonet/Keras maths: hidden
    "sigmoid" or "relu", output "sigmoid" + MSE or "softmax" + categorical cross-entropy,
    optimiser "sgd" or "adam". ``params`` = [w1, b1, w2, b2]; ``step`` returns the loss."""

    def __init__(self, cfg: dict, params: list):
        self.cfg = cfg
        self.p = [q.copy() for q in params]
        self.m = [np.zeros_like(q) for q in params]
        self.v = [np.zeros_like(q) for q in params]
        self.t = 0

    def step(self, x, y) -> float:
        w1, b1, w2, b2 = self.p
        z1 = x @ w1 + b1
        h = _sigmoid(z1) if self.cfg["hidden"] == "sigmoid" else np.maximum(z1, 0.0)
        z2 = h @ w2 + b2
        n, classes = y.shape
        if self.cfg["out"] == "sigmoid":
            out = _sigmoid(z2)
            loss = np.mean((out - y) ** 2)
            dz2 = 2.0 * (out - y) / (n * classes) * out * (1.0 - out)
        else:
            e = np.exp(z2 - z2.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
            loss = -np.mean(np.sum(y * np.log(np.clip(out, 1e-7, 1.0)), axis=1))
            dz2 = (out - y) / n
        dw2 = h.T @ dz2
        db2 = dz2.sum(axis=0)
        dh = dz2 @ w2.T
        dz1 = dh * h * (1.0 - h) if self.cfg["hidden"] == "sigmoid" else dh * (z1 > 0)
        grads = [x.T @ dz1, dz1.sum(axis=0), dw2, db2]
        self._update(grads, self.cfg["lr"])
        return float(loss)

    def _update(self, grads, lr):
        if self.cfg["opt"] == "sgd":
            for q, g in zip(self.p, grads):
                q -= lr * g
            return
        self.t += 1
        alpha = lr * np.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
        for q, g, m, v in zip(self.p, grads, self.m, self.v):
            m += (g - m) * 0.1
            v += (g * g - v) * 0.001
            q -= alpha * m / (np.sqrt(v) + 1e-7)


class NumpyShowcase:
    """The showcase (Embedding -> LSTM(return_sequences) -> LSTM -> Dense softmax, Adam,
    categorical cross-entropy) in NumPy: input projections and weight gradients as
    whole-sequence BLAS products, a Python loop over time steps; Keras layout, gates i, f, c, o.
    ``weights`` = model.get_weights() of the nanonet model."""

    def __init__(self, weights: list):
        self.w = [w.copy() for w in weights]  # emb, k1, r1, b1, k2, r2, b2, dk, db
        self.m = [np.zeros_like(w) for w in self.w]
        self.v = [np.zeros_like(w) for w in self.w]
        self.t = 0

    @staticmethod
    def lstm_forward(x, k, r, b, keep):
        n, steps, _ = x.shape
        h = np.zeros((n, r.shape[0]), np.float32)
        c = np.zeros_like(h)
        xw = (x.reshape(n * steps, -1) @ k + b).reshape(n, steps, -1)
        hs = np.empty((n, steps, h.shape[1]), np.float32)
        cache = []
        for t in range(steps):
            z = xw[:, t] + h @ r
            i, f, g, o = np.split(z, 4, axis=1)
            i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
            c_prev = c
            c = f * c + i * g
            tc = np.tanh(c)
            h = o * tc
            hs[:, t] = h
            if keep:
                cache.append((i, f, g, o, c_prev, tc))
        return hs, cache

    @staticmethod
    def lstm_backward(x, hs, cache, k, r, dhs):
        n, steps, _ = x.shape
        units = r.shape[0]
        dz_all = np.empty((n, steps, 4 * units), np.float32)
        dh = np.zeros((n, units), np.float32)
        dc = np.zeros_like(dh)
        for t in range(steps - 1, -1, -1):
            i, f, g, o, c_prev, tc = cache[t]
            dh = dh + dhs[:, t]
            dc = dc + dh * o * (1 - tc * tc)
            dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                 dc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
            dz_all[:, t] = dz
            dh = dz @ r.T
            dc = dc * f
        h_prev = np.concatenate([np.zeros((n, 1, units), np.float32), hs[:, :-1]], axis=1)
        dz2 = dz_all.reshape(n * steps, -1)
        dk = x.reshape(n * steps, -1).T @ dz2
        dr = h_prev.reshape(n * steps, -1).T @ dz2
        dx = (dz2 @ k.T).reshape(x.shape)
        return dx, dk, dr, dz2.sum(axis=0)

    def predict(self, ids):
        emb, k1, r1, b1, k2, r2, b2, dk, db = self.w
        h1, _ = self.lstm_forward(emb[ids], k1, r1, b1, False)
        h2, _ = self.lstm_forward(h1, k2, r2, b2, False)
        z = h2[:, -1] @ dk + db
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def train_step(self, ids, y) -> float:
        emb, k1, r1, b1, k2, r2, b2, dk, db = self.w
        x0 = emb[ids]
        h1, c1 = self.lstm_forward(x0, k1, r1, b1, True)
        h2, c2 = self.lstm_forward(h1, k2, r2, b2, True)
        z = h2[:, -1] @ dk + db
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        n = ids.shape[0]
        loss = -np.mean(np.sum(y * np.log(np.clip(p, 1e-7, 1)), axis=1))
        dzl = (p - y) / n
        g_dk, g_db = h2[:, -1].T @ dzl, dzl.sum(axis=0)
        dh2 = np.zeros_like(h2)
        dh2[:, -1] = dzl @ dk.T
        dh1, g_k2, g_r2, g_b2 = self.lstm_backward(h1, h2, c2, k2, r2, dh2)
        dx0, g_k1, g_r1, g_b1 = self.lstm_backward(x0, h1, c1, k1, r1, dh1)
        g_emb = np.zeros_like(emb)
        np.add.at(g_emb, ids.reshape(-1), dx0.reshape(-1, emb.shape[1]))
        grads = [g_emb, g_k1, g_r1, g_b1, g_k2, g_r2, g_b2, g_dk, g_db]
        self.t += 1
        alpha = 1e-3 * np.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
        for w, g, m, v in zip(self.w, grads, self.m, self.v):
            m += (g - m) * 0.1
            v += (g * g - v) * 0.001
            w -= alpha * m / (np.sqrt(v) + 1e-7)
        return float(loss)


def torch_mlp_step(torch, cfg: dict, params: list) -> Callable:
    """A PyTorch step function (x, y tensors) -> loss for NumpyMLP's configuration."""
    act = {"sigmoid": torch.nn.Sigmoid(), "relu": torch.nn.ReLU()}[cfg["hidden"]]
    i, h = params[0].shape
    c = params[2].shape[1]
    l1, l2 = torch.nn.Linear(i, h), torch.nn.Linear(h, c)
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


def torch_showcase(torch, weights: list):
    """The showcase in PyTorch (nn.Embedding, nn.LSTM batch_first, nn.Linear) with nanonet's
    weights: Keras (I, 4H) with gates i, f, c, o is torch's (4H, I) with i, f, g, o transposed."""
    emb, k1, r1, b1, k2, r2, b2, dk, db = weights

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(*emb.shape)
            self.l1 = torch.nn.LSTM(k1.shape[0], r1.shape[0], batch_first=True)
            self.l2 = torch.nn.LSTM(k2.shape[0], r2.shape[0], batch_first=True)
            self.out = torch.nn.Linear(*dk.shape)

        def forward(self, ids):
            h, _ = self.l1(self.emb(ids))
            h, _ = self.l2(h)
            return self.out(h[:, -1])

    net = Net()
    with torch.no_grad():
        net.emb.weight.copy_(torch.from_numpy(emb))
        for lstm, k, r, b in ((net.l1, k1, r1, b1), (net.l2, k2, r2, b2)):
            lstm.weight_ih_l0.copy_(torch.from_numpy(k.T.copy()))
            lstm.weight_hh_l0.copy_(torch.from_numpy(r.T.copy()))
            lstm.bias_ih_l0.copy_(torch.from_numpy(b))
            lstm.bias_hh_l0.zero_()
        net.out.weight.copy_(torch.from_numpy(dk.T.copy()))
        net.out.bias.copy_(torch.from_numpy(db))
    return net


# --------------------------------------------------------------------------------------------
# bench

@contextlib.contextmanager
def pinned_threads(n: int, torch=None):
    """nanonet's threads, NumPy's BLAS threads (threadpoolctl, when installed) and torch's
    intra-op threads set to n for the block. Yields whether NumPy could be pinned."""
    import nanonet as nn
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    before = nn.get_num_threads()
    torch_before = torch.get_num_threads() if torch is not None else None
    nn.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        if threadpool_limits is None:
            yield False
        else:
            with threadpool_limits(limits=n):
                yield True
    finally:
        nn.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(torch_before)


def _time(fn: Callable[[], Any], min_time: float, rounds: int) -> float:
    """Median seconds per call over `rounds` rounds of at least `min_time` each."""
    fn()  # warm-up: first-touch, packing buffers, lazy builds
    per_call = []
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        per_call.append(elapsed / n)
    return float(np.median(per_call))


def _cases(torch) -> list:
    """(name, {side: zero-argument callable}) for each measured piece of work."""
    import nanonet as nn
    rng = np.random.default_rng(0)
    cases = []

    a = rng.standard_normal((512, 512), dtype=np.float32)
    b = rng.standard_normal((512, 512), dtype=np.float32)
    sides = {"numpy": lambda: a @ b, "nanonet": lambda: nn.ops.matmul(a, b)}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        sides["torch"] = lambda: torch.mm(ta, tb)
    cases.append(("matmul 512^3 f32", sides))

    a32 = rng.standard_normal((32, 512), dtype=np.float32)
    b32 = rng.standard_normal((512, 512), dtype=np.float32)
    sides = {"numpy": lambda: a32 @ b32, "nanonet": lambda: nn.ops.matmul(a32, b32)}
    if torch is not None:
        ta32, tb32 = torch.from_numpy(a32), torch.from_numpy(b32)
        sides["torch"] = lambda: torch.mm(ta32, tb32)
    cases.append(("matmul 32x512x512 f32", sides))

    x = rng.standard_normal(1 << 20, dtype=np.float32)
    sides = {"numpy": lambda: 1.0 / (1.0 + np.exp(-x)),
             "nanonet": lambda: nn.ops.activation_forward(x, "sigmoid")}
    if torch is not None:
        tx = torch.from_numpy(x)
        sides["torch"] = lambda: torch.sigmoid(tx)
    cases.append(("sigmoid 1M f32", sides))
    sides = {"numpy": lambda: np.tanh(x), "nanonet": lambda: nn.ops.activation_forward(x, "tanh")}
    if torch is not None:
        sides["torch"] = lambda: torch.tanh(tx)
    cases.append(("tanh 1M f32", sides))

    # The classic: 784-256-10, sigmoid, MSE, SGD, batch 64
    cfg = dict(hidden="sigmoid", out="sigmoid", loss="mse", opt="sgd", lr=0.1)
    xb = rng.random((64, 784), dtype=np.float32)
    yb = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    params = [(rng.standard_normal((784, 256)) * 0.05).astype(np.float32),
              np.zeros(256, np.float32),
              (rng.standard_normal((256, 10)) * 0.1).astype(np.float32), np.zeros(10, np.float32)]
    mlp = nn.Sequential([nn.layers.Dense(256, activation="sigmoid"),
                         nn.layers.Dense(10, activation="sigmoid")])
    mlp.build((None, 784))
    mlp.set_weights(params)
    mlp.compile(optimizer=nn.optimizers.SGD(0.1), loss="mse")
    ref = NumpyMLP(cfg, params)
    sides = {"numpy": lambda: ref.step(xb, yb), "nanonet": lambda: mlp.train_on_batch(xb, yb)}
    if torch is not None:
        step = torch_mlp_step(torch, cfg, params)
        txb, tyb = torch.from_numpy(xb), torch.from_numpy(yb)
        sides["torch"] = lambda: step(txb, tyb)
    cases.append(("MLP 784-256-10 sgd step b64", sides))

    # The showcase: Embedding(20000, 128) -> LSTM(128, seq) -> LSTM(128) -> Dense(4), b32 T100
    nn.set_seed(0)
    ids = rng.integers(1, 20000, size=(32, 100)).astype(np.int32)
    ys = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 32)]
    show = nn.Sequential([nn.layers.Embedding(20000, 128),
                          nn.layers.LSTM(128, return_sequences=True), nn.layers.LSTM(128),
                          nn.layers.Dense(4, activation="softmax")])
    show.compile(optimizer="adam", loss="categorical_crossentropy")
    show.build((None, 100))
    ref_show = NumpyShowcase(show.get_weights())
    sides = {"numpy": lambda: ref_show.train_step(ids, ys),
             "nanonet": lambda: show.train_on_batch(ids, ys)}
    if torch is not None:
        net = torch_showcase(torch, show.get_weights())
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        tids, tys = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(ys)

        def torch_step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(tids), tys)
            loss.backward()
            opt.step()

        sides["torch"] = torch_step
    cases.append(("showcase LSTM step b32 T100", sides))
    return cases


def run_bench(threads=(1, 2), min_time: float = 0.2, rounds: int = 3, use_torch: bool = True,
              only=None) -> dict:
    """Time every case on every side at each thread count (sides alternate within a round).
    Returns {"info": system_info(), "numpy_pinned": bool, "results": [...]} where each result
    has case, threads, seconds per call by side, and ratios baseline time / nanonet time."""
    torch = None
    if use_torch:
        try:
            import torch  # noqa: F811 - optional peer
        except ImportError:
            torch = None
    results, pinned_all = [], True
    cases = _cases(torch)
    if only:
        cases = [c for c in cases if any(o in c[0] for o in only)]
    for n in threads:
        with pinned_threads(n, torch) as pinned:
            pinned_all &= pinned
            for name, sides in cases:
                secs = {side: _time(fn, min_time, rounds) for side, fn in sides.items()}
                ratios = {f"{side}/nanonet": secs[side] / secs["nanonet"]
                          for side in secs if side != "nanonet"}
                results.append({"case": name, "threads": n, "seconds": secs, "ratios": ratios})
    return {"info": system_info(), "numpy_pinned": pinned_all,
            "torch": None if torch is None else torch.__version__, "results": results}


def print_bench(report: dict, out=None) -> None:
    out = out or sys.stdout
    info = report["info"]
    out.write(f"nanonet {info['nanonet']} on {info['cpu']} ({info['cores']} cores), "
              f"SIMD {info['active_isa']}; NumPy {info['numpy']}"
              + (f", PyTorch {report['torch']}" if report["torch"] else ", PyTorch not installed")
              + "\n")
    if not report["numpy_pinned"]:
        out.write("note: NumPy's BLAS threads were not pinned (pip install threadpoolctl)\n")
    has_torch = report["torch"] is not None
    head = f"{'case':<30} {'thr':>3} {'nanonet ms':>11} {'numpy ms':>10} {'numpy/nn':>9}"
    if has_torch:
        head += f" {'torch ms':>10} {'torch/nn':>9}"
    out.write(head + "\n" + "-" * len(head) + "\n")
    for r in report["results"]:
        s, q = r["seconds"], r["ratios"]
        line = (f"{r['case']:<30} {r['threads']:>3} {s['nanonet'] * 1e3:>11.3f} "
                f"{s['numpy'] * 1e3:>10.3f} {q['numpy/nanonet']:>8.2f}x")
        if has_torch:
            line += f" {s['torch'] * 1e3:>10.3f} {q['torch/nanonet']:>8.2f}x"
        out.write(line + "\n")
    out.write("ratios are baseline time / nanonet time (above 1: nanonet is faster)\n")


def run_bench_cli(args) -> int:
    threads = args.threads or sorted({1, min(2, os.cpu_count() or 1)})
    report = run_bench(threads=threads, min_time=args.min_time, rounds=args.rounds,
                       use_torch=not args.no_torch, only=args.only)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_bench(report)
    return 0


def add_arguments(info_parser, bench_parser) -> None:
    info_parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    info_parser.set_defaults(func=run_info)
    bench_parser.add_argument("--threads", type=int, nargs="+", default=None,
                              help="thread counts to run (default: 1 and 2)")
    bench_parser.add_argument("--min-time", type=float, default=0.2,
                              help="seconds per timing round (default 0.2)")
    bench_parser.add_argument("--rounds", type=int, default=3,
                              help="timing rounds per side; the median is reported (default 3)")
    bench_parser.add_argument("--only", nargs="+", default=None, metavar="TEXT",
                              help="run only the cases whose name contains one of these")
    bench_parser.add_argument("--no-torch", action="store_true",
                              help="skip PyTorch even when it is installed")
    bench_parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    bench_parser.set_defaults(func=run_bench_cli)
