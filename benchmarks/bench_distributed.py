"""Data-parallel training throughput of the showcase model (nanonet.distributed).

    python benchmarks/bench_distributed.py                       # 1 process
    mpiexec -n 2 python benchmarks/bench_distributed.py          # 2 ranks, same global batch
    NANONET_DIST_PROFILE=1 mpiexec -n 2 python ...               # + wait separated (a barrier)

The showcase (Embedding(V, 128) -> LSTM(128, return_sequences) -> LSTM(128) -> Dense(C,
softmax), adam, categorical cross-entropy) on synthetic ids of the demo's shape (V = 20000,
T = 24, C = 25), float32, one kernel thread per rank (--threads). Times ``fit`` over --steps
global batches of --batch-size after a --warmup fit, and prints one JSON line from rank 0:
samples/s and, under MPI, the mean per-step breakdown (compute = forward + losses + backward of
this rank's share; pack = scale + copy into / out of the buckets; wait = the barrier before the
allreduce (profile only); allreduce), the gradient bytes per step, and each rank's CPU seconds
per wall second (core_share: below 1 when other processes share the node; spinning in a
collective counts as CPU).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import nanonet as nn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab", type=int, default=20000)
    p.add_argument("--maxlen", type=int, default=24)
    p.add_argument("--classes", type=int, default=25)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    rank, size = nn.distributed.initialize()
    nn.set_num_threads(args.threads)
    nn.set_seed(0)
    from nanonet.demo import build_model
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.integers(1, args.vocab, (n, args.maxlen))
    y = np.eye(args.classes, dtype=np.float32)[rng.integers(0, args.classes, n)]
    model = build_model(args.vocab, args.classes, args.units)
    model.fit(x, y, batch_size=args.batch_size, epochs=1, steps_per_epoch=args.warmup, verbose=0)
    nn.distributed.barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
    nn.distributed.barrier()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"ranks": size, "threads": args.threads, "batch": args.batch_size, "steps": args.steps,
           "seconds": round(dt, 3), "samples_per_s": round(n / dt, 1),
           "grad_bytes_per_step": int(sum(w.nbytes for w in model.trainable_weights)),
           # the share of a core each rank got: below 1 when other processes share the node
           "core_share": [round(c / dt, 2) for c in nn.distributed.gather_floats([cpu])]}
    dp = nn.distributed.last_hook()
    if dp is not None:
        t = dp.timings
        steps = max(1, t["steps"])
        per = {k: 1e3 * t[k] / steps for k in ("compute", "pack", "wait", "allreduce")}
        per = {k: np.array(nn.distributed.gather_floats([v]))  # every rank's value
               for k, v in per.items()}
        out["per_step_ms"] = {k: [round(float(x), 2) for x in v] for k, v in per.items()}
        out["step_ms"] = round(1e3 * dt / args.steps, 2)
        comm = per["wait"] + per["allreduce"]
        out["allreduce_plus_wait_share"] = [round(float(c) / out["step_ms"], 3) for c in comm]
    if rank == 0:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
