"""GRU and bidirectional LSTM training steps, nanonet vs PyTorch's CPU build, same process.

A training step here is forward (training mode) + backward to the inputs and every weight for
the loss sum(y * R), y the whole output sequence: B=32, T=100, I=H=128, float32.
Groups: GRU (Keras reset_after=True layout vs torch.nn.GRU), Bidirectional(LSTM) (merge
"concat" vs torch.nn.LSTM(bidirectional=True)), SimpleRNN vs torch.nn.RNN; at 1 and 2 threads,
pinned on both sides (nanonet.set_num_threads, torch.set_num_threads). The two libraries run
interleaved, repeat after repeat, and each keeps its median; the headline is the ratio of
medians (torch / nanonet, > 1 means nanonet is faster), with the range of per-repeat ratios.

    PYTHONPATH=python /work/.venv-peers/bin/python benchmarks/bench_rnn.py [--repeats 15]
        [--threads 1 2] [--cases GRU,Bidirectional(LSTM),Bidirectional(GRU),SimpleRNN]

(NANONET_ISA=avx2 for the AVX2 path; the header line says which path ran. On a loaded machine
add --stat min, and for 1 thread --threads 1 --clock thread.)
"""
import argparse
import time

import numpy as np

import nanonet as nn
from nanonet import layers as L

B, T, I, H = 32, 100, 128, 128


def _nanonet_step(layer, x, R):
    def step():
        y, ctx = layer.forward(x, training=True)
        layer.backprop(ctx, R)
    return step


def _torch_step(torch, net, x, R):
    xt = torch.from_numpy(x).requires_grad_(True)
    Rt = torch.from_numpy(R)

    def step():
        net.zero_grad(set_to_none=True)
        xt.grad = None
        out, _ = net(xt)
        (out * Rt).sum().backward()
    return step


def _cases(torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    out = []
    nn.set_seed(0)
    gru = L.GRU(H, return_sequences=True)
    gru.build((None, T, I))
    out.append(("GRU", _nanonet_step(gru, x, rng.standard_normal((B, T, H)).astype(np.float32)),
                torch.nn.GRU(I, H, batch_first=True), H))
    bi = L.Bidirectional(L.LSTM(H, return_sequences=True))
    bi.build((None, T, I))
    out.append(("Bidirectional(LSTM)",
                _nanonet_step(bi, x, rng.standard_normal((B, T, 2 * H)).astype(np.float32)),
                torch.nn.LSTM(I, H, batch_first=True, bidirectional=True), 2 * H))
    bg = L.Bidirectional(L.GRU(H, return_sequences=True))
    bg.build((None, T, I))
    out.append(("Bidirectional(GRU)",
                _nanonet_step(bg, x, rng.standard_normal((B, T, 2 * H)).astype(np.float32)),
                torch.nn.GRU(I, H, batch_first=True, bidirectional=True), 2 * H))
    rnn = L.SimpleRNN(H, return_sequences=True)
    rnn.build((None, T, I))
    out.append(("SimpleRNN", _nanonet_step(rnn, x,
                                           rng.standard_normal((B, T, H)).astype(np.float32)),
                torch.nn.RNN(I, H, batch_first=True), H))
    return [(name, ours, _torch_step(torch, net, x,
                                     rng.standard_normal((B, T, w)).astype(np.float32)))
            for name, ours, net, w in out]


_CLOCK = time.perf_counter


def _time(fn):
    t0 = _CLOCK()
    fn()
    return _CLOCK() - t0


def main():
    import torch
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", default="GRU,Bidirectional(LSTM),Bidirectional(GRU),SimpleRNN")
    # On a loaded machine: --clock thread (CPU time of the calling thread, not counting time
    # descheduled; 1 thread only: both libraries then run in this thread) and --stat min.
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    parser.add_argument("--stat", choices=("median", "min"), default="median")
    args = parser.parse_args()
    global _CLOCK
    if args.clock == "thread":
        if args.threads != [1]:
            parser.error("--clock thread measures 1-thread runs only (--threads 1)")
        _CLOCK = time.thread_time
    stat = np.median if args.stat == "median" else np.min
    wanted = args.cases.split(",")
    cases = [c for c in _cases(torch) if c[0] in wanted]
    print(f"torch {torch.__version__}, nanonet ISA {nn.ops.active_isa()} (lstm family "
          f"{nn.ops.family_isa('lstm')}), B={B} T={T} I={I} H={H}, float32, "
          f"{args.repeats} interleaved repeats, {args.stat} of {args.clock} time")
    print("| step | threads | nanonet | torch | torch / nanonet (range) |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        nn.set_num_threads(threads)
        torch.set_num_threads(threads)
        for name, ours, theirs in cases:
            ours()
            theirs()  # warm-up
            a, b = [], []
            for _ in range(args.repeats):
                a.append(_time(ours))
                b.append(_time(theirs))
            a, b = np.array(a), np.array(b)
            ratio = stat(b) / stat(a)
            per = b / a
            print(f"| {name} | {threads} | {stat(a) * 1e3:.1f} ms | "
                  f"{stat(b) * 1e3:.1f} ms | {ratio:.2f}x ({per.min():.2f}-{per.max():.2f}) |",
                  flush=True)


if __name__ == "__main__":
    main()
