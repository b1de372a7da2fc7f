"""Running the queue: a worker thread takes the oldest queued job and runs it through
generate's own code path (`--no-reuse`: one sample-script process per job in the profile's
container), reporting steps to the store. Never imports docker, rich or typer: the CLI passes
an engine factory and the container."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hvinfra.errors import HvinfraError
from hvinfra.generate.job_control import pidfile_of, signal_job
from hvinfra.generate.plan import JobPlan, build_plan
from hvinfra.generate.progress import Step
from hvinfra.generate.run import JobEngine, _pre_job_checks, reserve_output_files, run_job
from hvinfra.profiles.models import Profile
from hvinfra.records import ContainerInfo, GpuSystem
from hvinfra.serve.store import JobRecord, JobStore
from hvinfra.serve.submission import stored_request

log = logging.getLogger("hvinfra.serve")


@dataclass(frozen=True)
class RunnerSetup:
    """What every job of this server shares."""

    profile: Profile
    container: ContainerInfo
    out_dir: Path
    engine_factory: Callable[[], JobEngine]
    gpu_system: GpuSystem | None = None
    host_gpu_count: int | None = None
    gpu_names: Sequence[str] | None = None
    skip_checks: bool = False
    stop_timeout: float = 5.0  # a cancelled job gets SIGINT, then SIGKILL after this long


def parse_eta(remaining: str) -> float | None:
    """tqdm's remaining time ("16:24", "1:02:03") in seconds; None when unknown."""
    try:
        parts = [int(p) for p in remaining.split(":")] if remaining else []
    except ValueError:
        return None
    if not parts:
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return float(seconds)


class _StoreObserver:
    """run_job's observer: steps go to the store (what the API and the events stream read)."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self._store = store
        self._job_id = job_id

    def started(self, plan: JobPlan, total_steps: int) -> None:
        self._store.progress(self._job_id, 0, total_steps, None)

    def line(self, text: str) -> None:
        pass

    def step(self, step: Step) -> None:
        self._store.progress(self._job_id, step.n, step.total, parse_eta(step.remaining))

    def note(self, text: str) -> None:
        pass

    def finished(self, ok: bool) -> None:
        pass


class Worker:
    """One worker: one job at a time in the profile's container."""

    mode = "per-job"

    def __init__(self, store: JobStore, setup: RunnerSetup, wakeup: threading.Event) -> None:
        self.store = store
        self.setup = setup
        self._wakeup = wakeup
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hvinfra-serve-worker", daemon=True)
        self._current: str | None = None
        self._current_done = threading.Event()

    @property
    def current(self) -> str | None:
        return self._current

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a running job is stopped in the container and marked
        failed-interrupted (as after a crash)."""
        self._stopping.set()
        self._wakeup.set()
        job_id = self._current
        if job_id is not None:
            self._stop_in_container(job_id)
        self._thread.join(timeout)

    def cancel(self, job_id: str) -> None:
        """Stop the running job `job_id` in the container (its record is flagged already)."""
        if self._current == job_id:
            threading.Thread(
                target=self._stop_in_container, args=(job_id,), daemon=True,
                name="hvinfra-serve-cancel",
            ).start()  # fmt: skip

    def _stop_in_container(self, job_id: str) -> None:
        """SIGINT to the job's process tree, then SIGKILL every half second until the runner
        has seen it end (this also catches a job whose process had not started yet)."""
        engine = self.setup.engine_factory()
        container_id = self.setup.container.id
        signal_job(engine, container_id, job_id, "INT")
        deadline = time.monotonic() + self.setup.stop_timeout
        while self._current == job_id and time.monotonic() < deadline:
            time.sleep(0.1)
        while self._current == job_id:
            signal_job(engine, container_id, job_id, "KILL")
            time.sleep(0.5)

    def _loop(self) -> None:
        engine = self.setup.engine_factory()
        while not self._stopping.is_set():
            job = self.store.claim_next()
            if job is None:
                self._wakeup.wait(1.0)
                self._wakeup.clear()
                continue
            self._current = job.id
            try:
                self._run(engine, job)
            finally:
                self._current = None

    def _run(self, engine: JobEngine, job: JobRecord) -> None:
        setup = self.setup
        try:
            request = stored_request(job.kind, job.request, job.input)
            plan = build_plan(
                request, setup.profile, job_id=job.id, host_gpu_count=setup.host_gpu_count
            )
            _pre_job_checks(
                request, plan, setup.profile, setup.out_dir, setup.gpu_system,
                gates=not setup.skip_checks,
            )  # fmt: skip
            files = reserve_output_files(setup.out_dir, plan.output_stem)
            self.store.set_files(
                job.id, video=str(files.video), sidecar=str(files.sidecar), log=str(files.log)
            )
            run_job(
                engine, request, plan, setup.container, files,
                observer=_StoreObserver(self.store, job.id), gpu_names=setup.gpu_names,
                stop_timeout=setup.stop_timeout,
            )  # fmt: skip
        except HvinfraError as exc:
            self._ended_badly(job.id, exc.message, exc.fix)
            return
        except Exception as exc:  # a bug: keep serving, record it, log the traceback
            log.exception("job %s: internal error", job.id)
            self._ended_badly(job.id, f"internal error: {exc!r}", "see the server's log")
            return
        self.store.finish(job.id, "done")

    def _ended_badly(self, job_id: str, message: str, fix: str) -> None:
        record = self.store.get(job_id)
        if record is not None and record.cancel_requested:
            with contextlib.suppress(OSError):
                self._remove_partial(record)
            self.store.finish(job_id, "cancelled", error="cancelled while running")
        elif self._stopping.is_set():
            self.store.finish(
                job_id, "failed", reason="interrupted",
                error="interrupted: the server was stopped while this job ran",
                fix="submit it again",
            )  # fmt: skip
        else:
            self.store.finish(job_id, "failed", reason="error", error=message, fix=fix)

    @staticmethod
    def _remove_partial(record: JobRecord) -> None:
        """A cancelled job keeps its log; no video or sidecar was written."""
        for name in (record.video, record.sidecar):
            if name:
                Path(name).unlink(missing_ok=True)


def stop_interrupted(
    engine: JobEngine, container: ContainerInfo, jobs: Sequence[JobRecord]
) -> None:
    """After a crash: kill what is left of the jobs that were running, in the container."""
    for job in jobs:
        signal_job(engine, container.id, job.id, "KILL")
        with contextlib.suppress(HvinfraError):
            engine.exec_run(container.id, ["rm", "-f", pidfile_of(job.id)])
