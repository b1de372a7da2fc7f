"""The NVML adapter over fake bindings: records read right, every NVML failure mapped to a fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from gpu_fakes import FakeNvml, recorded, with_gpu

from hvinfra.errors import ExitCode, NvmlError
from hvinfra.gpu import NvmlProbe, cuda_from_nvml, nvml_library_path
from hvinfra.records import GpuProcess

MAPS = (
    "7f3a1c000000-7f3a1c200000 r-xp 00000000 08:01 1234 "
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.82.07\n"
    "7f3a1d000000-7f3a1d100000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
)


def probe_with(fake: FakeNvml, tmp_path: Path, maps: str = MAPS) -> NvmlProbe:
    maps_file = tmp_path / "maps"
    maps_file.write_text(maps)
    return NvmlProbe(nvml=fake, maps_path=str(maps_file))


def test_probe_returns_the_records_nvml_reports(tmp_path: Path) -> None:
    system = with_gpu(
        recorded(),
        processes=(GpuProcess(pid=4242, used_memory_bytes=2 * 1024**3, name="python3"),),
        utilization_percent=37,
    )
    fake = FakeNvml(system)
    got = probe_with(fake, tmp_path).probe()
    assert got.gpus == system.gpus
    assert got.driver_version == system.driver_version
    assert got.cuda_driver_version == system.cuda_driver_version
    assert got.nvml_library_path == "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.82.07"
    assert fake.shutdowns == 1


def test_cuda_version_is_decoded_from_nvml_integer() -> None:
    assert cuda_from_nvml(12040) == (12, 4)
    assert cuda_from_nvml(13000) == (13, 0)
    assert cuda_from_nvml(11080) == (11, 8)


def test_library_path_is_none_when_not_mapped() -> None:
    assert nvml_library_path("7f-8f r-xp 0 0 0 /usr/lib/libc.so.6\n") is None


@pytest.mark.parametrize(
    ("code", "in_message", "in_fix"),
    [
        (12, "libnvidia-ml.so.1", "install the NVIDIA driver"),
        (9, "kernel driver is not loaded", "modprobe nvidia"),
        (4, "no permission", "/dev/nvidia"),
        (18, "do not match", "reboot"),
        (999, "unknown error", "nvidia-smi"),
    ],
)
def test_init_failures_become_errors_with_a_fix(
    tmp_path: Path, code: int, in_message: str, in_fix: str
) -> None:
    fake = FakeNvml(recorded(), fail={"nvmlInit": code})
    with pytest.raises(NvmlError) as caught:
        probe_with(fake, tmp_path).probe()
    assert in_message in caught.value.message
    assert in_fix in caught.value.fix
    assert caught.value.code == code
    assert caught.value.exit_code == ExitCode.GPU_RUNTIME


def test_gpu_lost_while_reading_is_an_error_and_nvml_is_shut_down(tmp_path: Path) -> None:
    fake = FakeNvml(recorded(), fail={"nvmlDeviceGetMemoryInfo": 15})
    with pytest.raises(NvmlError) as caught:
        probe_with(fake, tmp_path).probe()
    assert "GPU is lost" in caught.value.message
    assert "GPU 0" in caught.value.message
    assert fake.shutdowns == 1


def test_values_a_gpu_does_not_offer_become_none(tmp_path: Path) -> None:
    fake = FakeNvml(
        recorded(),
        fail={"nvmlDeviceGetMigMode": 3, "nvmlDeviceGetMinorNumber": 3,
              "nvmlDeviceGetComputeRunningProcesses": 4},
    )  # fmt: skip
    gpu = probe_with(fake, tmp_path).probe().gpus[0]
    assert gpu.mig_mode is None
    assert gpu.minor_number is None
    assert gpu.processes == ()


def test_unknown_code_keeps_nvml_text(tmp_path: Path) -> None:
    fake = FakeNvml(recorded(), fail={"nvmlDeviceGetCount": 10})
    with pytest.raises(NvmlError) as caught:
        probe_with(fake, tmp_path).probe()
    assert "counting GPUs" in caught.value.message
    assert "Timeout" in caught.value.message


def test_missing_bindings_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(NvmlError) as caught:
        NvmlProbe().probe()
    assert "nvidia-ml-py" in caught.value.fix
