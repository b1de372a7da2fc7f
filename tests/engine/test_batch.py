"""`hvinfra batch` end to end on a real Docker engine with the batch-standin image
(tests/fixtures/batch-standin): a fake in-container worker and the generate stand-in's fake
sample script make videos, fail on request and ignore signals."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from dockerd import build_fixture_image
from test_generate import (  # noqa: F401 - generate_image builds the base image
    Job,
    generate_image,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "batch-standin"
TAG = "hvinfra-test/batch-standin:latest"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="session")
def batch_image(docker_client: docker.DockerClient, generate_image: str) -> str:  # noqa: F811
    """The generate stand-in plus the fake worker (built from FIXTURE)."""
    names = ("Dockerfile", "python3", "fake-hvinfra-worker")
    return build_fixture_image(docker_client, FIXTURE, names, TAG)


class Batch(Job):
    """`hvinfra batch t2v FILE …` as a subprocess, with Job's container and host folders."""

    def write(self, name: str, lines: list[dict[str, object]]) -> Path:
        path = self.root / name
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return path

    def batch_argv(self, source: Path, *args: str, kind: str = "t2v") -> list[str]:
        argv = self.argv(kind, str(source), *args)
        argv[argv.index("generate")] = "batch"
        return argv

    def batch(self, source: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.batch_argv(source, *args), env=self.env, capture_output=True,
                              text=True, timeout=180)  # fmt: skip

    def stop_at(self, source: Path, marker: str, sig: int, *args: str) -> tuple[int, str]:
        """Start the batch, send `sig` once `marker` shows on stderr; exit code, stderr."""
        proc = subprocess.Popen(self.batch_argv(source, *args), env=self.env,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stderr is not None
        seen, deadline = "", time.monotonic() + 90
        while marker not in seen:
            line = proc.stderr.readline()
            assert line and time.monotonic() < deadline, seen
            seen += line
        proc.send_signal(sig)
        rest = proc.stderr.read()
        return proc.wait(timeout=60), seen + rest

    def manifest(self) -> dict[int, dict[str, Any]]:
        data = json.loads((self.out / "batch.json").read_text())
        return {line["line"]: line for line in data["lines"]}

    def summary(self) -> dict[str, Any]:
        return dict(json.loads((self.out / "summary.json").read_text()))

    def sidecars(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.out.glob("0*.json"))]


@pytest.fixture
def run(tmp_path: Path, hv_env: dict[str, str], batch_image: str) -> Batch:
    return Batch(tmp_path, hv_env, batch_image)


def lines(*prompts: str, steps: int = 3) -> list[dict[str, object]]:
    return [{"prompt": p, "seed": i, "steps": steps} for i, p in enumerate(prompts, start=1)]


def test_five_lines_one_failing_the_batch_goes_on_and_exits_12(run: Batch) -> None:
    source = run.write("p.jsonl", lines("a cat", "a dog", "STANDIN_FAIL", "a fox", "a bird"))
    result = run.batch(source, "--reuse", "--resolution", "540p", "--gpus", "0")
    assert result.returncode == 12, result.stderr
    summary = run.summary()
    assert summary["counts"]["done"] == 4 and summary["counts"]["failed"] == 1
    manifest = run.manifest()
    assert [manifest[n]["state"] for n in range(1, 6)] == ["done", "done", "failed", "done", "done"]
    assert "CUDA out of memory" in str(manifest[3]["error"])
    assert any("OutOfMemoryError" in line for line in manifest[3]["log_tail"])
    videos = sorted(p.name for p in run.out.glob("*.mp4"))
    assert videos == [
        "0001_t2v_a-cat_seed1_960x544.mp4", "0002_t2v_a-dog_seed2_960x544.mp4",
        "0004_t2v_a-fox_seed4_960x544.mp4", "0005_t2v_a-bird_seed5_960x544.mp4",
    ]  # fmt: skip
    # the model was loaded once: every video came from the same worker, on its first load
    workers = {(Path(s["output"]["container_path"]).parent.name) for s in run.sidecars()}
    pids = {(run.outputs / w / "worker.pid").read_text() for w in workers}
    assert len(pids) == 1
    assert {(run.outputs / w / "worker.loads").read_text().strip() for w in workers} == {"1"}
    sidecar = run.sidecars()[0]
    assert sidecar["worker"]["reused"] is True
    assert sidecar["batch"]["line"] == 1
    phases = sidecar["measurements"]["phases"]  # timed from the worker's tqdm lines
    assert phases["steps_seen"] == 3 and phases["seconds_per_step"] is not None
    # the stand-in sends its done event before its last stderr lines, as the engine may
    # deliver them: the log still has them, up to the request's end line
    log = (run.out / "0001_t2v_a-cat_seed1_960x544.log").read_text()
    assert "Sample save to:" in log and "hvinfra_worker - request " in log
    assert "line 3: failed" in result.stdout and "batch summary" in result.stdout


def test_an_interrupted_batch_is_consistent_and_a_rerun_resumes_it(
    run: Batch, docker_client: docker.DockerClient
) -> None:
    source = run.write("p.jsonl", lines("a cat", *["STANDIN_SLOW"] * 3, steps=4))
    code, stderr = run.stop_at(
        source, "line 2: step 1/4", signal.SIGINT, "--no-reuse", "--gpus", "0"
    )
    assert code == 130, stderr
    manifest = run.manifest()
    assert manifest[1]["state"] == "done"
    assert all(manifest[n]["state"] == "pending" for n in (2, 3, 4)), manifest
    alive = run.exec(docker_client, "ps", "-o", "pid,args")
    assert "python3-sample" not in alive and "sleep" not in alive, alive
    again = run.batch(source, "--no-reuse", "--gpus", "0")
    assert again.returncode == 0, again.stderr
    summary = run.summary()
    assert summary["counts"]["skipped_done"] == 1 and summary["counts"]["done"] == 4
    assert len(list(run.out.glob("*.mp4"))) == 4
    assert not list(run.out.glob("*-2.*"))  # the interrupted line's rerun kept its names
    edited = run.write("p.jsonl", [{"prompt": "a cat", "seed": 9, "steps": 1}, *lines()])
    third = run.batch(edited, "--no-reuse", "--json", "--gpus", "0")
    assert json.loads(third.stdout)["counts"]["done_now"] == 1  # the edited line runs again


def test_kill_stops_a_worker_that_ignores_sigint_and_leaves_nothing_running(
    run: Batch, docker_client: docker.DockerClient
) -> None:
    source = run.write("p.jsonl", lines("STANDIN_STUBBORN", steps=30))
    args = ("--reuse", "--stop-timeout", "2", "--gpus", "0")
    code, stderr = run.stop_at(source, "line 1: step 1/30", signal.SIGTERM, *args)
    assert code == 130, stderr
    assert run.manifest()[1]["state"] == "pending"
    alive = run.exec(docker_client, "ps", "-o", "pid,args")
    assert "fake-hvinfra-worker" not in alive and "sleep" not in alive, alive
    assert not list(run.out.glob("*.mp4"))


def test_two_gpus_get_one_worker_each(run: Batch) -> None:
    source = run.write("p.jsonl", lines(*["STANDIN_SLOW"] * 4, steps=2))
    result = run.batch(source, "--reuse", "--gpus", "0,1")
    assert result.returncode == 0, result.stderr
    by_gpu: dict[str, set[str]] = {}
    for sidecar in run.sidecars():
        folder = run.outputs / Path(sidecar["output"]["container_path"]).parent.name
        gpu = (folder / "worker.gpus").read_text().strip()
        by_gpu.setdefault(gpu, set()).add((folder / "worker.pid").read_text().strip())
        assert sidecar["worker"]["slot"] == f"gpu{gpu}"
    assert sorted(by_gpu) == ["0", "1"]  # CUDA_VISIBLE_DEVICES per worker
    assert all(len(pids) == 1 for pids in by_gpu.values())  # one worker (one load) per GPU
    assert run.summary()["workers"] == 2


@pytest.mark.parametrize("reuse", ["--reuse", "--no-reuse"])
def test_i2v_csv_lines_copy_their_own_image_in(run: Batch, tmp_path: Path, reuse: str) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(f"PNG {name}".encode())
    source = tmp_path / "shots.csv"
    source.write_text("prompt,image,seed,steps\nshe smiles,a.png,1,2\nhe waves,b.png,2,2\n")
    argv = run.batch_argv(source, reuse, "--resolution", "540p", "--dynamic", kind="i2v")
    result = subprocess.run(argv, env=run.env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    copies = set()
    for sidecar in run.sidecars():
        assert sidecar["request"]["mode"] == "dynamic"
        folder = run.outputs / Path(sidecar["output"]["container_path"]).parent.name
        copies.add((folder / "input.copy").read_bytes())
    assert copies == {b"PNG a.png", b"PNG b.png"}


def test_an_image_without_a_working_worker_falls_back_to_one_script_per_line(
    tmp_path: Path,
    hv_env: dict[str, str],
    generate_image: str,  # noqa: F811
) -> None:
    plain = Batch(tmp_path, hv_env, generate_image)  # python3 is only the fake sample script
    source = plain.write("p.jsonl", lines("a cat", "a dog"))
    result = plain.batch(source, "--reuse")
    assert result.returncode == 0, result.stderr
    assert "cannot be loaded once per worker here" in result.stderr
    assert "running one sample script per line" in result.stderr
    assert len(list(plain.out.glob("*.mp4"))) == 2
    assert all("worker" not in sidecar for sidecar in plain.sidecars())


def test_dry_run_prints_the_plan_and_starts_nothing(
    run: Batch, docker_client: docker.DockerClient
) -> None:
    source = run.write("p.jsonl", lines("a cat", "a dog"))
    result = run.batch(source, "--gpus", "0,1", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [line["action"] for line in plan["lines"]] == ["run", "run"]
    assert [w["gpus"] for w in plan["workers"]] == [["0"], ["1"]]
    assert docker_client.containers.list(all=True, filters={"name": run.name}) == []


def test_the_pool_cancels_one_job_and_runs_the_next(
    run: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WorkerPool API that `hvinfra serve` reuses, in process, on the batch's container."""
    from hvinfra.batch.plan import Slot
    from hvinfra.batch.pool import Job, WorkerPool
    from hvinfra.engine import DockerEngine
    from hvinfra.errors import Interrupted
    from hvinfra.generate.request import make_request
    from hvinfra.profiles import load_profile

    warm = run.write("p.jsonl", lines("warm up", steps=1))
    argv = run.batch_argv(warm, "--reuse")
    assert subprocess.run(argv, env=run.env, capture_output=True).returncode == 0
    monkeypatch.setenv("DOCKER_HOST", run.env["DOCKER_HOST"])
    engine = DockerEngine.from_env()
    container = engine.container(run.name)
    assert container is not None
    sets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]
    profile = load_profile("t2v", sets=sets).profile
    pool = WorkerPool(engine, container, profile, [Slot("gpu", None)], kind="t2v", reuse=True)
    pool.start()
    slow = Job("j-slow", make_request("t2v", prompt="STANDIN_SLOW", seed=1, steps=30), "s", run.out)
    quick = Job("j-quick", make_request("t2v", prompt="a cat", seed=2, steps=1), "q", run.out)
    queued = Job("j-queued", make_request("t2v", prompt="a dog", seed=3, steps=1), "d", run.out)
    futures = [pool.submit(job) for job in (slow, quick, queued)]
    assert pool.cancel_job("j-queued")  # still queued: dropped
    deadline = time.monotonic() + 60
    while not (run.out / "s.log").exists() or "1/30" not in (run.out / "s.log").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert pool.cancel_job("j-slow")
    stopped, done = futures[0].result(timeout=60), futures[1].result(timeout=60)
    pool.stop()
    assert isinstance(stopped.error, Interrupted)
    assert done.ok and (run.out / "q.mp4").is_file()
    assert futures[2].cancelled() and not (run.out / "d.mp4").exists()
