"""Batch-1 latency of the exported showcase in onnxruntime next to nanonet's own ``model(x)``,
in one process, threads pinned to the same count on both sides (nanonet.set_num_threads and
threadpoolctl; onnxruntime's SessionOptions.intra_op_num_threads, inter_op 1).

The model is the demo's: Embedding(20000, 128) -> LSTM(128, return_sequences=True) -> LSTM(128)
-> Dense(26, softmax), maxlen 24; once as the demo builds it and once with
Embedding(mask_zero=True) on post-padded ids (the exported graph then compacts the valid steps
and passes sequence_lens). Rounds alternate between the two runtimes so that a busy machine
slows both alike; the figure is the median per call and the ratio onnxruntime / nanonet.
Outputs are checked against each other (max abs difference <= 1e-5) before timing.

    PYTHONPATH=python python benchmarks/bench_onnx.py [--rounds 7] [--calls 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import nanonet as nn

V, E, H, C, T = 20000, 128, 128, 26, 24


def build(mask_zero):
    nn.set_seed(0)
    model = nn.Sequential([nn.layers.Embedding(V, E, mask_zero=mask_zero),
                           nn.layers.LSTM(H, return_sequences=True), nn.layers.LSTM(H),
                           nn.layers.Dense(C, activation="softmax")])
    model.build((None, T))
    return model


def per_call(fn, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def measure(mask_zero, threads, rounds, calls, ort, threadpool_limits):
    model = build(mask_zero)
    rng = np.random.default_rng(0)
    x = rng.integers(1, V, size=(1, T)).astype(np.int32)
    if mask_zero:
        x[:, T // 2:] = 0  # post-padding: half the steps are padding
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "showcase.onnx")
        model.export(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    nn.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        err = float(np.max(np.abs(sess.run(None, {name: x})[0] - model(x))))
        assert err <= 1e-5, f"onnxruntime and nanonet differ by {err}"
        ort_call = lambda: sess.run(None, {name: x})  # noqa: E731
        nn_call = lambda: model(x)  # noqa: E731
        per_call(ort_call, calls // 4)  # warm-up
        per_call(nn_call, calls // 4)
        ort_t, nn_t = [], []
        for _ in range(rounds):
            ort_t.append(per_call(ort_call, calls))
            nn_t.append(per_call(nn_call, calls))
    return statistics.median(ort_t), statistics.median(nn_t), err


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="calls per round and side")
    args = parser.parse_args(argv)
    import onnxruntime as ort
    from threadpoolctl import threadpool_limits
    print(f"nanonet {nn.__version__} ({nn.ops.active_isa()}), onnxruntime {ort.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds x {args.calls} calls")
    print("| model | threads | onnxruntime ms | nanonet ms | onnxruntime / nanonet | "
          "max abs diff |")
    print("|---|---|---|---|---|---|")
    for mask_zero in (False, True):
        label = "showcase, mask_zero=True, half padded" if mask_zero else "showcase (demo)"
        for threads in (1, 2):
            o, n, err = measure(mask_zero, threads, args.rounds, args.calls, ort,
                                threadpool_limits)
            print(f"| {label} | {threads} | {o * 1e3:.3f} | {n * 1e3:.3f} | {o / n:.2f} | "
                  f"{err:.1e} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
