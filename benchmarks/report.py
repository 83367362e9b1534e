"""Turn a pytest-benchmark JSON file into the ratio table kept in benchmarks/RESULTS.md.

For each group: median time of every side, and the speed ratio baseline_median / nanonet_median
(> 1 means nanonet is faster), plus nanonet's GFLOP/s where the benchmark recorded flops.
Usage: python benchmarks/report.py bench.json
"""
import json
import sys
from collections import defaultdict


def main(path):
    data = json.load(open(path))
    groups = defaultdict(dict)
    flops = {}
    for b in data["benchmarks"]:
        side = b["extra_info"].get("side", b["name"])
        groups[b["group"]][side] = b["stats"]["median"]
        if "flops" in b["extra_info"]:
            flops[(b["group"], side)] = b["extra_info"]["flops"]
    print("| group | nanonet median | numpy median | nanonet / numpy speed | torch median | "
          "nanonet / torch speed | nanonet GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for g in sorted(groups):
        s = groups[g]
        ours = s.get("nanonet")

        def fmt(t):
            return "" if t is None else (f"{t * 1e3:.3f} ms" if t >= 1e-4 else f"{t * 1e6:.1f} us")

        def ratio(base):
            return "" if base is None or ours is None else f"{base / ours:.2f}x"

        gf = ""
        if ours and (g, "nanonet") in flops:
            gf = f"{flops[(g, 'nanonet')] / ours / 1e9:.1f}"
        print(f"| {g} | {fmt(ours)} | {fmt(s.get('numpy'))} | {ratio(s.get('numpy'))} | "
              f"{fmt(s.get('torch'))} | {ratio(s.get('torch'))} | {gf} |")


if __name__ == "__main__":
    main(sys.argv[1])
