#!/bin/sh
# hvinfra-healthcheck: "healthy" means a generation could start here: the weights are mounted,
# the model code is present, and (where nvidia-smi exists) the GPUs answer. `hvinfra status`
# shows the result; `docker inspect --format '{{json .State.Health}}' NAME` the details.
# POSIX sh, like the entrypoint.
base="${MODEL_BASE:-/workspace/ckpts}"
for item in ${HV_WEIGHTS_REQUIRED:-}; do
    if [ ! -d "$base/$item" ] || [ -z "$(ls -A "$base/$item" 2>/dev/null)" ]; then
        echo "unhealthy: weights missing: $base/$item"
        exit 1
    fi
done
code="${HV_CODE_DIR:-}"
if [ -n "$code" ] && [ -n "${HV_CODE_MARKER:-}" ] && [ ! -f "$code/$HV_CODE_MARKER" ]; then
    echo "unhealthy: model code missing: $code/$HV_CODE_MARKER"
    exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    if ! gpus="$(nvidia-smi -L 2>&1)"; then
        echo "unhealthy: nvidia-smi failed: $gpus"
        exit 1
    fi
    echo "healthy: $(echo "$gpus" | wc -l) GPU(s)"
    exit 0
fi
echo "healthy: weights and code present (no nvidia-smi in this image)"
exit 0
