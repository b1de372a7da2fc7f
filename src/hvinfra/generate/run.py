"""Running a generation job in the profile's container, over an engine protocol.

Never imports docker, rich or typer: the CLI passes the engine and an observer (progress
display). The job runs as an argv list under a tiny `sh` wrapper that records its pid, so
Ctrl-C can stop the job's whole process tree inside the container (generate/job_control.py).
Whatever the job leaves behind is untrusted: copy-out and every write into --out go through
generate/safe_output.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from hvinfra import __version__
from hvinfra.argv import REDACTED, is_secret_name
from hvinfra.checks import CheckResult
from hvinfra.errors import (
    ContainerStateError,
    DockerUnreachable,
    HvinfraError,
    Interrupted,
    JobFailed,
    OutputError,
    PreflightFailed,
)
from hvinfra.generate import safe_output
from hvinfra.generate.job_control import JOB_ENV, pidfile_of, refuse_or_kill_stale, stop_job, wrap
from hvinfra.generate.measure import MemorySampler, PhaseClock
from hvinfra.generate.plan import JobPlan, exec_env, official_file_name_bytes
from hvinfra.generate.progress import LineSplitter, Step, failure_hint, parse_step, saved_path
from hvinfra.generate.request import I2VRequest, Request, T2VRequest
from hvinfra.gpu_selection import GpuSelection
from hvinfra.launcher import (
    EXIT_SIGNALS,
    Engine,
    exit_explanation,
)
from hvinfra.profiles.models import Profile
from hvinfra.records import ContainerInfo, ExecResult, GpuSystem, ImageInfo
from hvinfra.spec import LABEL_GPUS

MAX_FILE_NAME_BYTES = 255
TAIL_LINES = 40
SHOWN_TAIL_LINES = 15


class JobEngine(Engine, Protocol):
    def exec_create(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        detach_keys: str | None = None,
    ) -> str: ...
    def exec_stream(self, exec_id: str) -> Iterator[tuple[bytes | None, bytes | None]]: ...
    def exec_inspect(self, exec_id: str) -> dict[str, Any]: ...
    def exec_run(self, container_id: str, argv: Sequence[str]) -> ExecResult: ...
    def put_archive(self, container_id: str, path: str, data: bytes) -> None: ...
    def get_archive(self, container_id: str, path: str) -> Iterator[bytes]: ...


class JobObserver(Protocol):
    def started(self, plan: JobPlan, total_steps: int) -> None: ...
    def line(self, text: str) -> None: ...
    def step(self, step: Step) -> None: ...
    def note(self, text: str) -> None: ...
    def finished(self, ok: bool) -> None: ...


class SilentObserver:
    def started(self, plan: JobPlan, total_steps: int) -> None:
        pass

    def line(self, text: str) -> None:
        pass

    def step(self, step: Step) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def finished(self, ok: bool) -> None:
        pass


@dataclass(frozen=True)
class OutputFiles:
    video: Path
    sidecar: Path
    log: Path
    log_identity: tuple[int, int] = (0, 0)  # (device, inode) of the log this job created


@dataclass(frozen=True)
class JobResult:
    files: OutputFiles
    container: str
    duration_s: float
    sidecar: dict[str, Any]


# -- checks -------------------------------------------------------------------------------------
def job_selection(request: Request, profile: Profile) -> str | tuple[str, ...]:
    """The GPUs a job runs on: --gpus, else the container's first GPU."""
    if request.gpus is not None:
        return GpuSelection.of(request.gpus).value
    return (GpuSelection.of(profile.gpu.devices).first(),)


def vram_gate(request: Request, profile: Profile, system: GpuSystem) -> list[CheckResult]:
    """Refuse a job that does not fit the selected GPUs' free memory; return the warnings."""
    from hvinfra import requirements
    from hvinfra.checks import failed, job_vram_checks

    results = job_vram_checks(
        requirements.load(), system, workload=request.kind, resolution=request.resolution,
        selection=job_selection(request, profile), fp8=getattr(request, "fp8", False),
        cpu_offload=request.cpu_offload,
    )  # fmt: skip
    bad = failed(results)
    if bad:
        raise PreflightFailed(
            "not enough GPU memory for this job: "
            + "; ".join(f"{r.title}: {r.detail}" for r in bad),
            bad[0].fix,
        )
    return [r for r in results if r.status == "warn"]


def _pre_job_checks(
    request: Request,
    plan: JobPlan,
    profile: Profile,
    out_dir: Path,
    gpu_system: GpuSystem | None = None,
    *,
    gates: bool = True,
) -> list[CheckResult]:
    """What must hold before anything heavy starts: the prompt's file name, the inputs and the
    output folder; then, unless `gates` is off (--skip-checks), the model code and weights
    (exit 11) and the VRAM gate when NVML answered (exit 10). Returns the warnings."""
    from hvinfra.asset_probe import require_assets

    name_bytes = official_file_name_bytes(request.prompt, request.seed or 0)
    if name_bytes > MAX_FILE_NAME_BYTES:
        raise PreflightFailed(
            f"the sample script would name the video after the prompt's first 100 characters:"
            f" {name_bytes} bytes, over the file system's {MAX_FILE_NAME_BYTES}-byte limit, so"
            " it would fail at the very end, after the whole generation",
            "use fewer non-ASCII characters in the first 100 characters of the prompt, or"
            " --rewrite normal (which writes the prompt in English)",
        )
    inputs: list[tuple[str, str]] = []
    if isinstance(request, I2VRequest):
        inputs.append(("--image", request.image))
        if request.lora is not None:
            inputs.append(("--lora", request.lora))
    for flag, name in inputs:
        path = Path(name)
        if not path.is_file():
            raise PreflightFailed(f"{flag} {path}: no such file", f"check the path given to {flag}")
        if not os.access(path, os.R_OK):
            raise PreflightFailed(
                f"{flag} {path}: not readable", f"check the permissions of {path}"
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreflightFailed(
            f"cannot create the output folder {out_dir}: {exc.strerror or exc}",
            "choose another folder with --out",
        ) from exc
    if not os.access(out_dir, os.W_OK):
        raise PreflightFailed(f"cannot write to {out_dir}", "choose another folder with --out")
    if not gates:
        return []
    require_assets(profile)
    return vram_gate(request, profile, gpu_system) if gpu_system is not None else []


def reserve_output_files(out_dir: Path, stem: str) -> OutputFiles:
    """`stem.mp4/.json/.log`, or `stem-2…` when a previous job (or anything else, a planted
    link included) took the name; the log file is created now, with O_EXCL|O_NOFOLLOW, so that
    two jobs cannot pick the same name and nothing is written through a link."""
    for index in range(1, 1000):
        name = stem if index == 1 else f"{stem}-{index}"
        video, sidecar, log = (out_dir / f"{name}{ext}" for ext in (".mp4", ".json", ".log"))
        if any(os.path.lexists(path) for path in (video, sidecar, log)):
            continue
        try:
            fd = safe_output.create_new(log)
        except OutputError:
            continue
        try:
            identity = safe_output.identity_of(fd)
        finally:
            os.close(fd)
        return OutputFiles(video, sidecar, log, identity)
    raise PreflightFailed(f"too many outputs named {stem}* in {out_dir}", "use another --out")


def _tar_of(copies: Sequence[tuple[str, str]]) -> bytes:
    """A tar to extract at `/` holding each host file at its container path (owner root)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        made: set[str] = set()
        for host, target in copies:
            parts = Path(target.lstrip("/")).parts
            for depth in range(2, len(parts)):  # /tmp itself is left alone
                folder = "/".join(parts[:depth])
                if folder not in made:
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    made.add(folder)
            data = Path(host).read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- copying out --------------------------------------------------------------------------------
def _copy_from_archive(engine: JobEngine, container_id: str, path: str, dest: Path) -> bool:
    """Write the first regular .mp4 of the archive of `path` to `dest` (never by the member's
    name); a link or other non-regular .mp4 is refused."""
    stream = engine.get_archive(container_id, path)
    with tarfile.open(fileobj=_ChunkReader(stream), mode="r|") as tar:
        for member in tar:
            if not member.name.endswith(".mp4"):
                continue
            if not member.isfile():
                raise OutputError(
                    f"the job's output {path} in the container is a link or another"
                    " non-regular file; links from the container are never followed",
                    "the sample script must write a plain .mp4 file into its --save-path",
                )
            source = tar.extractfile(member)
            assert source is not None
            safe_output.copy_stream(source, dest, member.size)  # type: ignore[arg-type]
            return True
    return False


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def _checked_parts(plan: JobPlan, container_path: str) -> tuple[str, ...]:
    parts = safe_output.relative_parts(container_path, plan.save_dir)
    if parts is None:
        raise OutputError(
            f"the job reported its video at {container_path!r}, which is not inside its save"
            f" folder {plan.save_dir} (or goes through '..'); refused to read it",
            "the sample script must save into its --save-path; read the job's log",
        )
    return parts


def _copy_from_host(plan: JobPlan, parts: tuple[str, ...], dest: Path) -> bool:
    """From the outputs bind mount, never following a link below the mount's host folder."""
    if not plan.save_dir_host:
        return False
    folder = Path(plan.save_dir_host)
    try:
        source = safe_output.open_below(folder.parent, (folder.name, *parts))
    except FileNotFoundError:
        return False
    with source:
        safe_output.copy_stream(source, dest, os.fstat(source.fileno()).st_size)
    return True


def copy_out(
    engine: JobEngine, container_id: str, plan: JobPlan, saved: list[str], dest: Path
) -> str:
    """Bring the job's .mp4 to `dest`: from the outputs bind mount, else via get_archive.
    Returns the file's path in the container. Paths the job printed are untrusted: only a
    regular file inside its save folder is taken."""
    candidates = list(dict.fromkeys(reversed(saved)))
    for container_path in candidates:
        _checked_parts(plan, container_path)
    if not candidates and plan.save_dir_host:
        folder = Path(plan.save_dir_host)
        found = safe_output.regular_files_in(folder.parent, folder.name, ".mp4")
        candidates = [f"{plan.save_dir}/{name}" for name in found]
    for container_path in candidates:
        if _copy_from_host(plan, _checked_parts(plan, container_path), dest):
            return container_path
        if _archive_or_none(engine, container_id, container_path, dest):
            return container_path
    if _archive_or_none(engine, container_id, plan.save_dir, dest):
        return plan.save_dir
    raise JobFailed(
        f"the job exited 0 but no .mp4 was found in {plan.save_dir} in the container",
        "read the job's log for the script's own messages",
    )


def _archive_or_none(engine: JobEngine, container_id: str, path: str, dest: Path) -> bool:
    try:
        return _copy_from_archive(engine, container_id, path, dest)
    except OutputError:
        raise
    except HvinfraError:
        return False


# -- the job ------------------------------------------------------------------------------------
class JobOutput:
    """Reading a job's output as it streams: step bars to the observer and the phase clock,
    other lines kept as the tail, and the paths the script says it saved (the caller writes the
    bytes to the log)."""

    def __init__(self, observer: JobObserver, steps: int) -> None:
        self.observer, self.steps = observer, steps
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.saved: list[str] = []
        self.clock = PhaseClock(steps)
        self._splitter = LineSplitter()

    def _line(self, line: str) -> None:
        step = parse_step(line)
        if step is not None and step.total == self.steps:
            self.clock.step(step)
            self.observer.step(step)
            return
        if line.strip():
            self.tail.append(line)
            self.observer.line(line)
        path = saved_path(line)
        if path:
            self.saved.append(path)

    def feed(self, data: bytes) -> None:
        for line in self._splitter.feed(data):
            self._line(line)
        current = parse_step(self._splitter.pending)
        if current is not None and current.total == self.steps:
            self.clock.step(current)  # timed on arrival (see pending)

    def flush(self) -> None:
        for line in self._splitter.flush():
            self._line(line)

    def failure(self, what: str, log_path: Path) -> JobFailed:
        """The JobFailed for a job that ended badly: what happened, its last lines, a hint."""
        shown = "\n".join("    " + line for line in list(self.tail)[-SHOWN_TAIL_LINES:])
        hint = failure_hint("\n".join(self.tail))
        return JobFailed(
            what + (f"\n  last log lines:\n{shown}" if shown else "\n  (it printed nothing)"),
            (hint + "; " if hint else "") + f"the whole log is in {log_path}",
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sidecar_data(
    request: Request,
    plan: JobPlan,
    *,
    container: ContainerInfo,
    image: ImageInfo | None,
    gpu_names: Sequence[str] | None,
    env: Mapping[str, str],
    files: OutputFiles,
    container_path: str,
    started_at: str,
    finished_at: str,
    duration_s: float,
    rewrite: Mapping[str, Any] | None,
) -> dict[str, Any]:
    effective: dict[str, Any] = {
        "flow_shift": request.effective_flow_shift,
        "embedded_cfg_scale": request.embedded_cfg_scale,
        "frames": request.frames,
        "steps": request.steps,
        "seed": request.seed,
    }
    if isinstance(request, T2VRequest):
        height, width = request.video_size
        effective["video_size"] = {"height": height, "width": width}
    return {
        "hvinfra_version": __version__,
        "job_id": plan.job_id,
        "kind": plan.kind,
        "request": request.model_dump(mode="json"),
        "effective": effective,
        "rewrite": dict(rewrite) if rewrite else None,
        "command": {
            "argv": list(plan.argv),
            "env": {k: REDACTED if is_secret_name(k) else v for k, v in env.items()},
            "workdir": plan.workdir,
        },
        "xdit": {
            "nproc_per_node": plan.xdit.nproc,
            "ulysses_degree": plan.xdit.ulysses,
            "ring_degree": plan.xdit.ring,
        },
        "container": {"name": container.name, "id": container.id},
        "image": {
            "ref": container.image,
            "id": container.image_id,
            "repo_digests": list(image.repo_digests) if image else [],
        },
        "gpus": {
            "requested": plan.gpus
            if isinstance(plan.gpus, str) or plan.gpus is None
            else list(plan.gpus),
            "container": container.labels.get(LABEL_GPUS, ""),
            "names": list(gpu_names) if gpu_names is not None else None,
        },
        "output": {
            "video": files.video.name,
            "log": files.log.name,
            "container_path": container_path,
        },
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": round(duration_s, 1),
        "exit_code": 0,
    }


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """`kill hvinfra` (SIGTERM) and a closed terminal (SIGHUP) stop the job like Ctrl-C does
    (main thread only)."""

    def _raise(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _LogFull(Exception):
    """The log could not be written: --out is full."""


def _remove_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _container_gone(engine: JobEngine, container: ContainerInfo, code: int) -> HvinfraError | None:
    """What happened to the container under the job, when it is no longer running. A job
    killed by a signal (or lost) may be the container going away: its state settles first."""
    deadline = time.monotonic() + (5.0 if code < 0 or code >= 128 else 0.0)
    while True:
        try:
            now = engine.container(container.id)
        except DockerUnreachable:
            return None
        if now is None or not now.running or now.status == "removing":
            break
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)
    if now is None or now.status == "removing":
        return ContainerStateError(
            f"the container {container.name} was removed while the job ran (docker rm -f?);"
            " the job was lost with it",
            "start it again and rerun the job (`hvinfra generate` starts it; or `hvinfra up`)",
        )
    if now.running:
        return None
    cause = (
        "the out-of-memory killer stopped it (OOMKilled)"
        if now.oom_killed
        else f"it was stopped from outside (docker stop?), exit code {now.exit_code}"
        + (f" ({EXIT_SIGNALS[now.exit_code]})" if now.exit_code in EXIT_SIGNALS else "")
        + ", not by the out-of-memory killer (OOMKilled is false)"
    )
    return ContainerStateError(
        f"the container {container.name} stopped while the job ran: {cause}",
        "read `hvinfra logs`, then rerun the job (generate starts the container again)",
    )


def _daemon_lost(exc: DockerUnreachable, container: ContainerInfo, plan: JobPlan) -> HvinfraError:
    return DockerUnreachable(
        f"lost the Docker daemon while job {plan.job_id} ran in {container.name}: {exc.message}",
        f"{exc.fix}; the job may still be running in the container: the next `hvinfra generate`"
        " finds it and offers --kill-stale",
    )


def run_job(
    engine: JobEngine,
    request: Request,
    plan: JobPlan,
    container: ContainerInfo,
    files: OutputFiles,
    *,
    observer: JobObserver,
    gpu_names: Sequence[str] | None = None,
    stop_timeout: float = 20.0,
    rewrite: Mapping[str, Any] | None = None,
    memory_probe: Callable[[], GpuSystem] | None = None,
    measure_gpus: Sequence[int] = (),
    extra: Mapping[str, Any] | None = None,
    kill_stale: bool = False,
) -> JobResult:
    """Run one job to its .mp4, sidecar and log. `memory_probe` (NVML) is sampled while it runs
    for the memory peak on `measure_gpus`; `extra` is merged into the sidecar (e.g. the
    synthetic-weights marker, a batch's line)."""
    env = exec_env(plan, container.labels.get(LABEL_GPUS, "all"))
    try:
        refuse_or_kill_stale(engine, container.id, container.name, observer, kill_stale=kill_stale)
    except HvinfraError:
        _remove_quietly(files.log)
        raise
    if plan.save_dir_host:
        with contextlib.suppress(OSError):
            Path(plan.save_dir_host).mkdir(parents=True, exist_ok=True)
    if plan.copy_in:
        engine.put_archive(
            container.id, "/", _tar_of([(c.host_path, c.container_path) for c in plan.copy_in])
        )
    argv = wrap(plan.job_id, plan.argv)
    started_at, started = _now(), time.monotonic()
    stream = JobOutput(observer, request.steps)
    exec_id = ""
    observer.started(plan, request.steps)
    ok = False
    sampler = MemorySampler(memory_probe, measure_gpus) if memory_probe is not None else None
    try:
        with (
            safe_output.open_append_own(files.log, files.log_identity) as log,
            _signals_as_interrupt(),
            sampler or contextlib.nullcontext(),
        ):
            try:
                exec_id = engine.exec_create(
                    container.id, argv, environment={**env, JOB_ENV: plan.job_id},
                    workdir=plan.workdir,
                )  # fmt: skip
                for out, err in engine.exec_stream(exec_id):
                    for chunk in (out, err):
                        if chunk:
                            try:
                                safe_output.write_all(log, chunk)
                            except OSError as exc:
                                if safe_output.is_full(exc):
                                    raise _LogFull from exc
                                raise
                            stream.feed(chunk)
                stream.flush()
            except KeyboardInterrupt:
                how = "before it started"
                if exec_id:
                    how = stop_job(engine, container.id, plan.job_id, observer, grace=stop_timeout)
                raise Interrupted(
                    f"interrupted: the job was {how} inside {container.name}; nothing was copied"
                    " (exit code 130)",
                    f"its log so far is in {files.log}",
                ) from None
            except _LogFull:
                how = stop_job(engine, container.id, plan.job_id, observer, grace=0, force=True)
                _remove_quietly(files.log)
                error = safe_output.disk_full(files.log.parent, None, "the job's log")
                error.message += f" (the job was {how})"
                raise error from None
            except DockerUnreachable as exc:
                raise _daemon_lost(exc, container, plan) from None
        stream.clock.end()
        try:
            code = _exit_code(engine, exec_id)
        except ContainerStateError:
            code = -1
        except DockerUnreachable as exc:
            raise _daemon_lost(exc, container, plan) from None
        if code != 0:
            gone = _container_gone(engine, container, code)
            if gone is not None:
                raise gone
            raise stream.failure(
                f"the generation job failed in {container.name}: {exit_explanation(code)}",
                files.log,
            )
        try:
            with _signals_as_interrupt():
                container_path = copy_out(engine, container.id, plan, stream.saved, files.video)
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while copying the video out; nothing was kept",
                f"the video is still in the container under {plan.save_dir}",
            ) from None
        except OutputError as exc:
            if "is full" in exc.message:
                _remove_quietly(files.log)
            raise
        duration = time.monotonic() - started
        data = sidecar_data(
            request, plan, container=container, image=engine.image(container.image_id),
            gpu_names=gpu_names, env=env, files=files, container_path=container_path,
            started_at=started_at, finished_at=_now(), duration_s=duration, rewrite=rewrite,
        )  # fmt: skip
        data["measurements"] = {
            "gpu_memory": sampler.peak.as_dict() if sampler is not None else None,
            "phases": stream.clock.as_dict(),
        }
        data.update(extra or {})
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        try:
            safe_output.write_new(files.sidecar, text.encode("utf-8"))
        except OutputError:
            _remove_quietly(files.video, files.log)
            raise
        ok = True
        return JobResult(files=files, container=container.name, duration_s=duration, sidecar=data)
    finally:
        observer.finished(ok)
        with contextlib.suppress(HvinfraError, KeyboardInterrupt):
            engine.exec_run(
                container.id,
                ["rm", "-rf", pidfile_of(plan.job_id), f"/tmp/hvinfra-inputs/{plan.job_id}"],
            )


def _exit_code(engine: JobEngine, exec_id: str) -> int:
    for _ in range(50):
        info = engine.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        time.sleep(0.1)
    code = engine.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else -1
