#!/usr/bin/env bash
# 1 x 1 thread vs 2 ranks x 1 thread, alternating, REPEAT times each, global batch 32 and 64;
# then one profiled 2-rank run (barrier before the allreduce: wait separated). JSON lines out.
# Usage: MPIEXEC=.venv/bin/mpiexec PY=.venv/bin/python benchmarks/run_distributed.sh [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}; MPIEXEC=${MPIEXEC:-mpiexec}; REPEAT=${1:-3}
export OMP_NUM_THREADS=1
for bs in 32 64; do
  for i in $(seq "$REPEAT"); do
    "$PY" benchmarks/bench_distributed.py --batch-size "$bs" --steps 40
    "$MPIEXEC" -n 2 "$PY" benchmarks/bench_distributed.py --batch-size "$bs" --steps 40 2>/dev/null
  done
  NANONET_DIST_PROFILE=1 "$MPIEXEC" -n 2 "$PY" benchmarks/bench_distributed.py \
    --batch-size "$bs" --steps 40 2>/dev/null
done
