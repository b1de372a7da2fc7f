"""Smoke tests on a real GPU: the records NVML gives are sane, doctor's NVML rows pass, and
`up --dry-run --gpus 0` resolves GPU 0. No GPU model or memory size is assumed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hvinfra.cli import main
from hvinfra.records import GpuSystem

pytestmark = pytest.mark.gpu

UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_records_are_sane(gpu_system: GpuSystem) -> None:
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", gpu_system.driver_version)
    assert gpu_system.cuda_driver_version >= (11, 0)
    assert [g.index for g in gpu_system.gpus] == list(range(len(gpu_system.gpus)))
    assert len({g.uuid for g in gpu_system.gpus}) == len(gpu_system.gpus)
    for gpu in gpu_system.gpus:
        assert UUID.match(gpu.uuid), gpu.uuid
        assert gpu.name
        assert gpu.memory_total_bytes > 0
        assert 0 <= gpu.memory_free_bytes <= gpu.memory_total_bytes
        assert 0 <= gpu.memory_used_bytes <= gpu.memory_total_bytes
        major, minor = gpu.compute_capability
        assert major >= 3 and minor >= 0
        assert gpu.minor_number is None or gpu.minor_number >= 0
        assert gpu.utilization_percent is None or 0 <= gpu.utilization_percent <= 100
        assert gpu.compute_mode in {None, "default", "prohibited", "exclusive_process"}


def test_nvml_library_path_is_where_the_driver_lives(gpu_system: GpuSystem) -> None:
    assert gpu_system.nvml_library_path is not None
    assert "libnvidia-ml.so" in gpu_system.nvml_library_path
    assert Path(gpu_system.nvml_library_path).exists()


def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "t2v", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_doctor_nvml_rows_pass(gpu_system: GpuSystem, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = _doctor(capsys)
    assert code in (0, 10)  # 10 where something else (no Docker here, say) fails
    status = {c["name"]: c["status"] for c in data["checks"] if c["gpu"] is None}
    assert status["nvml"] == "pass"
    assert status["gpus"] == "pass"
    assert status["cuda_driver"] == "pass"  # the driver supports the cuda_12 image's 12.4
    vram = [c for c in data["checks"] if c["name"] == "vram"]
    assert [c["gpu"] for c in vram] == [g.index for g in gpu_system.gpus]
    reported = data["gpus"]
    assert reported["driver_version"] == gpu_system.driver_version
    assert [g["uuid"] for g in reported["gpus"]] == [g.uuid for g in gpu_system.gpus]
    assert [g["memory_total_bytes"] for g in reported["gpus"]] == [
        g.memory_total_bytes for g in gpu_system.gpus
    ]


def test_up_dry_run_resolves_gpu_0(
    gpu_system: GpuSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "t2v", "--dry-run", "--gpus", "0", "--json"]) == 0
    argv = json.loads(capsys.readouterr().out)["argv"]
    assert argv[argv.index("--gpus") + 1] == f"device={gpu_system.gpus[0].uuid}"
