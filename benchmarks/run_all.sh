#!/usr/bin/env bash
# Run every benchmark group once and print the ratio tables for RESULTS.md.
# Usage: [PYTHON=python-with-threadpoolctl-and-torch] bash benchmarks/run_all.sh [out.json]
# Uses the installed nanonet, or the working tree when PYTHONPATH=python is set (then the
# sources are byte-compiled first, as pip does on install, so import time is comparable).
set -euo pipefail
out=${1:-bench.json}
cd "$(dirname "$0")"
if [ -n "${PYTHONPATH:-}" ]; then
  export PYTHONPATH="$(cd .. && pwd)/python"
  "${PYTHON:-python}" -m compileall -q "$PYTHONPATH/nanonet"
fi
"${PYTHON:-python}" -m pytest -q bench_gemm.py bench_activations.py bench_mlp.py bench_showcase.py \
  bench_serving.py bench_optimizers.py bench_import.py --benchmark-only --benchmark-json="$out" -p no:cacheprovider
"${PYTHON:-python}" report.py "$out"
