#!/usr/bin/env bash
# Run laqcore's tests against an AddressSanitizer + UndefinedBehaviorSanitizer build of _core.
#
#   tools/sanitize.sh                       # all tests except the multi-process ones
#   tools/sanitize.sh tests/test_packing.py -k unpack
#
# How: the `asan` CMake preset builds _core with -fsanitize=address,undefined into
# build/preset-asan; this script stages python/laqcore plus that _core into
# build/preset-asan/stage and puts it first on PYTHONPATH, so the installed laqcore (if any)
# is left alone. CPython itself is not instrumented, so libasan must be the first library
# loaded: it is LD_PRELOADed (with libubsan, and libstdc++ so ASan's operator new/delete
# interceptors see every allocation). Leak detection is off because CPython keeps interned
# objects alive until exit by design; every other error aborts the run (halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CXX=${CXX:-c++}

cmake --preset asan -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build --preset asan
# The C++ unit tests of the kernels' header API (cpp/tests), built by the same preset, run
# first: a sanitizer report there points at a kernel without Python in the way.
ctest --preset asan

stage=build/preset-asan/stage
rm -rf "$stage"
mkdir -p "$stage"
cp -r python/laqcore "$stage/laqcore"
cp build/preset-asan/_core*.so "$stage/laqcore/"

preload="$("$CXX" -print-file-name=libasan.so):$("$CXX" -print-file-name=libubsan.so)"
preload="$preload:$("$CXX" -print-file-name=libstdc++.so)"
export LD_PRELOAD="$preload"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONPATH="$PWD/$stage${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONMALLOC=malloc  # let ASan see Python-side buffers too (no pymalloc arenas)

# Prove the sanitized build is the one under test before trusting a green run.
"$PY" -c "import laqcore, sys; f = laqcore._core.__file__; print('testing', f); sys.exit('stage/' not in f)"
if [ "$#" -eq 0 ]; then
    set -- tests -m "not distributed and not slow"
fi
# --capture=sys: a sanitizer report is written to fd 2 just before abort; fd-level capture
# would swallow it.
exec "$PY" -m pytest -q -p no:cacheprovider --capture=sys "$@"
