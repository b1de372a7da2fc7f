"""Test fixture: build and describe the NVML-shaped stand-in library (tests/fixtures/nvml-stub).

`build(folder, drop=...)` compiles nvml_stub.c with the system C compiler into
`folder/libnvidia-ml.so.1`; `describe(path, records, fail=...)` writes the stub's description from
a JSON GpuSystem record (the format of tests/fixtures/gpu/*.json); `environment(...)` gives the
variables that make a fresh process's real nvidia-ml-py load it (LD_LIBRARY_PATH) and read the
description (NVML_STUB_CONFIG). The library is loaded by the dynamic loader at process start, so
everything that uses it runs as a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parents[1] / "fixtures" / "nvml-stub" / "nvml_stub.c"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
LIBRARY = "libnvidia-ml.so.1"
# Symbols a build can leave out (a driver library older than the bindings).
DROPS = {
    "nvmlDeviceGetComputeRunningProcesses_v3": "STUB_DROP_PROCESSES_V3",
    "nvmlDeviceGetComputeRunningProcesses_v2": "STUB_DROP_PROCESSES_V2",
}
_COMPUTE_MODES = {"default": 0, "exclusive_thread": 1, "prohibited": 2, "exclusive_process": 3}


class CompilerMissing(RuntimeError):
    pass


def build(folder: Path, drop: Iterable[str] = ()) -> Path:
    """Compile the stub into folder/libnvidia-ml.so.1; returns the folder."""
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if compiler is None:
        raise CompilerMissing("no C compiler (gcc): apt install gcc libc6-dev")
    folder.mkdir(parents=True, exist_ok=True)
    defines = [f"-D{DROPS[name]}" for name in drop]
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", *defines, "-o",
         str(folder / LIBRARY), str(SOURCE)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return folder


def records(name: str = "h200-captured.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        major, minor = value.split(".")
        return int(major), int(minor)
    return int(value[0]), int(value[1])


def describe(path: Path, system: Mapping[str, Any], fail: Mapping[str, int] | None = None) -> Path:
    """Write the stub's description of `system` (a GpuSystem JSON record) to `path`.

    `fail` maps an NVML function (as pynvml calls it, without _v2: nvmlInit, nvmlDeviceGetCount,
    nvmlDeviceGetComputeRunningProcesses, ...) to the NVML error code it returns.
    """
    major, minor = _pair(system["cuda_driver_version"])
    lines = [f"driver\t{system['driver_version']}", f"cuda\t{major * 1000 + minor * 10}"]
    for gpu in system["gpus"]:
        cc_major, cc_minor = _pair(gpu["compute_capability"])
        mig = gpu.get("mig_mode")
        fields = [
            gpu["name"], gpu["uuid"], gpu["memory_total_bytes"], gpu["memory_free_bytes"],
            gpu["memory_used_bytes"], cc_major, cc_minor, gpu.get("minor_number") or gpu["index"],
            -1 if mig is None else int(mig), gpu.get("utilization_percent") or 0,
            _COMPUTE_MODES.get(gpu.get("compute_mode") or "default", 0),
        ]  # fmt: skip
        lines.append("\t".join(["gpu", *map(str, fields)]))
        for proc in gpu.get("processes") or ():
            used = proc.get("used_memory_bytes") or 0
            name = proc.get("name") or "python3"
            lines.append(f"proc\t{gpu['index']}\t{proc['pid']}\t{used}\t{name}")
    lines += [f"fail\t{fn}\t{code}" for fn, code in (fail or {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(library_folder: Path, description: Path, base: Mapping[str, str]) -> dict[str, str]:
    """`base` plus what makes a new process load the stub and read `description`."""
    env = dict(base)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(library_folder), *filter(None, [base.get("LD_LIBRARY_PATH")])]
    )
    env["NVML_STUB_CONFIG"] = str(description)
    env.pop("HVINFRA_GPU_RECORDS", None)
    return env
