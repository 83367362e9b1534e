#!/usr/bin/env bash
# Compile every kernel source for the portable paths: without OpenMP, and for aarch64 (the
# SIMD micro-kernels and clones are x86-only; ARM gets the portable C++ code). Needs Debian's
# g++-aarch64-linux-gnu for the second part (apt-get install g++-aarch64-linux-gnu).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
for f in cpp/nanonet/*.cpp; do
  g++ -std=c++17 -O2 -Wall -Wno-unknown-pragmas -Wno-unused-variable -Icpp -c "$f" -o "$out/noomp_$(basename "$f").o"
done
echo "no-OpenMP build of the kernels: ok"
if command -v aarch64-linux-gnu-g++ >/dev/null; then
  for f in cpp/nanonet/*.cpp; do
    aarch64-linux-gnu-g++ -std=c++17 -O2 -fopenmp -Wall -Icpp -c "$f" -o "$out/arm_$(basename "$f").o"
  done
  echo "aarch64 build of the kernels: ok"
else
  echo "aarch64-linux-gnu-g++ not found: skipped the ARM build"
fi
rm -rf "$out"
