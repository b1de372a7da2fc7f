#!/usr/bin/env bash
# `hvinfra serve t2v` on a GPU host: one job submitted over HTTP must produce a video, and its
# progress must be seen through the events stream. Needs a host where `hvinfra generate t2v`
# works (a Docker engine, the image, real or synthetic weights: see shared/synthetic-weights.md).
#
#   scripts/gpu-serve-smoke.sh                      # from the checkout's root
#   SERVE_ARGS="--set image=… --gpus 0" STEPS=10 scripts/gpu-serve-smoke.sh
#
# Outputs in $OUT (default ./gpu-serve-out): serve.log (the server), events.txt (the SSE
# stream as received), job.json (the finished job with its sidecar), the .mp4, result.json.
# Exit 0 when the job is done, a step event was seen and the video is non-empty.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-serve-out}"
PY="${SMOKE_PY:-python3}"
STEPS="${STEPS:-10}"
PROMPT="${PROMPT:-a red fox runs through fresh snow, morning light}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

# shellcheck disable=SC2086  # SERVE_ARGS is a list of words on purpose
"$PY" -m hvinfra serve t2v --port 0 --data-dir "$OUT/data" --out "$OUT" ${SERVE_ARGS:-} \
    >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT

URL=""
for _ in $(seq 1 600); do
    URL="$(grep -o 'serving t2v jobs on http://[^ ]*/' "$OUT/serve.log" | head -1 | sed 's/.* on //')"
    [[ -n "$URL" ]] && break
    kill -0 $SERVER 2>/dev/null || break
    sleep 0.5
done
[[ -n "$URL" ]] || { echo "the server did not start:"; tail -40 "$OUT/serve.log"; exit 1; }
echo "server at $URL"

"$PY" - "$URL" "$PROMPT" "$STEPS" "$OUT" <<'PY'
import json, sys, time, urllib.request
url, prompt, steps, out = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3]), sys.argv[4]
body = json.dumps({"prompt": prompt, "steps": steps, "resolution": "540p", "frames": 33}).encode()
request = urllib.request.Request(f"{url}/v1/jobs", body, {"Content-Type": "application/json"})
job = json.load(urllib.request.urlopen(request))
print("submitted", job)
t0, steps_seen, states = time.time(), [], []
with urllib.request.urlopen(f"{url}/v1/jobs/{job['id']}/events", timeout=3600) as stream, \
        open(f"{out}/events.txt", "w") as log:
    event = ""
    for raw in stream:
        line = raw.decode().rstrip("\n")
        log.write(line + "\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            if event == "step":
                steps_seen.append(data["step"])
                print(f"[{time.time() - t0:6.1f}s] step {data['step']}/{data['total']} eta {data['eta_s']}")
            elif event == "state":
                states.append(data["state"])
                print(f"[{time.time() - t0:6.1f}s] state {data['state']} {data.get('error') or ''}")
final = json.load(urllib.request.urlopen(f"{url}/v1/jobs/{job['id']}"))
json.dump(final, open(f"{out}/job.json", "w"), indent=2)
size = 0
if final["state"] == "done":
    size = len(urllib.request.urlopen(f"{url}/v1/jobs/{job['id']}/video").read())
result = {"state": final["state"], "states": states, "steps_seen": len(steps_seen),
          "video_bytes": size, "seconds": round(time.time() - t0, 1)}
json.dump(result, open(f"{out}/result.json", "w"), indent=2)
print(result)
sys.exit(0 if final["state"] == "done" and steps_seen and size > 0 else 1)
PY
