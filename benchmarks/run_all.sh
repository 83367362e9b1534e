#!/usr/bin/env bash
# Run every benchmark group once and print the ratio tables for RESULTS.md.
# Usage: bash benchmarks/run_all.sh [out.json]   (from the repository root)
# Uses the installed nanonet, or the working tree when PYTHONPATH=python is set (then the
# sources are byte-compiled first, as pip does on install, so import time is comparable).
set -euo pipefail
out=${1:-bench.json}
cd "$(dirname "$0")"
if [ -n "${PYTHONPATH:-}" ]; then
  export PYTHONPATH="$(cd .. && pwd)/python"
  python -m compileall -q "$PYTHONPATH/nanonet"
fi
python -m pytest -q bench_gemm.py bench_activations.py bench_mlp.py bench_showcase.py \
  bench_serving.py bench_optimizers.py bench_import.py --benchmark-only --benchmark-json="$out" -p no:cacheprovider
python report.py "$out"
