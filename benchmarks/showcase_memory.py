"""Peak memory of showcase training (Embedding(20000, 128) -> LSTM(128, seq) -> LSTM(128) ->
Dense(4, softmax), Adam, B=32, T=100): nanonet against the same model in PyTorch (the one
nanonet.bench.torch_showcase builds, weights copied), each in a fresh process at 1 thread.

    python benchmarks/showcase_memory.py [--steps 20] [--batch 32]   # PyTorch when importable

Per side: RSS once the model, optimizer and data exist (before any step), and the peak RSS
(Linux VmHWM, reset by /proc/self/clear_refs just before the steps) over the training steps;
"training" is the difference, what a step needs beyond the weights.
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys
side, steps, B = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import numpy as np
import nanonet as nn
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
V, E, H, C, T = 20000, 128, 128, 4, 100
rng = np.random.default_rng(0)
x = rng.integers(1, V, size=(B, T)).astype(np.int32)
labels = rng.integers(0, C, B)
y = np.eye(C, dtype=np.float32)[labels]
nn.set_num_threads(1)
nn.set_seed(0)
L = nn.layers
m = nn.Sequential([L.Embedding(V, E), L.LSTM(H, return_sequences=True), L.LSTM(H),
                   L.Dense(C, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy")
m.build((None, T))
if side == "nanonet":
    step = lambda: m.train_on_batch(x, y)
else:
    import torch
    from nanonet.bench import torch_showcase
    torch.set_num_threads(1)
    net = torch_showcase(torch, m.get_weights())
    del m
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(labels)
    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS
for _ in range(steps):
    step()
peak = status("VmHWM")
print(json.dumps({"base": base, "peak": peak}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--python", default=sys.executable, help="interpreter for both sides")
    args = ap.parse_args()
    print(f"{'side':10s}{'RSS before (MiB)':>18s}{'peak (MiB)':>12s}{'training (MiB)':>16s}")
    for side in ("nanonet", "torch"):
        res = subprocess.run([args.python, "-c", CHILD, side, str(args.steps), str(args.batch)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{side:10s} failed: {res.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{side:10s}{r['base']:18.1f}{r['peak']:12.1f}{r['peak'] - r['base']:16.1f}")


if __name__ == "__main__":
    main()
