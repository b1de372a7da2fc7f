"""Plain records the engine adapter returns: no docker types leak past the adapter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hvinfra.labels import LABEL_MANAGED


@dataclass(frozen=True)
class ContainerSummary:
    """A container as the engine lists it (one request for all of them): what a table shows.
    `exit_code` and `health` come from the engine's status line ("Exited (137) 2 minutes ago",
    "Up 3 minutes (healthy)"); ContainerInfo, from an inspect, has them as fields."""

    id: str
    name: str
    image: str
    image_id: str
    status: str  # created, running, exited, paused, restarting, dead
    exit_code: int = 0
    health: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    size: int = 0
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str  # the reference it was created from
    image_id: str
    status: str  # created, running, exited, paused, restarting, dead
    exit_code: int = 0
    oom_killed: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin_open: bool = False
    started_at: str = ""
    created: str = ""
    health: str = ""  # starting, healthy, unhealthy; "" when the image has no HEALTHCHECK

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def managed(self) -> bool:
        return self.labels.get(LABEL_MANAGED) == "true"


@dataclass(frozen=True)
class EngineInfo:
    host: str
    server_version: str
    api_version: str
    runtimes: tuple[str, ...]
    default_runtime: str
    security_options: tuple[str, ...]
    docker_root_dir: str
    os_type: str = "linux"
    storage_driver: str = ""
    # The containerd image store keeps the layers of an interrupted pull; the classic
    # graphdriver store (overlay2 on dockerd < 29 by default) discards them (moby#26146).
    containerd_store: bool = False
    insecure_registries: tuple[str, ...] = ()  # CIDRs and hostnames served over plain HTTP
    registry_mirrors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes = b""


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None = None
    name: str = ""


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it (all sizes in bytes)."""

    index: int
    uuid: str
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    compute_capability: tuple[int, int]
    minor_number: int | None = None  # /dev/nvidiaN
    mig_mode: bool | None = None  # None: not supported by this GPU
    utilization_percent: int | None = None
    compute_mode: str | None = None  # default, exclusive_process, prohibited
    processes: tuple[GpuProcess, ...] = ()
    processes_unknown: str = ""  # why the process list could not be read ("" when it was)


@dataclass(frozen=True)
class GpuSystem:
    """What NVML sees on the host: driver, CUDA version the driver supports, GPUs."""

    driver_version: str
    cuda_driver_version: tuple[int, int]  # e.g. (13, 0) from nvmlSystemGetCudaDriverVersion_v2
    gpus: tuple[GpuInfo, ...]
    nvml_library_path: str | None = None  # where libnvidia-ml.so.1 was loaded from


def gpu_system_as_dict(system: GpuSystem) -> dict[str, Any]:
    """JSON-ready form of a GpuSystem (versions as "13.0", compute capability as "9.0")."""
    data = asdict(system)
    data["cuda_driver_version"] = "{}.{}".format(*system.cuda_driver_version)
    for gpu in data["gpus"]:
        gpu["compute_capability"] = "{}.{}".format(*gpu["compute_capability"])
    return data


def gpu_system_from_dict(data: Mapping[str, Any]) -> GpuSystem:
    """The inverse of gpu_system_as_dict (fixtures, captured records); unknown keys ignored."""

    def pair(value: Any) -> tuple[int, int]:
        """ "9.0" (as gpu_system_as_dict writes it) or [9, 0]."""
        parts = list(value) if isinstance(value, (list, tuple)) else str(value).split(".")
        major, minor = [*parts, 0][:2]
        return int(major), int(minor)

    gpus = []
    for raw in data.get("gpus", ()):
        known = {f.name for f in fields(GpuInfo)}
        item = {k: v for k, v in raw.items() if k in known}
        item["compute_capability"] = pair(item["compute_capability"])
        item["processes"] = tuple(GpuProcess(**p) for p in raw.get("processes", ()))
        gpus.append(GpuInfo(**item))
    return GpuSystem(
        driver_version=str(data["driver_version"]),
        cuda_driver_version=pair(data["cuda_driver_version"]),
        gpus=tuple(gpus),
        nvml_library_path=data.get("nvml_library_path"),
    )
