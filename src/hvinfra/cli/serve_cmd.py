"""`hvinfra serve t2v|i2v`: start the profile's container as `up` does, then an HTTP job API
and a web page (FastAPI + uvicorn) on the host. fastapi/uvicorn load inside the command."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hvinfra.cli.common import ProfileFileOpt, SetOpt

if TYPE_CHECKING:
    import socket

    from hvinfra.context import AppContext
    from hvinfra.output import Output

MIN_TOKEN_CHARS = 16
TOKEN_HOWTO = (
    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > serve.token;"
    " chmod 600 serve.token"
)


def default_data_dir(kind: str, env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local/share")
    return Path(base) / "hvinfra" / "serve" / kind


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(host: str, token_file: Path | None) -> str | None:
    """The token the API requires: the file's content; None on loopback without a file.
    Binding elsewhere without one is refused."""
    from hvinfra.errors import ServeError

    if token_file is None:
        if is_loopback(host):
            return None
        raise ServeError(
            f"--host {host} makes the API reachable from other machines, so it needs a token",
            f"make one and pass it: {TOKEN_HOWTO}; then --token-file serve.token",
        )
    try:
        token = token_file.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeError(
            f"cannot read the token file {token_file}: {exc}", "check the path and permissions"
        ) from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ServeError(
            f"the token in {token_file} is too short (under {MIN_TOKEN_CHARS} characters) or"
            " holds spaces",
            f"use a long random one: {TOKEN_HOWTO}",
        )
    return token


def bind(host: str, port: int) -> socket.socket:
    import socket

    from hvinfra.errors import ServeError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "pick another --port, or stop what uses it",
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        kind: str = typer.Argument(..., help="t2v or i2v: the jobs this server runs."),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to listen on (off-loopback needs --token-file)."
        ),
        port: int = typer.Option(8188, "--port", help="TCP port (0: any free port)."),
        out: Path | None = typer.Option(
            None, "--out", "-o", help="Folder for the videos (default: DATA_DIR/videos)."
        ),
        data_dir: Path | None = typer.Option(
            None,
            "--data-dir",
            help="Queue database and uploads (default: $XDG_DATA_HOME/hvinfra/serve/KIND).",
        ),
        gpus: str | None = typer.Option(
            None, "--gpus", help="GPUs for the container: all, 0,1 or GPU UUIDs."
        ),
        reuse: bool | None = typer.Option(
            None,
            "--reuse/--no-reuse",
            help="One worker per GPU that loads the model once (default when the code is at the"
            " commit the worker knows), or one sample-script process per job.",
        ),
        token_file: Path | None = typer.Option(
            None, "--token-file", help="File holding the API token (Authorization: Bearer)."
        ),
        skip_checks: bool = typer.Option(
            False,
            "--skip-checks",
            help="Run jobs without the VRAM gate and the model-asset check.",
            envvar="HVINFRA_SKIP_CHECKS",
        ),
        no_up: bool = typer.Option(
            False, "--no-up", help="Refuse to start the container; it must be running."
        ),
        stop_timeout: float = typer.Option(
            5.0, "--stop-timeout", help="Seconds a cancelled job gets after SIGINT before SIGKILL."
        ),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
    ) -> None:
        """Serve jobs over HTTP: `hvinfra serve t2v`, then open http://127.0.0.1:8188/."""
        from hvinfra.cli.common import app_context

        values = dict(locals())
        _serve(app_context(values.pop("ctx")), values)


def _serve(app: AppContext, v: dict[str, Any]) -> None:
    from hvinfra.errors import ExitCode, HvinfraError

    output = app.output(False)
    kind = v["kind"]
    if kind not in ("t2v", "i2v"):
        raise HvinfraError(f"serve {kind!r}: use t2v or i2v", "", exit_code=ExitCode.USAGE)
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if not importlib.util.find_spec(m)]
    if missing:
        from hvinfra.errors import ServeError

        raise ServeError(
            f"hvinfra serve needs the serve extra ({', '.join(missing)} not installed)",
            "pip install 'hvinfra[serve]'",
        )
    token = read_token(v["host"], v["token_file"])
    data_dir: Path = (v["data_dir"] or default_data_dir(kind)).expanduser().resolve()
    out_dir: Path = (v["out"] or data_dir / "videos").expanduser().resolve()
    _run_server(app, output, v, kind, token, data_dir, out_dir)


def _run_server(
    app: AppContext,
    output: Output,
    v: dict[str, Any],
    kind: str,
    token: str | None,
    data_dir: Path,
    out_dir: Path,
) -> None:
    import threading

    import uvicorn

    from hvinfra.batch.plan import assign_slots, reuse_decision
    from hvinfra.cli.batch_cmd import _devices as batch_devices
    from hvinfra.cli.common import load
    from hvinfra.cli.generate_cmd import container_for_jobs, gpu_names_for_sidecar, host_gpu_count
    from hvinfra.serve.api import create_app
    from hvinfra.serve.runner import PoolWorkers, RunnerSetup
    from hvinfra.serve.service import JobService, ServeInfo
    from hvinfra.serve.store import DataDirLock, JobStore
    from hvinfra.spec import gpus_label

    profile = load(kind, v["profile_file"], v["sets"], gpus=v["gpus"]).profile
    lock = DataDirLock(data_dir)
    lock.acquire(f"pid {os.getpid()}, {v['host']}:{v['port']}")
    try:
        sock = bind(v["host"], v["port"])
        host, port = sock.getsockname()[:2]
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        store = JobStore(data_dir)
        _engine, container = container_for_jobs(
            app, output, profile, no_up=v["no_up"], skip_checks=v["skip_checks"]
        )
        interrupted = store.recover()
        if interrupted:
            output.warn(
                f"{len(interrupted)} job(s) were running when the last server stopped: marked"
                " failed (interrupted); what is left of them in the container is stopped"
            )
        system = None if v["skip_checks"] else app.gpu_system()
        count = None
        if isinstance(profile.gpu.devices, list):
            count = len(profile.gpu.devices)
        elif profile.gpu.devices == "all":
            count = host_gpu_count(app)
        devices = profile.gpu.devices
        first = (devices[0],) if isinstance(devices, list) else ("0",)
        names = gpu_names_for_sidecar(first, app.gpu_system())
        slots, _ = assign_slots(batch_devices(v, profile, system, app), 1)
        code = profile.models.code if profile.models is not None else None
        reuse, reason = reuse_decision(v["reuse"], kind, code.commit if code else None, 1)
        output.info(f"{len(slots)} worker(s): {reason}")
        setup = RunnerSetup(
            profile=profile, container=container, out_dir=out_dir,
            engine_factory=app.engine_factory,
            gpu_system=system, host_gpu_count=count, gpu_names=names,
            memory_probe=app.probe.probe if system is not None else None,
            skip_checks=v["skip_checks"], stop_timeout=v["stop_timeout"], slots=tuple(slots),
            reuse=reuse,
        )  # fmt: skip
        wakeup = threading.Event()
        worker = PoolWorkers(store, setup, wakeup)
        info = ServeInfo(
            kind=kind, profile=profile.name, container=container.name,
            gpus=list(names) if names else [gpus_label(profile)],
        )  # fmt: skip
        service = JobService(store, data_dir / "inputs", info, workers=[worker], wakeup=wakeup)
        web = create_app(service, token)
        worker.start()
        output.info(
            f"serving {kind} jobs on {url} (container {container.name}; queue in {data_dir};"
            f" videos in {out_dir}; {store.count('queued')} queued)"
            + ("; token required" if token else "")
        )
        config = uvicorn.Config(web, log_level="info", access_log=True, timeout_graceful_shutdown=5)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            output.info("stopping: the running job (if any) is stopped and marked interrupted")
            worker.stop(timeout=v["stop_timeout"] + 15)
            store.close()
    finally:
        lock.release()
