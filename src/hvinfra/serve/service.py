"""The serve service: what the HTTP API calls. Submissions go to the store, the worker is woken,
cancels reach the worker; jobs are rendered as the API's JSON. No web framework here."""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from hvinfra.serve.store import STATES, JobRecord, JobStore
from hvinfra.serve.submission import Submission

JOB_ID = re.compile(r"[0-9a-f]{20}")


def new_job_id() -> str:
    """80 random bits, hex: never a path, never guessable."""
    return secrets.token_hex(10)


class Workers(Protocol):
    mode: str

    def busy(self) -> list[dict[str, str | None]]: ...
    def cancel(self, job_id: str) -> None: ...


@dataclass
class ServeInfo:
    """Facts for /v1/health."""

    kind: str
    profile: str
    container: str = ""
    gpus: list[str] = field(default_factory=list)


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


class JobService:
    def __init__(
        self,
        store: JobStore,
        inputs_dir: Path,
        info: ServeInfo,
        *,
        workers: list[Workers] | None = None,
        wakeup: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.inputs_dir = inputs_dir
        self.info = info
        self.workers: list[Workers] = workers if workers is not None else []
        self.wakeup = wakeup or threading.Event()

    @property
    def kind(self) -> str:
        return self.info.kind

    # -- commands ------------------------------------------------------------------------------
    def submit(self, submission: Submission) -> JobRecord:
        job_id = new_job_id()
        input_path = None
        if submission.image is not None:
            self.inputs_dir.mkdir(parents=True, exist_ok=True)
            target = self.inputs_dir / f"{job_id}{submission.image_suffix}"
            target.write_bytes(submission.image)
            input_path = str(target)
        data = submission.request.model_dump(mode="json", exclude_none=True)
        data.pop("image", None)
        self.store.add(job_id, self.kind, data, input_path)
        self.wakeup.set()
        record = self.store.get(job_id)
        assert record is not None
        return record

    def cancel(self, job_id: str) -> JobRecord | None:
        """Drop a queued job or stop a running one; None for an unknown id. A finished job is
        returned unchanged."""
        if self.store.cancel_queued(job_id):
            return self.store.get(job_id)
        if self.store.request_cancel(job_id):
            for worker in self.workers:
                worker.cancel(job_id)
        return self.store.get(job_id)

    # -- queries -------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        if not JOB_ID.fullmatch(job_id):
            return None
        return self.store.get(job_id)

    def list(self, state: str | None, limit: int = 1000) -> list[JobRecord]:
        return self.store.list(state=state, limit=limit)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "kind": self.info.kind,
            "profile": self.info.profile,
            "container": self.info.container,
            "gpus": self.info.gpus,
            "workers": [{"mode": w.mode, **slot} for w in self.workers for slot in w.busy()],
            "queue": self.store.count("queued"),
            "running": self.store.count("running"),
        }

    def video_path(self, record: JobRecord) -> Path | None:
        if record.state != "done" or not record.video:
            return None
        path = Path(record.video)
        return path if path.is_file() else None


def job_view(record: JobRecord, *, with_sidecar: bool = False) -> dict[str, Any]:
    """A job as the API shows it."""
    percent = round(100 * record.step / record.total, 1) if record.total else 0.0
    view: dict[str, Any] = {
        "id": record.id,
        "kind": record.kind,
        "state": record.state,
        "created_at": _iso(record.created),
        "started_at": _iso(record.started),
        "finished_at": _iso(record.finished),
        "progress": {
            "step": record.step, "total": record.total, "percent": percent,
            "eta_s": record.eta,
        },
        "request": record.request,
        "links": {"self": f"/v1/jobs/{record.id}", "events": f"/v1/jobs/{record.id}/events"},
    }  # fmt: skip
    if record.state == "running" and record.cancel_requested:
        view["cancelling"] = True
    if record.state == "failed":
        view["reason"] = record.reason
    if record.error:
        view["error"] = record.error
        view["fix"] = record.fix
    if record.state == "done":
        view["links"]["video"] = f"/v1/jobs/{record.id}/video"
        view["video"] = Path(record.video).name if record.video else None
        if with_sidecar and record.sidecar:
            try:
                view["sidecar"] = json.loads(Path(record.sidecar).read_text("utf-8"))
            except (OSError, ValueError):
                view["sidecar"] = None
    return view


def valid_state(state: str | None) -> bool:
    return state is None or state in STATES
