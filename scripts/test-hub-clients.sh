#!/usr/bin/env bash
# `models pull` against the local hub server with the LOWEST supported huggingface_hub (the
# `models` extra's floor); the main venv, which resolves the newest, runs tests/hub in the
# whole suite. Usage: bash scripts/test-hub-clients.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
LOWEST="huggingface_hub==0.23.5"
VENV=.venv-hub-lowest
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' "$LOWEST"
"$VENV/bin/python" -c 'import huggingface_hub as h; print("hub client", h.__version__)'
exec "$VENV/bin/python" -m pytest -p no:cacheprovider tests/hub "$@"
