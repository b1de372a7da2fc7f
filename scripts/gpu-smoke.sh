#!/usr/bin/env bash
# End-to-end smoke on a real GPU host WITHOUT Docker or the NVIDIA Container Toolkit (the
# library's GPU runner): start a private dockerd from .gpu-bundle/ (scripts/prepare-gpu-bundle.sh),
# import an empty stand-in image, then through hvinfra: doctor, up (scripts/gpu-smoke.yaml,
# gpu.mode devices), exec of a CUDA workload, logs, down. The workload runs on the bare host and
# in the container interleaved (host, container, container, host) x SMOKE_ROUNDS; the medians'
# ratio is the result (goal >= 0.97).
#
#   scripts/gpu-smoke.sh                 # on the GPU host, as root, from the checkout's root
#   SMOKE_FAKE=1 scripts/gpu-smoke.sh    # rehearsal without a GPU: fake records and device
#                                        # nodes, no CUDA (everything else runs for real)
#
# Output: everything printed also goes to $OUT/smoke.log; $OUT/results.json (runs, medians,
# ratios), $OUT/gpu-records.json (the GPU as hvinfra's NVML probe saw it), $OUT/dockerd.log.
# OUT defaults to ./gpu-smoke-out. Exit 0 when every step ran and the ratio met the goal.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="${SMOKE_BUNDLE:-$REPO/.gpu-bundle}"
OUT="${OUT:-$REPO/gpu-smoke-out}"
ROUNDS="${SMOKE_ROUNDS:-3}"
GOAL="${SMOKE_GOAL:-0.97}"
FAKE="${SMOKE_FAKE:-0}"
PROFILE="$REPO/scripts/gpu-smoke.yaml"
IMAGE="hvinfra-smoke/empty-rootfs:latest"
if [[ "$FAKE" == 1 ]]; then
    WORKLOAD_PY="${SMOKE_WORKLOAD_PY:-/usr/bin/python3}"
    HV_PY="${SMOKE_HV_PY:-python3}"
    WORKLOAD_ARGS=(--fake)
    # This machine's dockerd cannot grant memlock -1 (see faults.md); the GPU runner's can.
    UP_SETS=(--set ulimits.memlock=8m)
else
    WORKLOAD_PY="${SMOKE_WORKLOAD_PY:-/opt/torch/.venv/bin/python3}"
    HV_PY="${SMOKE_HV_PY:-/opt/torch/.venv/bin/python3}"
    WORKLOAD_ARGS=()
    UP_SETS=()
fi

mkdir -p "$OUT"
: >"$OUT/smoke.log"
exec > >(tee -a "$OUT/smoke.log") 2>&1
TEE_PID=$!

WORK="$(mktemp -d /tmp/hvinfra-gpu-smoke.XXXXXX)"
DOCKERD_PID=""
FAILED=()
MADE_DIRS=()
T0=$SECONDS

step() { printf '\n=== [%4ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() { FAILED+=("$1"); echo "!!! FAILED: $1"; }

cleanup() {
    step "cleanup"
    if [[ -n "$DOCKERD_PID" ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        hv down "$PROFILE" --timeout 5 >/dev/null 2>&1 || true
    fi
    engine_stop
    [[ -f "$WORK/dockerd.log" ]] && tail -c 2000000 "$WORK/dockerd.log" >"$OUT/dockerd.log"
    # the daemon unmounts what it mounted; anything left under WORK goes before rm -rf
    grep -o " $WORK[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
    for d in ${MADE_DIRS[@]+"${MADE_DIRS[@]}"}; do rmdir "$d" 2>/dev/null; done
    rmdir /usr/local/nvidia 2>/dev/null || true
    echo "cleanup done (${SECONDS}s)"
    exec >&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=scripts/gpu-engine.sh
source "$REPO/scripts/gpu-engine.sh"  # api_get, unxz_to, engine_*

hv() {
    env DOCKER_HOST="unix://$WORK/docker.sock" PYTHONPATH="$WORK/site:$REPO/src" \
        XDG_CONFIG_HOME="$WORK/config" HVINFRA_SMOKE_SCRIPTS="$REPO/scripts" \
        ${FAKE_ENV[@]+"${FAKE_ENV[@]}"} "$HV_PY" -m hvinfra "$@"
}

step "host: $(uname -srm); $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); fake=$FAKE rounds=$ROUNDS"
[[ -d "$BUNDLE/bin" ]] || { echo "no $BUNDLE: run scripts/prepare-gpu-bundle.sh here first, and carry .gpu-bundle"; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total,driver_version,pci.bus_id --format=csv
ls -l /dev/nvidia* 2>/dev/null || echo "(no /dev/nvidia* nodes)"

# -- 1. the engine, from the bundle; 2. the stand-in image: an empty rootfs (the runner's files
# come in through the profile) ------------------------------------------------------------------
engine_unpack || exit 1
ls -l "$WORK/bin" "$WORK/lib"
hv --version || { fail "hvinfra import"; exit 1; }
engine_start || exit 1
engine_import_standin "$IMAGE" || exit 1

# -- 3. fake GPU (rehearsal only): records, device nodes and a driver folder ----------------
FAKE_ENV=()
if [[ "$FAKE" == 1 ]]; then
    step "FAKE GPU: records, device nodes (mknod c 1 3), driver folder"
    mkdir -p "$WORK/fake/dev" "$WORK/fake/nvidia/lib64" "$WORK/fake/nvidia/bin"
    for n in nvidia0 nvidiactl nvidia-uvm nvidia-uvm-tools; do mknod -m 666 "$WORK/fake/dev/$n" c 1 3; done
    : >"$WORK/fake/nvidia/lib64/libnvidia-ml.so.1"
    printf '#!/bin/sh\necho "fake nvidia-smi"\n' >"$WORK/fake/nvidia/bin/nvidia-smi"
    chmod +x "$WORK/fake/nvidia/bin/nvidia-smi"
    cat >"$WORK/fake/records.json" <<EOF
{"driver_version": "0.0-fake", "cuda_driver_version": [13, 0],
 "nvml_library_path": "$WORK/fake/nvidia/lib64/libnvidia-ml.so.1",
 "gpus": [{"index": 0, "uuid": "GPU-00000000-0000-4000-8000-000000000000", "name": "FAKE GPU",
   "memory_total_bytes": 1, "memory_used_bytes": 0, "memory_free_bytes": 1,
   "compute_capability": [9, 0], "minor_number": 0}]}
EOF
    FAKE_ENV=(HVINFRA_GPU_RECORDS="$WORK/fake/records.json" HVINFRA_DEV_DIR="$WORK/fake/dev")
    # The driver is mounted at /usr/local/nvidia/{lib64,bin}, inside the profile's read-only
    # /usr: the mount points must exist there (on the GPU runner they do: the driver lives there).
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/bin; do
        [[ -d "$d" ]] || { mkdir -p "$d" && MADE_DIRS+=("$d"); }
    done
fi

if [[ "$FAKE" != 1 ]]; then
    # CUDA's first use on the host creates /dev/nvidia-uvm where the driver has not yet
    step "host CUDA check (also creates /dev/nvidia-uvm if it is made on demand)"
    env -u PYTHONPATH "$WORKLOAD_PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")' \
        || fail "host CUDA"
    ls -l /dev/nvidia*
fi

step "GPU records as hvinfra's probe sees them -> \$OUT/gpu-records.json"
hv_python() { env PYTHONPATH="$WORK/site:$REPO/src" ${FAKE_ENV[@]+"${FAKE_ENV[@]}"} "$HV_PY" "$@"; }
hv_python -c '
import json, sys
from hvinfra import host_gpu
from hvinfra.records import gpu_system_as_dict
print(json.dumps(gpu_system_as_dict(host_gpu.probe_system()), indent=2))
' >"$OUT/gpu-records.json" || fail "gpu probe"
cat "$OUT/gpu-records.json"

# -- 4. hvinfra: doctor, up, exec, logs, down -------------------------------------------------
step "hvinfra doctor"
hv doctor "$PROFILE"; echo "(doctor exit $?)"

step "hvinfra up --dry-run (devices mode)"
hv up "$PROFILE" --dry-run ${UP_SETS[@]+"${UP_SETS[@]}"} || fail "up --dry-run"

step "hvinfra up"
# The workload's interpreter must exist inside too: if it lives outside the mounted /usr, /opt,
# /bin, /lib, /lib64 (a uv- or pyenv-managed Python, say), mount its prefix read-only as well.
PY_PREFIX="$(dirname "$(dirname "$(readlink -f "$WORKLOAD_PY")")")"
case "$PY_PREFIX" in
    /usr|/usr/*|/opt|/opt/*|/bin|/bin/*|/lib|/lib/*|/lib64|/lib64/*) ;;
    *) echo "mounting the interpreter's prefix $PY_PREFIX too"; UP_SETS+=(-v "$PY_PREFIX:$PY_PREFIX:ro") ;;
esac
# SMOKE_UP_ARGS: extra `up` flags, e.g. "--skip-checks" should a pre-flight refuse the stand-in
hv up "$PROFILE" --pull never --replace ${UP_SETS[@]+"${UP_SETS[@]}"} ${SMOKE_UP_ARGS:-} || { fail "up"; exit 1; }
hv status

step "inside the container: devices, limits, driver"
hv exec "$PROFILE" -- /bin/sh -c 'ls -l /dev/nvidia*; echo "ulimit -l: $(ulimit -l)  ulimit -s: $(ulimit -s)"; echo "PATH=$PATH"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; cat /proc/1/comm' \
    || fail "exec sh"
if [[ "$FAKE" != 1 ]]; then
    hv exec "$PROFILE" -- nvidia-smi -L || echo "(nvidia-smi in the container failed: informational, CUDA is checked below)"
fi

step "workload, ABBA x $ROUNDS: host, container, container, host"
RUNS="$WORK/runs.jsonl"
: >"$RUNS"
run_host() {
    env -u PYTHONPATH "$WORKLOAD_PY" "$REPO/scripts/gpu_workload.py" --where host ${WORKLOAD_ARGS[@]+"${WORKLOAD_ARGS[@]}"} >"$WORK/one.json" || fail "host workload"
    tail -1 "$WORK/one.json" | tee -a "$RUNS"
}
run_container() {
    hv exec "$PROFILE" -- "$WORKLOAD_PY" /smoke/gpu_workload.py --where container ${WORKLOAD_ARGS[@]+"${WORKLOAD_ARGS[@]}"} >"$WORK/one.json" || fail "container workload"
    tail -1 "$WORK/one.json" | tee -a "$RUNS"
}
for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round"
    run_host; run_container; run_container; run_host
done

step "hvinfra logs"
hv logs "$PROFILE" --tail 20 || fail "logs"

step "hvinfra down"
hv down "$PROFILE" --timeout 5 || fail "down"
hv status
if api_get "/containers/json?all=1" | grep -q hvinfra-gpu-smoke; then
    fail "container still there after down"
else
    echo "no container left"
fi

step "result"
"$WORKLOAD_PY" "$REPO/scripts/gpu_smoke_report.py" "$RUNS" "$OUT/results.json" --goal "$GOAL" \
    || fail "throughput ratio below $GOAL (or no result)"
echo
if ((${#FAILED[@]})); then
    echo "SMOKE FAILED (${SECONDS}s): ${FAILED[*]}"
    exit 1
fi
echo "SMOKE OK (${SECONDS}s)"
