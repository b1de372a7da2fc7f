#!/usr/bin/env bash
# mypy (strict, as configured in pyproject.toml) over src/ and over each test folder.
# Test folders are not packages and each has its own conftest.py, so every folder is checked on
# its own, with the folders its modules import from (sys.path.insert in the tests) on MYPYPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
MYPY="${MYPY:-.venv/bin/mypy}"
"$MYPY" src/hvinfra
check() {  # check FOLDER [IMPORT_FOLDER...]
  local folder="$1"
  shift
  local path
  path="$(IFS=:; echo "$*")"
  echo "mypy $folder" >&2
  MYPYPATH="$path" "$MYPY" --strict --no-namespace-packages --follow-imports=silent \
    $(find "$folder" -maxdepth 1 -name '*.py' | sort)
}
check tests tests
check tests/unit tests/unit
check tests/hub tests/hub tests
check tests/gpu tests/gpu tests/unit
check tests/adapters tests/adapters tests/engine tests
check tests/engine tests/engine tests/unit tests/adapters tests
check tests/engine/images tests/engine/images tests/engine
