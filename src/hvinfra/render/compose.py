"""RunSpec -> a compose file (the Compose Specification, as `docker compose` v2 reads it) whose
one service creates the container `hvinfra up` creates. Pure."""

from __future__ import annotations

import re
from typing import Any

from hvinfra import __version__
from hvinfra.argv import is_secret_name
from hvinfra.render import Source, comment_block, dump_yaml
from hvinfra.spec import RunSpec

# Service keys the Compose Specification has and Debian's docker-compose 1.29 rejects
# ("Unsupported config option for services.x: 'uts'"): dropped by `v1_compatible`.
V1_MISSING_SERVICE_KEYS = ("uts",)


def service_name(profile_name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]", "-", profile_name).strip("-.") or "hunyuanvideo"


def _ulimit(soft: int, hard: int) -> int | dict[str, int]:
    return soft if soft == hard else {"soft": soft, "hard": hard}


def compose_service(spec: RunSpec) -> dict[str, Any]:
    """The service that creates `spec`'s container. Secret-looking variables are written as
    `${NAME}`, so compose takes their values from the environment it runs in."""
    service: dict[str, Any] = {"image": spec.image, "container_name": spec.name}
    if spec.command is not None:
        service["command"] = list(spec.command)
    for key, on in (("tty", spec.tty), ("stdin_open", spec.stdin_open), ("init", spec.init)):
        if on:
            service[key] = True
    for key, mode in (("network_mode", spec.network_mode), ("uts", spec.uts_mode)):
        if mode:
            service[key] = mode
    if spec.ipc_mode:
        service["ipc"] = spec.ipc_mode
    if spec.ulimits:
        service["ulimits"] = {u.name: _ulimit(u.soft, u.hard) for u in spec.ulimits}
    request = spec.gpu_request
    if request is not None:
        device: dict[str, Any] = {"capabilities": [c for g in request.capabilities for c in g]}
        if request.driver:
            device["driver"] = request.driver
        if request.count == -1:
            # An explicit count: since moby 27.3 a reservation without count or device_ids
            # gets no GPU at all (NVIDIA_VISIBLE_DEVICES=void).
            device["count"] = "all"
        else:
            device["device_ids"] = list(request.device_ids)
        service["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    if spec.devices:
        service["devices"] = [
            f"{d.host_path}:{d.container_path}:{d.permissions}" for d in spec.devices
        ]
    if spec.shm_size is not None:
        service["shm_size"] = spec.shm_size
    if spec.mounts:
        service["volumes"] = [
            f"{m.source}:{m.target}" + (":ro" if m.read_only else "") for m in spec.mounts
        ]
    if spec.environment:
        service["environment"] = {
            name: "${" + name + "}" if is_secret_name(name) else value
            for name, value in spec.environment
        }
    if spec.working_dir:
        service["working_dir"] = spec.working_dir
    service["restart"] = spec.restart_policy
    if spec.privileged:
        service["privileged"] = True
    if spec.security_opt:
        service["security_opt"] = list(spec.security_opt)
    if spec.cap_add:
        service["cap_add"] = list(spec.cap_add)
    service["labels"] = dict(spec.labels)
    return service


def compose_document(spec: RunSpec, profile_name: str) -> dict[str, Any]:
    return {
        "services": {service_name(profile_name): compose_service(spec)},
        "x-hvinfra": {"version": __version__, "profile": profile_name},
    }


def v1_compatible(document: dict[str, Any]) -> dict[str, Any]:
    """The same file less the keys docker-compose 1.29 does not know (UTS mode is then the
    engine's default: the container gets its own host name)."""
    services = {
        name: {k: v for k, v in service.items() if k not in V1_MISSING_SERVICE_KEYS}
        for name, service in document["services"].items()
    }
    return {**document, "services": services}


def render_compose(spec: RunSpec, profile_name: str, *, as_json: bool = False) -> str:
    import json

    document = compose_document(spec, profile_name)
    if as_json:
        return json.dumps(document, indent=2) + "\n"
    header = Source(profile_name, "compose").header(
        "Start it with `docker compose up -d` (Compose v2). docker-compose 1.x lacks `uts`:",
        "`hvinfra render compose --check` says what it would drop.",
    )
    body = dump_yaml(document)
    return comment_block(header) + body
