"""The host-side facts that gpu.mode `devices` needs: which NVIDIA device nodes exist and where
the driver's files are. I/O only; the decisions are in `gpu_access.py`.

Test and rehearsal hooks (read at the CLI edge only): HVINFRA_GPU_RECORDS names a JSON file of
GpuSystem records used instead of NVML, HVINFRA_DEV_DIR a folder used instead of /dev.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from hvinfra.errors import GpuRuntimeError
from hvinfra.gpu_access import (
    CONTROL_NODES,
    DRIVER_BINARIES,
    DRIVER_LIBRARY_GLOBS,
    SHARED_BIN_MARKER,
    SHARED_LIB_MARKER,
    HostDriver,
    HostGpuFiles,
)
from hvinfra.profiles.models import Profile
from hvinfra.records import GpuSystem, gpu_system_from_dict

NVML_LIBRARY = "libnvidia-ml.so.1"
RECORDS_ENV = "HVINFRA_GPU_RECORDS"
DEV_DIR_ENV = "HVINFRA_DEV_DIR"


def nvml_from_maps(maps: str) -> str | None:
    """The path of libnvidia-ml in a /proc/PID/maps text, if this process loaded it."""
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        if path.startswith("/") and Path(path).name.startswith("libnvidia-ml.so"):
            return path
    return None


def nvml_from_ldconfig(text: str) -> str | None:
    """The path of libnvidia-ml.so.1 in `ldconfig -p` output (x86-64 entry first)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(NVML_LIBRARY + " ") and "=>" in line:
            found.append((("x86-64" not in line), line.split("=>", 1)[1].strip()))
    return sorted(found)[0][1] if found else None


def locate_nvml(system: GpuSystem | None) -> tuple[str | None, str]:
    """(path of libnvidia-ml.so.1, how it was found)."""
    if system is not None and system.nvml_library_path:
        return system.nvml_library_path, "nvml"
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        maps = ""
    path = nvml_from_maps(maps)
    if path:
        return path, "/proc/self/maps"
    for ldconfig in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            result = subprocess.run(
                [ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            continue
        path = nvml_from_ldconfig(result.stdout)
        if path:
            return path, "ldconfig -p"
        break
    return None, ""


def _listing(folder: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return []


def _driver_bin_dir(lib_dir: Path) -> Path | None:
    """nvidia-smi's folder: beside the lib folder (/usr/local/nvidia/bin), else on PATH."""
    import shutil

    sibling = lib_dir.parent / "bin"
    if (sibling / "nvidia-smi").exists():
        return sibling
    found = shutil.which("nvidia-smi")
    return Path(found).resolve().parent if found else None


def find_driver(profile: Profile, system: GpuSystem | None) -> HostDriver | None:
    """Where the host driver's libraries and tools are: the profile's folders, else the folder
    NVML was loaded from (falling back to /proc/self/maps and `ldconfig -p`)."""
    if profile.gpu.driver_lib_dir:
        lib_dir, found_by = Path(profile.gpu.driver_lib_dir), "profile"
        if not lib_dir.is_dir():
            raise GpuRuntimeError(
                f"gpu.driver_lib_dir {lib_dir} is not a folder",
                "name the folder that holds libnvidia-ml.so.1 and libcuda.so.1",
            )
    else:
        nvml, found_by = locate_nvml(system)
        if nvml is None:
            return None
        lib_dir = Path(nvml).parent
    if profile.gpu.driver_bin_dir:
        bin_dir: Path | None = Path(profile.gpu.driver_bin_dir)
    else:
        bin_dir = _driver_bin_dir(lib_dir)
    lib_names = _listing(lib_dir)
    bin_names = _listing(bin_dir) if bin_dir else []
    return HostDriver(
        lib_dir=str(lib_dir),
        lib_files=tuple(
            n for n in lib_names if any(fnmatch.fnmatch(n, g) for g in DRIVER_LIBRARY_GLOBS)
        ),
        lib_dir_shared=SHARED_LIB_MARKER in lib_names,
        bin_dir=str(bin_dir) if bin_dir else None,
        bin_files=tuple(n for n in bin_names if n in DRIVER_BINARIES),
        bin_dir_shared=SHARED_BIN_MARKER in bin_names,
        found_by=found_by,
    )


def present_nodes(dev_dir: str, system: GpuSystem | None) -> frozenset[str]:
    """The NVIDIA device nodes that exist: one per GPU minor number, and the control nodes."""
    names = list(CONTROL_NODES)
    for gpu in system.gpus if system else ():
        if gpu.minor_number is not None:
            names.append(f"nvidia{gpu.minor_number}")
    return frozenset(str(Path(dev_dir) / name) for name in names if (Path(dev_dir) / name).exists())


def gather(
    profile: Profile, system: GpuSystem | None, env: Mapping[str, str] | None = None
) -> HostGpuFiles:
    env = os.environ if env is None else env
    dev_dir = env.get(DEV_DIR_ENV) or "/dev"
    return HostGpuFiles(
        present_nodes=present_nodes(dev_dir, system),
        driver=find_driver(profile, system),
        dev_dir=dev_dir,
    )


# -- GpuSystem records as JSON (fixtures, the smoke's record of the real GPU) -----------------
def load_records(path: str) -> GpuSystem:
    try:
        return gpu_system_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GpuRuntimeError(
            f"{RECORDS_ENV}={path}: cannot read GPU records: {exc}",
            f"unset {RECORDS_ENV} to ask NVML, or point it at a valid records file",
        ) from exc


def probe_system(env: Mapping[str, str] | None = None) -> GpuSystem:
    """The host's GPUs: from HVINFRA_GPU_RECORDS when set, else from NVML (`gpu.py`)."""
    env = os.environ if env is None else env
    if env.get(RECORDS_ENV):
        return load_records(env[RECORDS_ENV])
    from hvinfra import gpu

    return gpu.probe()


class HostProbe:
    """The GPU probe every command uses: recorded records when HVINFRA_GPU_RECORDS is set,
    else NVML. One source per command, so pre-flight and devices mode see the same GPUs."""

    def probe(self) -> GpuSystem:
        return probe_system()
