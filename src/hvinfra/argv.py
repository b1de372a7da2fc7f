"""RunSpec -> the equivalent `docker run` command line (for --dry-run). Pure."""

from __future__ import annotations

import re
import shlex

from hvinfra.spec import RunSpec

_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|_KEY$)", re.IGNORECASE)
REDACTED = "***"


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def gpus_flag_value(spec: RunSpec) -> str | None:
    """The `--gpus` value that makes the same device request, or None for no request."""
    request = spec.gpu_request
    if request is None:
        return None
    parts = ["all"] if request.count == -1 else ["device=" + ",".join(request.device_ids)]
    caps = [cap for group in request.capabilities for cap in group if cap != "gpu"]
    if caps:
        parts.append("capabilities=" + ",".join(caps))
    if request.driver:
        parts.append(f"driver={request.driver}")
    # The docker CLI reads --gpus as CSV: a field that holds commas is quoted inside the value.
    return ",".join(f'"{part}"' if "," in part else part for part in parts)


def docker_run_argv(
    spec: RunSpec, *, redact_secrets: bool = True, docker: str = "docker"
) -> list[str]:
    argv = [docker, "run", "--detach"]
    if spec.stdin_open:
        argv.append("--interactive")
    if spec.tty:
        argv.append("--tty")
    argv += ["--name", spec.name]
    if spec.init:
        argv.append("--init")
    if spec.network_mode:
        argv += ["--network", spec.network_mode]
    if spec.uts_mode:
        argv += ["--uts", spec.uts_mode]
    if spec.ipc_mode:
        argv += ["--ipc", spec.ipc_mode]
    for ulimit in spec.ulimits:
        argv += ["--ulimit", f"{ulimit.name}={ulimit.soft}:{ulimit.hard}"]
    gpus = gpus_flag_value(spec)
    if gpus is not None:
        argv += ["--gpus", gpus]
    for device in spec.devices:
        argv += ["--device", f"{device.host_path}:{device.container_path}:{device.permissions}"]
    if spec.shm_size is not None:
        argv += ["--shm-size", str(spec.shm_size)]
    if spec.privileged:
        argv.append("--privileged")
    for opt in spec.security_opt:
        argv += ["--security-opt", opt]
    for cap in spec.cap_add:
        argv += ["--cap-add", cap]
    for mount in spec.mounts:
        argv += ["--volume", f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else "")]
    for name, value in spec.environment:
        shown = REDACTED if redact_secrets and is_secret_name(name) else value
        argv += ["--env", f"{name}={shown}"]
    if spec.working_dir:
        argv += ["--workdir", spec.working_dir]
    if spec.restart_policy != "no":
        argv += ["--restart", spec.restart_policy]
    for key, value in spec.labels:
        argv += ["--label", f"{key}={value}"]
    argv.append(spec.image)
    if spec.command is not None:
        argv += list(spec.command)
    return argv


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in argv)
