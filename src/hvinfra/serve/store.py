"""The serve queue: jobs and their states in SQLite (WAL) under the data dir, and the lock that
keeps a second server off the same data dir. Standard library only; no hvinfra imports but
errors, so the API and the runner share it without cycles."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvinfra.errors import ServeError

STATES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL = frozenset({"done", "failed", "cancelled"})
DB_NAME = "jobs.sqlite3"
LOCK_NAME = "serve.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    input TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    eta REAL,
    reason TEXT,
    error TEXT,
    fix TEXT,
    video TEXT,
    sidecar TEXT,
    log TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    state: str
    request: dict[str, Any]
    input: str | None
    created: float
    started: float | None
    finished: float | None
    step: int
    total: int
    eta: float | None
    reason: str | None  # failed: "error" or "interrupted"
    error: str | None
    fix: str | None
    video: str | None
    sidecar: str | None
    log: str | None
    cancel_requested: bool

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _record(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["request"] = json.loads(values["request"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


class DataDirLock:
    """An exclusive flock on DATA/serve.lock, held for the server's life. The kernel drops it
    when the process dies, kill -9 included, so a stale lock never blocks a restart."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, owner: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ServeError(
                f"the data dir {self.path.parent} is in use by another hvinfra serve ({holder})",
                "stop that server first, or give this one its own --data-dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, owner.encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class JobStore:
    """All job state. One connection shared by the server's threads behind a lock; every
    statement commits at once (autocommit, synced), so nothing that was answered is lost."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an answered submit survives a power cut
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._db.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    # -- writes --------------------------------------------------------------------------------
    def add(self, job_id: str, kind: str, request: dict[str, Any], input_path: str | None) -> None:
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO jobs (id, kind, state, request, input, created)"
                " VALUES (?, ?, 'queued', ?, ?, ?)",
                (job_id, kind, json.dumps(request), input_path, time.time()),
            )

    def claim_next(self) -> JobRecord | None:
        """The oldest queued job, now marked running; None when the queue is empty."""
        with self._cursor() as cur:
            cur.execute("BEGIN IMMEDIATE")
            row = cur.execute(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY rowid LIMIT 1"
            ).fetchone()
            if row is None:
                cur.execute("COMMIT")
                return None
            cur.execute(
                "UPDATE jobs SET state = 'running', started = ? WHERE id = ?",
                (time.time(), row["id"]),
            )
            cur.execute("COMMIT")
            job_id = str(row["id"])
        found = self.get(job_id)
        assert found is not None
        return found

    def set_files(self, job_id: str, *, video: str, sidecar: str, log: str) -> None:
        self._update(job_id, video=video, sidecar=sidecar, log=log)

    def progress(self, job_id: str, step: int, total: int, eta: float | None) -> None:
        self._update(job_id, step=step, total=total, eta=eta)

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        reason: str | None = None,
        error: str | None = None,
        fix: str | None = None,
    ) -> None:
        assert state in TERMINAL
        self._update(
            job_id, state=state, finished=time.time(), reason=reason, error=error, fix=fix, eta=None
        )

    def cancel_queued(self, job_id: str) -> bool:
        """Drop a queued job; False when it is no longer queued."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ?, cancel_requested = 1"
                " WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            )
            return cur.rowcount == 1

    def request_cancel(self, job_id: str) -> bool:
        """Flag a running job for cancelling; False when it is not running."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'",
                (job_id,),
            )
            return cur.rowcount == 1

    def recover(self) -> list[JobRecord]:
        """At start: jobs left `running` by a server that died are marked failed-interrupted
        (not resumed); returns them so their processes can be stopped in the container."""
        stale = self.list(state="running")
        for job in stale:
            self.finish(
                job.id, "failed", reason="interrupted",
                error="interrupted: the server stopped while this job ran; it was not resumed",
                fix="submit it again (its request is kept in this record)",
            )  # fmt: skip
        return stale

    def _update(self, job_id: str, **values: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._cursor() as cur:
            cur.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))

    # -- reads ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        with self._cursor() as cur:
            row = cur.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None else None

    def list(self, state: str | None = None, limit: int = 1000) -> list[JobRecord]:
        with self._cursor() as cur:
            if state is None:
                rows = cur.execute(
                    "SELECT * FROM jobs ORDER BY rowid DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = cur.execute(
                    "SELECT * FROM jobs WHERE state = ? ORDER BY rowid DESC LIMIT ?",
                    (state, limit),
                ).fetchall()
        return [_record(row) for row in rows]

    def count(self, state: str) -> int:
        with self._cursor() as cur:
            row = cur.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()
        return int(row[0])
