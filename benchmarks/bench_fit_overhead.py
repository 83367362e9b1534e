"""What fit adds to its steps: one epoch of ``fit`` against a loop of ``train_on_batch`` over the
same batches (the sum of its steps), for the classic MLP (784-256-10, relu + softmax, adam,
batch 64) and the showcase (Embedding 20000x128 -> LSTM 128 (sequences) -> LSTM 128 -> Dense 4,
batch 32, T 100). fit runs with verbose=0, with the progress display on a (simulated)
terminal, and with it writing to a log; shuffle off (the same batches as the loop) and on (fit
then also gathers the shuffled epoch). Repeats are interleaved; the ratio of every repeat is
fit / loop measured back to back, threads pinned to 1 on both sides (nanonet and NumPy).
The first table compares each fit epoch with the sum of its own training steps (the time
inside the model's step, measured in the same fit call): what fit adds around the steps.
Times are the process's CPU time (time.process_time; one thread, so it is the work done),
which other processes on a loaded machine disturb far less than wall-clock time; the wall
clock ratio is printed beside it.

    PYTHONPATH=python python benchmarks/bench_fit_overhead.py [--repeats 5] [--quick]
"""
import argparse
import io
import statistics
import time

import numpy as np

import nanonet as nn
from nanonet import callbacks as C


class _NullTty(io.TextIOBase):
    """A terminal that discards what the progress bar draws."""

    def isatty(self):
        return True

    def write(self, s):
        return len(s)


class _NullLog(_NullTty):
    def isatty(self):
        return False


def mlp(steps):
    rng = np.random.default_rng(0)
    x = rng.random((64 * steps, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64 * steps)]

    def make():
        nn.set_seed(0)
        model = nn.Sequential([nn.layers.Input((784,)), nn.layers.Dense(256, activation="relu"),
                               nn.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        return model
    return "MLP 784-256-10 B64", make, x, y, 64


def showcase(steps):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20000, size=(32 * steps, 100)).astype(np.int32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 32 * steps)]

    def make():
        nn.set_seed(0)
        model = nn.Sequential([nn.layers.Embedding(20000, 128),
                               nn.layers.LSTM(128, return_sequences=True), nn.layers.LSTM(128),
                               nn.layers.Dense(4, activation="softmax")])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model.build((None, 100))
        return model
    return "showcase B32 T100", make, x, y, 32


def _clocks():
    return time.process_time(), time.perf_counter()


def _since(t0):
    c, w = _clocks()
    return c - t0[0], w - t0[1]


def loop_epoch(model, x, y, batch):
    t = _clocks()
    for i in range(0, len(x), batch):
        model.train_on_batch(x[i:i + batch], y[i:i + batch])
    return _since(t)


def fit_epoch(model, x, y, batch, mode, shuffle):
    cbs = {"verbose=0": ([], 0), "bar on a terminal": ([C.ProgbarLogger(stream=_NullTty())], 1),
           "lines to a log": ([C.ProgbarLogger(stream=_NullLog(), log_interval=0.5)], 1)}[mode]
    t = _clocks()
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=shuffle, verbose=cbs[1],
              callbacks=cbs[0])
    return _since(t)


def epoch_vs_steps(model, x, y, batch, mode, shuffle):
    """(one fit epoch, the sum of its steps' own times): CPU time, measured in the same run by
    wrapping the model's training step, so the machine's load falls on both alike."""
    inner = model._train_step
    spent = [0.0]

    def timed(*args):
        t = time.process_time()
        try:
            return inner(*args)
        finally:
            spent[0] += time.process_time() - t
    model._train_step = timed
    try:
        total = fit_epoch(model, x, y, batch, mode, shuffle)[0]
    finally:
        del model._train_step
    return total, spent[0]


def display_cost(calls=200_000):
    """The progress display's own cost per training step: CallbackList dispatching
    on_train_batch_end to a ProgbarLogger (as fit does), against the same dispatch to a
    no-op callback (CPU time)."""
    logs = {"loss": 0.25, "accuracy": 0.75}
    out = []
    for label, cb in (("no-op callback", C.Callback()),
                      ("ProgbarLogger, terminal", C.ProgbarLogger(stream=_NullTty())),
                      ("ProgbarLogger, log", C.ProgbarLogger(stream=_NullLog()))):
        cbs = C.CallbackList([cb], verbose=1, epochs=1, steps=calls)
        cbs.on_train_begin()
        cbs.on_epoch_begin(0)
        t = time.process_time()
        for i in range(calls):
            cbs.on_train_batch_end(i, logs)
        out.append((label, (time.process_time() - t) / calls))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    args = p.parse_args()
    nn.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    print("| on_train_batch_end through CallbackList | time per step |")
    print("|---|---|")
    for label, t in display_cost():
        print(f"| {label} | {t * 1e6:.2f} us |", flush=True)
    print()
    runs = [(mlp, 40 if args.quick else 200), (showcase, 3 if args.quick else 12)]
    modes = [("verbose=0", False), ("bar on a terminal", False), ("lines to a log", False),
             ("verbose=0", True)]
    print("| model, fit mode | steps | fit epoch (CPU) | sum of its steps | epoch / steps, "
          "median (range) | overhead per step |")
    print("|---|---|---|---|---|---|")
    for make_case, steps in runs:
        name, make, x, y, batch = make_case(steps)
        model = make()
        loop_epoch(model, x[:batch * 2], y[:batch * 2], batch)  # warm up
        for mode, shuffle in modes:
            pairs = [epoch_vs_steps(model, x, y, batch, mode, shuffle)
                     for _ in range(args.repeats)]
            ratios = [t / s for t, s in pairs]
            totals, sums = [t for t, _ in pairs], [s for _, s in pairs]
            per_step = statistics.median([(t - s) / steps for t, s in pairs])
            label = f"{name}, {mode}" + (", shuffle" if shuffle else "")
            print(f"| {label} | {steps} | {statistics.median(totals) * 1e3:.1f} ms | "
                  f"{statistics.median(sums) * 1e3:.1f} ms | {statistics.median(ratios):.4f} "
                  f"({min(ratios):.4f}-{max(ratios):.4f}) | {per_step * 1e6:.0f} us |",
                  flush=True)
    print()
    print("| model, fit mode | steps | fit (CPU) | loop of train_on_batch (CPU) | fit / loop CPU, "
          "median (range) | per step | fit / loop wall, median |")
    print("|---|---|---|---|---|---|---|")
    for make_case, steps in runs:
        name, make, x, y, batch = make_case(steps)
        model = make()
        loop_epoch(model, x[:batch * 2], y[:batch * 2], batch)  # warm up
        for mode, shuffle in modes:
            cpu, wall, fits, loops = [], [], [], []
            for _ in range(args.repeats):
                lt = loop_epoch(model, x, y, batch)
                ft = fit_epoch(model, x, y, batch, mode, shuffle)
                cpu.append(ft[0] / lt[0])
                wall.append(ft[1] / lt[1])
                fits.append(ft[0])
                loops.append(lt[0])
            per_step = (statistics.median(fits) - statistics.median(loops)) / steps
            label = f"{name}, {mode}" + (", shuffle" if shuffle else "")
            print(f"| {label} | {steps} | {statistics.median(fits) * 1e3:.1f} ms | "
                  f"{statistics.median(loops) * 1e3:.1f} ms | {statistics.median(cpu):.4f} "
                  f"({min(cpu):.4f}-{max(cpu):.4f}) | {per_step * 1e6:+.0f} us | "
                  f"{statistics.median(wall):.4f} |", flush=True)

if __name__ == "__main__":
    main()
