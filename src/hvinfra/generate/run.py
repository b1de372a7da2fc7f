"""Running a generation job in the profile's container, over an engine protocol.

Never imports docker, rich or typer: the CLI passes the engine and an observer (progress
display). The job runs as an argv list under a tiny `sh` wrapper that records its pid, so
Ctrl-C can stop the job's whole process tree inside the container.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from hvinfra import __version__
from hvinfra.checks import CheckResult
from hvinfra.convergence import Plan
from hvinfra.errors import HvinfraError, Interrupted, JobFailed, PreflightFailed
from hvinfra.generate.plan import JobPlan, exec_env, official_file_name_bytes
from hvinfra.generate.progress import LineSplitter, Step, failure_hint, parse_step, saved_path
from hvinfra.generate.request import I2VRequest, Request, T2VRequest
from hvinfra.launcher import Engine, PullObserver, consume, exit_explanation, require_container, up
from hvinfra.profiles.models import Profile
from hvinfra.records import ContainerInfo, ExecResult, GpuSystem, ImageInfo
from hvinfra.spec import LABEL_GPUS, RunSpec, build_run_spec

# `sh -c WRAPPER hvinfra-job PIDFILE ARGV…`: record the pid, then become the job (same pid).
PID_WRAPPER = 'echo "$$" > "$1"; shift; exec "$@"'
# `sh -c KILL_TREE hvinfra-stop PIDFILE SIGNAL`: signal the job and all its descendants (found
# through /proc, so it works with busybox and with the official Ubuntu-based images alike).
KILL_TREE = r"""
pid=$(cat "$1" 2>/dev/null); [ -n "$pid" ] || exit 0
tree() {
  local s p k v
  echo "$1"
  for s in /proc/[0-9]*/status; do
    p=${s#/proc/}; p=${p%/status}
    while read -r k v; do
      if [ "$k" = PPid: ]; then [ "$v" = "$1" ] && tree "$p"; break; fi
    done 2>/dev/null < "$s"
  done
}
kill -"$2" $(tree "$pid") 2>/dev/null
exit 0
"""
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
        return request.gpus if isinstance(request.gpus, str) else tuple(request.gpus)
    devices = profile.gpu.devices
    return (devices[0],) if isinstance(devices, list) else ("0",)


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
    from hvinfra.assets import require_assets

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
    """`stem.mp4/.json/.log`, or `stem-2…` when a previous job took the name; the log file is
    created now so that two jobs cannot pick the same name."""
    for index in range(1, 1000):
        name = stem if index == 1 else f"{stem}-{index}"
        files = OutputFiles(
            out_dir / f"{name}.mp4", out_dir / f"{name}.json", out_dir / f"{name}.log"
        )
        if files.video.exists() or files.sidecar.exists():
            continue
        try:
            files.log.touch(exist_ok=False)
        except FileExistsError:
            continue
        return files
    raise PreflightFailed(f"too many outputs named {stem}* in {out_dir}", "use another --out")


# -- the container ------------------------------------------------------------------------------
def ensure_container(
    engine: Engine,
    profile: Profile,
    *,
    no_up: bool,
    observe_pull: PullObserver = consume,
    spec: RunSpec | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> tuple[ContainerInfo, bool]:
    """The running container for the job, brought up with `up`'s plan unless --no-up.

    `spec` is the profile's RunSpec as the CLI built it (devices mode adds device nodes). A job
    never recreates a container: one that differs from the spec is kept (`on_plan` hears how it
    differs); a stopped one is started. Returns the container and whether this call started it.
    """
    if no_up:
        return require_container(engine, profile.container_name, profile.name, running=True), False
    result = up(
        engine, spec or build_run_spec(profile), profile_name=profile.name,
        observe_pull=observe_pull, no_recreate=True,
    )  # fmt: skip
    if on_plan is not None and result.plan is not None:
        on_plan(result.plan)
    return result.container, result.action != "kept"


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


# -- stopping -----------------------------------------------------------------------------------
def _signal_tree(engine: JobEngine, container_id: str, pidfile: str, sig: str) -> None:
    with contextlib.suppress(HvinfraError):
        engine.exec_run(container_id, ["/bin/sh", "-c", KILL_TREE, "hvinfra-stop", pidfile, sig])


def _wait_exec(engine: JobEngine, exec_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not engine.exec_inspect(exec_id).get("Running"):
            return True
        time.sleep(0.2)
    return not engine.exec_inspect(exec_id).get("Running")


def stop_job(
    engine: JobEngine,
    container_id: str,
    exec_id: str,
    pidfile: str,
    observer: JobObserver,
    *,
    stop_timeout: float,
) -> str:
    """SIGINT to the job's process tree; SIGKILL on a second Ctrl-C or after stop_timeout."""
    observer.note(
        f"stopping the job inside the container (Ctrl-C again to kill it now; killed after"
        f" {stop_timeout:g}s)…"
    )
    _signal_tree(engine, container_id, pidfile, "INT")
    try:
        if _wait_exec(engine, exec_id, stop_timeout):
            return "stopped with SIGINT"
    except KeyboardInterrupt:
        pass
    _signal_tree(engine, container_id, pidfile, "KILL")
    _wait_exec(engine, exec_id, 10.0)
    return "killed with SIGKILL"


# -- copying out --------------------------------------------------------------------------------
def _copy_host_file(source: Path, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".partial")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _copy_from_archive(engine: JobEngine, container_id: str, path: str, dest: Path) -> bool:
    """Write the first .mp4 of the archive of `path` to `dest` (never by the member's name)."""
    partial = dest.with_name(dest.name + ".partial")
    stream = engine.get_archive(container_id, path)
    try:
        with tarfile.open(fileobj=_ChunkReader(stream), mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".mp4"):
                    source = tar.extractfile(member)
                    assert source is not None
                    with open(partial, "wb") as sink:
                        shutil.copyfileobj(source, sink)
                    os.replace(partial, dest)
                    return True
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


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


def host_path_of(plan: JobPlan, container_path: str) -> Path | None:
    prefix = plan.save_dir.rstrip("/") + "/"
    if plan.save_dir_host and container_path.startswith(prefix):
        return Path(plan.save_dir_host) / container_path[len(prefix) :]
    return None


def copy_out(
    engine: JobEngine, container_id: str, plan: JobPlan, saved: list[str], dest: Path
) -> str:
    """Bring the job's .mp4 to `dest`: from the outputs bind mount, else via get_archive.
    Returns the file's path in the container."""
    candidates = list(dict.fromkeys(reversed(saved)))
    if not candidates and plan.save_dir_host and Path(plan.save_dir_host).is_dir():
        found = sorted(Path(plan.save_dir_host).glob("*.mp4"), key=lambda p: p.stat().st_mtime)
        candidates = [f"{plan.save_dir}/{p.name}" for p in reversed(found)]
    for container_path in candidates:
        host = host_path_of(plan, container_path)
        if host is not None and host.is_file():
            _copy_host_file(host, dest)
            return container_path
        with contextlib.suppress(HvinfraError):
            if _copy_from_archive(engine, container_id, container_path, dest):
                return container_path
    with contextlib.suppress(HvinfraError):
        if _copy_from_archive(engine, container_id, plan.save_dir, dest):
            return plan.save_dir
    raise JobFailed(
        f"the job exited 0 but no .mp4 was found in {plan.save_dir} in the container",
        "read the job's log for the script's own messages",
    )


# -- the job ------------------------------------------------------------------------------------
class JobOutput:
    """A job's output as it streams: into its log file, step bars to the observer, other lines
    kept as the tail, and the paths the script says it saved."""

    def __init__(self, log: BinaryIO, observer: JobObserver, steps: int) -> None:
        self.log, self.observer, self.steps = log, observer, steps
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.saved: list[str] = []
        self._splitter = LineSplitter()

    def _line(self, line: str) -> None:
        step = parse_step(line)
        if step is not None and step.total == self.steps:
            self.observer.step(step)
            return
        if line.strip():
            self.tail.append(line)
            self.observer.line(line)
        path = saved_path(line)
        if path:
            self.saved.append(path)

    def feed(self, data: bytes) -> None:
        self.log.write(data)
        self.log.flush()
        for line in self._splitter.feed(data):
            self._line(line)

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
        "command": {"argv": list(plan.argv), "env": dict(env), "workdir": plan.workdir},
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
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill hvinfra` stops the job like Ctrl-C does (main thread only)."""

    def _raise(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
) -> JobResult:
    env = exec_env(plan, container.labels.get(LABEL_GPUS, "all"))
    if plan.save_dir_host:
        with contextlib.suppress(OSError):
            Path(plan.save_dir_host).mkdir(parents=True, exist_ok=True)
    if plan.copy_in:
        engine.put_archive(
            container.id, "/", _tar_of([(c.host_path, c.container_path) for c in plan.copy_in])
        )
    pidfile = f"/tmp/hvinfra-job-{plan.job_id}.pid"
    argv = ["/bin/sh", "-c", PID_WRAPPER, "hvinfra-job", pidfile, *plan.argv]
    started_at, started = _now(), time.monotonic()
    exec_id = ""
    observer.started(plan, request.steps)
    ok = False
    try:
        with open(files.log, "ab") as log, _sigterm_as_interrupt():
            stream = JobOutput(log, observer, request.steps)
            try:
                exec_id = engine.exec_create(
                    container.id, argv, environment=env, workdir=plan.workdir
                )
                for out, err in engine.exec_stream(exec_id):
                    for chunk in (out, err):
                        if chunk:
                            stream.feed(chunk)
                stream.flush()
            except KeyboardInterrupt:
                how = "before it started"
                if exec_id:
                    how = stop_job(
                        engine, container.id, exec_id, pidfile, observer, stop_timeout=stop_timeout
                    )
                raise Interrupted(
                    f"interrupted: the job was {how} inside {container.name}; nothing was copied",
                    f"its log so far is in {files.log}",
                ) from None
        code = _exit_code(engine, exec_id)
        if code != 0:
            raise stream.failure(
                f"the generation job failed in {container.name}: {exit_explanation(code)}",
                files.log,
            )
        try:
            container_path = copy_out(engine, container.id, plan, stream.saved, files.video)
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while copying the video out; nothing was kept",
                f"the video is still in the container under {plan.save_dir}",
            ) from None
        duration = time.monotonic() - started
        data = sidecar_data(
            request, plan, container=container, image=engine.image(container.image_id),
            gpu_names=gpu_names, env=env, files=files, container_path=container_path,
            started_at=started_at, finished_at=_now(), duration_s=duration, rewrite=rewrite,
        )  # fmt: skip
        files.sidecar.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        ok = True
        return JobResult(files=files, container=container.name, duration_s=duration, sidecar=data)
    finally:
        observer.finished(ok)
        with contextlib.suppress(HvinfraError, KeyboardInterrupt):
            engine.exec_run(
                container.id, ["rm", "-rf", pidfile, f"/tmp/hvinfra-inputs/{plan.job_id}"]
            )


def _exit_code(engine: JobEngine, exec_id: str) -> int:
    for _ in range(50):
        info = engine.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        time.sleep(0.1)
    code = engine.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else -1
