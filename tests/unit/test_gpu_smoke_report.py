"""scripts/gpu_smoke_report.py: medians of the ABBA runs and the in-container/bare-metal ratio."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_smoke_report.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_smoke_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(where: str, tflops: float, h2d: float = 50.0) -> dict[str, Any]:
    def stat(v: float) -> dict[str, float]:
        return {"median": v, "min": v, "max": v, "n": 7}

    return {
        "where": where, "cuda_available": True, "gpu": "NVIDIA H200", "torch": "2.11.0",
        "cuda": "13.0", "matmul_bf16_tflops": stat(tflops), "h2d_pinned_gbs": stat(h2d),
        "d2h_pinned_gbs": stat(h2d),
    }  # fmt: skip


def test_ratio_is_of_medians_so_one_slow_run_does_not_decide() -> None:
    runs = [run("host", 780), run("container", 775), run("container", 600), run("host", 790),
            run("host", 785), run("container", 781)]  # fmt: skip
    summary = _module().summarise(runs, 0.97)
    matmul = summary["metrics"]["matmul_bf16_tflops"]
    assert matmul["host"]["median"] == 785 and matmul["container"]["median"] == 775
    assert abs(summary["matmul_ratio"] - 775 / 785) < 1e-9
    assert summary["passed"] and summary["order"][:4] == ["host", "container", "container", "host"]


def test_below_the_goal_fails_and_the_script_exits_1(tmp_path: Path) -> None:
    runs = [run("host", 800), run("container", 700), run("container", 700), run("host", 800)]
    (tmp_path / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in runs) + "\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "runs.jsonl"), str(tmp_path / "r.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "FAIL: in-container/bare-metal bf16 matmul = 0.875" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


def test_no_container_result_gives_no_ratio() -> None:
    summary = _module().summarise([run("host", 780)], 0.97)
    assert summary["matmul_ratio"] is None and not summary["passed"]
