#!/usr/bin/env bash
# Sanitizer check: builds nanonet._core with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option NANONET_SANITIZE: -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
# -fno-sanitize-recover=all, asserts on) into build/asan, stages a copy of python/nanonet with that
# module in a temporary directory first on PYTHONPATH, and runs the tests against it. Any ASan or
# UBSan report fails the run: the first error aborts the process (halt_on_error,
# -fno-sanitize-recover=all); ASan reports also go to log files whose presence alone fails the
# script (this catches them in subprocesses too, e.g. the CLI test's `python -m nanonet`), and
# UBSan reports, which GCC's libubsan writes to stderr whatever log_path says when ASan is
# loaded, are found in pytest's output: pytest captures at the sys level only (--capture=sys),
# so what the C++ runtime writes to fd 2 reaches the terminal and the scan.
#
# Subset: the test file of every C++ area (tests/test_<area>.py for cpp/nanonet/<area>.cpp), with
# the peer libraries (PyTorch, Keras, JAX, onnxruntime) made unimportable so their comparison
# tests skip (their own native libraries are not ours to sanitize). Measured on the
# 2-core CI machine: 6.7 minutes from a clean build (306 s building, 95 s testing; testing took
# 157 s on a busy machine), so the whole of .ci/run took 10 minutes of its 20. Pass pytest
# arguments to run fewer: tools/check_sanitizers.sh tests/test_lstm.py -k backward
#
# Leaks are not checked (detect_leaks=0): CPython and NumPy keep objects alive at exit by
# design, and those reports would drown anything of ours.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD=${NANONET_SAN_BUILD:-build/asan}
JOBS=${JOBS:-2}

# Build tools: pybind11 is a build requirement (pip builds it in isolation, so a venv holding
# nanonet may lack it); cmake and ninja come from pip where the machine has none.
"$PY" -c "import pybind11" 2>/dev/null || "$PY" -m pip install -q "pybind11>=2.12"
command -v cmake >/dev/null && command -v ninja >/dev/null || "$PY" -m pip install -q cmake ninja

start=$(date +%s)
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNANONET_SANITIZE=ON \
    -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
    -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
fi
cmake --build "$BUILD" -j "$JOBS"
built=$(date +%s)

CXX=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
LIBASAN=$("$CXX" -print-file-name=libasan.so)
LIBSTDCXX=$("$CXX" -print-file-name=libstdc++.so)
for lib in "$LIBASAN" "$LIBSTDCXX"; do
  [ -e "$lib" ] || { echo "check_sanitizers: $lib not found (needs GCC's libasan)" >&2; exit 1; }
done

# Stage: a copy of the Python package with the sanitized module and no other.
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/nanonet-asan.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
cp -r python/nanonet "$STAGE/nanonet"
rm -f "$STAGE"/nanonet/_core*.so
cp "$BUILD"/_core*.so "$STAGE/nanonet/"
mkdir "$STAGE/logs"

# libasan must be loaded first; libstdc++ with it, or ASan's __cxa_throw interceptor finds no
# real __cxa_throw and aborts at the first C++ exception (every ValueError from a binding).
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:strict_init_order=1:log_path=$STAGE/logs/asan"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$STAGE/logs/ubsan"
export PYTHONMALLOC=malloc   # Python objects on ASan's heap too, not in pymalloc arenas
export PYTHONPATH="$STAGE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export NANONET_SANITIZED=1   # tests comparing bits with the release build's results relax to rounding

# Refuse to run against anything but the staged, sanitized module.
"$PY" - "$STAGE" <<'EOF'
import sys, nanonet._core as core
stage = sys.argv[1]
if not core.__file__.startswith(stage + "/"):
    sys.exit(f"check_sanitizers: imported {core.__file__}, not the sanitized module in {stage}")
maps = open("/proc/self/maps").read()
if "libasan" not in maps or "libubsan" not in maps:
    sys.exit("check_sanitizers: libasan/libubsan are not loaded")
print(f"check_sanitizers: testing {core.__file__} (ASan + UBSan)")
EOF

# Peer libraries stay out of the sanitized process (their native code is not ours to sanitize, and
# ASan's preloaded runtime breaks some of them): stubs first on the path make their imports fail
# with ModuleNotFoundError (what pytest.importorskip skips on),
# so the comparison tests skip.
for peer in torch keras jax onnxruntime; do
  mkdir -p "$STAGE/$peer"
  echo "raise ModuleNotFoundError('$peer is not loaded under the sanitizers')" > "$STAGE/$peer/__init__.py"
done

status=0
# Default subset: the test file of every C++ area (cpp/nanonet/<area>.cpp -> tests/test_<area>.py):
# each drives its kernels and bindings directly, shapes and bad input included, which is all the
# C++ there is. The model-level tests run the same kernels again and would triple the time.
if [ $# -eq 0 ]; then
  for src in cpp/nanonet/*.cpp; do
    area=$(basename "$src" .cpp)
    [ -f "tests/test_$area.py" ] && set -- "$@" "tests/test_$area.py"
  done
fi
# The package-size budget is about the release build; the -g sanitized module is ~60 MiB.
# The MPI tests stay out: mpiexec and its ranks would inherit LD_PRELOAD, and they add no C++.
"$PY" -m pytest -q -p no:cacheprovider --capture=sys \
  --deselect tests/test_package.py::test_installed_package_is_small \
  --deselect tests/test_lstm.py::test_matches_torch_lstm --ignore tests/test_keras_parity.py \
  --ignore tests/test_distributed.py \
  "$@" 2>&1 \
  | tee "$STAGE/pytest.out" || status=$?
end=$(date +%s)

if compgen -G "$STAGE/logs/*" >/dev/null; then
  echo "check_sanitizers: sanitizer reports:" >&2
  for f in "$STAGE"/logs/*; do echo "== $f" >&2; cat "$f" >&2; done
  status=1
fi
if grep -qE "runtime error:|ERROR: (Address|Undefined|Leak)Sanitizer|WARNING: AddressSanitizer" \
    "$STAGE/pytest.out"; then
  echo "check_sanitizers: sanitizer report in the test output (above)" >&2
  [ "$status" -ne 0 ] || status=1
fi
echo "check_sanitizers: build $((built - start))s, tests $((end - built))s, exit $status"
exit $status
