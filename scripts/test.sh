#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the tests need (apt: the packages
# in scripts/install-test-deps.sh; pip: the project with its dev extra) and runs lint, types and
# pytest. Engine tests start their own private dockerd; with CI=true they never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-test-deps.sh
else
  echo "not root: skipping apt installs (engine tests need root to start a private dockerd)" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/mypy src/hvinfra
bash scripts/typecheck.sh  # mypy over src/ and each test folder (types-docker stubs)
# The hub tests again with the lowest supported huggingface_hub (the suite runs the newest).
[ $# -gt 0 ] || bash scripts/test-hub-clients.sh -q
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
