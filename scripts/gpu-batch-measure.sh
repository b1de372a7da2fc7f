#!/usr/bin/env bash
# GPU measurement for `hvinfra batch` (issue 19): a 4-line batch at 540p, 33 frames, 5 steps,
# with the model loaded once per worker (--reuse: hvinfra_worker.py in the container) vs one
# official sample_video.py per line (--no-reuse). Prints seconds per video both ways and the
# share of model loading, and writes $OUT/batch-measure.json.
#
#   BATCH_PROFILE=path/to/runner-profile.yaml scripts/gpu-batch-measure.sh
#
# Needs a host where `hvinfra generate t2v --resolution 540p --frames 33 --steps 5` already
# works with that profile (the official code at the pinned commit mounted as the code folder,
# the synthetic weights tree as the weights folder: see ../shared/synthetic-weights.md and the
# GPU runner section of the README). Extra arguments go to both `hvinfra batch` runs.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$REPO/gpu-batch-out}"
PROFILE="${BATCH_PROFILE:?set BATCH_PROFILE to a profile YAML that runs generate on this host}"
HV=(${HV_PY:-python3} -m hvinfra)
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"

mkdir -p "$OUT"
cat >"$OUT/prompts.jsonl" <<'LINES'
{"prompt": "a cat walks on the grass", "seed": 1}
{"prompt": "a red fox runs through snow", "seed": 2}
{"prompt": "waves break on a rocky shore at sunset", "seed": 3}
{"prompt": "a paper boat floats down a rainy street", "seed": 4}
LINES
common=(t2v "$OUT/prompts.jsonl" --profile "$PROFILE" --resolution 540p --frames 33 --steps 5
        --gpus 0 --json "$@")

run() {  # run NAME FLAG: one batch into a fresh folder; its summary.json is the result
    rm -rf "$OUT/$1"
    local t0=$SECONDS
    "${HV[@]}" batch "${common[@]}" "$2" --out "$OUT/$1" >"$OUT/$1.json" 2>"$OUT/$1.log" ||
        echo "!!! $1: hvinfra batch exited $? (see $OUT/$1.log)"
    echo "$1: $((SECONDS - t0)) s in all"
}
run reuse --reuse
run per-line --no-reuse

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
result = {}
for name in ("reuse", "per-line"):
    summary = json.loads((out / name / "summary.json").read_text())
    videos = summary["counts"]["done_now"]
    result[name] = {
        "videos": videos,
        "wall_s": summary["wall_s"],
        "wall_s_per_video": summary["wall_s_per_video"],
        "seconds_per_video": summary["seconds_per_video"],
        "load_s": summary["load_s"],
    }
    print(f"{name:9s} {videos} videos, {summary['wall_s']} s wall,"
          f" {summary['wall_s_per_video']} s per video, model load {summary['load_s']} s")
reuse, per_line = result["reuse"], result["per-line"]
if reuse["wall_s"] and per_line["wall_s"]:
    result["speedup"] = round(per_line["wall_s"] / reuse["wall_s"], 2)
    result["load_share_reuse"] = round(reuse["load_s"] / reuse["wall_s"], 3)
    print(f"loaded once: {result['speedup']}x faster; loading is"
          f" {100 * result['load_share_reuse']:.0f}% of the reuse batch")
(out / "batch-measure.json").write_text(json.dumps(result, indent=2) + "\n")
PY
