"""The NVML adapter: the only module that imports pynvml.

A minimal version for gpu.mode `devices` (issue 9); issue 3's full adapter replaces this file,
keeping `probe() -> GpuSystem` with `minor_number` and `nvml_library_path` filled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hvinfra.errors import GpuRuntimeError
from hvinfra.records import GpuInfo, GpuSystem


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _loaded_nvml_path() -> str | None:
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in maps.splitlines():
        parts = line.split()
        if parts and parts[-1].startswith("/") and "libnvidia-ml.so" in parts[-1]:
            return parts[-1]
    return None


def probe() -> GpuSystem:
    """Driver, CUDA version the driver supports, and each GPU with its /dev/nvidiaN minor."""
    try:
        import pynvml
    except ImportError as exc:
        raise GpuRuntimeError(
            "the NVML bindings (nvidia-ml-py) are not installed",
            "pip install nvidia-ml-py",
        ) from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise GpuRuntimeError(
            f"NVML cannot start: {exc}",
            "install the NVIDIA driver and check that `nvidia-smi` works on this host",
        ) from exc
    try:
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor_cc = (int(v) for v in pynvml.nvmlDeviceGetCudaComputeCapability(handle))
            try:
                minor: int | None = int(pynvml.nvmlDeviceGetMinorNumber(handle))
            except pynvml.NVMLError:
                minor = None
            gpus.append(
                GpuInfo(
                    index=index,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_total_bytes=int(memory.total),
                    memory_used_bytes=int(memory.used),
                    memory_free_bytes=int(memory.free),
                    compute_capability=(major, minor_cc),
                    minor_number=minor,
                )
            )
        return GpuSystem(
            driver_version=_text(pynvml.nvmlSystemGetDriverVersion()),
            cuda_driver_version=(cuda // 1000, (cuda % 1000) // 10),
            gpus=tuple(gpus),
            nvml_library_path=_loaded_nvml_path(),
        )
    except pynvml.NVMLError as exc:
        raise GpuRuntimeError(
            f"NVML failed while reading the GPUs: {exc}", "check `nvidia-smi` on this host"
        ) from exc
    finally:
        pynvml.nvmlShutdown()
