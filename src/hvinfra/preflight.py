"""Gather the facts the checks need (through the engine and GPU probe protocols and a few host
reads), and resolve a profile's GPU selection against NVML. No docker or pynvml imports: the
CLI passes in the adapters."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hvinfra import hostinfo
from hvinfra.checks import (
    DaemonMemlock,
    Facts,
    select_gpus,
)
from hvinfra.errors import DockerUnreachable, HvinfraError
from hvinfra.gpu import GpuProbe
from hvinfra.gpu_selection import GpuSelection
from hvinfra.profiles.models import Profile
from hvinfra.records import EngineInfo, GpuSystem, ImageInfo

WEIGHTS_VOLUME = "weights"


class EngineFacts(Protocol):
    """The part of the engine adapter pre-flight reads."""

    def info(self) -> EngineInfo: ...
    def image(self, ref: str) -> ImageInfo | None: ...


@dataclass(frozen=True)
class Options:
    fp8: bool = False
    cpu_offload: bool = False


def selection_of(profile: Profile) -> str | tuple[str, ...]:
    return GpuSelection.of(profile.gpu.devices).value


def probe_gpus(probe: GpuProbe) -> tuple[GpuSystem | None, HvinfraError | None]:
    try:
        return probe.probe(), None
    except HvinfraError as error:
        return None, error


def _daemon_memlock(socket_path: str | None, pid: int | None) -> DaemonMemlock:
    if socket_path is None:
        return DaemonMemlock(source="remote daemon: its limits cannot be read from here")
    if pid is None:
        return DaemonMemlock(source=f"no dockerd process found behind {socket_path}")
    process = hostinfo.daemon_process(pid)
    if process is None:
        return DaemonMemlock(source=f"/proc/{pid}/limits unreadable")
    return DaemonMemlock(process.memlock_hard, process.cap_sys_resource, f"/proc/{pid}/limits")


def gather(
    profile: Profile,
    *,
    connect: Callable[[], EngineFacts],
    probe: GpuProbe,
    options: Options = Options(),
    docker_host: str | None = None,
    gpus: tuple[GpuSystem | None, HvinfraError | None] | None = None,
) -> Facts:
    """Ask Docker, NVML and the host; a failure of one becomes a fact, not an exception."""
    docker_host = os.environ.get("DOCKER_HOST") if docker_host is None else docker_host
    engine_info: EngineInfo | None = None
    engine_error: HvinfraError | None = None
    image: ImageInfo | None = None
    try:
        engine = connect()
        engine_info = engine.info()
        image = engine.image(profile.image)
    except HvinfraError as error:
        engine_error = error
    except ImportError as exc:  # a GPU-only host may lack the docker package
        engine_error = DockerUnreachable(
            f"the docker Python package is not installed ({exc})", "`pip install docker`"
        )
    system, gpu_error = gpus if gpus is not None else probe_gpus(probe)
    socket_path = hostinfo.local_socket(docker_host)
    root_free = None
    if engine_info is not None and socket_path is not None and engine_info.docker_root_dir:
        disk = hostinfo.disk_free(engine_info.docker_root_dir)
        root_free = disk.free_bytes if disk else None
    weights = profile.volumes.get(WEIGHTS_VOLUME)
    weights_free = None
    if weights is not None:
        disk = hostinfo.disk_free(weights.host)
        weights_free = disk.free_bytes if disk else None
    memlock = profile.ulimits.get("memlock")
    pid = None
    if engine_info is not None and socket_path is not None:
        pid = hostinfo.daemon_pid(socket_path)
    return Facts(
        workload=profile.workload,
        resolution=profile.resolution,
        image_ref=profile.image,
        fp8=options.fp8,
        cpu_offload=options.cpu_offload,
        gpu_mode=profile.gpu.mode,
        selection=selection_of(profile),
        engine=engine_info,
        engine_error=engine_error,
        gpus=system,
        gpu_error=gpu_error,
        image=image,
        hook_path=hostinfo.find_hook(pid),
        daemon_local=socket_path is not None,
        docker_root_free=root_free,
        weights_path=weights.host if weights else None,
        weights_free=weights_free,
        weights_present=hostinfo.folder_has_files(weights.host) if weights else False,
        memlock_wanted=memlock.hard if memlock else None,
        memlock=_daemon_memlock(socket_path, pid) if engine_info is not None else DaemonMemlock(),
    )


def with_resolved_gpus(profile: Profile, system: GpuSystem) -> Profile:
    """The profile with an explicit GPU list (indices or UUIDs) replaced by the GPUs' UUIDs, so
    the device request names exactly the devices that were checked. Raises GpuRuntimeError for
    a GPU NVML does not see."""
    selection = selection_of(profile)
    chosen = select_gpus(selection, system)
    if isinstance(selection, str):
        return profile
    gpu = profile.gpu.model_copy(update={"devices": [g.uuid for g in chosen]})
    return profile.model_copy(update={"gpu": gpu})
