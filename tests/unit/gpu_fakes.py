"""Hand-written fakes for the GPU pre-flight tests: NVML bindings, a GpuProbe, an engine."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml  # only for its NVMLError classes: constructing them loads no library

from hvinfra.errors import HvinfraError
from hvinfra.records import (
    ContainerInfo,
    ContainerSummary,
    EngineInfo,
    GpuInfo,
    GpuSystem,
    ImageInfo,
    gpu_system_from_dict,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"


def summary_of(info: ContainerInfo) -> ContainerSummary:
    """What the engine's container list would say of a container a fake engine holds."""
    return ContainerSummary(
        id=info.id, name=info.name, image=info.image, image_id=info.image_id,
        status=info.status, exit_code=info.exit_code, health=info.health, labels=info.labels,
    )  # fmt: skip


GIB = 1024**3


def recorded(name: str = "recorded.json") -> GpuSystem:
    return gpu_system_from_dict(json.loads((FIXTURES / name).read_text()))


def with_gpu(system: GpuSystem, index: int = 0, **changes: Any) -> GpuSystem:
    gpus = list(system.gpus)
    gpus[index] = dataclasses.replace(gpus[index], **changes)
    return dataclasses.replace(system, gpus=tuple(gpus))


def free_gib(system: GpuSystem, gib: float, index: int = 0) -> GpuSystem:
    """The recorded GPU with only `gib` GiB free (the rest used by someone else)."""
    gpu = system.gpus[index]
    free = int(gib * GIB)
    return with_gpu(
        system, index, memory_free_bytes=free, memory_used_bytes=gpu.memory_total_bytes - free
    )


def copies(system: GpuSystem, count: int) -> GpuSystem:
    base = system.gpus[0]
    gpus = tuple(
        dataclasses.replace(base, index=i, minor_number=i, uuid=f"{base.uuid[:-2]}{i:02d}")
        for i in range(count)
    )
    return dataclasses.replace(system, gpus=gpus)


class FakeProbe:
    def __init__(self, system: GpuSystem | None = None, error: HvinfraError | None = None):
        self.system = system
        self.error = error
        self.calls = 0

    def probe(self) -> GpuSystem:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert self.system is not None
        return self.system


class FakeNvml:
    """Stands in for the pynvml module: serves a GpuSystem, or raises NVMLError(code) where told.

    `fail` maps a function name to an NVML error code, e.g. {"nvmlInit": 12}.
    """

    NVMLError = pynvml.NVMLError

    def __init__(self, system: GpuSystem, fail: Mapping[str, int] | None = None) -> None:
        self.system = system
        self.fail = dict(fail or {})
        self.shutdowns = 0
        self.cuda_raw = system.cuda_driver_version[0] * 1000 + system.cuda_driver_version[1] * 10

    def _check(self, name: str) -> None:
        if name in self.fail:
            raise pynvml.NVMLError(self.fail[name])

    def _gpu(self, handle: int) -> GpuInfo:
        return self.system.gpus[handle]

    def nvmlInit(self) -> None:
        self._check("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return self.system.driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_raw

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.system.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._check("nvmlDeviceGetHandleByIndex")
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        self._check("nvmlDeviceGetUUID")
        return self._gpu(handle).uuid.encode()  # older bindings return bytes

    def nvmlDeviceGetName(self, handle: int) -> str:
        self._check("nvmlDeviceGetName")
        return self._gpu(handle).name

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        self._check("nvmlDeviceGetMemoryInfo")
        gpu = self._gpu(handle)
        return SimpleNamespace(
            total=gpu.memory_total_bytes, used=gpu.memory_used_bytes, free=gpu.memory_free_bytes
        )

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        self._check("nvmlDeviceGetCudaComputeCapability")
        return self._gpu(handle).compute_capability

    def nvmlDeviceGetMinorNumber(self, handle: int) -> int:
        self._check("nvmlDeviceGetMinorNumber")
        minor = self._gpu(handle).minor_number
        assert minor is not None
        return minor

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        self._check("nvmlDeviceGetMigMode")
        return [int(bool(self._gpu(handle).mig_mode)), 0]

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        self._check("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self._gpu(handle).utilization_percent or 0, memory=0)

    def nvmlDeviceGetComputeMode(self, handle: int) -> int:
        self._check("nvmlDeviceGetComputeMode")
        modes = {"default": 0, "prohibited": 2, "exclusive_process": 3}
        return modes[self._gpu(handle).compute_mode or "default"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        self._check("nvmlDeviceGetComputeRunningProcesses")
        return [
            SimpleNamespace(pid=p.pid, usedGpuMemory=p.used_memory_bytes)
            for p in self._gpu(handle).processes
        ]

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._check("nvmlSystemGetProcessName")
        for gpu in self.system.gpus:
            for process in gpu.processes:
                if process.pid == pid:
                    return process.name
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)


def engine_info(**changes: Any) -> EngineInfo:
    base = EngineInfo(
        host="unix:///var/run/docker.sock",
        server_version="26.1.4",
        api_version="1.45",
        runtimes=("io.containerd.runc.v2", "nvidia", "runc"),
        default_runtime="runc",
        security_options=("name=seccomp,profile=builtin",),
        docker_root_dir="/var/lib/docker",
    )
    return dataclasses.replace(base, **changes)


class FakeEngine:
    """Enough of DockerEngine for doctor and up: info, images, and a container that runs."""

    host = "unix:///fake.sock"

    def __init__(self, info: EngineInfo | None = None, image: ImageInfo | None = None) -> None:
        self._info = info or engine_info()
        self._image = image or ImageInfo(id="sha256:" + "a" * 64, size=25 * GIB)
        self.created: list[Any] = []
        self.started: list[str] = []
        self._containers: dict[str, ContainerInfo] = {}

    def info(self) -> EngineInfo:
        return self._info

    def image(self, ref: str) -> ImageInfo | None:
        return self._image

    def pull_events(self, ref: str) -> Iterator[dict[str, Any]]:
        return iter(())

    def container(self, name_or_id: str) -> ContainerInfo | None:
        return self._containers.get(name_or_id)

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return list(self._containers.values())

    def container_summaries(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        return [summary_of(info) for info in self.containers(labels)]

    def create(self, spec: Any) -> str:
        self.created.append(spec)
        info = ContainerInfo(
            id="c" * 64, name=spec.name, image=spec.image, image_id="sha256:x",
            status="created", labels=spec.label_map,
        )  # fmt: skip
        self._containers[info.id] = info
        return info.id

    def start(self, container_id: str, name: str = "") -> None:
        self.started.append(container_id)
        info = self._containers[container_id]
        self._containers[container_id] = dataclasses.replace(info, status="running")

    def stop(self, container_id: str, timeout: int = 10) -> None:
        pass

    def remove(self, container_id: str, force: bool = True) -> None:
        self._containers.pop(container_id, None)

    def log_tail(self, container_id: str, lines: int = 50) -> str:
        return ""
