"""hvinfra_worker.py (the in-container worker) against a fake `hyvideo` package with the
official API (tests/fixtures/fake-hyvideo): loaded once, requests one by one, a failed video
does not end it, a load-relevant change reloads, the protocol stays clean of the code's prints."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hvinfra.batch.lines import parse_text
from hvinfra.generate.plan import build_plan
from hvinfra.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fixtures" / "fake-hyvideo"
WORKER = REPO / "src" / "hvinfra" / "worker" / "hvinfra_worker.py"


def run_worker(tmp_path: Path, requests: Sequence[Mapping[str, object]], kind: str = "t2v",
               cwd: Path = FAKE) -> tuple[list[dict[str, object]], str, Path]:  # fmt: skip
    log = tmp_path / "loads.log"
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    env = {"FAKE_HYVIDEO_LOG": str(log), "MODEL_BASE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(WORKER), "--kind", kind], input=stdin, capture_output=True,
        text=True, cwd=cwd, env=env, timeout=60,
    )  # fmt: skip
    events = [json.loads(line) for line in done.stdout.splitlines()]
    return events, done.stderr, log


def argv_for(tmp_path: Path, prompt: str, seed: int, *extra: str) -> list[str]:
    """The sample script's arguments exactly as `hvinfra generate` plans them."""
    line = parse_text(json.dumps({"prompt": prompt, "seed": seed, "frames": 33, "steps": 3}),
                      tmp_path / "p.jsonl", "t2v", {})[0]  # fmt: skip
    assert line.request is not None
    plan = build_plan(line.request, load_profile("t2v").profile, job_id=f"j{seed}")
    args = [*plan.argv[2:], *extra]
    return [a if not a.startswith("--save-path=") else f"--save-path={tmp_path}/s{seed}"
            for a in args]  # fmt: skip


def test_the_model_is_loaded_once_and_every_request_writes_its_video(tmp_path: Path) -> None:
    requests = [
        {"id": "a", "argv": argv_for(tmp_path, "a cat / walks", 1)},
        {"id": "b", "argv": argv_for(tmp_path, "FAKE_FAIL here", 2)},
        {"id": "c", "argv": argv_for(tmp_path, "a dog", 3)},
    ]
    events, stderr, log = run_worker(tmp_path, requests)
    kinds = [(e["event"], e.get("id")) for e in events]
    assert kinds == [("ready", None), ("loading", "a"), ("loaded", "a"), ("done", "a"),
                     ("failed", "b"), ("done", "c")]  # fmt: skip
    assert log.read_text().count("load ") == 1
    assert "CUDA out of memory" in str(events[4]["error"])
    first = Path(str(events[3]["paths"][0]))  # type: ignore[index]
    assert first.parent == tmp_path / "s1"
    assert first.name.endswith("_seed1_a cat  walks.mp4")  # the official name, '/' removed
    assert "|720x1280|33|1|7.0|" in first.read_text()  # official parser's values reached predict
    assert f"Sample save to: {first}" in stderr
    assert "predict 'a cat / walks'" in stderr  # the code's prints go to stderr
    assert "3/3" in stderr  # the step bar, for hvinfra's progress
    # each request's output ends with its end line (the host waits for it; see pool.py)
    assert stderr.index(f"Sample save to: {first}") < stderr.index(
        "hvinfra_worker - request a ended"
    )
    assert "hvinfra_worker - request b ended" in stderr and "request c ended" in stderr


def test_a_change_of_what_is_loaded_reloads_the_model(tmp_path: Path) -> None:
    requests = [
        {"id": "a", "argv": argv_for(tmp_path, "x", 1)},
        {"id": "b", "argv": argv_for(tmp_path, "y", 2, "--use-cpu-offload")},
    ]
    events, _, log = run_worker(tmp_path, requests)
    assert [e["event"] for e in events].count("loading") == 2
    reload = [e for e in events if e["event"] == "loading"][1]
    assert reload["reload"] is True and reload["changed"] == ["use_cpu_offload"]
    assert log.read_text().count("load ") == 2


def test_without_the_official_code_the_worker_says_unsupported(tmp_path: Path) -> None:
    events, _, _ = run_worker(tmp_path, [], cwd=tmp_path)
    assert events[0]["event"] == "unsupported"
    assert "cannot import the official code" in str(events[0]["reason"])


def test_an_argument_the_official_parser_refuses_fails_only_that_request(tmp_path: Path) -> None:
    requests = [
        {"id": "a", "argv": ["--no-such-flag"]},
        {"id": "b", "argv": argv_for(tmp_path, "x", 1)},
    ]
    events, _, _ = run_worker(tmp_path, requests)
    assert [(e["event"], e.get("id")) for e in events if e["event"] in ("done", "failed")] == [
        ("failed", "a"), ("done", "b"),
    ]  # fmt: skip
