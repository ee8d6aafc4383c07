#!/usr/bin/env bash
# The test suite against other versions of Python, numpy and torch than CI's (which has
# Python 3.11, numpy 2.x and torch==2.13.0): the oldest that pyproject.toml allows, or the
# newest. Not part of .ci/run: torch from PyPI pulls several GB of CUDA wheels.
#   tools/compat.sh PYTHON "REQUIREMENTS" [pytest args; default: tests]
#   tools/compat.sh python3.9 "numpy==1.22.4 torch==2.1.2"      # the oldest (docs/ddp.md)
#   tools/compat.sh python3.11 "torch==2.15.0"                     # the newest
# Builds a venv in build/compat-<python>-<hash of REQUIREMENTS>, installs the requirements,
# then this checkout (not editable, its own CMake build directory), and runs the tests from a
# copy outside the source tree, as .ci/run's wheel step does. Tests that need what this torch
# lacks skip and say why (tests/needs_torch.py, torch_gaps).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$1; REQS=$2; shift 2
TAG="$(basename "$PY")-$(echo "$REQS" | sha1sum | cut -c1-8)"
VENV=$ROOT/build/compat-$TAG
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC2086  # REQS is a list of requirements
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q $REQS "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
"$VENV/bin/python" -m pip install -q --no-build-isolation ".[test]" $REQS \
    -Cbuild-dir="build/compat-$TAG-cmake"
TESTS=$(mktemp -d)
cp -r tests "$TESTS/tests"
cd "$TESTS"
"$VENV/bin/python" -c "import sys, numpy, laqcore; print(sys.version.split()[0], 'numpy', numpy.__version__, 'laqcore', laqcore.__file__)"
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "torch: not installed (its tests skip)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -c "$ROOT/pyproject.toml" --rootdir "$TESTS" -rs "${@:-tests}"
