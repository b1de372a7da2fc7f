#!/bin/sh
# hvinfra-entrypoint: the official images start a bare shell and carry neither the model code
# nor the weights (hunyuan-facts.md). A container without its weights mount only fails later,
# deep inside a sample script; this says so at start, in words, and names the fix.
# POSIX sh on purpose: it must also run in minimal (busybox) images.
set -eu

model="${HV_MODEL:-t2v}"
base="${MODEL_BASE:-/workspace/ckpts}"
missing=""
for item in ${HV_WEIGHTS_REQUIRED:-}; do
    if [ ! -d "$base/$item" ] || [ -z "$(ls -A "$base/$item" 2>/dev/null)" ]; then
        missing="$missing $item"
    fi
done

if [ -n "$missing" ]; then
    {
        echo "hvinfra: the HunyuanVideo $model weights are not mounted at $base"
        echo "  missing:$missing"
        echo "  fix: download them on the host (\`hvinfra models pull $model\`), then start with"
        echo "       \`hvinfra up $model\`, or \`docker run -v /path/to/ckpts:$base:ro ...\`"
    } >&2
    if [ "${HV_ALLOW_MISSING_WEIGHTS:-0}" != "1" ]; then
        echo "  (set HV_ALLOW_MISSING_WEIGHTS=1 to start anyway, e.g. to download inside)" >&2
        exit 3
    fi
fi

code="${HV_CODE_DIR:-}"
if [ -n "$code" ] && [ -n "${HV_CODE_MARKER:-}" ] && [ ! -f "$code/$HV_CODE_MARKER" ]; then
    echo "hvinfra: note: no HunyuanVideo code at $code ($HV_CODE_MARKER missing): mount a" \
        "checkout there, or build the image with --build-arg HV_CODE_COMMIT=<sha>" >&2
fi

if [ "$#" -eq 0 ]; then
    # The official images' default: an interactive shell, kept alive by `-itd` for attach.
    if command -v bash >/dev/null 2>&1; then
        set -- bash
    else
        set -- sh
    fi
fi
exec "$@"
