"""`hvinfra serve t2v` as a real server (uvicorn on 127.0.0.1, a subprocess) on a real Docker
engine, running its jobs (--no-reuse: one process each) in a container of the serve-standin
image (tests/fixtures/serve-standin): submit / poll / events / fetch / cancel, 200 submissions,
kill -9 and a restart, a second server refused, a token off-loopback."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")

import httpx
import servekit
from servekit import Serve

serve_image = servekit.serve_image  # the fixtures, shared with test_serve_browser.py
serve = servekit.serve
import test_batch  # noqa: E402  (the batch-standin image: a fake worker that loads once)
import test_generate  # noqa: E402

generate_image = test_generate.generate_image
batch_image = test_batch.batch_image

pytestmark = pytest.mark.timeout(240)


def submit(client: httpx.Client, prompt: str, **fields: Any) -> str:
    response = client.post("/v1/jobs", json={"prompt": prompt, **fields})
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "queued"
    return str(response.json()["id"])


def wait_for(
    client: httpx.Client, job_id: str, *states: str, timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        time.sleep(0.2)


def processes(client: docker.DockerClient, container: str) -> list[str]:
    """Every process's command line in the container (busybox: no ps options needed)."""
    script = 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done 2>/dev/null'
    output = client.containers.get(container).exec_run(["sh", "-c", script]).output
    assert isinstance(output, bytes)
    return [line for line in output.decode().splitlines() if line.strip()]


def test_submit_poll_events_fetch_with_range_and_sidecar(serve: Serve) -> None:
    serve.start()
    with serve.client() as client:
        health = client.get("/v1/health").json()
        assert health["workers"] == [{"mode": "per-job", "slot": "gpu", "job": None}]
        job_id = submit(client, "a cat walks STANDIN_SLOW", steps=4, seed=42, resolution="540p")
        events: list[tuple[str, dict[str, Any]]] = []
        name = ""
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
        job = wait_for(client, job_id, "done")
        video = client.get(f"/v1/jobs/{job_id}/video")
        part = client.get(f"/v1/jobs/{job_id}/video", headers={"Range": "bytes=0-5"})
    states = [data["state"] for name, data in events if name == "state"]
    assert states in (["queued", "running", "done"], ["running", "done"]), events
    steps = [data["step"] for name, data in events if name == "step"]
    assert steps[-1] == 4 and len(steps) >= 3, events  # one second per step: seen moving
    assert video.status_code == 200 and video.content == b"STANDIN MP4 seed=42\n"
    assert part.status_code == 206 and part.content == b"STANDI"
    assert job["sidecar"]["job_id"] == job_id and job["sidecar"]["request"]["seed"] == 42
    assert (serve.out / job["video"]).read_bytes() == video.content


def test_a_cancelled_running_job_leaves_no_process_and_the_queue_goes_on(
    serve: Serve, docker_client: docker.DockerClient
) -> None:
    serve.start()
    with serve.client() as client:
        slow = submit(client, "STANDIN_STUBBORN ignores SIGINT", steps=60)
        queued = submit(client, "quick one", steps=2)
        dropped = submit(client, "never runs", steps=2)
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{slow}").json()["progress"]["step"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert any("STANDIN_STUBBORN" in p for p in processes(docker_client, serve.container))
        assert client.delete(f"/v1/jobs/{dropped}").json()["state"] == "cancelled"
        assert client.delete(f"/v1/jobs/{slow}").status_code == 202
        cancelled = wait_for(client, slow, "cancelled", "failed", timeout=30)
        assert cancelled["state"] == "cancelled"
        left = [p for p in processes(docker_client, serve.container) if "STANDIN" in p]
        assert left == []
        assert wait_for(client, queued, "done", "failed")["state"] == "done"
        assert client.get(f"/v1/jobs/{dropped}").json()["state"] == "cancelled"


def test_200_submissions_at_once_lose_nothing(serve: Serve) -> None:
    serve.start()
    with serve.client() as client:
        first = submit(client, "hold the worker STANDIN_SLOW", steps=30)
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda i: submit(client, f"job {i}", steps=1), range(200)))
        assert len(set(ids)) == 200
        listed = client.get("/v1/jobs").json()["jobs"]
        assert {job["id"] for job in listed} >= set(ids)
        prompts = {job["request"]["prompt"] for job in listed if job["id"] in set(ids)}
        assert prompts == {f"job {i}" for i in range(200)}
        assert client.get("/v1/health").json()["queue"] + 1 >= 200
        for job_id in [*ids, first]:
            client.delete(f"/v1/jobs/{job_id}")
        states = {job["state"] for job in client.get("/v1/jobs").json()["jobs"]}
        assert states <= {"cancelled", "done", "running"}
        wait_for(client, first, "cancelled")


def test_kill9_then_restart_interrupted_job_failed_queue_runs_videos_kept(
    serve: Serve, docker_client: docker.DockerClient
) -> None:
    serve.start()
    with serve.client() as client:
        done = submit(client, "before the crash", steps=1, seed=7)
        wait_for(client, done, "done")
        slow = submit(client, "crashes STANDIN_SLOW", steps=60)
        queued = [submit(client, f"after the crash {i}", steps=1) for i in range(2)]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{slow}").json()["progress"]["step"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    serve.kill9()
    serve.start()
    with serve.client() as client:
        interrupted = client.get(f"/v1/jobs/{slow}").json()
        assert interrupted["state"] == "failed" and interrupted["reason"] == "interrupted"
        assert "interrupted" in interrupted["error"]
        assert [p for p in processes(docker_client, serve.container) if "STANDIN" in p] == []
        for job_id in queued:
            assert wait_for(client, job_id, "done", "failed")["state"] == "done"
        kept = client.get(f"/v1/jobs/{done}/video")
        assert kept.status_code == 200 and kept.content == b"STANDIN MP4 seed=7\n"
    assert any("marked failed (interrupted)" in line for line in serve.lines)


def test_a_second_server_on_the_same_data_dir_is_refused(serve: Serve) -> None:
    serve.start()
    second = subprocess.run(serve.argv(), env=serve.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 26, second.stderr
    assert "is in use by another hvinfra serve (pid" in second.stderr


def test_off_loopback_needs_the_token(serve: Serve, tmp_path: Path) -> None:
    token = "t-" + uuid.uuid4().hex + uuid.uuid4().hex
    token_file = tmp_path / "serve.token"
    token_file.write_text(token + "\n")
    os.chmod(token_file, 0o600)
    serve.start("--host", "0.0.0.0", "--token-file", str(token_file))
    port = serve.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        assert client.get("/v1/health").status_code == 401
        assert client.post("/v1/jobs", json={"prompt": "x"}).status_code == 401
        ok = client.get("/v1/health", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    assert not any(token in line for line in serve.lines)


def test_i2v_upload_reaches_the_job_under_hvinfra_s_own_name(serve: Serve) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    serve.kind = "i2v"
    serve.start()
    with serve.client() as client:
        response = client.post(
            "/v1/jobs", data={"prompt": "the waves roll in", "steps": "2", "dynamic": "true"},
            files={"image": ("../../../etc/passwd", png, "image/png")},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"], "done", "failed")
    assert job["state"] == "done", job
    assert job["sidecar"]["request"]["mode"] == "dynamic"
    saved = serve.root / "outputs" / job["id"]
    assert (saved / "input.copy").read_bytes() == png  # what the stand-in script was given
    assert (serve.data / "inputs" / f"{job['id']}.png").read_bytes() == png


def test_a_failing_job_is_failed_with_the_cli_s_message_and_the_queue_goes_on(
    serve: Serve,
) -> None:
    serve.start()
    with serve.client() as client:
        bad = submit(client, "STANDIN_FAIL out of memory", steps=2)
        good = submit(client, "fine", steps=2)
        failed = wait_for(client, bad, "done", "failed")
        assert failed["state"] == "failed" and failed["reason"] == "error"
        assert "the generation job failed" in failed["error"]
        assert "CUDA out of memory" in failed["error"]
        assert failed["fix"] and ".log" in failed["fix"]
        assert client.get(f"/v1/jobs/{bad}/video").status_code == 404
        assert wait_for(client, good, "done", "failed")["state"] == "done"


def test_reuse_workers_load_once_cancel_restarts_the_worker_and_kill9_leaves_none(
    serve: Serve, batch_image: str, docker_client: docker.DockerClient
) -> None:
    serve.image = batch_image
    serve.start("--reuse")
    with serve.client() as client:
        assert client.get("/v1/health").json()["workers"][0]["mode"] == "reuse"
        first = [submit(client, f"reused {i}", steps=2) for i in range(2)]
        jobs = [wait_for(client, job_id, "done", "failed") for job_id in first]
        assert [job["state"] for job in jobs] == ["done", "done"], jobs
        assert all(job["sidecar"]["worker"]["reused"] for job in jobs)
        saved = [serve.root / "outputs" / job_id for job_id in first]
        assert [(d / "worker.loads").read_text() for d in saved] == ["1\n", "1\n"]  # loaded
        # (whether both jobs shared one worker is the pool's business: issue 19's tests)

        slow = submit(client, "cancel me STANDIN_SLOW", steps=60)
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{slow}").json()["progress"]["step"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.delete(f"/v1/jobs/{slow}").status_code == 202
        assert wait_for(client, slow, "cancelled", "failed", timeout=30)["state"] == "cancelled"
        assert [p for p in processes(docker_client, serve.container) if "worker" in p] == []
        after = submit(client, "after the cancel", steps=2)
        assert wait_for(client, after, "done", "failed")["state"] == "done"  # a new worker

        crash = submit(client, "crash STANDIN_SLOW", steps=60)
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{crash}").json()["progress"]["step"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    serve.kill9()
    assert any("worker" in p for p in processes(docker_client, serve.container))
    serve.start("--reuse")
    with serve.client() as client:
        assert client.get(f"/v1/jobs/{crash}").json()["reason"] == "interrupted"
    assert [p for p in processes(docker_client, serve.container) if "worker" in p] == []
