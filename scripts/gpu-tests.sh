#!/usr/bin/env bash
# GPU smoke run: what the lead runs on the GPU runner (no network, no Docker there).
# From the repository root:
#     bash scripts/gpu-tests.sh
# Needs python3 with nvidia-ml-py, typer, rich, pyyaml and pytest. pydantic, docker and their
# dependencies come as wheels in .whl/ (kept out of git via .git/info/exclude; see README,
# "GPU runner"). Outputs go to "$OUT" when set (else ./gpu-out):
#   gpu-records.json   NVML records as hvinfra reads them (the fixture format)
#   gpu-tests.txt/.xml the `gpu` tests (a missing GPU fails them here: HVINFRA_REQUIRE_GPU=1)
#   doctor-t2v.json    `hvinfra doctor t2v --json` (exit 10 expected without Docker)
#   doctor-t2v.txt     the same as a table
#   up-dry-run.txt     `hvinfra up t2v --dry-run --gpus 0`: GPU 0 resolved to its UUID
#   nvidia-smi.txt     for the human reader only; hvinfra never parses nvidia-smi
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD/src"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export HVINFRA_REQUIRE_GPU=1 COLUMNS=160

python3 --version
(nvidia-smi || true) >"$OUT/nvidia-smi.txt" 2>&1

python3 scripts/capture-gpu-records.py >"$OUT/gpu-records.json"
rc_capture=$?

python3 -m pytest tests/gpu -m gpu -v -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" \
  2>&1 | tee "$OUT/gpu-tests.txt"
rc_tests=${PIPESTATUS[0]}

python3 -m hvinfra doctor t2v --json >"$OUT/doctor-t2v.json" 2>"$OUT/doctor-t2v.err"
rc_doctor=$?
python3 -m hvinfra doctor t2v >"$OUT/doctor-t2v.txt" 2>&1
python3 -m hvinfra up t2v --dry-run --gpus 0 >"$OUT/up-dry-run.txt" 2>&1
rc_dry=$?

cat "$OUT/doctor-t2v.txt" "$OUT/up-dry-run.txt"
echo "capture=$rc_capture gpu-tests=$rc_tests doctor=$rc_doctor (10 = a check failed) dry-run=$rc_dry"
[ "$rc_capture" -eq 0 ] && [ "$rc_tests" -eq 0 ] && [ "$rc_dry" -eq 0 ]
