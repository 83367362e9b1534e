#!/usr/bin/env bash
# Incremental developer build: compiles nanonet._core into build/dev and copies it into
# python/nanonet/ so that `PYTHONPATH=python python -m pytest tests` runs the working tree.
# Serialised with flock so several engineers can call it at once.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/nanonet-dev-build.lock
flock 9
if [ ! -f build/dev/build.ninja ]; then
  cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python3)" >/dev/null
fi
cmake --build build/dev -j 2
# Copy then rename: processes that have the old module mapped keep their inode (a plain cp
# over a mapped .so kills them with SIGBUS).
for so in build/dev/_core*.so; do
  cp "$so" "python/nanonet/.$(basename "$so").tmp"
  mv -f "python/nanonet/.$(basename "$so").tmp" "python/nanonet/$(basename "$so")"
done
