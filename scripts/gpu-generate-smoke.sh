#!/usr/bin/env bash
# Real inference on the GPU runner, through hvinfra only: the UNMODIFIED official sampling code
# at the pinned commits, on a synthetic weights tree (real shapes, random values; the videos are
# noise), in the stand-in container (devices mode, the runner's /usr, /opt ... read-only).
#
#   doctor, models synth t2v (and i2v, in the background), models check, up, generate t2v
#   540p/16:9/33f/5 steps (A1), up + generate i2v 540p from a generated image, the same official
#   540p command bare on the host twice and in the container again (A1 B1 B2 A2: s/step medians,
#   ratio goal >= 0.97), generate t2v 720p/16:9/129f/3 steps, --cpu-offload, down.
#   Runs are left out (and the smoke fails) when SMOKE_BUDGET_S would be overrun.
#
# Inputs (scripts/prepare-gpu-generate.sh builds them here; the device call carries them):
#   GEN_BUNDLE   the engine bundle (.gpu-bundle layout)         default $REPO/../../a/bundle
#   GEN_WHEELS   folders of wheels: the official Python pins (test fixtures of the runner);
#                the .mp4 writer is tests/fixtures/gpu-runner/site/imageio_ffmpeg (OpenCV)
#   GEN_CODE_T2V_SRC / GEN_CODE_I2V_SRC  the official checkouts at the pinned commits
#   SMOKE_QUICK=1  synth, up and the first generate (A1) only, no doctor runs
#   SMOKE_BUDGET_S  leave out the optional runs once this many seconds have passed (480)
#   SMOKE_STAGES  the runs after A1, any of: i2v abba t720 offload batch serve req
#                 (req: the 129-frame peaks the requirements data holds, 3 steps each)
#   SMOKE_BATCH_WAYS  the batch stage's runs (default "reuse no-reuse")
#                 (default "i2v abba t720 offload"; batch: a 4-line `hvinfra batch` with the model
#                 loaded once vs one sample_video.py per line; serve: one job over HTTP, its
#                 steps seen on the events stream; serve needs GEN_SERVE_WHEELS)
#   GEN_SERVE_WHEELS  fastapi, starlette, uvicorn ... wheels   default $REPO/../../a/serve-wheels
# Output: $OUT/smoke.log, $OUT/results.json, $OUT/jobs.tar.gz (sidecars, logs, bare results),
# $OUT/sample-540p.mp4. Exit 0 when every required run made its .mp4 and the ratio met the goal.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="${GEN_BUNDLE:-$REPO/../../a/bundle}"
WHEELS="${GEN_WHEELS:-$REPO/../../a/wheels}"
CODE_T2V_SRC="${GEN_CODE_T2V_SRC:-$REPO/../../a/code-t2v}"
CODE_I2V_SRC="${GEN_CODE_I2V_SRC:-$REPO/../../a/code-i2v}"
OUT="${OUT:-$REPO/gpu-generate-out}"
QUICK="${SMOKE_QUICK:-0}"
BUDGET="${SMOKE_BUDGET_S:-480}"
STAGES=" ${SMOKE_STAGES:-i2v abba t720 offload} "
SERVE_WHEELS="${GEN_SERVE_WHEELS:-$REPO/../../a/serve-wheels}"
GOAL="${SMOKE_GOAL:-0.97}"
HV_PY="${SMOKE_HV_PY:-/opt/torch/.venv/bin/python3}"
P_T2V="$REPO/scripts/gpu-generate-smoke-t2v.yaml"
P_I2V="$REPO/scripts/gpu-generate-smoke-i2v.yaml"
IMAGE="hvinfra-smoke/empty-rootfs:latest"
PROMPT='A cat walks on the grass, "realistic" style; $(id) stays verbatim'

mkdir -p "$OUT"
: >"$OUT/smoke.log"
exec > >(tee -a "$OUT/smoke.log") 2>&1
TEE_PID=$!
WORK="$(mktemp -d /tmp/hvinfra-gen-smoke.XXXXXX)"
DOCKERD_PID=""
FAILED=()
T0=$SECONDS
step() { printf '\n=== [%4ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() { FAILED+=("$1"); echo "!!! FAILED: $1"; }
# shellcheck source=scripts/gpu-engine.sh
source "$REPO/scripts/gpu-engine.sh"

RUNS="$WORK/runs"
mkdir -p "$RUNS"
cleanup() {
    step "cleanup"
    if [[ -n "$DOCKERD_PID" ]]; then
        hv down "$P_I2V" --timeout 5 >/dev/null 2>&1
        hv down "$P_T2V" --timeout 5 >/dev/null 2>&1
    fi
    engine_stop
    [[ -f "$WORK/dockerd.log" ]] && tail -c 1000000 "$WORK/dockerd.log" >"$OUT/dockerd.log"
    (cd "$WORK" && tar -czf "$OUT/jobs.tar.gz" runs jobs 2>/dev/null --exclude='*.mp4')
    grep -o " $WORK[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
    echo "cleanup done (${SECONDS}s)"
    exec >&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true
}
trap cleanup EXIT

export GEN_SITE="$WORK/gpu-site" GEN_OUT="$WORK/out"
export GEN_CODE_T2V="$WORK/code-t2v" GEN_CODE_I2V="$WORK/code-i2v"
export GEN_WEIGHTS_T2V="$WORK/weights-t2v" GEN_WEIGHTS_I2V="$WORK/weights-i2v"
hv() {
    env DOCKER_HOST="unix://$WORK/docker.sock" PYTHONPATH="$WORK/site:$REPO/src" \
        XDG_CONFIG_HOME="$WORK/config" "$HV_PY" -m hvinfra "$@"
}
stage() { [[ "$STAGES" == *" $1 "* ]]; }
sidecar_of() {  # generate --json output -> the sidecar path
    "$HV_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sidecar"])' "$1" 2>/dev/null
}
# generate LABEL PROFILE KIND ARGS...: one hvinfra generate run; its sidecar -> $RUNS/LABEL.json
generate() {
    local label=$1 profile=$2 kind=$3
    shift 3
    step "generate $label: hvinfra generate $kind $*"
    local t=$SECONDS
    hv generate "$kind" --profile "$profile" -p "$PROMPT" --out "$WORK/jobs" --seed 42 "$@" \
        --json >"$RUNS/$label.out" || { fail "generate $label"; cat "$RUNS/$label.out"; return 1; }
    local sidecar
    sidecar="$(sidecar_of "$RUNS/$label.out")"
    cp "$sidecar" "$RUNS/$label.json"
    ls -l "${sidecar%.json}.mp4" || fail "no .mp4 for $label"
    "$HV_PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k: d.get(k) for k in ("measurements","synthetic_weights","duration_s")}, indent=1))' "$RUNS/$label.json"
    echo "($label: $((SECONDS - t)) s wall)"
}
# bare LABEL: the official command of run A1, bare on the host (same argv, same tree)
bare() {
    local label=$1
    step "bare $label: the same official command on the host"
    if [[ -f "$RUNS/A1.json" ]]; then
        mapfile -t ARGV < <("$HV_PY" -c '
import json, sys
argv = json.load(open(sys.argv[1]))["command"]["argv"]
print("\n".join(a if not a.startswith("--save-path=") else "--save-path=" + sys.argv[2] for a in argv))
' "$RUNS/A1.json" "$WORK/bare-out/$label")
    else  # A1 failed: the line hvinfra plans (generate --dry-run prints it first)
        ARGV=(python3 sample_video.py "--prompt=$PROMPT" --video-size 544 960 --video-length 33
              --infer-steps 5 --seed 42 --flow-reverse --flow-shift 7 --embedded-cfg-scale 6
              "--save-path=$WORK/bare-out/$label")
    fi
    (cd "$WORK/bare-t2v" && env PYTHONPATH="$WORK/site:$REPO/src" "$HV_PY" \
        "$REPO/scripts/gpu_generate_timing.py" bare "$RUNS/$label.json" -- \
        env PYTHONPATH="$GEN_SITE" MODEL_BASE="$GEN_WEIGHTS_T2V" USER=root LOGNAME=root \
        PYTHONUNBUFFERED=1 PATH="/opt/torch/.venv/bin:$PATH" "${ARGV[@]}") || fail "bare $label"
    ls -l "$WORK/bare-out/$label" 2>/dev/null
}

step "host: $(uname -srm); quick=$QUICK budget=${BUDGET}s"
nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version --format=csv
command -v git ffmpeg || true
"$HV_PY" --version

engine_unpack || exit 1
if stage serve; then
    "$HV_PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$SERVE_WHEELS"/*.whl || fail "serve wheels"
fi
hv --version || { fail "hvinfra import"; exit 1; }
engine_start || exit 1
engine_import_standin "$IMAGE" || exit 1

step "the runner's test fixtures: official pins as wheels + stand-ins -> $GEN_SITE"
mkdir -p "$GEN_SITE" "$GEN_OUT" "$WORK/jobs" "$WORK/bare-out" "$GEN_WEIGHTS_T2V" "$GEN_WEIGHTS_I2V"
# shellcheck disable=SC2086
"$HV_PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$GEN_SITE" \
    $(for d in $WHEELS; do ls "$d"/*.whl 2>/dev/null; done) || fail "official pins"
cp -r "$REPO/tests/fixtures/gpu-runner/site/." "$GEN_SITE/"
ls "$GEN_SITE"
cp -a "$CODE_T2V_SRC" "$GEN_CODE_T2V" && cp -a "$CODE_I2V_SRC" "$GEN_CODE_I2V" || { fail "code"; exit 1; }
(cd "$GEN_CODE_T2V" && git rev-parse HEAD 2>/dev/null) || echo "(no git here: models check reports the code row accordingly)"
# the bare side: the same checkout with ckpts/ -> the same synthetic tree
cp -a "$CODE_T2V_SRC" "$WORK/bare-t2v" && rm -rf "$WORK/bare-t2v/ckpts" && ln -s "$GEN_WEIGHTS_T2V" "$WORK/bare-t2v/ckpts"

step "host CUDA check (also creates /dev/nvidia-uvm where it is made on demand)"
env -u PYTHONPATH "$HV_PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())' || fail "host CUDA"
ls -l /dev/nvidia*

if [[ "$QUICK" != 1 ]]; then
    step "hvinfra doctor (before the weights exist: expected to list them missing)"
    hv doctor "$P_T2V"; echo "(doctor exit $?)"
fi

step "hvinfra models synth t2v"
t=$SECONDS
hv models synth "$P_T2V" || { fail "models synth t2v"; exit 1; }
echo "(synth t2v: $((SECONDS - t)) s)"; du -sh "$GEN_WEIGHTS_T2V"/*

step "hvinfra models check (synthetic tree: ok, and said so)"
CHECKS=()
hv models check "$P_T2V" || { echo "(models check exit $?: generate runs with --skip-checks)"; CHECKS=(--skip-checks); }
[[ "$QUICK" == 1 ]] || { hv doctor "$P_T2V"; echo "(doctor exit $?)"; }

step "hvinfra up"
hv up "$P_T2V" --pull never --replace || { fail "up"; exit 1; }
hv status

G540=(-r 540p -a 16:9 --frames 33 --steps 5 ${CHECKS[@]+"${CHECKS[@]}"})
if [[ "$QUICK" == 1 ]]; then
    generate A1 "$P_T2V" t2v "${G540[@]}" && cp "$(ls -t "$WORK"/jobs/*.mp4 | head -1)" "$OUT/sample-540p.mp4"
    step "QUICK: stopping after the first generate"
    env PYTHONPATH="$REPO/src" "$HV_PY" "$REPO/scripts/gpu_generate_timing.py" report \
        "$OUT/results.json" A1="$RUNS/A1.json" --goal "$GOAL"
    ((${#FAILED[@]})) && { echo "QUICK FAILED: ${FAILED[*]}"; exit 1; }
    exit 0
fi

left() { (( SECONDS - T0 < BUDGET - $1 )); }  # is there time left for a run of ~$1 s?
# the I2V tree is written on the CPU while the T2V runs use the GPU
SYNTH_I2V=""
if stage i2v || stage req; then
    (hv models synth "$P_I2V" >"$WORK/synth-i2v.log" 2>&1; echo "synth i2v exit $?" >>"$WORK/synth-i2v.log") &
    SYNTH_I2V=$!
fi
generate A1 "$P_T2V" t2v "${G540[@]}" && cp "$(ls -t "$WORK"/jobs/*.mp4 | head -1)" "$OUT/sample-540p.mp4"

if ! stage i2v; then
    :
elif step "hvinfra models synth i2v (ran in the background), up" && wait "$SYNTH_I2V" && SYNTH_I2V="" \
    && cat "$WORK/synth-i2v.log" && { hv models check "$P_I2V" || true; } && left 60; then
    hv up "$P_I2V" --pull never --replace || fail "up i2v"
    "$HV_PY" "$REPO/scripts/gpu_generate_timing.py" image "$WORK/input.png" 960 544
    generate I2V "$P_I2V" i2v --image "$WORK/input.png" -r 540p --frames 33 --steps 5 ${CHECKS[@]+"${CHECKS[@]}"}
    hv down "$P_I2V" --timeout 5
else
    fail "budget: i2v run left out"
fi

# ABBA: A1 above, then bare, bare, container (the same official command and tree)
for run in B1 B2 A2; do
    stage abba || break
    if ! left 40; then fail "budget: $run left out"; continue; fi
    case $run in B*) bare "$run" ;; A*) generate "$run" "$P_T2V" t2v "${G540[@]}" ;; esac
done
if ! stage t720; then
    :
elif left 150; then
    generate T720 "$P_T2V" t2v -r 720p -a 16:9 --frames 129 --steps 3 ${CHECKS[@]+"${CHECKS[@]}"}
else
    fail "budget: 720p run left out"
fi
if ! stage offload; then
    :
elif left 60; then
    generate OFFLOAD "$P_T2V" t2v "${G540[@]}" --cpu-offload
else
    echo "(budget: --cpu-offload run left out)"
fi

# req: 129 frames (the size the requirements data is for), 3 steps: the peak is in the steps
# and the VAE decode, not in how many steps there are
REQ_RUNS=()
if stage req; then
    for run in ${SMOKE_REQ_RUNS:-R_T2V_540 R_T2V_360 R_I2V_720 R_I2V_540 R_I2V_360}; do
        case $run in *_720) need=150 ;; *_540) need=75 ;; *) need=50 ;; esac
        if ! left $need; then fail "budget: $run left out"; continue; fi
        size=${run##*_}p
        case $run in
            R_T2V_*) generate "$run" "$P_T2V" t2v -r "$size" -a 16:9 --frames 129 --steps 3 ${CHECKS[@]+"${CHECKS[@]}"} ;;
            R_I2V_*)
                if [[ -n "$SYNTH_I2V" ]]; then wait "$SYNTH_I2V"; cat "$WORK/synth-i2v.log"; SYNTH_I2V=""; fi
                [[ -f "$WORK/input.png" ]] || "$HV_PY" "$REPO/scripts/gpu_generate_timing.py" image "$WORK/input.png" 960 544
                hv up "$P_I2V" --pull never >/dev/null || fail "up i2v"
                generate "$run" "$P_I2V" i2v --image "$WORK/input.png" -r "$size" --frames 129 --steps 3 ${CHECKS[@]+"${CHECKS[@]}"} ;;
        esac
        REQ_RUNS+=("$run=$RUNS/$run.json")
    done
fi

# batch: the same 4 lines with the model loaded once per worker, then one sample_video.py each
if stage batch; then
    step "hvinfra batch: 4 lines at 540p/33f/5 steps, loaded once (--reuse) vs per line (--no-reuse)"
    BATCH="$OUT/batch"
    mkdir -p "$BATCH"
    printf '%s\n' '{"prompt": "a cat walks on the grass", "seed": 1}' \
        '{"prompt": "a red fox runs through snow", "seed": 2}' \
        '{"prompt": "waves break on a rocky shore at sunset", "seed": 3}' \
        '{"prompt": "a paper boat floats down a rainy street", "seed": 4}' >"$BATCH/prompts.jsonl"
    for way in ${SMOKE_BATCH_WAYS:-reuse no-reuse}; do
        if ! left 100; then fail "budget: batch --$way left out"; continue; fi
        t=$SECONDS
        hv batch t2v "$BATCH/prompts.jsonl" --profile "$P_T2V" -r 540p -a 16:9 --frames 33 \
            --steps 5 "--$way" --out "$WORK/batch-$way" ${CHECKS[@]+"${CHECKS[@]}"} \
            --json >"$BATCH/$way.json" 2>"$BATCH/$way.log" || fail "batch --$way"
        tail -5 "$BATCH/$way.log"
        cp "$WORK/batch-$way/summary.json" "$BATCH/$way-summary.json" 2>/dev/null
        "$HV_PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("lines",None); print(json.dumps(d))' "$BATCH/$way-summary.json"
        cp "$WORK/batch-$way/batch.json" "$BATCH/$way-manifest.json" 2>/dev/null
        # the videos' sidecars, with the measurements a reused worker samples (NVML, phases)
        mkdir -p "$BATCH/$way-sidecars"
        for video in "$WORK/batch-$way"/*.mp4; do
            [[ -f "${video%.mp4}.json" ]] && cp "${video%.mp4}.json" "$BATCH/$way-sidecars/"
        done
        for sidecar in "$BATCH/$way-sidecars"/*.json; do
            "$HV_PY" -c 'import json,sys; print(sys.argv[1].rsplit("/",1)[-1], json.dumps(json.load(open(sys.argv[1])).get("measurements")))' "$sidecar"
        done
        ls -l "$WORK/batch-$way"/*.mp4 || fail "batch --$way: no .mp4"
        echo "(batch --$way: $((SECONDS - t)) s wall)"
    done
fi

# serve: the HTTP job API in front of the same container; one job, watched on the events stream
if stage serve; then
    if left 70; then
        step "hvinfra serve t2v: one job over HTTP, steps seen on /v1/jobs/ID/events"
        env DOCKER_HOST="unix://$WORK/docker.sock" PYTHONPATH="$WORK/site:$REPO/src" \
            XDG_CONFIG_HOME="$WORK/config" SMOKE_PY="$HV_PY" STEPS=5 OUT="$OUT/serve" \
            SERVE_ARGS="--profile $P_T2V" bash "$REPO/scripts/gpu-serve-smoke.sh" \
            || { fail "serve"; tail -40 "$OUT/serve/serve.log"; }
        rm -f "$OUT"/serve/*.mp4
    else
        fail "budget: serve left out"
    fi
fi

step "results"
REPORT=(A1="$RUNS/A1.json")
stage abba && REPORT+=(B1="$RUNS/B1.json" B2="$RUNS/B2.json" A2="$RUNS/A2.json")
stage t720 && REPORT+=(T720="$RUNS/T720.json")
stage i2v && REPORT+=(I2V="$RUNS/I2V.json")
stage offload && REPORT+=(OFFLOAD="$RUNS/OFFLOAD.json")
REPORT+=(${REQ_RUNS[@]+"${REQ_RUNS[@]}"})
# without the abba stage there is no ratio to hold to the goal
env PYTHONPATH="$REPO/src" "$HV_PY" "$REPO/scripts/gpu_generate_timing.py" report "$OUT/results.json" \
    "${REPORT[@]}" --goal "$GOAL" || ! stage abba || fail "ratio below $GOAL (or a run missing)"
if ((${#FAILED[@]})); then
    echo "GENERATE SMOKE FAILED (${SECONDS}s): ${FAILED[*]}"
    exit 1
fi
echo "GENERATE SMOKE OK (${SECONDS}s)"
