"""The serve API in-process (FastAPI's TestClient over a real SQLite store in a temp data dir):
submissions and the CLI's 422 messages, listing, cancel, the video with Range, the events
stream, tokens, size limits, the lock on the data dir and recovery after a crash."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from hvinfra.errors import ExitCode, ServeError
from hvinfra.serve.api import create_app
from hvinfra.serve.service import JobService, ServeInfo
from hvinfra.serve.store import DataDirLock, JobStore
from hvinfra.serve.submission import MAX_BODY_BYTES, MAX_PROMPT_CHARS

TOKEN = "s3cret-token-for-tests-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class RecordingWorker:
    """Stands in for the worker thread: records cancels, runs nothing."""

    mode = "test-no-run"

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def busy(self) -> list[dict[str, str | None]]:
        return [{"slot": "gpu", "job": None}]

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


class Server:
    def __init__(self, root: Path, kind: str = "t2v", token: str | None = None) -> None:
        self.store = JobStore(root / "data")
        self.worker = RecordingWorker()
        self.service = JobService(
            self.store, root / "data" / "inputs", ServeInfo(kind=kind, profile=kind),
            workers=[self.worker],
        )  # fmt: skip
        self.client = TestClient(create_app(self.service, token))
        self.root = root

    def submit(self, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/v1/jobs", json={"prompt": "a cat walks", **fields})
        assert response.status_code == 202, response.text
        return dict(response.json())

    def finish_with_video(self, job_id: str, data: bytes) -> Path:
        """What the worker leaves behind after a successful job."""
        video, sidecar = self.root / "out.mp4", self.root / "out.json"
        video.write_bytes(data)
        sidecar.write_text(json.dumps({"job_id": job_id, "exit_code": 0}))
        self.store.claim_next()
        self.store.set_files(job_id, video=str(video), sidecar=str(sidecar), log="")
        self.store.finish(job_id, "done")
        return video


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path)


def test_submit_returns_202_queued_and_the_job_is_listed_with_its_request(server: Server) -> None:
    job = server.submit(resolution="540p", aspect="9:16", steps=6, seed=42)
    assert job["state"] == "queued" and len(job["id"]) == 20
    shown = server.client.get(f"/v1/jobs/{job['id']}").json()
    assert shown["state"] == "queued"
    assert shown["request"]["resolution"] == "540p" and shown["request"]["seed"] == 42
    assert [j["id"] for j in server.client.get("/v1/jobs?state=queued").json()["jobs"]] == [
        job["id"]
    ]
    assert server.client.get("/v1/jobs?state=done").json()["jobs"] == []
    assert server.client.get("/v1/jobs?state=bogus").status_code == 422
    second = server.submit()
    assert [j["id"] for j in server.client.get("/v1/jobs?limit=1").json()["jobs"]] == [second["id"]]
    assert server.client.get("/v1/health").json()["queue"] == 2


def test_a_seed_is_chosen_and_stored_when_none_is_given(server: Server) -> None:
    job = server.submit()
    assert isinstance(server.client.get(f"/v1/jobs/{job['id']}").json()["request"]["seed"], int)


def test_invalid_requests_are_422_with_the_cli_messages(server: Server) -> None:
    response = server.client.post(
        "/v1/jobs", json={"prompt": "x", "frames": 130, "resolution": "1080p", "steps": 0}
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e.startswith("--frames: 130 frames cannot be generated") for e in errors)
    assert any("nearest valid: 129" in e for e in errors)
    assert any(
        e.startswith("--resolution: '1080p' is not a text-to-video resolution") for e in errors
    )
    assert any(e.startswith("--steps:") for e in errors)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "   "}, "--prompt: the prompt is empty"),
        ({"prompt": "x", "image": "/etc/passwd"}, "image: not a field of a t2v job"),
        ({"prompt": "x", "gpus": "all"}, "gpus: not a field of a t2v job"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "--prompt: longer than"),
    ],
)
def test_more_422s(server: Server, body: dict[str, Any], expected: str) -> None:
    response = server.client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert any(e.startswith(expected) for e in response.json()["errors"]), response.json()


def test_i2v_takes_the_image_as_multipart_or_base64_and_stores_it_under_its_own_name(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, kind="i2v")
    response = server.client.post(
        "/v1/jobs", data={"prompt": "waves", "dynamic": "true"},
        files={"image": ("../../evil name.sh", PNG, "image/png")},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    stored = server.store.get(job_id)
    assert stored is not None and stored.input == str(
        tmp_path / "data" / "inputs" / f"{job_id}.png"
    )
    assert Path(stored.input).read_bytes() == PNG
    assert stored.request["mode"] == "dynamic"
    as_json = server.client.post(
        "/v1/jobs", json={"prompt": "waves", "image": base64.b64encode(PNG).decode()}
    )
    assert as_json.status_code == 202
    missing = server.client.post("/v1/jobs", json={"prompt": "waves"})
    assert missing.status_code == 422 and "--image: an i2v job needs an image" in missing.text
    not_image = server.client.post(
        "/v1/jobs", json={"prompt": "w", "image": base64.b64encode(b"#!/bin/sh\n").decode()}
    )
    assert not_image.status_code == 422 and "not a PNG, JPEG or WebP" in not_image.text


def test_cancel_drops_a_queued_job_and_asks_the_worker_to_stop_a_running_one(
    server: Server,
) -> None:
    first, second = server.submit(), server.submit()
    assert server.store.claim_next() is not None  # `first` is running now
    response = server.client.delete(f"/v1/jobs/{second['id']}")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    running = server.client.delete(f"/v1/jobs/{first['id']}")
    assert running.status_code == 202 and server.worker.cancelled == [first["id"]]
    assert running.json()["cancelling"] is True
    assert server.client.delete(f"/v1/jobs/{second['id']}").status_code == 200  # idempotent
    done = server.submit()
    server.finish_with_video(done["id"], b"mp4")
    assert server.client.delete(f"/v1/jobs/{done['id']}").status_code == 409


def test_unknown_and_path_like_ids_are_404(server: Server) -> None:
    for job_id in ("0" * 20, "..", "..%2F..%2Fetc%2Fpasswd", "a" * 200):
        assert server.client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert server.client.get(f"/v1/jobs/{job_id}/video").status_code == 404


def test_video_is_served_with_range_support_and_the_sidecar_is_in_the_job(
    server: Server,
) -> None:
    job = server.submit()
    data = bytes(range(256)) * 40
    server.finish_with_video(job["id"], data)
    whole = server.client.get(f"/v1/jobs/{job['id']}/video")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = server.client.get(f"/v1/jobs/{job['id']}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    shown = server.client.get(f"/v1/jobs/{job['id']}").json()
    assert shown["sidecar"] == {"job_id": job["id"], "exit_code": 0}
    assert shown["links"]["video"] == f"/v1/jobs/{job['id']}/video"


def test_a_queued_job_has_no_video_yet(server: Server) -> None:
    job = server.submit()
    response = server.client.get(f"/v1/jobs/{job['id']}/video")
    assert response.status_code == 404 and "queued" in response.text


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_events_stream_state_changes_and_steps_then_ends(server: Server) -> None:
    job_id = server.submit()["id"]

    def work() -> None:
        time.sleep(0.6)
        server.store.claim_next()
        for step in range(1, 5):
            time.sleep(0.6)
            server.store.progress(job_id, step, 4, float(4 - step))
        server.store.finish(job_id, "done")

    threading.Thread(target=work, daemon=True).start()
    with server.client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = _events(text)
    states = [data["state"] for name, data in events if name == "state"]
    steps = [data["step"] for name, data in events if name == "step"]
    assert states == ["queued", "running", "done"]
    assert steps == sorted(steps) and steps[-1] == 4 and len(steps) >= 3
    assert events[-1][0] == "state" and events[-1][1]["progress"]["percent"] == 100.0


def test_token_is_required_as_bearer_or_the_login_cookie(tmp_path: Path) -> None:
    server = Server(tmp_path, token=TOKEN)
    assert server.client.get("/v1/health").status_code == 401
    assert server.client.post("/v1/jobs", json={"prompt": "x"}).status_code == 401
    bad = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert server.client.get("/v1/health", headers=bad).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert server.client.get("/v1/health", headers=good).status_code == 200
    assert server.client.get("/").status_code == 200  # the page itself asks for the token
    assert server.client.post("/v1/login", json={"token": "wrong"}).status_code == 401
    assert server.client.post("/v1/login", json={"token": TOKEN}).status_code == 200
    assert server.client.get("/v1/health").status_code == 200  # the cookie now


def test_oversized_bodies_are_refused_before_they_are_read(server: Server) -> None:
    response = server.client.post(
        "/v1/jobs", content=b"{}", headers={
            "content-type": "application/json", "content-length": str(MAX_BODY_BYTES + 1)},
    )  # fmt: skip
    assert response.status_code == 413
    big = server.client.post("/v1/jobs", json={"prompt": "x", "neg_prompt": "y" * 70_000})
    assert big.status_code == 413


def test_openapi_schema_and_the_page_are_served(server: Server) -> None:
    schema = server.client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
            "/v1/jobs/{job_id}/video", "/v1/health"} <= set(schema["paths"])  # fmt: skip
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert {"prompt", "resolution", "aspect", "frames", "steps", "seed"} <= set(
        body["schema"]["properties"]
    )
    page = server.client.get("/").text
    assert "<title>hvinfra serve t2v</title>" in page and "EventSource" in page


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire("pid 1, 127.0.0.1:8188")
    with pytest.raises(ServeError) as caught:
        DataDirLock(tmp_path).acquire("pid 2")
    assert caught.value.exit_code == ExitCode.SERVE
    assert "in use by another hvinfra serve (pid 1, 127.0.0.1:8188)" in caught.value.message
    first.release()
    DataDirLock(tmp_path).acquire("pid 3")


def test_restart_marks_the_running_job_failed_interrupted_and_keeps_the_queue(
    tmp_path: Path,
) -> None:
    before = Server(tmp_path)
    running, queued = before.submit(), before.submit()
    before.store.claim_next()
    before.store.close()
    after = JobStore(tmp_path / "data")
    stale = after.recover()
    assert [job.id for job in stale] == [running["id"]]
    record = after.get(running["id"])
    assert record is not None and record.state == "failed" and record.reason == "interrupted"
    assert [job.id for job in after.list(state="queued")] == [queued["id"]]


def test_cross_site_posts_and_deletes_are_refused_same_origin_ones_pass(server: Server) -> None:
    job = server.submit()
    evil = {"Origin": "https://evil.example"}
    post = server.client.post("/v1/jobs", data={"prompt": "x"}, headers=evil)
    assert post.status_code == 403
    assert server.client.delete(f"/v1/jobs/{job['id']}", headers=evil).status_code == 403
    same = {"Origin": "http://testserver"}  # TestClient's Host
    assert server.client.post("/v1/jobs", data={"prompt": "x"}, headers=same).status_code == 202
    proxied = {"Origin": "https://video.example.org", "X-Forwarded-Host": "video.example.org"}
    assert server.client.post("/v1/jobs", json={"prompt": "x"}, headers=proxied).status_code == 202
