"""save_weights / load_weights of the showcase model: safetensors against nanonet's own .nnet
weights file, in the same run, interleaved, threads pinned to 1 on both sides.

    PYTHONPATH=../python python bench_interchange.py [--repeats 9] [--dir /tmp]

The showcase: Embedding(20000, 128) -> LSTM(128, return_sequences) -> LSTM(128) -> Dense(10),
about 2.8 M float32 weights (11 MB). Prints the median time of each and the ratio
safetensors / nnet (below 1: safetensors is faster), with the range over the repeats.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--dir", default=None, help="directory for the files (default: a temp dir)")
    args = p.parse_args()
    import nanonet as nn
    from threadpoolctl import threadpool_limits
    nn.set_num_threads(1)
    with threadpool_limits(1), tempfile.TemporaryDirectory(dir=args.dir) as d:
        nn.set_seed(0)
        from nanonet.demo import build_model
        model = build_model(20000, 10)
        model.build((None, 24))
        other = build_other(model)
        n = sum(w.size for w in model.get_weights())
        paths = {"nnet": os.path.join(d, "w.nnet"), "safetensors": os.path.join(d, "w.safetensors")}
        times = {(k, op): [] for k in paths for op in ("save", "load")}
        for _ in range(args.repeats):
            for k, path in paths.items():
                t = time.perf_counter()
                model.save_weights(path)
                times[(k, "save")].append(time.perf_counter() - t)
                t = time.perf_counter()
                other.load_weights(path)
                times[(k, "load")].append(time.perf_counter() - t)
                for a, b in zip(model.get_weights(), other.get_weights()):
                    assert a.tobytes() == b.tobytes()
        print(f"showcase: {n} weights, {sum(w.nbytes for w in model.get_weights()) / 1e6:.1f} MB;"
              f" files: nnet {os.path.getsize(paths['nnet']) / 1e6:.2f} MB, safetensors "
              f"{os.path.getsize(paths['safetensors']) / 1e6:.2f} MB; {args.repeats} repeats")
        print("| operation | .nnet (median) | .safetensors (median) | safetensors / nnet |")
        print("|---|---|---|---|")
        for op in ("save", "load"):
            a, b = times[("nnet", op)], times[("safetensors", op)]
            ratios = [y / x for x, y in zip(a, b)]
            print(f"| {op}_weights | {statistics.median(a) * 1e3:.1f} ms | "
                  f"{statistics.median(b) * 1e3:.1f} ms | {statistics.median(ratios):.2f}x "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) |")


def build_other(model):
    from nanonet.demo import build_model
    other = build_model(20000, 10)
    other.build((None, 24))
    other.set_weights([np.zeros_like(w) for w in model.get_weights()])
    return other


if __name__ == "__main__":
    main()
