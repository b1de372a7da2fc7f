"""doctor and `up --dry-run` in devices mode through the real nvidia-ml-py bindings, loading an
NVML-shaped stand-in library (tests/fixtures/nvml-stub, a test fixture, not NVIDIA's library)
in a fresh process: the ctypes path, the versioned-symbol checks and the NVML error codes run for
real, and every failure ends in a row or an error with a fix, never a traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import nvml_stub
import pytest
from adapter_fixtures import cli_env as cli_env
from adapter_fixtures import nvml_libraries as nvml_libraries

GIB = 1024**3


def hvinfra(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvinfra", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def through_stub(
    tmp_path: Path,
    env: dict[str, str],
    library: Path,
    system: dict[str, Any] | None = None,
    fail: dict[str, int] | None = None,
) -> dict[str, str]:
    description = nvml_stub.describe(
        tmp_path / "gpus.txt", system or nvml_stub.records(), fail=fail
    )
    return nvml_stub.environment(library, description, env)


def doctor_json(env: dict[str, str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    result = hvinfra(env, "doctor", "t2v", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 10, result.stderr  # Docker and the weights are absent here
    data = json.loads(result.stdout)
    return data, {row["name"]: row for row in data["checks"]}


def with_process(system: dict[str, Any]) -> dict[str, Any]:
    system["gpus"][0]["processes"] = [
        {"pid": 4242, "used_memory_bytes": 3 * GIB, "name": "python3 train.py"}
    ]
    return system


def test_doctor_reads_the_captured_h200_through_the_real_bindings(
    tmp_path: Path, cli_env: dict[str, str], nvml_libraries: dict[str, Path]
) -> None:
    env = through_stub(tmp_path, cli_env, nvml_libraries["full"], with_process(nvml_stub.records()))
    data, rows = doctor_json(env)
    gpu = data["gpus"]["gpus"][0]
    assert (gpu["name"], gpu["uuid"]) == ("NVIDIA H200", "GPU-c63e81c2-3cab-95d4-bd74-d62d39be71e5")
    assert gpu["memory_free_bytes"] == 150109880320
    assert gpu["compute_capability"] == "9.0"
    assert data["gpus"]["cuda_driver_version"] == "13.0"
    # The driver-folder discovery reads where this process loaded the library from.
    library = str(nvml_libraries["full"] / "libnvidia-ml.so.1")
    assert data["gpus"]["nvml_library_path"] == library
    assert rows["nvml"]["status"] == "pass"
    assert library in rows["nvml"]["detail"]
    assert rows["gpu_processes"]["status"] == "warn"
    assert "4242 python3 train.py 3.0 GiB" in rows["gpu_processes"]["detail"]


def test_driver_without_the_v3_process_call_is_asked_through_v2(
    tmp_path: Path, cli_env: dict[str, str], nvml_libraries: dict[str, Path]
) -> None:
    """pynvml raises NVMLLibraryMismatchError (not an NVMLError) when _v3 is missing."""
    system = with_process(nvml_stub.records())
    env = through_stub(tmp_path, cli_env, nvml_libraries["no_v3"], system)
    _, rows = doctor_json(env)
    assert rows["nvml"]["status"] == "pass"
    assert "4242 python3 train.py" in rows["gpu_processes"]["detail"]


def test_driver_without_any_process_call_gives_an_update_the_driver_row(
    tmp_path: Path, cli_env: dict[str, str], nvml_libraries: dict[str, Path]
) -> None:
    env = through_stub(tmp_path, cli_env, nvml_libraries["no_processes"])
    _, rows = doctor_json(env)
    row = rows["gpu_processes"]
    assert row["status"] == "warn"
    assert "could not list the processes on GPU 0" in row["detail"]
    assert "nvmlDeviceGetComputeRunningProcesses_v3" in row["detail"]
    assert "update the NVIDIA driver" in row["fix"]
    assert rows["vram"]["status"] == "pass"


@pytest.mark.parametrize(
    ("function", "code", "said", "fix"),
    [
        ("nvmlInit", 9, "kernel driver is not loaded", "modprobe nvidia"),
        ("nvmlInit", 4, "no permission", "/dev/nvidia*"),
        ("nvmlInit", 12, "libnvidia-ml.so.1) was not found", "install the NVIDIA driver"),
        ("nvmlInit", 18, "do not match", "reboot"),
        ("nvmlInit", 999, "unknown error", "nvidia-smi"),
        ("nvmlDeviceGetCount", 17, "operating system blocked", "SELinux"),
        ("nvmlDeviceGetMemoryInfo", 15, "fell off the bus", "nvidia-smi -r"),
        ("nvmlDeviceGetHandleByIndex", 16, "needs a reset", "nvidia-smi -r"),
        ("nvmlDeviceGetComputeRunningProcesses", 15, "fell off the bus", "Xid"),
        ("nvmlDeviceGetMigMode", 15, "fell off the bus", "Xid"),
    ],
)
def test_every_nvml_error_code_is_a_failed_nvml_row_with_its_fix(
    tmp_path: Path,
    cli_env: dict[str, str],
    nvml_libraries: dict[str, Path],
    function: str,
    code: int,
    said: str,
    fix: str,
) -> None:
    env = through_stub(tmp_path, cli_env, nvml_libraries["full"], fail={function: code})
    data, rows = doctor_json(env)
    assert data["gpus"] is None
    assert rows["nvml"]["status"] == "fail"
    assert said in rows["nvml"]["detail"]
    assert fix in rows["nvml"]["fix"]


def test_no_library_on_the_loader_path_is_the_install_the_driver_row(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(cli_env, LD_LIBRARY_PATH=str(empty))
    system_folders = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")
    if any(Path(d, "libnvidia-ml.so.1").exists() for d in system_folders):
        pytest.skip("this host has a real NVIDIA driver library")
    _, rows = doctor_json(env)
    assert rows["nvml"]["status"] == "fail"
    assert "was not found" in rows["nvml"]["detail"]


def test_a_library_file_that_is_not_a_library_is_the_install_the_driver_row(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "libnvidia-ml.so.1").write_text("not an ELF file\n")
    _, rows = doctor_json(dict(cli_env, LD_LIBRARY_PATH=str(broken)))
    assert rows["nvml"]["status"] == "fail"
    assert "was not found" in rows["nvml"]["detail"]
    assert "install the NVIDIA driver" in rows["nvml"]["fix"]


@pytest.fixture
def dev_nodes(tmp_path: Path) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    for node in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        try:
            os.mknod(dev / node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip("mknod needs root")
    return dev


def test_up_dry_run_in_devices_mode_mounts_the_folder_nvml_was_loaded_from(
    tmp_path: Path, cli_env: dict[str, str], nvml_libraries: dict[str, Path], dev_nodes: Path
) -> None:
    env = through_stub(tmp_path, cli_env, nvml_libraries["no_v3"])
    env["HVINFRA_DEV_DIR"] = str(dev_nodes)
    result = hvinfra(env, "up", "t2v", "--dry-run", "--set", "gpu.mode=devices")
    assert result.returncode == 0, result.stderr
    library_folder = nvml_libraries["no_v3"]
    assert f"--volume {library_folder}:/usr/local/nvidia/lib64:ro" in result.stdout
    assert f"--device {dev_nodes}/nvidia0:/dev/nvidia0:rwm" in result.stdout
    assert f"driver 580.159.04 from {library_folder} (found by nvml)" in result.stderr


def test_up_dry_run_in_devices_mode_with_the_driver_not_loaded_says_so(
    tmp_path: Path, cli_env: dict[str, str], nvml_libraries: dict[str, Path], dev_nodes: Path
) -> None:
    env = through_stub(tmp_path, cli_env, nvml_libraries["full"], fail={"nvmlInit": 9})
    env["HVINFRA_DEV_DIR"] = str(dev_nodes)
    result = hvinfra(env, "up", "t2v", "--dry-run", "--set", "gpu.mode=devices")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 0
    assert "kernel driver is not loaded" in result.stderr
    assert "modprobe nvidia" in result.stderr


def test_recorded_gpus_without_a_library_path_find_the_driver_through_ldconfig(
    tmp_path: Path, cli_env: dict[str, str], nvml_libraries: dict[str, Path], dev_nodes: Path
) -> None:
    """GPU records (HVINFRA_GPU_RECORDS) that do not say where NVML was loaded from: the driver
    folder comes from `ldconfig -p` (here a stand-in ldconfig first on PATH)."""
    system = nvml_stub.records()
    system.pop("nvml_library_path")
    records = tmp_path / "records.json"
    records.write_text(json.dumps(system))
    library = nvml_libraries["full"] / "libnvidia-ml.so.1"
    tools = tmp_path / "tools"
    tools.mkdir()
    ldconfig = tools / "ldconfig"
    ldconfig.write_text(
        "#!/bin/sh\necho '2 libs found in cache'\n"
        f"echo '\tlibnvidia-ml.so.1 (libc6,x86-64) => {library}'\n"
    )
    ldconfig.chmod(0o755)
    env = dict(cli_env, HVINFRA_GPU_RECORDS=str(records), HVINFRA_DEV_DIR=str(dev_nodes))
    env["PATH"] = f"{tools}:{env['PATH']}"
    result = hvinfra(env, "up", "t2v", "--dry-run", "--set", "gpu.mode=devices")
    assert result.returncode == 0, result.stderr
    assert f"from {library.parent} (found by ldconfig -p)" in result.stderr
    assert f"--volume {library.parent}:/usr/local/nvidia/lib64:ro" in result.stdout
