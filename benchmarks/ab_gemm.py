"""A/B of nanonet's float32 GEMM (nn.ops.matmul) for two source trees at one thread, both sides
running at the same time, one per core, the cores swapped every round. On a shared VM whose
speed swings from one second to the next (other tenants on the L3 and memory) this pairs every
A measurement with a B measurement taken under the same conditions; the per-round ratio B / A
is what to read (> 1: B faster), its median and range over rounds.

    python benchmarks/ab_gemm.py --a /work/base/python --b python [--rounds 12] [--numpy]
        [--shapes 64x784x256 32x512x512 ...]

--numpy: the A side is NumPy's BLAS instead (its threads pinned to 1), for B / OpenBLAS.
Needs two cores and `taskset` (util-linux).
"""
import argparse
import os
import statistics
import subprocess
import sys

SHAPES = [(512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (3200, 512, 128),
          (32, 128, 512)]

SIDE = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
use_numpy = sys.argv[2] == "numpy"
if not use_numpy:
    import nanonet as nn
    nn.set_num_threads(1)
rng = np.random.default_rng(0)
for m, k, n in SHAPES:
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    f = (lambda: a @ b) if use_numpy else (lambda: nn.ops.matmul(a, b))
    f()
    reps = max(3, int(2e9 / (2 * m * n * k)))
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        ts.append((time.perf_counter() - t0) / reps)
    print(f"{m}x{k}x{n} {2 * m * n * k / sorted(ts)[2] / 1e9:.2f}", flush=True)
"""


def side(path, core, what, shapes):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = f"SHAPES = {shapes!r}\n" + SIDE
    return subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", code, path, what],
                            env=env, stdout=subprocess.PIPE, text=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="python/ folder of side A")
    p.add_argument("--b", required=True, help="python/ folder of side B")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--numpy", action="store_true", help="side A is NumPy's BLAS")
    p.add_argument("--shapes", nargs="+", metavar="MxKxN",
                   help="products to time instead of the default set, e.g. 64x784x256")
    args = p.parse_args(argv)
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in t.split("x"))
                                             for t in args.shapes]
    gf = {"A": {}, "B": {}}
    for r in range(args.rounds):
        procs = {"A": side(os.path.abspath(args.a), r % 2, "numpy" if args.numpy else "nanonet",
                           shapes),
                 "B": side(os.path.abspath(args.b), 1 - r % 2, "nanonet", shapes)}
        for name, proc in procs.items():
            out, _ = proc.communicate()
            if proc.returncode:
                sys.exit(f"side {name} failed (exit {proc.returncode})")
            for line in out.splitlines():
                shape, value = line.split()
                gf[name].setdefault(shape, []).append(float(value))
    print(f"GFLOP/s at 1 thread, medians of {args.rounds} paired rounds; B / A per round")
    for shape in gf["A"]:
        ratios = [b / a for a, b in zip(gf["A"][shape], gf["B"][shape])]
        print(f"{shape:>16}: A {statistics.median(gf['A'][shape]):6.1f}  "
              f"B {statistics.median(gf['B'][shape]):6.1f}  B/A {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
