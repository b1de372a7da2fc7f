"""Running a batch plan: the manifest kept in step with a WorkerPool, a failed line never
stopping the batch, Ctrl-C stopping the running jobs and leaving a consistent manifest, and the
summary at the end (summary.json). Never imports docker, rich or typer."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from hvinfra.batch.manifest import SUMMARY, Entry, Manifest, now
from hvinfra.batch.plan import BatchPlan, Item, Slot
from hvinfra.batch.pool import GpuNames, Job, JobOutcome, PoolEngine, WorkerPool
from hvinfra.errors import Interrupted
from hvinfra.generate.run import JobObserver, _signals_as_interrupt
from hvinfra.profiles.models import Profile
from hvinfra.records import ContainerInfo, GpuSystem

SHOWN_TAIL = 15


class BatchObserver(Protocol):
    def batch_started(self, plan: BatchPlan, to_run: int) -> None: ...
    def job_started(self, slot: Slot, item: Item) -> None: ...
    def job_observer(self, slot: Slot, item: Item) -> JobObserver: ...
    def job_finished(self, item: Item, entry: Entry) -> None: ...
    def note(self, text: str) -> None: ...
    def batch_finished(self) -> None: ...


def _log_tail(path: str, out_dir: Path) -> list[str]:
    try:
        text = (out_dir / path).read_text("utf-8", "replace")
    except OSError:
        return []
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-SHOWN_TAIL:]


def _rel(path: Path, out_dir: Path) -> str:
    try:
        return str(path.relative_to(out_dir))
    except ValueError:
        return str(path)


def job_id_for(stem: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{stem[:4]}-{os.urandom(3).hex()}"


def run_batch(
    engine: PoolEngine,
    container: ContainerInfo,
    profile: Profile,
    plan: BatchPlan,
    out_dir: Path,
    manifest: Manifest,
    observer: BatchObserver,
    *,
    kind: str,
    gpu_names: GpuNames | None = None,
    stop_timeout: float = 20.0,
    kill_stale: bool = False,
    memory_probe: Callable[[], GpuSystem] | None = None,
) -> dict[str, Any]:
    """Run the plan's lines; returns the summary (also written to summary.json). Raises
    Interrupted after Ctrl-C, once the running jobs are stopped and the manifest is saved."""
    started, started_at = time.monotonic(), now()
    manifest.batch.update(
        source=str(plan.source), kind=kind, out=str(out_dir), started_at=started_at,
        workers=[slot.name for slot in plan.slots], reuse=plan.reuse,
    )  # fmt: skip
    for item in plan.to_run:
        assert item.line.request is not None and item.line.request.seed is not None
        for suffix in (".mp4", ".json", ".log"):  # a line's names are its own: a rerun replaces
            (out_dir / f"{item.stem}{suffix}").unlink(missing_ok=True)
        manifest.prepare(
            Entry(line=item.line.number, hash=item.hash, stem=item.stem,
                  prompt=item.line.request.prompt, seed=item.line.request.seed)
        )  # fmt: skip
    manifest.save()
    by_job: dict[str, Item] = {}

    def on_start(slot: Slot, job: Job) -> None:
        item = by_job[job.job_id]
        manifest.transition(item.line.number, "running", worker=slot.name)
        observer.job_started(slot, item)

    pool = WorkerPool(
        engine, container, profile, plan.slots, kind=kind, reuse=plan.reuse,
        observer=lambda slot, job: observer.job_observer(slot, by_job[job.job_id]),
        gpu_names=gpu_names, stop_timeout=stop_timeout, on_start=on_start,
        notify=observer.note, memory_probe=memory_probe,
    )  # fmt: skip
    futures: dict[concurrent.futures.Future[JobOutcome], Item] = {}
    for item in plan.to_run:
        assert item.line.request is not None
        job = Job(job_id_for(item.stem), item.line.request, item.stem, out_dir,
                  extra={"batch": {"file": str(plan.source), "line": item.line.number,
                                   "hash": item.hash}})  # fmt: skip
        by_job[job.job_id] = item
        futures[pool.submit(job)] = item
    observer.batch_started(plan, len(futures))
    outcomes: list[JobOutcome] = []
    interrupted = False
    pool.start(kill_stale=kill_stale)
    try:
        pending = set(futures)
        with _signals_as_interrupt():  # `kill` stops the batch as Ctrl-C does
            while pending:
                done, pending = concurrent.futures.wait(
                    pending, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    _record(future, futures[future], manifest, out_dir, observer, outcomes)
    except KeyboardInterrupt:
        interrupted = True
        observer.note("stopping the running jobs inside the container (Ctrl-C)…")
        pool.cancel()
        for future, item in futures.items():
            if future.done():
                _record(future, item, manifest, out_dir, observer, outcomes)
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            pool.stop()
        for entry in manifest.entries.values():
            if entry.state == "running":
                manifest.transition(entry.line, "pending", error="interrupted")
        observer.batch_finished()
    summary = summarize(plan, manifest, outcomes, out_dir, time.monotonic() - started,
                        interrupted=interrupted, started_at=started_at)  # fmt: skip
    if interrupted:
        raise Interrupted(
            f"batch interrupted: {summary['counts']['done']} done,"
            f" {summary['counts']['pending']} left; the running jobs were stopped",
            "rerun the same command to go on where it stopped (finished lines are skipped)",
        )
    return summary


def _record(
    future: concurrent.futures.Future[JobOutcome],
    item: Item,
    manifest: Manifest,
    out_dir: Path,
    observer: BatchObserver,
    outcomes: list[JobOutcome],
) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:  # a bug, not a job failure: record it and go on
        entry = manifest.entries[item.line.number]
        if entry.state == "running":
            manifest.transition(
                item.line.number, "failed", error=f"{type(error).__name__}: {error}"
            )
            observer.job_finished(item, entry)
        return
    outcome = future.result()
    if any(o is outcome for o in outcomes):
        return
    outcomes.append(outcome)
    number = item.line.number
    if manifest.entries[number].state != "running":
        return
    files = outcome.files
    paths: dict[str, Any] = {}
    if files is not None:
        paths = {"log": _rel(files.log, out_dir)}
    if outcome.result is not None:
        result = outcome.result
        entry = manifest.transition(
            number, "done", video=_rel(result.files.video, out_dir),
            sidecar=_rel(result.files.sidecar, out_dir), duration_s=round(result.duration_s, 1),
            **paths,
        )  # fmt: skip
    elif isinstance(outcome.error, Interrupted):
        entry = manifest.transition(number, "pending", error="interrupted", **paths)
    else:
        message = str(outcome.error) if outcome.error else "failed"
        entry = manifest.transition(
            number, "failed", error=message.splitlines()[0],
            log_tail=_log_tail(paths["log"], out_dir) if paths else [], **paths,
        )  # fmt: skip
    observer.job_finished(item, entry)


def summarize(
    plan: BatchPlan,
    manifest: Manifest,
    outcomes: Sequence[JobOutcome],
    out_dir: Path,
    wall_s: float,
    *,
    interrupted: bool,
    started_at: str,
) -> dict[str, Any]:
    """summary.json: the counts over the plan's lines, wall time, seconds per video."""
    numbers = [item.line.number for item in plan.items]
    counts = manifest.counts(numbers)
    ran = [o for o in outcomes if o.result is not None]
    per_video = [o.result.duration_s for o in ran if o.result is not None]
    workers = max(1, len(plan.slots))
    summary: dict[str, Any] = {
        "source": str(plan.source),
        "out": str(out_dir),
        "started_at": started_at,
        "finished_at": now(),
        "interrupted": interrupted,
        "counts": {
            "lines": len(numbers),
            "done": counts["done"],
            "failed": counts["failed"],
            "pending": counts["pending"] + counts["running"],
            "ran": len(outcomes),
            "done_now": len(ran),
            "failed_now": sum(
                1 for o in outcomes if o.error is not None and not isinstance(o.error, Interrupted)
            ),
            "skipped_done": len(plan.skipped("done")),
            "skipped_failed": len(plan.skipped("failed")),
            "invalid": len(plan.invalid),
        },
        "wall_s": round(wall_s, 1),
        "seconds_per_video": round(sum(per_video) / len(per_video), 1) if per_video else None,
        "wall_s_per_video": round(wall_s / len(ran), 1) if ran else None,
        "workers": workers,
        "reuse": plan.reuse and any(o.reused for o in outcomes) if outcomes else plan.reuse,
        "load_s": round(sum(o.load_s for o in outcomes), 1),
        "lines": [
            {
                "line": n,
                "state": manifest.entries[n].state,
                "video": manifest.entries[n].video or None,
                "error": manifest.entries[n].error or None,
            }
            for n in numbers
            if n in manifest.entries
        ],
    }
    tmp = out_dir / f".{SUMMARY}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, out_dir / SUMMARY)
    return summary
