"""Turn a pytest-benchmark JSON file into the tables kept in benchmarks/RESULTS.md.

Table 1, per group: nanonet's median, the baselines' medians (numpy, torch) and the speed ratios
baseline_median / nanonet_median (> 1: nanonet is faster), nanonet's GFLOP/s where the benchmark
recorded flops, and any other nanonet paths of the group (e.g. predict, http) with their medians.
Table 2: load tests (extra_info requests_per_s, p50_ms, p99_ms).
Usage: python benchmarks/report.py bench.json
"""
import json
import sys
from collections import defaultdict


def fmt(t):
    if t is None:
        return ""
    return f"{t * 1e3:.3f} ms" if t >= 1e-4 else f"{t * 1e6:.1f} us"


def main(path):
    data = json.load(open(path))
    groups = defaultdict(dict)
    flops = {}
    loads = []
    for b in data["benchmarks"]:
        info = b["extra_info"]
        side = info.get("side", b["name"])
        if "requests_per_s" in info:
            loads.append((b["group"], side, info))
            continue
        groups[b["group"]][side] = b["stats"]["median"]
        if "flops" in info:
            flops[(b["group"], side)] = info["flops"]
    machine = data.get("machine_info", {})
    print(f"machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
          f"python {machine.get('python_version', '?')}, {data.get('datetime', '')}")
    print()
    print("| group | nanonet | numpy | nanonet speed vs numpy | torch | nanonet speed vs torch "
          "| nanonet GFLOP/s | other nanonet paths |")
    print("|---|---|---|---|---|---|---|---|")
    for g in sorted(groups):
        s = groups[g]
        ours = s.get("nanonet")

        def ratio(base):
            return "" if base is None or ours is None else f"**{base / ours:.2f}x**"

        gf = ""
        if ours and (g, "nanonet") in flops:
            gf = f"{flops[(g, 'nanonet')] / ours / 1e9:.1f}"
        others = ", ".join(f"{k[len('nanonet '):]} {fmt(v)}" for k, v in sorted(s.items())
                           if k.startswith("nanonet "))
        print(f"| {g} | {fmt(ours)} | {fmt(s.get('numpy'))} | {ratio(s.get('numpy'))} | "
              f"{fmt(s.get('torch'))} | {ratio(s.get('torch'))} | {gf} | {others} |")
    if loads:
        print()
        print("| load test | side | requests | requests/s | p50 | p99 |")
        print("|---|---|---|---|---|---|")
        for g, side, info in sorted(loads):
            print(f"| {g} | {side} | {info.get('requests', '')} | {info['requests_per_s']:.0f} | "
                  f"{info['p50_ms']:.2f} ms | {info['p99_ms']:.2f} ms |")


if __name__ == "__main__":
    main(sys.argv[1])
