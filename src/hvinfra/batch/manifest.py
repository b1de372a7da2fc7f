"""`batch.json` in --out: each line's state, updated atomically (write to a temporary file, then
rename), so an interrupted batch always leaves a manifest a rerun can trust.

States: pending -> running -> done | failed. A line found `running` when a batch starts was cut
off (Ctrl-C, a crash) and is pending again. A rerun skips a line that is done with the same
request hash and whose video is still there; failed lines run again only with --retry-failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from hvinfra.errors import HvinfraError

MANIFEST = "batch.json"
SUMMARY = "summary.json"
VERSION = 1
State = Literal["pending", "running", "done", "failed"]
STATES: tuple[State, ...] = ("pending", "running", "done", "failed")
# Which state may follow which (a rerun may also reset done/failed lines to pending).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("running",),
    "running": ("done", "failed", "pending"),
    "done": ("pending",),
    "failed": ("pending",),
}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Entry:
    line: int
    hash: str
    stem: str
    prompt: str
    seed: int
    state: State = "pending"
    video: str = ""
    sidecar: str = ""
    log: str = ""
    error: str = ""
    log_tail: list[str] = field(default_factory=list)
    worker: str = ""
    attempts: int = 0
    started_at: str = ""
    finished_at: str = ""
    duration_s: float | None = None


class ManifestError(HvinfraError):
    pass


class Manifest:
    """The manifest of one --out folder. Thread-safe: workers report from their threads."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        data = data or {}
        self.batch: dict[str, Any] = dict(data.get("batch", {}))
        self.entries: dict[int, Entry] = {}
        for raw in data.get("lines", []):
            known = {k: v for k, v in raw.items() if k in Entry.__dataclass_fields__}
            entry = Entry(**known)
            self.entries[entry.line] = entry

    @classmethod
    def load(cls, out_dir: Path) -> Manifest:
        path = out_dir / MANIFEST
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(
                f"{path} cannot be read: {exc}",
                "move it away (the batch then starts afresh) or use another --out",
            ) from exc
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ManifestError(
                f"{path} is not a batch manifest of this hvinfra (version {VERSION})",
                "move it away or use another --out",
            )
        manifest = cls(path, data)
        for entry in manifest.entries.values():  # cut off by a crash or a kill: run again
            if entry.state == "running":
                entry.state = "pending"
                entry.error = "interrupted"
        return manifest

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": VERSION,
                "batch": self.batch,
                "lines": [asdict(self.entries[n]) for n in sorted(self.entries)],
            }

    def save(self) -> None:
        with self._lock:
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(text, "utf-8")
            os.replace(tmp, self.path)

    # -- decisions ------------------------------------------------------------------------------
    def decide(self, line: int, request_hash: str, out_dir: Path, *, retry_failed: bool) -> str:
        """'run', 'done' (skip: finished with the same request) or 'failed' (skip: failed
        before with the same request, no --retry-failed)."""
        with self._lock:
            entry = self.entries.get(line)
            if entry is None or entry.hash != request_hash:
                return "run"
            if entry.state == "done" and entry.video and (out_dir / entry.video).is_file():
                return "done"
            if entry.state == "failed" and not retry_failed:
                return "failed"
            return "run"

    def prepare(self, entry: Entry) -> None:
        """Put a line that will run into the manifest as pending (replacing an older entry)."""
        with self._lock:
            old = self.entries.get(entry.line)
            if old is not None and old.hash == entry.hash:
                entry.attempts = old.attempts
            self.entries[entry.line] = entry

    def transition(self, line: int, state: State, **fields: Any) -> Entry:
        with self._lock:
            entry = self.entries[line]
            if state not in TRANSITIONS[entry.state]:
                raise ValueError(f"line {line}: {entry.state} -> {state} is not allowed")
            entry.state = state
            for key, value in fields.items():
                setattr(entry, key, value)
            if state == "running":
                entry.attempts += 1
                entry.started_at = now()
                entry.error, entry.log_tail = "", []
            elif state in ("done", "failed"):
                entry.finished_at = now()
            self.save()
            return entry

    def counts(self, lines: Iterator[int] | list[int]) -> dict[str, int]:
        with self._lock:
            result: dict[str, int] = dict.fromkeys(STATES, 0)
            for n in lines:
                entry = self.entries.get(n)
                if entry is not None:
                    result[entry.state] += 1
            return result


@contextlib.contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """One batch per --out folder at a time (an advisory lock file)."""
    import fcntl

    lock_path = out_dir / ".batch.lock"
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ManifestError(
                f"another hvinfra batch is running with --out {out_dir}",
                "wait for it to finish, or use another --out",
            ) from None
        yield
