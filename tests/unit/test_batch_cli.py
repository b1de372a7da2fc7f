"""`hvinfra batch` at the CLI edge: the dry-run plan, refusals before anything starts, sharding,
GPU assignment and the live display's batch line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hvinfra.batch.lines import parse_text
from hvinfra.batch.manifest import Entry
from hvinfra.batch.plan import BatchPlan, Item, Slot
from hvinfra.batch_display import BatchDisplay
from hvinfra.cli import main
from hvinfra.errors import ExitCode
from hvinfra.output import Output


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def batch_file(tmp_path: Path, *rows: dict[str, object]) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def dry_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["batch", *args, "--dry-run", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def test_done_when_dry_run_prints_lines_sizes_gpus_and_skips_without_an_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = batch_file(tmp_path, {"prompt": "a cat", "seed": 1},
                        {"prompt": "a dog", "resolution": "540p", "aspect": "9:16"})  # fmt: skip
    code = main(["batch", "t2v", str(source), "--gpus", "0,1", "--steps", "5", "--dry-run",
                 "--out", str(tmp_path / "runs")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "1280x720" in out and "544x960" in out  # width x height per line
    assert "workers: gpu0 (GPU 0), gpu1 (GPU 1)" in out
    assert "the model is loaded once per worker" in out
    assert "2 to run, 0 done before (skipped)" in out
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written


def test_dry_run_shows_what_a_rerun_would_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = batch_file(tmp_path, {"prompt": "a cat", "seed": 1}, {"prompt": "a dog", "seed": 2})
    out = tmp_path / "runs"
    _, plan = dry_run(capsys, "t2v", str(source), "--out", str(out))
    first = plan["lines"][0]
    out.mkdir()
    (out / f"{first['output']}.mp4").write_bytes(b"v")
    entry = {"line": 1, "hash": "", "stem": first["output"], "prompt": "a cat", "seed": 1,
             "state": "done", "video": f"{first['output']}.mp4"}  # fmt: skip
    from hvinfra.batch.lines import read_batch, request_hash

    entry["hash"] = request_hash(read_batch(source, "t2v", {})[0])
    (out / "batch.json").write_text(json.dumps({"version": 1, "batch": {}, "lines": [entry]}))
    _, plan = dry_run(capsys, "t2v", str(source), "--out", str(out))
    assert [line["action"] for line in plan["lines"]] == ["done", "run"]


def test_an_invalid_line_stops_the_batch_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = batch_file(tmp_path, {"prompt": "ok"}, {"prompt": "x", "frames": 99})
    code = main(["batch", "t2v", str(source), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert f"{source}:2: --frames: 99 frames cannot be generated" in err
    assert "nearest valid: 97 or 101" in err
    assert not (tmp_path / "runs").exists()


def test_xdit_per_job_refuses_lines_whose_size_has_no_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = batch_file(tmp_path, {"prompt": "ok"},
                        {"prompt": "square", "resolution": "540p", "aspect": "1:1"})  # fmt: skip
    code, plan = dry_run(capsys, "t2v", str(source), "--gpus", "0,1,2,3", "--gpus-per-job", "2",
                         "--skip-invalid")  # fmt: skip
    assert code == 0
    assert [w["gpus"] for w in plan["workers"]] == [["0", "1"], ["2", "3"]]
    assert [line["line"] for line in plan["lines"]] == [1]
    assert "xDiT has no configuration for 2 GPUs" in plan["invalid"][0]["error"]
    assert plan["reuse"] is False


def test_shard_takes_its_share_of_the_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "p.txt"
    source.write_text("".join(f"prompt {i}\n" for i in range(7)))
    code, plan = dry_run(capsys, "t2v", str(source), "--shard", "1/3")
    assert code == 0
    assert [line["line"] for line in plan["lines"]] == [2, 5]
    assert plan["shard"] == "1/3"
    assert main(["batch", "t2v", str(source), "--shard", "3/3", "--dry-run"]) == ExitCode.USAGE


def test_i2v_needs_an_image_per_line_or_as_a_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cat.png").write_bytes(b"png")
    source = tmp_path / "p.txt"
    source.write_text("she smiles\n")
    assert main(["batch", "i2v", str(source), "--dry-run"]) == ExitCode.USAGE
    assert "--image" in capsys.readouterr().err
    code, plan = dry_run(capsys, "i2v", str(source), "--image", str(tmp_path / "cat.png"))
    assert code == 0 and plan["lines"][0]["size"] == "720p"


def test_the_live_display_shows_done_failed_left_and_an_eta(tmp_path: Path) -> None:
    stream = io.StringIO()
    output = Output(err=Console(file=stream, force_terminal=True, width=120))
    lines = parse_text("a\nb\nc\n", tmp_path / "p.txt", "t2v", {})
    items = [Item(line, "h", f"{line.number:04d}", "run") for line in lines]
    plan = BatchPlan(tmp_path, tuple(items), (Slot("gpu0", ("0",)),), (), (), True, "")
    display = BatchDisplay(output, live=True)
    display.batch_started(plan, 3)
    observer = display.job_observer(plan.slots[0], items[0])
    observer.started(None, 5)  # type: ignore[arg-type]
    done = Entry(line=1, hash="h", stem="0001", prompt="a", seed=1, state="done",
                 video="0001.mp4", duration_s=60.0)  # fmt: skip
    display.job_finished(items[0], done)
    failed = Entry(line=2, hash="h", stem="0002", prompt="b", seed=1, state="failed",
                   error="CUDA out of memory", log="0002.log")  # fmt: skip
    display.job_finished(items[1], failed)
    display.batch_finished()
    text = stream.getvalue()
    assert "batch: 1 done, 1 failed, 1 left, ETA 1m00s" in text
    assert "line 2: FAILED: CUDA out of memory (log: 0002.log)" in text
