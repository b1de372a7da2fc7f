#!/usr/bin/env bash
# Line and branch coverage of the tests, subprocesses included (scripts/coveragerc); the numbers
# and the reasons for what stays uncovered are in docs/coverage.md.
#     bash scripts/coverage.sh                      # unit, adapters, hub and engine tests
#     bash scripts/coverage.sh tests/unit           # any pytest arguments
# Prints the report for the adapter modules (ADAPTERS below) and writes coverage-adapters.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
RC=scripts/coveragerc
export HVINFRA_COVERAGE_DATA="$PWD/.coverage"
ADAPTERS='*/hvinfra/hub.py,*/hvinfra/registry.py,*/hvinfra/host_gpu.py,*/hvinfra/gpu.py,*/hvinfra/engine.py,*/hvinfra/generate/run.py'
rm -f .coverage .coverage.*
if [ $# -eq 0 ]; then
  set -- tests/unit tests/adapters tests/hub tests/engine
fi
"$PY" -m coverage run --rcfile="$RC" -m pytest -p no:cacheprovider -q "$@" || status=$?
"$PY" -m coverage combine --rcfile="$RC" -q
"$PY" -m coverage report --rcfile="$RC" --include="$ADAPTERS" | tee coverage-adapters.txt
"$PY" -m coverage report --rcfile="$RC" --format=total >/dev/null
exit "${status:-0}"
