"""A/B: the showcase training step and batch-1 predict, and the classic MLP step, between two
nanonet source trees (e.g. this commit and the one before a change), each measured in its own
fresh process, alternating A and B rounds so drift hits both sides alike.

    python benchmarks/ab_models.py --a /tmp/old/python --b python [--rounds 5] [--threads 1 2]

Prints, per workload and thread count, the median over rounds of each side's median time and
the ratio B / A (< 1: B is faster). Both trees need their compiled _core next to the sources.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
import nanonet as nn
threads = int(sys.argv[1])
nn.set_num_threads(threads)
V, E, H, C, B, T = 20000, 128, 128, 4, 32, 100
rng = np.random.default_rng(0)
x = rng.integers(1, V, size=(B, T)).astype(np.int32)
y = np.eye(C, dtype=np.float32)[rng.integers(0, C, B)]
nn.set_seed(0)
L = nn.layers
m = nn.Sequential([L.Embedding(V, E), L.LSTM(H, return_sequences=True), L.LSTM(H),
                   L.Dense(C, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
m.build((None, T))
def med(fn, n, warm=3):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))
out = {}
out["showcase train step b32"] = med(lambda: m.train_on_batch(x, y), 15)
x1 = x[:1]
out["showcase predict b1 model(x)"] = med(lambda: m(x1), 100)
out["showcase predict b32"] = med(lambda: m.predict_on_batch(x), 20)
xm = rng.random((64, 784)).astype(np.float32); ym = rng.random((64, 10)).astype(np.float32)
mlp = nn.Sequential([L.Input((784,)), L.Dense(256, activation="sigmoid"),
                     L.Dense(10, activation="sigmoid")])
mlp.compile(optimizer=nn.optimizers.SGD(0.1), loss="mse")
out["mlp 784-256-10 sigmoid/mse/sgd step b64"] = med(lambda: mlp.train_on_batch(xm, ym), 300)
print(json.dumps(out))
"""


def run(tree, threads):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OMP_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="source tree A (the folder holding nanonet/)")
    ap.add_argument("--b", required=True, help="source tree B")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    print(f"A = {args.a}\nB = {args.b}\nrounds = {args.rounds}, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| workload | threads | A median | B median | B / A | per-round B / A |")
    print("|---|---|---|---|---|---|")
    for t in args.threads:
        rows = {}
        for _ in range(args.rounds):
            for side, tree in (("a", args.a), ("b", args.b)):
                for k, v in run(tree, t).items():
                    rows.setdefault(k, {"a": [], "b": []})[side].append(v)
        for k, v in rows.items():
            a, b = statistics.median(v["a"]), statistics.median(v["b"])
            per = [vb / va for va, vb in zip(v["a"], v["b"])]
            unit, f = ("ms", 1e3) if a > 1e-3 else ("us", 1e6)
            print(f"| {k} | {t} | {a * f:.3f} {unit} | {b * f:.3f} {unit} | {b / a:.3f} | "
                  f"{min(per):.2f}-{max(per):.2f} |")


if __name__ == "__main__":
    main()
