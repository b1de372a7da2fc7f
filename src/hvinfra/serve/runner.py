"""Running the queue on the batch workers (hvinfra.batch.pool): one worker per GPU slot, each
loading the model once (reuse) or running one official sample script per job (`--no-reuse`,
generate's own code path). A feeder thread hands the oldest queued job to the pool whenever a
slot is free, so the queue itself stays in the store; steps go to the store as they come.
Never imports docker, rich or typer: the CLI passes an engine factory and the container."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from hvinfra.batch.plan import Slot
from hvinfra.batch.pool import Job, JobOutcome, PoolEngine, WorkerPool
from hvinfra.errors import HvinfraError
from hvinfra.generate.job_control import signal_job
from hvinfra.generate.plan import JobPlan, build_plan, output_stem
from hvinfra.generate.progress import Step
from hvinfra.generate.run import _pre_job_checks
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
    engine_factory: Callable[[], PoolEngine]
    slots: tuple[Slot, ...] = (Slot("gpu", None),)
    reuse: bool = False
    gpu_system: GpuSystem | None = None
    host_gpu_count: int | None = None
    gpu_names: Sequence[str] | None = None
    memory_probe: Callable[[], GpuSystem] | None = None  # NVML, sampled while each job runs
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


class _ServePool(WorkerPool):
    """The batch pool plus what a server needs after cancel_job's SIGINT: SIGKILL for a job
    (with a reused worker: the worker) that ignores it."""

    def kill_job(self, job_id: str) -> None:
        with self._lock:
            slot = self._running.get(job_id)
            marker = self._current.get(slot, "") if slot else ""
        if marker:
            signal_job(self.engine, self.container.id, marker, "KILL")


class PoolWorkers:
    """The pool fed from the store: at most one claimed job per free slot."""

    def __init__(self, store: JobStore, setup: RunnerSetup, wakeup: threading.Event) -> None:
        self.store = store
        self.setup = setup
        self.mode = "reuse" if setup.reuse else "per-job"
        self._wakeup = wakeup
        self._stopping = threading.Event()
        self._free = threading.Semaphore(len(setup.slots))
        self._lock = threading.Lock()
        self._slot_of: dict[str, str] = {}  # running job -> its slot
        self._claimed: set[str] = set()
        self.pool = _ServePool(
            setup.engine_factory(), setup.container, setup.profile, setup.slots,
            kind=setup.profile.workload, reuse=setup.reuse,
            observer=lambda slot, job: _StoreObserver(store, job.job_id),
            gpu_names=lambda gpus: setup.gpu_names, stop_timeout=setup.stop_timeout,
            on_start=self._on_start, notify=lambda text: log.warning("%s", text),
            memory_probe=setup.memory_probe,
        )  # fmt: skip
        self._feeder = threading.Thread(target=self._feed, name="hvinfra-serve-feed", daemon=True)

    @property
    def current(self) -> str | None:
        """A running job (the first slot's), for /v1/health."""
        with self._lock:
            return next(iter(self._slot_of), None)

    def busy(self) -> list[dict[str, str | None]]:
        with self._lock:
            running = {slot: job for job, slot in self._slot_of.items()}
        return [{"slot": s.name, "job": running.get(s.name)} for s in self.setup.slots]

    def start(self) -> None:
        """Kill what a dead server left in the container (jobs and model-holding workers whose
        hvinfra is gone); a live job of another hvinfra is refused (ContainerStateError)."""
        self.pool.start(kill_stale=True)
        self._feeder.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; running jobs are stopped in the container and marked
        failed-interrupted (as after a crash)."""
        self._stopping.set()
        self._wakeup.set()
        self._feeder.join(5.0)
        self.pool.cancel()
        self.pool.stop()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            slot = self._slot_of.get(job_id)
            claimed = job_id in self._claimed
        if slot is not None or claimed:
            threading.Thread(
                target=self._stop_job, args=(job_id,), daemon=True, name="hvinfra-serve-cancel"
            ).start()

    def _running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._claimed

    def _stop_job(self, job_id: str) -> None:
        """SIGINT to the job's processes (with a reused worker: the worker, which the pool
        starts again for the next job), then SIGKILL every half second after stop_timeout
        until the job has ended."""
        deadline = time.monotonic() + self.setup.stop_timeout
        asked = False
        while self._running(job_id):
            if not asked:
                asked = self.pool.cancel_job(job_id)
            elif time.monotonic() >= deadline:
                self.pool.kill_job(job_id)
                time.sleep(0.4)
            time.sleep(0.1)

    def _on_start(self, slot: Slot, job: Job) -> None:
        with self._lock:
            self._slot_of[job.job_id] = slot.name

    def _feed(self) -> None:
        while not self._stopping.is_set():
            if not self._free.acquire(timeout=1.0):
                continue
            job = None if self._stopping.is_set() else self.store.claim_next()
            if job is None:
                self._free.release()
                self._wakeup.wait(1.0)
                self._wakeup.clear()
                continue
            with self._lock:
                self._claimed.add(job.id)
            self._submit(job)

    def _submit(self, record: JobRecord) -> None:
        setup = self.setup
        try:
            request = stored_request(record.kind, record.request, record.input)
            gpus = setup.slots[0].gpus
            plan = build_plan(
                request.model_copy(update={"gpus": list(gpus) if gpus is not None else None}),
                setup.profile, job_id=record.id, host_gpu_count=setup.host_gpu_count,
            )  # fmt: skip
            _pre_job_checks(
                request, plan, setup.profile, setup.out_dir, setup.gpu_system,
                gates=not setup.skip_checks,
            )  # fmt: skip
            assert request.seed is not None
            job = Job(record.id, request, output_stem(request, request.seed), setup.out_dir)
        except HvinfraError as exc:
            self._finished(record.id, None, exc)
            return
        future = self.pool.submit(job)
        future.add_done_callback(lambda done: self._done(record.id, done))

    def _done(self, job_id: str, future: Future[JobOutcome]) -> None:
        if future.cancelled():
            self._finished(job_id, None, HvinfraError("the server stopped", "submit it again"))
            return
        error = future.exception()
        if error is not None:
            log.error("job %s: internal error", job_id, exc_info=error)
            self._finished(job_id, None, HvinfraError(f"internal error: {error!r}", "see the log"))
            return
        self._finished(job_id, future.result(), None)

    def _finished(
        self, job_id: str, outcome: JobOutcome | None, error: HvinfraError | None
    ) -> None:
        try:
            if outcome is not None and outcome.files is not None:
                files = outcome.files
                self.store.set_files(
                    job_id, video=str(files.video), sidecar=str(files.sidecar), log=str(files.log)
                )
            if outcome is not None and outcome.ok:
                self.store.finish(job_id, "done")
            else:
                if error is None and outcome is not None:
                    error = outcome.error
                assert error is not None
                self._ended_badly(job_id, error.message, error.fix)
        finally:
            with self._lock:
                self._slot_of.pop(job_id, None)
                self._claimed.discard(job_id)
            self._free.release()
            self._wakeup.set()

    def _ended_badly(self, job_id: str, message: str, fix: str) -> None:
        record = self.store.get(job_id)
        if record is not None and record.cancel_requested:
            for name in (record.video, record.sidecar):
                if name:
                    with contextlib.suppress(OSError):
                        Path(name).unlink(missing_ok=True)
            self.store.finish(job_id, "cancelled", error="cancelled while running")
        elif self._stopping.is_set():
            self.store.finish(
                job_id, "failed", reason="interrupted",
                error="interrupted: the server was stopped while this job ran",
                fix="submit it again",
            )  # fmt: skip
        else:
            self.store.finish(job_id, "failed", reason="error", error=message, fix=fix)
