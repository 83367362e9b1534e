"""Turn pytest-benchmark JSON files into the tables kept in benchmarks/RESULTS.md.

Given one or more runs (JSON files), for each group: the median over runs of each side's median
time, the speed ratio baseline / nanonet (> 1: nanonet is faster) computed from those, and, with
several runs, the range of the per-run ratios; nanonet's GFLOP/s where flops were recorded; other
nanonet paths of the group (e.g. predict, http). A second table holds the load tests
(extra_info requests_per_s, p50_ms, p99_ms), one row per run.
Usage: python benchmarks/report.py run1.json [run2.json ...]
"""
import json
import statistics
import sys
from collections import defaultdict


def fmt(t):
    if t is None:
        return ""
    return f"{t * 1e3:.3f} ms" if t >= 1e-4 else f"{t * 1e6:.1f} us"


def load(paths):
    runs, flops, loads, machine = [], {}, [], None
    for path in paths:
        data = json.load(open(path))
        machine = machine or data
        groups = defaultdict(dict)
        for b in data["benchmarks"]:
            info = b["extra_info"]
            side = info.get("side", b["name"])
            if "requests_per_s" in info:
                loads.append((b["group"], side, info))
                continue
            groups[b["group"]][side] = b["stats"]["median"]
            if "flops" in info:
                flops[(b["group"], side)] = info["flops"]
        runs.append(groups)
    return runs, flops, loads, machine


def main(paths):
    runs, flops, loads, data = load(paths)
    cpu = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?")
    print(f"{len(runs)} run(s); machine: {cpu}; first run {data.get('datetime', '')}")
    print()
    print("| group | nanonet | numpy | speed vs numpy | torch | speed vs torch | nanonet GFLOP/s "
          "| other nanonet paths |")
    print("|---|---|---|---|---|---|---|---|")
    names = sorted({g for r in runs for g in r})
    for g in names:
        sides = sorted({s for r in runs for s in r.get(g, {})})
        med = {s: statistics.median([r[g][s] for r in runs if s in r.get(g, {})]) for s in sides}
        ours = med.get("nanonet")

        def ratio(base):
            if base not in med or ours is None:
                return ""
            text = f"**{med[base] / ours:.2f}x**"
            per_run = [r[g][base] / r[g]["nanonet"] for r in runs
                       if base in r.get(g, {}) and "nanonet" in r.get(g, {})]
            if len(per_run) > 1:
                text += f" ({min(per_run):.2f}-{max(per_run):.2f})"
            return text

        gf = f"{flops[(g, 'nanonet')] / ours / 1e9:.1f}" if ours and (g, "nanonet") in flops else ""
        others = ", ".join(f"{k[len('nanonet '):]} {fmt(v)}" for k, v in med.items()
                           if k.startswith("nanonet "))
        print(f"| {g} | {fmt(ours)} | {fmt(med.get('numpy'))} | {ratio('numpy')} | "
              f"{fmt(med.get('torch'))} | {ratio('torch')} | {gf} | {others} |")
    if loads:
        print()
        print("| load test | side | requests | requests/s | p50 | p99 |")
        print("|---|---|---|---|---|---|")
        for g, side, info in sorted(loads, key=lambda t: (t[0], t[1])):
            print(f"| {g} | {side} | {info.get('requests', '')} | {info['requests_per_s']:.0f} | "
                  f"{info['p50_ms']:.2f} ms | {info['p99_ms']:.2f} ms |")


if __name__ == "__main__":
    main(sys.argv[1:])
