"""Timing driver of scripts/gpu-batch-measure-bare.sh (run from the official code folder):

    python gpu_batch_measure.py per-line OUTDIR        # one sample_video.py per line
    python gpu_batch_measure.py reuse OUTDIR WORKER    # hvinfra_worker.py, the model loaded once
    python gpu_batch_measure.py report OUTDIR RESULT.json

Four lines at 540p (544x960), 33 frames, 5 steps, seeds 1-4: the arguments hvinfra plans.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def argv_of(seed: int, save: Path) -> list[str]:
    return [f"--prompt=a cat walks on the grass, line {seed}", "--video-size", "544", "960",
            "--video-length", "33", "--infer-steps", "5", "--seed", str(seed), "--flow-reverse",
            "--flow-shift", "7", "--embedded-cfg-scale", "6", f"--save-path={save}"]  # fmt: skip


def per_line(out: Path) -> None:
    """Up to four runs; stops early when the next would end past $MEASURE_DEADLINE (epoch s)."""
    deadline = float(os.environ.get("MEASURE_DEADLINE", "inf"))
    runs: list[dict[str, float]] = []
    for seed in range(1, 5):
        last = runs[-1]["seconds"] if runs else 0.0
        if time.time() + last * 1.1 > deadline:
            print(f"per-line: stopped before video {seed} (time budget)", flush=True)
            break
        started = time.monotonic()
        with open(out / f"per-line-{seed}.log", "w") as log:
            code = subprocess.call([sys.executable, "sample_video.py",
                                    *argv_of(seed, out / "videos-per-line")],
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        runs.append({"seed": seed, "exit": code, "seconds": round(time.monotonic() - started, 2)})
        print(f"per-line video {seed}: exit {code}, {runs[-1]['seconds']} s", flush=True)
    (out / "per-line.json").write_text(json.dumps(runs))


def reuse(out: Path, worker: str) -> None:
    requests = "".join(
        json.dumps({"id": str(seed), "argv": argv_of(seed, out / "videos-reuse")}) + "\n"
        for seed in range(1, 5)
    )
    started = time.monotonic()
    with open(out / "reuse.log", "w") as log:
        done = subprocess.run([sys.executable, worker, "--kind", "t2v"], input=requests,
                              stdout=subprocess.PIPE, stderr=log, text=True)  # fmt: skip
    total = round(time.monotonic() - started, 2)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    for event in events:
        print("reuse:", json.dumps(event), flush=True)
    print(f"reuse: worker exit {done.returncode}, {total} s in all", flush=True)
    (out / "reuse.json").write_text(json.dumps({"total_s": total, "events": events}))


def report(out: Path, result_path: Path) -> None:
    runs = json.loads((out / "per-line.json").read_text())
    worker = json.loads((out / "reuse.json").read_text())
    events = worker["events"]
    done = [e for e in events if e["event"] == "done"]
    load = sum(e.get("seconds", 0.0) for e in events if e["event"] == "loaded")
    per_line_s = [r["seconds"] for r in runs if r["exit"] == 0]
    total = worker["total_s"]
    result = {
        "per_line": {"videos": len(per_line_s), "seconds": per_line_s,
                     "s_per_video": round(sum(per_line_s) / max(len(per_line_s), 1), 1),
                     "total_s": round(sum(per_line_s), 1)},
        "reuse": {"videos": len(done), "total_s": total, "load_s": round(load, 1),
                  "request_s": [e["seconds"] for e in done],
                  "s_per_video": round(total / max(len(done), 1), 1),
                  "load_share": round(load / total, 3) if total else None},
    }  # fmt: skip
    if per_line_s and done:
        result["speedup"] = round(sum(per_line_s) / total, 2)
    print(json.dumps(result, indent=2))
    result_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    if mode == "per-line":
        per_line(folder)
    elif mode == "reuse":
        reuse(folder, sys.argv[3])
    else:
        report(folder, Path(sys.argv[3]))
