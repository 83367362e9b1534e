"""A/B/torch: the showcase CNN training step and inference at batch 64, and Conv2D forward on
bench_conv.py's 3x3 "same" layers, for one or two nanonet source trees and PyTorch, each side in
its own fresh process, rounds alternating the order of the sides so drift hits all alike.
Threads pinned on every side (nanonet / OpenMP, torch intra-op); nanonet once per ISA asked.

    /work/.venv-peers/bin/python benchmarks/ab_conv.py --a /work/main/python --b python \\
        [--rounds 5] [--threads 1 2] [--isa avx512 avx2] [--no-torch]

Prints, per workload, ISA and thread count, the median over rounds of each side's median time
with the range, GFLOP/s (2 x multiply-adds; training = 3 x the forward) and the speed ratios
(torch / B: > 1 is B faster than torch; A / B: > 1 is B faster than A).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

COMMON = r"""
import json, sys, time
import numpy as np
threads = int(sys.argv[1])
B_CNN = 64
CONVS = [("B32 28x28 1->32", 32, 28, 1, 32), ("B32 28x28 32->32", 32, 28, 32, 32),
         ("B32 28x28 64->64", 32, 28, 64, 64), ("B8 28x28 128->128", 8, 28, 128, 128),
         ("B8 56x56 16->16", 8, 56, 16, 16), ("B8 56x56 64->64", 8, 56, 64, 64),
         ("B4 56x56 128->128", 4, 56, 128, 128)]
rng = np.random.default_rng(0)
xb = rng.random((B_CNN, 28, 28, 1)).astype(np.float32)
yb = rng.integers(0, 10, B_CNN)
def med(fn, n, warm=2):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))
def conv_inputs(B, H, C, F):
    r = np.random.default_rng(0)
    x = r.standard_normal((B, H, H, C)).astype(np.float32)
    k = (r.standard_normal((3, 3, C, F)) / np.sqrt(9 * C)).astype(np.float32)
    return x, k, r.standard_normal(F).astype(np.float32)
out = {}
"""

NANONET = COMMON + r"""
import nanonet as nn
nn.set_num_threads(threads)
L = nn.layers
nn.set_seed(0)
m = nn.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                   L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                   L.Dropout(0.5), L.Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
out["cnn train B64"] = med(lambda: m.train_on_batch(xb, yb), 20, 3)
out["cnn predict B64"] = med(lambda: m.predict_on_batch(xb), 20, 3)
for label, B, H, C, F in CONVS:
    x, k, b = conv_inputs(B, H, C, F)
    out["conv2d fwd " + label] = med(lambda: nn.ops.conv2d_forward(x, k, b, 1, "same"), 10)
out["isa"] = nn.ops.active_isa()
print(json.dumps(out))
"""

TORCH = COMMON + r"""
import torch
torch.set_num_threads(threads)
torch.manual_seed(0)
t = torch.nn
m = t.Sequential(t.Conv2d(1, 32, 3), t.ReLU(), t.MaxPool2d(2), t.Conv2d(32, 64, 3), t.ReLU(),
                 t.MaxPool2d(2), t.Flatten(), t.Dropout(0.5), t.Linear(1600, 10))
opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
loss_fn = t.CrossEntropyLoss()
tx, ty = torch.tensor(xb.transpose(0, 3, 1, 2).copy()), torch.tensor(yb)
def step():
    opt.zero_grad()
    loss = loss_fn(m(tx), ty)
    loss.backward()
    opt.step()
out["cnn train B64"] = med(step, 20, 3)
m.eval()
with torch.no_grad():
    out["cnn predict B64"] = med(lambda: torch.softmax(m(tx), 1), 20, 3)
    for label, B, H, C, F in CONVS:
        x, k, b = conv_inputs(B, H, C, F)
        tx2 = torch.tensor(x.transpose(0, 3, 1, 2).copy())
        tk = torch.tensor(k.transpose(3, 2, 0, 1).copy())
        tb = torch.tensor(b)
        out["conv2d fwd " + label] = med(lambda: torch.nn.functional.conv2d(tx2, tk, tb, 1, 1),
                                         10)
print(json.dumps(out))
"""

CNN_FLOPS = 2.0 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 288 + 1600 * 10)
FLOPS = {"cnn train B64": 3 * 64 * CNN_FLOPS, "cnn predict B64": 64 * CNN_FLOPS}
for _label, _B, _H, _C, _F in [("B32 28x28 1->32", 32, 28, 1, 32),
                               ("B32 28x28 32->32", 32, 28, 32, 32),
                               ("B32 28x28 64->64", 32, 28, 64, 64),
                               ("B8 28x28 128->128", 8, 28, 128, 128),
                               ("B8 56x56 16->16", 8, 56, 16, 16),
                               ("B8 56x56 64->64", 8, 56, 64, 64),
                               ("B4 56x56 128->128", 4, 56, 128, 128)]:
    FLOPS["conv2d fwd " + _label] = 2.0 * _B * _H * _H * 9 * _C * _F


def child(code, threads, env_extra):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **env_extra)
    res = subprocess.run([sys.executable, "-c", code, str(threads)], env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"child failed ({env_extra}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", help="baseline nanonet python/ tree (optional)")
    ap.add_argument("--b", default="python", help="nanonet python/ tree under test")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--isa", nargs="+", default=["avx512", "avx2"])
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    sides = []  # (name, code, env)
    for isa in args.isa:
        if args.a:
            sides.append((f"A {isa}", NANONET, {"PYTHONPATH": os.path.abspath(args.a),
                                                "NANONET_ISA": isa}))
        sides.append((f"B {isa}", NANONET, {"PYTHONPATH": os.path.abspath(args.b),
                                            "NANONET_ISA": isa}))
    if not args.no_torch:
        sides.append(("torch", TORCH, {}))
    res = {}  # (side, threads) -> list of dicts
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for n in args.threads:
            for name, code, env in order:
                res.setdefault((name, n), []).append(child(code, n, env))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"load: {os.getloadavg()}")
    keys = [k for k in res[sides[0][0], args.threads[0]][0] if k != "isa"]
    for n in args.threads:
        for key in keys:
            row = [f"{key} t{n}"]
            meds = {}
            for name, _, _ in sides:
                v = [d[key] for d in res[name, n]]
                meds[name] = statistics.median(v)
                row.append(f"{name}: {1e3 * meds[name]:.3f} ms ({1e3 * min(v):.3f}-"
                           f"{1e3 * max(v):.3f}) {FLOPS[key] / meds[name] / 1e9:.1f} GF/s")
            def ratio(num, den):  # per-round ratios: median (range)
                q = [a[key] / b[key] for a, b in zip(res[num, n], res[den, n])]
                return f"{statistics.median(q):.2f}x ({min(q):.2f}-{max(q):.2f})"
            for isa in args.isa:
                if "torch" in meds:
                    row.append(f"torch/B {isa} {ratio('torch', f'B {isa}')}")
                if args.a:
                    row.append(f"A/B {isa} {ratio(f'A {isa}', f'B {isa}')}")
            print(" | ".join(row))


if __name__ == "__main__":
    main()
