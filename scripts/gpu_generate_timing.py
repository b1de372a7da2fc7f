#!/usr/bin/env python3
"""Helpers of scripts/gpu-generate-smoke.sh (the GPU runner's real-inference smoke).

  gpu_generate_timing.py bare OUT.json -- CMD...   run the official script bare on the host:
      stream its output, time its tqdm steps and sample NVML exactly as `hvinfra generate`
      does (hvinfra.generate.measure), write the same `measurements` block as a sidecar's
  gpu_generate_timing.py image PATH W H            write a test input image (PNG, no network)
  gpu_generate_timing.py report OUT.json RUN...    RUN = LABEL=FILE.json (a sidecar or a bare
      result); prints the table, the ABBA ratio of the s/step medians (labels A*/B*), exit 1
      when the ratio is below --goal

Needs hvinfra on PYTHONPATH (the checkout's src/); `bare` and `image` also torch/PIL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def bare(out: Path, cmd: list[str]) -> int:
    from hvinfra.generate.measure import MemorySampler, PhaseClock, summary_line
    from hvinfra.generate.progress import LineSplitter, parse_step
    from hvinfra.host_gpu import HostProbe

    steps = int(cmd[cmd.index("--infer-steps") + 1])
    clock = PhaseClock(steps)
    splitter = LineSplitter()
    started = time.monotonic()
    with MemorySampler(HostProbe().probe, ()) as sampler:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):  # type: ignore[attr-defined]
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            for line in [*splitter.feed(chunk), splitter.pending]:
                step = parse_step(line)
                if step is not None:
                    clock.step(step)
        code = proc.wait()
        clock.end()
    data = {
        "where": "bare",
        "exit_code": code,
        "command": {"argv": cmd},
        "duration_s": round(time.monotonic() - started, 1),
        "measurements": {"gpu_memory": sampler.peak.as_dict(), "phases": clock.as_dict()},
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"bare: exit {code}, {summary_line(data['measurements'])}", flush=True)
    return code


def image(path: Path, width: int, height: int) -> int:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (40, 90, 160))
    draw = ImageDraw.Draw(img)
    for i in range(0, width, 64):
        draw.rectangle([i, height // 3, i + 32, 2 * height // 3], fill=(230, 180, 40))
    img.save(path)
    print(f"input image {path} {width}x{height}")
    return 0


def _row(label: str, data: dict[str, Any]) -> dict[str, Any]:
    m = data.get("measurements") or {}
    mem = m.get("gpu_memory") or {}
    ph = m.get("phases") or {}
    eff = data.get("effective") or {}
    return {
        "label": label,
        "where": data.get("where", "container"),
        "kind": data.get("kind"),
        "video_size": eff.get("video_size"),
        "frames": eff.get("frames"),
        "steps": eff.get("steps"),
        "argv": (data.get("command") or {}).get("argv"),
        "duration_s": data.get("duration_s"),
        "seconds_per_step": ph.get("seconds_per_step"),
        "load_s": ph.get("load_s"),
        "steps_s": ph.get("steps_s"),
        "decode_s": ph.get("decode_s"),
        "peak_gib": mem.get("peak_gib"),
        "peak_source": mem.get("source"),
        "peak_gpu_used_gib": None
        if mem.get("peak_gpu_used_bytes") is None
        else round(mem["peak_gpu_used_bytes"] / 2**30, 2),
        "synthetic": bool(data.get("synthetic_weights")),
        "video": (data.get("output") or {}).get("video"),
    }


def report(out: Path, runs: list[str], goal: float) -> int:
    rows = []
    for spec in runs:
        label, _, file = spec.partition("=")
        path = Path(file)
        if not path.is_file():
            rows.append({"label": label, "missing": str(path)})
            continue
        rows.append(_row(label, json.loads(path.read_text())))

    def per_step(prefix: str) -> list[float]:
        return [
            r["seconds_per_step"]
            for r in rows
            if r["label"].startswith(prefix) and r.get("seconds_per_step")
        ]

    a, b = per_step("A"), per_step("B")
    ratio = None
    if a and b:
        # throughput ratio: bare s/step over container s/step (>= 0.97: at most ~3% slower)
        ratio = round(statistics.median(b) / statistics.median(a), 4)
    summary = {
        "rows": rows,
        "abba": {"container_s_per_step": a, "bare_s_per_step": b, "ratio": ratio, "goal": goal},
        "passed": ratio is not None and ratio >= goal,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{'run':<16}{'where':<10}{'s/step':>8}{'load':>7}{'steps':>7}{'decode':>7}"
        f"{'peak GiB':>10}{'total':>7}"
    )
    for r in rows:
        if "missing" in r:
            print(f"{r['label']:<16}MISSING {r['missing']}")
            continue
        cell = lambda v, f="{:.2f}": "-" if v is None else f.format(v)  # noqa: E731
        print(
            f"{r['label']:<16}{r['where']:<10}{cell(r['seconds_per_step']):>8}"
            f"{cell(r['load_s'], '{:.0f}'):>7}{cell(r['steps_s'], '{:.0f}'):>7}"
            f"{cell(r['decode_s'], '{:.0f}'):>7}{cell(r['peak_gib'], '{:.1f}'):>10}"
            f"{cell(r['duration_s'], '{:.0f}'):>7}"
        )
    shown = "-" if ratio is None else f"{ratio:.3f}"
    print(f"in-container/bare s/step ratio (ABBA medians) = {shown} (goal >= {goal})")
    return 0 if summary["passed"] else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("bare")
    p.add_argument("out", type=Path)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("image")
    p.add_argument("path", type=Path)
    p.add_argument("width", type=int)
    p.add_argument("height", type=int)
    p = sub.add_parser("report")
    p.add_argument("out", type=Path)
    p.add_argument("runs", nargs="+")
    p.add_argument("--goal", type=float, default=0.97)
    ns = parser.parse_args()
    if ns.cmd == "bare":
        argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
        return bare(ns.out, argv)
    if ns.cmd == "image":
        return image(ns.path, ns.width, ns.height)
    return report(ns.out, ns.runs, ns.goal)


if __name__ == "__main__":
    sys.exit(main())
