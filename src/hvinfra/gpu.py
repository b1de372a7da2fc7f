"""The NVML adapter: the only module that imports `pynvml` (nvidia-ml-py, NVIDIA's bindings).

It returns plain records (hvinfra.records.GpuSystem) and turns every NVML failure into an
NvmlError with the fix. Policy (what is enough memory, which driver is too old) lives in
checks.py; this module only reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hvinfra.errors import NvmlError
from hvinfra.records import GpuInfo, GpuProcess, GpuSystem

T = TypeVar("T")

DRIVER_FIX = (
    "install the NVIDIA driver (e.g. `sudo apt install nvidia-driver-580-server`, or NVIDIA's"
    " installer) and check it with `nvidia-smi`; on a machine without an NVIDIA GPU, run"
    " hvinfra on the GPU host instead"
)

# NVML error code -> (what it means, the fix). Codes are NVML's (nvml.h NVML_ERROR_*).
NVML_FAULTS: dict[int, tuple[str, str]] = {
    12: (
        "the NVIDIA driver's management library (libnvidia-ml.so.1) was not found: no NVIDIA"
        " driver is installed here, or its library folder is not on the loader path",
        DRIVER_FIX,
    ),
    9: (
        "the NVIDIA kernel driver is not loaded",
        "load it (`sudo modprobe nvidia`) or reboot after installing the driver;"
        " `sudo dmesg | grep -i nvrm` shows why it did not load",
    ),
    4: (
        "no permission to query the GPUs",
        "give your user read/write access to /dev/nvidia* (usually the `video` group), or run"
        " as root",
    ),
    18: (
        "the NVIDIA driver and its library do not match (the driver was upgraded but the old"
        " kernel module is still loaded)",
        "reboot, or unload and reload the nvidia kernel modules",
    ),
    15: (
        "a GPU fell off the bus (GPU is lost)",
        "check `sudo dmesg` for Xid errors, then reset the GPU (`sudo nvidia-smi -r -i N`) or"
        " reboot",
    ),
    16: ("a GPU needs a reset", "reset it (`sudo nvidia-smi -r -i N`) or reboot"),
    13: (
        "the NVIDIA driver is too old for this NVML call",
        "upgrade the driver (the CUDA 12.4 images need >= 550.54.14)",
    ),
    17: (
        "the operating system blocked the NVML request",
        "check the host's security policy (SELinux/AppArmor) for /dev/nvidia*",
    ),
    999: (
        "NVML failed with an unknown error (in a container this often means it lost its GPUs"
        " after a systemd reload)",
        "run `nvidia-smi` to see the driver's state; recreate the container or reboot",
    ),
}

MISMATCH_FIX = (
    "update the NVIDIA driver (the CUDA 12.4 images need >= 550.54.14), or install the"
    " nvidia-ml-py release of the driver's generation (`pip install 'nvidia-ml-py<12.510'` for"
    " drivers older than R510)"
)
PROCESSES_TOO_OLD = (
    "the driver's NVML has neither nvmlDeviceGetComputeRunningProcesses_v3 nor _v2 (a driver"
    " older than R470), so other processes on the GPU cannot be seen"
)

# Codes that mean "this GPU does not offer that value": the field becomes None.
_NOT_OFFERED = {3, 6, 13}  # NOT_SUPPORTED, NOT_FOUND, FUNCTION_NOT_FOUND
_COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


class GpuProbe(Protocol):
    """What the launcher and the checks need from NVML; tests pass a fake."""

    def probe(self) -> GpuSystem: ...


def nvml_error(exc: BaseException, during: str = "") -> NvmlError:
    """Map an NVMLError (or any exception from the bindings) to an NvmlError with a fix."""
    code = getattr(exc, "value", None)
    code = code if isinstance(code, int) else None
    where = f" ({during})" if during else ""
    if type(exc).__name__ == "NVMLLibraryMismatchError":
        return NvmlError(
            f"NVML: the driver's management library is older than the nvidia-ml-py bindings"
            f" (a function they call is missing){where}\n  NVML said: {exc}",
            MISMATCH_FIX,
        )
    if code in NVML_FAULTS:
        message, fix = NVML_FAULTS[code]
        return NvmlError(f"NVML: {message}{where}\n  NVML said: {exc}", fix, code=code)
    return NvmlError(
        f"NVML failed{where}: {exc}" + (f" (code {code})" if code is not None else ""),
        "run `nvidia-smi` to see whether the driver works; `--debug` shows the cause",
        code=code,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def cuda_from_nvml(value: int) -> tuple[int, int]:
    """nvmlSystemGetCudaDriverVersion_v2's 12040 -> (12, 4)."""
    return value // 1000, (value % 1000) // 10


def nvml_library_path(maps: str) -> str | None:
    """Where libnvidia-ml was loaded from, read from a /proc/<pid>/maps text."""
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and "libnvidia-ml.so" in parts[5]:
            return parts[5].strip()
    return None


class NvmlProbe:
    """Reads the host's GPUs through NVML, once per probe() call (init ... shutdown)."""

    def __init__(self, nvml: Any = None, maps_path: str = "/proc/self/maps") -> None:
        self._nvml = nvml
        self._maps_path = maps_path

    def _bindings(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as exc:
                raise NvmlError(
                    "the nvidia-ml-py package (module pynvml) is not installed",
                    "`pip install nvidia-ml-py` in hvinfra's environment",
                ) from exc
            self._nvml = pynvml
        return self._nvml

    def probe(self) -> GpuSystem:
        nvml = self._bindings()
        error_type: type[BaseException] = getattr(nvml, "NVMLError", Exception)
        try:
            nvml.nvmlInit()
        except error_type as exc:
            raise nvml_error(exc, "loading NVML") from exc
        except OSError as exc:  # a broken library file surfaces as OSError from ctypes
            raise NvmlError(f"NVML could not be loaded: {exc}", DRIVER_FIX) from exc
        try:
            return self._read(nvml, error_type)
        finally:
            with contextlib.suppress(error_type):
                nvml.nvmlShutdown()

    def _read(self, nvml: Any, error_type: type[BaseException]) -> GpuSystem:
        # pynvml's unversioned calls raise NVMLLibraryMismatchError (not an NVMLError) when the
        # driver's library lacks the versioned symbol they wrap.
        found = getattr(nvml, "NVMLLibraryMismatchError", None)
        mismatch: tuple[type[BaseException], ...] = (found,) if isinstance(found, type) else ()

        def call(during: str, fn: Callable[..., T], *args: Any) -> T:
            try:
                return fn(*args)
            except (error_type, *mismatch) as exc:
                raise nvml_error(exc, during) from exc

        def optional(fn: Callable[..., T], *args: Any) -> T | None:
            try:
                return fn(*args)
            except error_type as exc:
                if getattr(exc, "value", None) in _NOT_OFFERED | {4}:
                    return None
                raise nvml_error(exc, getattr(fn, "__name__", "")) from exc

        driver = _text(call("reading the driver version", nvml.nvmlSystemGetDriverVersion))
        cuda = cuda_from_nvml(
            int(call("reading the CUDA version", nvml.nvmlSystemGetCudaDriverVersion_v2))
        )
        count = int(call("counting GPUs", nvml.nvmlDeviceGetCount))
        gpus = []
        for index in range(count):
            handle = call(f"opening GPU {index}", nvml.nvmlDeviceGetHandleByIndex, index)
            memory = call(f"reading GPU {index}'s memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            capability = call(
                f"reading GPU {index}'s compute capability",
                nvml.nvmlDeviceGetCudaComputeCapability,
                handle,
            )
            mig = optional(nvml.nvmlDeviceGetMigMode, handle)
            utilization = optional(nvml.nvmlDeviceGetUtilizationRates, handle)
            mode = optional(nvml.nvmlDeviceGetComputeMode, handle)
            processes, unknown = self._processes(nvml, error_type, mismatch, handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    uuid=_text(call(f"reading GPU {index}'s UUID", nvml.nvmlDeviceGetUUID, handle)),
                    name=_text(call(f"reading GPU {index}'s name", nvml.nvmlDeviceGetName, handle)),
                    memory_total_bytes=int(memory.total),
                    memory_used_bytes=int(memory.used),
                    memory_free_bytes=int(memory.free),
                    compute_capability=(int(capability[0]), int(capability[1])),
                    minor_number=optional(nvml.nvmlDeviceGetMinorNumber, handle),
                    mig_mode=None if mig is None else bool(mig[0]),
                    utilization_percent=None if utilization is None else int(utilization.gpu),
                    compute_mode=None if mode is None else _COMPUTE_MODES.get(int(mode), str(mode)),
                    processes=tuple(self._process(nvml, optional, p) for p in processes),
                    processes_unknown=unknown,
                )
            )
        return GpuSystem(
            driver_version=driver,
            cuda_driver_version=cuda,
            gpus=tuple(gpus),
            nvml_library_path=self._library_path(),
        )

    @staticmethod
    def _processes(
        nvml: Any,
        error_type: type[BaseException],
        mismatch: tuple[type[BaseException], ...],
        handle: Any,
    ) -> tuple[list[Any], str]:
        """The compute processes on a GPU, and why they are unknown ("" when they are known).

        The unversioned call needs the driver's _v3 symbol (R510 and newer); an older driver's
        library is asked through _v2."""
        calls = [nvml.nvmlDeviceGetComputeRunningProcesses]
        calls += [getattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v2", None)]
        for fn in filter(None, calls):
            try:
                return list(fn(handle) or ()), ""
            except mismatch:
                continue
            except error_type as exc:
                code = getattr(exc, "value", None)
                if code == 13:  # FUNCTION_NOT_FOUND: _v2 missing too
                    continue
                if code in _NOT_OFFERED | {4}:
                    return [], f"NVML did not list them: {exc}"
                raise nvml_error(exc, "listing the GPU's processes") from exc
        return [], PROCESSES_TOO_OLD

    @staticmethod
    def _process(nvml: Any, optional: Callable[..., Any], proc: Any) -> GpuProcess:
        pid = int(proc.pid)
        used = getattr(proc, "usedGpuMemory", None)
        name = optional(nvml.nvmlSystemGetProcessName, pid)
        return GpuProcess(
            pid=pid,
            used_memory_bytes=None if used is None else int(used),
            name="" if name is None else _text(name),
        )

    def _library_path(self) -> str | None:
        try:
            return nvml_library_path(Path(self._maps_path).read_text(errors="replace"))
        except OSError:
            return None


def probe() -> GpuSystem:
    """What NVML sees on this host (NvmlProbe with the system's library)."""
    return NvmlProbe().probe()
