#!/usr/bin/env python3
"""Summarise scripts/gpu-smoke.sh's runs: medians in and out of the container, and the ratios.

  python3 gpu_smoke_report.py RUNS.jsonl RESULTS.json [--goal 0.97]

RUNS.jsonl holds one gpu_workload.py result per line (where = host or container, in the ABBA
order they ran). Writes RESULTS.json and prints a table; exits 1 when the in-container bf16
matmul throughput is below `goal` x bare metal, 2 when a side has no result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

METRICS = (
    ("matmul_bf16_tflops", "bf16 matmul", "TFLOP/s"),
    ("h2d_pinned_gbs", "host->device (pinned)", "GB/s"),
    ("d2h_pinned_gbs", "device->host (pinned)", "GB/s"),
)
GATED = "matmul_bf16_tflops"


def summarise(runs: list[dict[str, Any]], goal: float) -> dict[str, Any]:
    by_side: dict[str, list[dict[str, Any]]] = {"host": [], "container": []}
    for run in runs:
        by_side.setdefault(run.get("where", "?"), []).append(run)
    metrics: dict[str, Any] = {}
    for key, _, unit in METRICS:
        entry: dict[str, Any] = {"unit": unit}
        for side in ("host", "container"):
            values = [r[key]["median"] for r in by_side[side] if isinstance(r.get(key), dict)]
            entry[side] = {"runs": values, "median": statistics.median(values) if values else None}
        host, ctr = entry["host"]["median"], entry["container"]["median"]
        entry["ratio"] = ctr / host if host and ctr is not None else None
        metrics[key] = entry
    ratio = metrics[GATED]["ratio"]
    first = next((r for r in runs if r.get("cuda_available")), runs[0] if runs else {})
    return {
        "gpu": first.get("gpu"),
        "torch": first.get("torch"),
        "cuda": first.get("cuda"),
        "fake": any(r.get("fake") for r in runs),
        "order": [r.get("where") for r in runs],
        "cuda_available": {
            side: all(r.get("cuda_available") for r in by_side[side]) and bool(by_side[side])
            for side in ("host", "container")
        },
        "metrics": metrics,
        "goal": goal,
        "matmul_ratio": ratio,
        "passed": ratio is not None and ratio >= goal,
    }


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"GPU {summary['gpu']}  torch {summary['torch']}  CUDA {summary['cuda']}"
        + ("  (FAKE: rehearsal numbers)" if summary["fake"] else ""),
        f"runs (ABBA): {' '.join(summary['order'])}",
        f"{'metric':<24}{'bare host':>14}{'container':>14}{'ratio':>9}",
    ]
    for key, label, unit in METRICS:
        entry = summary["metrics"][key]
        host, ctr, ratio = entry["host"]["median"], entry["container"]["median"], entry["ratio"]
        cell = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
        lines.append(
            f"{label + ' ' + unit:<24}{cell(host):>14}{cell(ctr):>14}"
            f"{'-' if ratio is None else f'{ratio:.3f}':>9}"
        )
    verdict = "PASS" if summary["passed"] else "FAIL"
    ratio = summary["matmul_ratio"]
    shown = "-" if ratio is None else f"{ratio:.3f}"
    lines.append(
        f"{verdict}: in-container/bare-metal bf16 matmul = {shown} (goal >= {summary['goal']})"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--goal", type=float, default=0.97)
    args = parser.parse_args()
    runs = [json.loads(line) for line in args.runs.read_text().splitlines() if line.strip()]
    summary = summarise(runs, args.goal) | {"runs": runs}
    args.results.write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    if summary["matmul_ratio"] is None:
        return 2
    return 0 if summary["passed"] or summary["fake"] else 1


if __name__ == "__main__":
    sys.exit(main())
