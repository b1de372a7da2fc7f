"""A pool of generation workers over one running container: one worker per slot (a GPU, or a
group of GPUs for xDiT), each taking the next job. Reused by `hvinfra batch` and meant for
`hvinfra serve`: start(), submit(job) -> Future, cancel_job(id), cancel(), stop().

Two kinds of worker:
- reuse: hvinfra_worker.py runs in the container, loads the official sampler once and takes
  the jobs one by one over stdin/stdout (JSON lines);
- per-line: one official sample script per job, exactly as `hvinfra generate` runs it.

Never imports docker, rich or typer: the engine and the observers come from the caller.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from hvinfra.batch.plan import Slot
from hvinfra.errors import HvinfraError, Interrupted
from hvinfra.generate import safe_output
from hvinfra.generate.job_control import (
    JOB_ENV,
    pidfile_of,
    refuse_or_kill_stale,
    signal_job,
    wrap,
)
from hvinfra.generate.measure import MemorySampler, gpu_indices
from hvinfra.generate.plan import JobPlan, build_plan, exec_env
from hvinfra.generate.request import Request
from hvinfra.generate.run import (
    JobEngine,
    JobObserver,
    JobOutput,
    JobResult,
    OutputFiles,
    SilentObserver,
    _now,
    _tar_of,
    copy_out,
    reserve_output_files,
    run_job,
    sidecar_data,
)
from hvinfra.launcher import exit_explanation
from hvinfra.profiles.models import Profile
from hvinfra.records import ContainerInfo, GpuSystem
from hvinfra.spec import LABEL_GPUS

WORKER_DIR = "/tmp/hvinfra-worker"
WORKER_SCRIPT = f"{WORKER_DIR}/hvinfra_worker.py"
READY_TIMEOUT = 120.0
MAX_EVENT_LINE = 1 << 20  # bytes of worker stdout without a newline before they are dropped
END_LINE_WAIT_S = 5.0  # at most, for a request's end line after its event (a worker that died)


class PoolEngine(JobEngine, Protocol):
    def exec_socket(self, exec_id: str, tty: bool = True) -> socket.socket: ...


@dataclass(frozen=True)
class Job:
    """One video to make: a validated request (its GPUs are the slot's), the output name."""

    job_id: str
    request: Request
    stem: str
    out_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)  # added to the sidecar (batch line …)


@dataclass
class JobOutcome:
    job: Job
    slot: str
    result: JobResult | None = None
    error: HvinfraError | None = None
    files: OutputFiles | None = None
    reused: bool = False
    load_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is not None


ObserverFactory = Callable[[Slot, Job], JobObserver]
GpuNames = Callable[[tuple[str, ...] | None], Sequence[str] | None]


def request_end_line(job_id: str) -> bytes:
    """The last stderr line hvinfra_worker.py writes for a request, before its event."""
    return f"hvinfra_worker - request {job_id} ended\n".encode()


def worker_source() -> bytes:
    return (resources.files("hvinfra") / "worker" / "hvinfra_worker.py").read_bytes()


def worker_event(line: bytes) -> dict[str, Any] | None:
    """One JSON line from the in-container worker, checked: it comes from the container, so a
    field of the wrong type is dropped, never trusted (paths still go through copy-out's own
    checks). None for a line that is not a JSON object."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    event: dict[str, Any] = {}
    for key in ("event", "id", "reason", "error"):
        if isinstance(raw.get(key), str):
            event[key] = raw[key][:2000]
    for key in ("seconds", "load_s"):
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            event[key] = float(value)
    paths = raw.get("paths")
    if isinstance(paths, list):
        event["paths"] = [p for p in paths if isinstance(p, str)]
    return event


# -- the in-container worker ----------------------------------------------------------------------
class ContainerWorker:
    """hvinfra_worker.py in the container for one slot: JSON lines over the exec's stdin and
    stdout (docker's multiplexed stream), the official code's output on stderr."""

    def __init__(
        self, engine: PoolEngine, container: ContainerInfo, kind: str, slot: Slot,
        env: dict[str, str], workdir: str,
    ) -> None:  # fmt: skip
        self.engine, self.container, self.kind, self.slot = engine, container, kind, slot
        self.env, self.workdir = env, workdir
        self.job_id = f"worker-{slot.name}-{time.time_ns()}"  # its processes carry it
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.exec_id = ""
        self._sock: socket.socket | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._reader: threading.Thread | None = None
        self._end_line = b""  # the running request's last stderr line (request_end_line)
        self._ended = threading.Event()  # set when the reader has passed that line to the sink
        self.alive = False

    def start(self, timeout: float = READY_TIMEOUT) -> str:
        """Start the worker; '' when it is ready, else why it cannot be used."""
        self.engine.put_archive(self.container.id, "/", _script_tar())
        argv = wrap(self.job_id, ["python3", WORKER_SCRIPT, "--kind", self.kind])
        self.exec_id = self.engine.exec_create(
            self.container.id, argv, stdin=True, workdir=self.workdir,
            environment={**self.env, JOB_ENV: self.job_id},
        )  # fmt: skip
        self._sock = self.engine.exec_socket(self.exec_id, tty=False)
        self._sock.settimeout(None)  # a model load may be silent for minutes: never time out
        self._reader = threading.Thread(target=self._read, name=f"worker-{self.slot.name}")
        self._reader.daemon = True
        self._reader.start()
        event = self.next_event(timeout)
        if event is None:
            return "the worker exited before it was ready"
        if event.get("event") == "ready":
            self.alive = True
            return ""
        return str(event.get("reason") or event)

    def _read(self) -> None:
        assert self._sock is not None
        buffer = b""
        lines = b""
        tail = b""  # the end of the stderr seen so far: the end line may span two frames
        try:
            while True:
                data = self._sock.recv(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 8:
                    kind, size = struct.unpack(">BxxxL", buffer[:8])
                    if len(buffer) < 8 + size:
                        break
                    payload, buffer = buffer[8 : 8 + size], buffer[8 + size :]
                    if kind == 1:
                        lines += payload
                        while b"\n" in lines:
                            line, lines = lines.split(b"\n", 1)
                            event = worker_event(line)
                            if event is not None:
                                self.events.put(event)
                        if len(lines) > MAX_EVENT_LINE:  # no newline coming: not an event
                            lines = b""
                    elif self._sink is not None:
                        self._sink(payload)
                        tail = self._watch_for_end(tail + payload)
        except OSError:
            pass
        finally:
            self.alive = False
            self._ended.set()  # the stream is over: no more output will come
            self.events.put(None)

    def _watch_for_end(self, seen: bytes) -> bytes:
        """Set `_ended` once the request's end line is in `seen`; what to keep for the next
        frame."""
        marker = self._end_line
        if marker and marker in seen:
            self._ended.set()
            return b""
        return seen[-len(marker) :] if marker else b""

    def next_event(self, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return {"event": "timeout"}

    def run(
        self, job_id: str, argv: Sequence[str], sink: Callable[[bytes], None]
    ) -> dict[str, Any]:
        """Send one request; the 'done' or 'failed' event (or None-like 'exited')."""
        assert self._sock is not None
        self._end_line = request_end_line(job_id)
        self._ended.clear()
        self._sink = sink
        try:
            message = json.dumps({"id": job_id, "argv": list(argv)}) + "\n"
            self._sock.sendall(message.encode("utf-8"))
            loaded: dict[str, Any] = {}
            while True:
                event = self.next_event(None)
                if event is None:
                    return {"event": "exited", **loaded}
                if event.get("event") == "loaded":
                    loaded = {"load_s": event.get("seconds", 0.0)}
                if event.get("event") in ("done", "failed") and event.get("id") == job_id:
                    # the event can overtake the request's last stderr lines (its progress,
                    # its traceback): wait for its end line, which the worker writes last
                    self._ended.wait(END_LINE_WAIT_S)
                    return event
        finally:
            self._sink = None
            self._end_line = b""

    def signal(self, sig: str) -> None:
        signal_job(self.engine, self.container.id, self.job_id, sig)

    def exit_code(self) -> int | None:
        with contextlib.suppress(HvinfraError):
            info = self.engine.exec_inspect(self.exec_id)
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else None
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """End of input: the worker exits; signalled if it does not."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
        if self._reader is not None:
            self._reader.join(timeout)
            if self._reader.is_alive():
                self.signal("KILL")
                self._reader.join(5.0)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        with contextlib.suppress(HvinfraError):
            self.engine.exec_run(self.container.id, ["rm", "-f", pidfile_of(self.job_id)])


def _script_tar() -> bytes:
    import io
    import tarfile

    data = worker_source()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(WORKER_DIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(folder)
        info = tarfile.TarInfo(WORKER_SCRIPT.lstrip("/"))
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Notes:
    def __init__(self, notify: Callable[[str], None]) -> None:
        self.note = notify


# -- the pool --------------------------------------------------------------------------------------
class WorkerPool:
    def __init__(
        self,
        engine: PoolEngine,
        container: ContainerInfo,
        profile: Profile,
        slots: Sequence[Slot],
        *,
        kind: str,
        reuse: bool,
        observer: ObserverFactory | None = None,
        gpu_names: GpuNames | None = None,
        stop_timeout: float = 20.0,
        on_start: Callable[[Slot, Job], None] | None = None,
        notify: Callable[[str], None] | None = None,
        memory_probe: Callable[[], GpuSystem] | None = None,
    ) -> None:
        self.engine, self.container, self.profile = engine, container, profile
        self.memory_probe = memory_probe  # NVML, sampled while each job runs
        self.slots = list(slots)
        self.kind = kind
        self.reuse = reuse
        self.observer = observer or (lambda slot, job: SilentObserver())
        self.gpu_names = gpu_names or (lambda gpus: None)
        self.stop_timeout = stop_timeout
        self.on_start = on_start
        self.notify = notify or (lambda text: None)
        self._queue: queue.Queue[tuple[Job, Future[JobOutcome]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._workers: dict[str, ContainerWorker] = {}
        self._current: dict[str, str] = {}  # slot -> the job id its processes carry
        self._futures: dict[str, Future[JobOutcome]] = {}  # job id -> its future
        self._running: dict[str, str] = {}  # job id -> slot running it
        self._stopped: set[str] = set()  # job ids stopped by cancel_job
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    # -- API ------------------------------------------------------------------------------------
    def start(self, *, kill_stale: bool = False) -> None:
        """Refuse a container that runs another hvinfra's job (or, with `kill_stale`, kill an
        orphaned one first), then start one thread per slot."""
        refuse_or_kill_stale(
            self.engine, self.container.id, self.container.name, _Notes(self.notify),
            kill_stale=kill_stale,
        )  # fmt: skip
        for slot in self.slots:
            thread = threading.Thread(target=self._loop, args=(slot,), name=f"slot-{slot.name}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def submit(self, job: Job) -> Future[JobOutcome]:
        future: Future[JobOutcome] = Future()
        with self._lock:
            self._futures[job.job_id] = future
        self._queue.put((job, future))
        return future

    def cancel_job(self, job_id: str) -> bool:
        """Cancel one job: dropped if still queued; SIGINT to its process tree if running (an
        in-container worker exits with it and starts again for the next job). False when the
        job is unknown or already finished."""
        with self._lock:
            future = self._futures.get(job_id)
            slot = self._running.get(job_id)
            marker = self._current.get(slot, "") if slot else ""
        if future is None or future.done():
            return False
        if future.cancel():
            return True
        if marker:
            with self._lock:
                self._stopped.add(job_id)
            signal_job(self.engine, self.container.id, marker, "INT")
            return True
        return False

    def cancel(self) -> None:
        """Stop every running job (SIGINT to its process tree, SIGKILL after stop_timeout);
        jobs not started yet are dropped."""
        self._cancelled.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        for _ in self._threads:
            self._queue.put(None)
        self._signal_all("INT")
        deadline = time.monotonic() + self.stop_timeout
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: kill now
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            self._signal_all("KILL")
            for thread in self._threads:
                thread.join(10.0)

    def stop(self) -> None:
        if not self._cancelled.is_set():
            for _ in self._threads:
                self._queue.put(None)
        for thread in self._threads:
            thread.join()
        for worker in list(self._workers.values()):
            worker.stop()
        self._workers.clear()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # -- inside ---------------------------------------------------------------------------------
    def _signal_all(self, sig: str) -> None:
        with self._lock:
            markers = list(self._current.values())
        for marker in markers:
            signal_job(self.engine, self.container.id, marker, sig)

    def _loop(self, slot: Slot) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, future = item
            if self._cancelled.is_set() or not future.set_running_or_notify_cancel():
                with self._lock:
                    self._futures.pop(job.job_id, None)
                continue
            try:
                future.set_result(self._run(slot, job))
            except BaseException as exc:
                future.set_exception(exc)

    def _run(self, slot: Slot, job: Job) -> JobOutcome:
        with self._lock:
            self._running[job.job_id] = slot.name
        try:
            return self._run_job(slot, job)
        finally:
            with self._lock:
                self._running.pop(job.job_id, None)
                self._futures.pop(job.job_id, None)
                self._stopped.discard(job.job_id)

    def _run_job(self, slot: Slot, job: Job) -> JobOutcome:
        outcome = JobOutcome(job, slot.name)
        request = job.request.model_copy(
            update={"gpus": list(slot.gpus) if slot.gpus is not None else None}
        )
        try:
            plan = build_plan(request, self.profile, job_id=job.job_id)
            outcome.files = files = reserve_output_files(job.out_dir, job.stem)
            if self.on_start is not None:
                self.on_start(slot, job)
            observer = self.observer(slot, job)
            use_worker = self.reuse and not plan.xdit.distributed
            worker = self._worker(slot, plan) if use_worker else None
            if worker is not None:
                with self._lock:
                    self._current[slot.name] = worker.job_id
                outcome.reused = True
                outcome.result, outcome.load_s = self._run_reused(
                    worker, slot, job, request, plan, files, observer
                )
            else:
                with self._lock:
                    self._current[slot.name] = plan.job_id
                outcome.result = run_job(
                    self.engine, request, plan, self.container, files, observer=observer,
                    gpu_names=self.gpu_names(slot.gpus), stop_timeout=self.stop_timeout,
                    extra=job.extra, memory_probe=self.memory_probe,
                    measure_gpus=gpu_indices(slot.gpus),
                )  # fmt: skip
        except HvinfraError as exc:
            outcome.error = exc
        finally:
            with self._lock:
                self._current.pop(slot.name, None)
        stopped = self._cancelled.is_set() or job.job_id in self._stopped
        if outcome.error is not None and stopped:
            outcome.error = Interrupted("interrupted", "rerun the same command to resume")
        return outcome

    def _worker(self, slot: Slot, plan: JobPlan) -> ContainerWorker | None:
        """The slot's in-container worker, started on first use; None to run per line."""
        worker = self._workers.get(slot.name)
        if worker is not None and worker.alive:
            return worker
        if worker is not None:
            self.notify(
                f"worker {slot.name} had exited (code {worker.exit_code()}); starting it again"
            )
            worker.stop(1.0)
        env = exec_env(plan, self.container.labels.get(LABEL_GPUS, "all"))
        worker = ContainerWorker(self.engine, self.container, self.kind, slot, env, plan.workdir)
        with self._lock:
            self._current[slot.name] = worker.job_id
        reason = worker.start()
        if reason:
            worker.stop(1.0)
            self.reuse = False
            self.notify(
                f"the model cannot be loaded once per worker here ({reason}): running one"
                " sample script per line"
            )
            return None
        self._workers[slot.name] = worker
        return worker

    def _run_reused(
        self,
        worker: ContainerWorker,
        slot: Slot,
        job: Job,
        request: Request,
        plan: JobPlan,
        files: OutputFiles,
        observer: JobObserver,
    ) -> tuple[JobResult, float]:
        if plan.copy_in:
            self.engine.put_archive(
                self.container.id, "/",
                _tar_of([(c.host_path, c.container_path) for c in plan.copy_in]),
            )  # fmt: skip
        if plan.save_dir_host:
            with contextlib.suppress(OSError):
                Path(plan.save_dir_host).mkdir(parents=True, exist_ok=True)
        started_at, started = _now(), time.monotonic()
        observer.started(plan, request.steps)
        ok = False
        # The worker holds the model before the job starts: its GPU's memory in use is the peak
        # (one worker per GPU); without known GPU indices no memory figure is kept.
        gpus = gpu_indices(slot.gpus)
        sampler = (
            MemorySampler(self.memory_probe, gpus, whole_gpu=True)
            if self.memory_probe is not None and gpus
            else None
        )
        try:
            stream = JobOutput(observer, request.steps)
            with (
                safe_output.open_append_own(files.log, files.log_identity) as log,
                sampler or contextlib.nullcontext(),
            ):

                def sink(data: bytes) -> None:
                    safe_output.write_all(log, data)
                    stream.feed(data)

                event = worker.run(plan.job_id, plan.argv[2:], sink)
                stream.flush()
            stream.clock.end()
            if event.get("event") != "done":
                if event.get("event") == "exited":
                    what = f"the worker exited: {exit_explanation(worker.exit_code() or -1)}"
                else:
                    what = str(event.get("error", "failed"))
                raise stream.failure(
                    f"the generation failed in {self.container.name} ({slot.name}): {what}",
                    files.log,
                )
            saved = list(event.get("paths", ())) or stream.saved
            container_path = copy_out(self.engine, self.container.id, plan, saved, files.video)
            duration = time.monotonic() - started
            data = sidecar_data(
                request, plan, container=self.container,
                image=self.engine.image(self.container.image_id),
                gpu_names=self.gpu_names(slot.gpus), env=worker.env, files=files,
                container_path=container_path, started_at=started_at, finished_at=_now(),
                duration_s=duration, rewrite=None,
            )  # fmt: skip
            load_s = event.get("load_s", 0.0)
            data["worker"] = {"reused": True, "load_s": load_s, "slot": slot.name}
            data["measurements"] = {
                "gpu_memory": sampler.peak.as_dict() if sampler is not None else None,
                "phases": stream.clock.as_dict(),
            }
            data.update(job.extra)
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
            safe_output.write_new(files.sidecar, text.encode("utf-8"))
            ok = True
            result = JobResult(files=files, container=self.container.name, duration_s=duration,
                               sidecar=data)  # fmt: skip
            return result, load_s
        finally:
            observer.finished(ok)
            if plan.copy_in:
                with contextlib.suppress(HvinfraError):
                    self.engine.exec_run(
                        self.container.id, ["rm", "-rf", f"/tmp/hvinfra-inputs/{plan.job_id}"]
                    )
