#!/usr/bin/env bash
# The fast static checks of .ci/run, for use before every landing (about 1 minute):
#   tools/check.sh            # ruff (lint + format), clang-format, mypy --strict, stubtest, docs (-W)
# Needs the dev and docs extras and an up-to-date install of this checkout
# (python -m pip install --no-build-isolation ".[dev,docs]"): stubtest and the docs import
# the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
status=0
run() { echo "--- $*"; "$@" || status=1; }
run "$PY" -m ruff check .
run "$PY" -m ruff format --check .
run bash -c "git ls-files 'cpp/*.[ch]pp' 'fuzz/*.[ch]pp' | xargs clang-format --dry-run -Werror"
run "$PY" -m mypy
run bash -c "cd \"\$(mktemp -d)\" && \"$PY\" -m mypy.stubtest laqcore._core"
# -E: a fresh environment, as on a clean clone; an incremental build does not repeat the
# warnings of pages it does not reread (a duplicate cross-reference target passed here once)
run "$PY" -m sphinx -E -W --keep-going -q -b html docs build/docs-html
if [ "$status" -ne 0 ]; then echo "tools/check.sh: FAILED"; else echo "tools/check.sh: all passed"; fi
exit "$status"
