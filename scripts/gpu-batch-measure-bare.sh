#!/usr/bin/env bash
# GPU measurement of the batch worker WITHOUT Docker (the GPU runner has none): the official
# code at the pinned commit with a synthetic weights tree, bare on the host; a 4-line batch at
# 540p, 33 frames, 5 steps, run two ways:
#   per-line: one `python3 sample_video.py …` per line (the model loaded for every video);
#   reuse:    src/hvinfra/worker/hvinfra_worker.py fed the same 4 argument lists on stdin (the
#             model loaded once), exactly as `hvinfra batch` feeds it inside the container.
# With two GPUs the two ways run at the same time, one GPU each; with one, one after the other.
#
# Inputs (defaults: the GPU runner's set-up under .gpu-work/, see scripts/prepare-gpu-generate.sh):
#   MEASURE_PY      Python with torch + CUDA          (/opt/torch/.venv/bin/python3)
#   MEASURE_CODE    official HunyuanVideo at fa14b00  ($REPO/.gpu-work/a/code-t2v)
#   MEASURE_WHEELS  folder of the official pins' wheels ($REPO/.gpu-work/a/wheels)
#   MEASURE_SITE    extra site folder: the runner's stand-ins (flash_attn, deepspeed, imageio_ffmpeg)
#   MEASURE_SYNTH   synth_weights.py (writes the synthetic tree)
#   MEASURE_WORKER  hvinfra_worker.py ($REPO/src/hvinfra/worker/hvinfra_worker.py)
#   MEASURE_BUDGET_S  per-line runs that would end later than this after the start are left out
# Output: $OUT/measure.log, $OUT/batch-measure.json (seconds per video both ways, load share).
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$REPO/gpu-batch-out}"
PY="${MEASURE_PY:-/opt/torch/.venv/bin/python3}"
CODE="${MEASURE_CODE:-$REPO/.gpu-work/a/code-t2v}"
WHEELS="${MEASURE_WHEELS:-$REPO/.gpu-work/a/wheels}"
SITE_EXTRA="${MEASURE_SITE:-$REPO/tests/fixtures/gpu-runner/site}"
SYNTH="${MEASURE_SYNTH:-$REPO/src/hvinfra/data/synth_weights.py}"
WORKER="${MEASURE_WORKER:-$REPO/src/hvinfra/worker/hvinfra_worker.py}"
mkdir -p "$OUT"
exec > >(tee "$OUT/measure.log") 2>&1
W="$(mktemp -d /tmp/hv-batch-measure.XXXXXX)"
T0=$SECONDS
export MEASURE_DEADLINE=$(( $(date +%s) + ${MEASURE_BUDGET_S:-330} ))  # per-line stops in time
trap 'rm -rf "$W"' EXIT
step() { printf '\n=== [%4ds] %s\n' $((SECONDS - T0)) "$*"; }

step "host"
nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv
GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
"$PY" --version

step "site: official pins + the runner's stand-ins"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$W/site" \
    "$WHEELS"/*.whl || exit 1
cp -r "$SITE_EXTRA/." "$W/site/"
cp -a "$CODE" "$W/code" && rm -rf "$W/code/ckpts" && mkdir "$W/ckpts" && ln -s "$W/ckpts" "$W/code/ckpts"
export PYTHONPATH="$W/site" MODEL_BASE="$W/ckpts" USER=root LOGNAME=root PYTHONUNBUFFERED=1
cd "$W/code" || exit 1

step "synthetic weights (real shapes, random values)"
"$PY" "$SYNTH" t2v --weights "$W/ckpts" || exit 1

DRIVER="$(cd "$(dirname "$0")" && pwd)/gpu_batch_measure.py"  # beside this script
step "per-line and reuse ($GPUS GPU(s))"
if [ "$GPUS" -ge 2 ]; then
    CUDA_VISIBLE_DEVICES=0 "$PY" "$DRIVER" per-line "$W/runs" &
    PL=$!
    CUDA_VISIBLE_DEVICES=1 "$PY" "$DRIVER" reuse "$W/runs" "$WORKER"
    wait $PL
else  # the worker first: the per-line runs fill what time is left
    "$PY" "$DRIVER" reuse "$W/runs" "$WORKER"
    "$PY" "$DRIVER" per-line "$W/runs"
fi
ls -l "$W"/runs/videos-per-line "$W"/runs/videos-reuse

step "results"
"$PY" "$DRIVER" report "$W/runs" "$OUT/batch-measure.json"
for f in "$W"/runs/per-line-1.log "$W"/runs/reuse.log; do echo "--- tail $f"; tail -c 1500 "$f"; echo; done
echo "done in $((SECONDS - T0)) s"
