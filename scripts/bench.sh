#!/usr/bin/env bash
# The benchmarks (benchmarks/): hvinfra against the docker CLI and bare docker-py on a private
# engine started for the run. Needs root (dockerd) and the test dependencies
# (scripts/install-test-deps.sh). `scripts/bench.sh --quick` only checks that every row runs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/python -m pip install -q -e '.[dev]'; }
exec .venv/bin/python -m benchmarks "$@"
