"""NumPy and nanonet in one process at 2 threads: the cost of interleaving their calls under
libgomp's own idle spin (GOMP_SPINCOUNT=300000, what nanonet ran with before it chose one),
under nanonet's default (ops._load_core: 10000), and with OpenBLAS's idle spin shortened too
(OPENBLAS_THREAD_TIMEOUT=4, which must be set before NumPy is imported), each in fresh
processes, alternating rounds.

    python benchmarks/bench_interleave.py [--rounds 4] [--settings libgomp nanonet ...]

Per setting, the median over rounds of each case's median time (ms):
- nanonet alone / numpy alone / pair: an n^3 float32 matmul by nanonet, by NumPy (OpenBLAS,
  2 threads), and one of each in turn; "pair / sum" is the interleaving's cost (1 = none);
- mix: a NumPy feature step (tanh(x @ P), 64 x 784 x 784) then the classic MLP's train_on_batch;
- mlp, showcase: the classic MLP step (B=64) and the showcase LSTM step (B=32, T=100) alone, to
  show what a shorter spin costs nanonet's own 2-thread training.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, time
import numpy as np
import nanonet as nn
from nanonet import ops
nn.set_num_threads(2)
L = nn.layers
rng = np.random.default_rng(0)
def med(fn, n, warm=5):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3
out = {}
for n in (128, 512):
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    reps = 200 if n == 128 else 60
    out[f"matmul {n}^3 nanonet alone"] = med(lambda: ops.matmul(a, b), reps, 20)
    out[f"matmul {n}^3 numpy alone"] = med(lambda: a @ b, reps, 20)
    out[f"matmul {n}^3 pair"] = med(lambda: (ops.matmul(a, b), a @ b), reps, 20)
xm = rng.random((64, 784)).astype(np.float32)
ym = rng.random((64, 10)).astype(np.float32)
nn.set_seed(0)
mlp = nn.Sequential([L.Input((784,)), L.Dense(256, activation="sigmoid"),
                     L.Dense(10, activation="sigmoid")])
mlp.compile(optimizer=nn.optimizers.SGD(0.1), loss="mse")
P = (rng.standard_normal((784, 784)) * 0.01).astype(np.float32)
out["mix: numpy feature step + mlp step"] = med(lambda: mlp.train_on_batch(np.tanh(xm @ P), ym),
                                               200, 30)
out["mlp step alone"] = med(lambda: mlp.train_on_batch(xm, ym), 300, 50)
V, E, H, C, B, T = 20000, 128, 128, 4, 32, 100
x = rng.integers(1, V, size=(B, T)).astype(np.int32)
y = np.eye(C, dtype=np.float32)[rng.integers(0, C, B)]
m = nn.Sequential([L.Embedding(V, E), L.LSTM(H, return_sequences=True), L.LSTM(H),
                   L.Dense(C, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy")
m.build((None, T))
out["showcase step alone"] = med(lambda: m.train_on_batch(x, y), 20, 3)
print(json.dumps({"wait": ops.openmp_wait(), "times": out}))
"""


SETTINGS = {
    "libgomp": {"GOMP_SPINCOUNT": "300000"},
    "nanonet": {},
    "nanonet+openblas": {"OPENBLAS_THREAD_TIMEOUT": "4"},
}
LABELS = {"libgomp": "GOMP_SPINCOUNT=300000", "nanonet": "nanonet's default",
          "nanonet+openblas": "+ OPENBLAS_THREAD_TIMEOUT=4"}


def run(setting):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")}
    env.update(SETTINGS[setting])
    res = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = ap.parse_args()
    sets = args.settings
    runs = {s: [] for s in sets}
    for r in range(args.rounds):
        for s in (sets if r % 2 == 0 else sets[::-1]):
            runs[s].append(run(s))
    names = list(runs[sets[0]][0]["times"])
    med = {s: {k: statistics.median(o["times"][k] for o in runs[s]) for k in names} for s in sets}
    print(f"{args.rounds} rounds, medians (ms); libgomp's wait policy: "
          + "; ".join(f"{s}: {runs[s][0]['wait']}" for s in sets))
    print(f"{'case':38s}" + "".join(f"{LABELS[s]:>30s}" for s in sets))
    for k in names:
        print(f"{k:38s}" + "".join(f"{med[s][k]:30.3f}" for s in sets))
    for n in (128, 512):
        row = [med[s][f"matmul {n}^3 pair"] / (med[s][f"matmul {n}^3 nanonet alone"]
                                               + med[s][f"matmul {n}^3 numpy alone"])
               for s in sets]
        print(f"{'matmul ' + str(n) + '^3 pair / sum':38s}" + "".join(f"{v:29.2f}x" for v in row))


if __name__ == "__main__":
    main()
