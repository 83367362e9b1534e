"""Import cost of nanonet against numpy (and optionally another nanonet tree) in fresh
interpreters, with byte-compiled sources as an installed package has them: the minimum over the
runs of the child's CPU time (user + system, from wait4) and of its wall time.

    python benchmarks/import_time.py [--runs 9] [--baseline OTHER_TREE/python]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def best(code, path, env, runs):
    env = dict(env, PYTHONPATH=path)
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # writes the caches
    cpu, wall = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall.append(time.perf_counter() - t0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{code!r} failed")
        cpu.append(usage.ru_utime + usage.ru_stime)
    return min(cpu), min(wall)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per side (default 9)")
    parser.add_argument("--baseline", default=None,
                        help="the python/ folder of another nanonet tree to compare with")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="nanonet-pyc-"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sides = [("numpy", "import numpy", ""),
             ("nanonet", "import nanonet", os.path.join(ROOT, "python"))]
    if args.baseline:
        sides.append(("nanonet (baseline)", "import nanonet", args.baseline))
    sides.append(("numpy", "import numpy", ""))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, code, path in sides:
        cpu, wall = best(code, path, env, args.runs)
        print(f"{name:20s} cpu {cpu * 1000:7.1f} ms  wall {wall * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
