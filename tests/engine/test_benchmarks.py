"""The benchmark harness runs end to end (`python -m benchmarks --quick`): every row measured on a
private engine of its own, a JSON result with both sides and the ratio. Speed is not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.engine


def test_quick_benchmark_measures_every_row_against_its_baseline(tmp_path: Path) -> None:
    result_file = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(result_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(result_file.read_text())
    rows = {row["row"]: row for row in result["rows"]}
    assert set(rows) == {"help", "status", "up", "logs", "pull"}
    for row in rows.values():
        assert row["a"]["median_s"] > 0 and row["b"]["median_s"] > 0
        assert row["ratio"] > 0
    assert "hvinfra up t2v" in rows["up"]["a"]["command"]
    for name in ("status", "up", "pull"):  # the floors: the baseline plus the stack's own cost
        assert rows[name]["floor"]["median_s"] > 0 and rows[name]["floor_ratio"] > 0
    assert "ratio" in done.stdout and "help" in done.stdout
