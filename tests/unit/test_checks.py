"""Pre-flight checks over recorded-style records: pure, no NVML, no Docker."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from gpu_fakes import GIB, copies, engine_info, free_gib, recorded, with_gpu

from hvinfra.checks import (
    CheckResult,
    DaemonMemlock,
    Facts,
    failed,
    run_checks,
    select_gpus,
)
from hvinfra.errors import DockerUnreachable, GpuRuntimeError, NvmlError
from hvinfra.records import GpuProcess, ImageInfo
from hvinfra.requirements import load

REQ = load()


def facts(**changes: Any) -> Facts:
    base = Facts(
        workload="t2v",
        resolution="720p",
        image_ref="hunyuanvideo/hunyuanvideo:cuda_12",
        engine=engine_info(),
        gpus=recorded(),
        image=ImageInfo(id="sha256:1", size=20 * GIB),
        docker_root_free=500 * GIB,
        weights_path="/data/ckpts",
        weights_free=500 * GIB,
        weights_present=True,
        memlock_wanted=-1,
        memlock=DaemonMemlock(hard=-1, source="/proc/1/limits"),
    )
    return dataclasses.replace(base, **changes)


def row(results: list[CheckResult], name: str, gpu: int | None = None) -> CheckResult:
    return next(r for r in results if r.name == name and (gpu is None or r.gpu == gpu))


def test_recorded_h100_passes_every_check_for_720p() -> None:
    results = run_checks(facts(), REQ)
    assert failed(results) == []
    assert [r.name for r in results] == [
        "docker", "gpu_runtime", "nvml", "gpus", "vram", "mig", "gpu_processes", "cuda_driver",
        "disk_image", "disk_weights", "memlock",
    ]  # fmt: skip


def test_vram_gate_refuses_720p_with_less_than_60gib_free_and_says_what_fits() -> None:
    results = run_checks(facts(gpus=free_gib(recorded(), 50)), REQ)
    vram = row(results, "vram", gpu=0)
    assert vram.status == "fail"
    assert "50.0 GiB free" in vram.detail
    assert "needs 60 GiB" in vram.detail
    assert "--set resolution=540p" in vram.fix
    assert "--fp8" in vram.fix


def test_vram_passes_540p_on_the_same_gpu() -> None:
    results = run_checks(facts(gpus=free_gib(recorded(), 50), resolution="540p"), REQ)
    assert row(results, "vram", gpu=0).status == "pass"


def test_vram_with_fp8_lowers_the_need() -> None:
    results = run_checks(facts(gpus=free_gib(recorded(), 52), fp8=True), REQ)
    assert row(results, "vram", gpu=0).status == "pass"


def test_short_gpus_that_fit_together_with_xdit_only_warn() -> None:
    system = copies(recorded(), 2)
    system = free_gib(free_gib(system, 45, 0), 45, 1)
    results = run_checks(facts(gpus=system), REQ)
    assert {row(results, "vram", gpu=i).status for i in (0, 1)} == {"warn"}
    assert "xDiT" in row(results, "vram", gpu=0).detail


def test_small_gpu_with_nothing_that_fits_says_so() -> None:
    results = run_checks(facts(gpus=free_gib(recorded(), 12)), REQ)
    assert "nothing fits" in row(results, "vram", gpu=0).fix


def test_only_selected_gpus_are_checked() -> None:
    system = free_gib(copies(recorded(), 2), 5, 1)
    results = run_checks(facts(gpus=system, selection=("0",)), REQ)
    assert [r.gpu for r in results if r.name == "vram"] == [0]
    assert failed(results) == []


def test_mig_mode_fails_with_how_to_disable() -> None:
    results = run_checks(facts(gpus=with_gpu(recorded(), mig_mode=True)), REQ)
    mig = row(results, "mig")
    assert mig.status == "fail"
    assert "-mig 0" in mig.fix


def test_other_processes_warn_and_exclusive_mode_fails() -> None:
    busy = with_gpu(recorded(), processes=(GpuProcess(pid=77, used_memory_bytes=GIB, name="x"),))
    assert row(run_checks(facts(gpus=busy), REQ), "gpu_processes").status == "warn"
    exclusive = with_gpu(busy, compute_mode="exclusive_process")
    assert row(run_checks(facts(gpus=exclusive), REQ), "gpu_processes").status == "fail"
    prohibited = with_gpu(recorded(), compute_mode="prohibited")
    assert row(run_checks(facts(gpus=prohibited), REQ), "gpu_processes").status == "fail"


@pytest.mark.parametrize(
    ("cuda", "status"), [((13, 0), "pass"), ((12, 4), "pass"), ((12, 2), "warn"), ((11, 8), "fail")]
)
def test_driver_cuda_version_against_the_cuda_12_4_image(
    cuda: tuple[int, int], status: str
) -> None:
    system = dataclasses.replace(recorded(), cuda_driver_version=cuda)
    result = row(run_checks(facts(gpus=system, image=None), REQ), "cuda_driver")
    assert result.status == status
    if status != "pass":
        assert "550.54.14" in result.fix


def test_image_env_sets_the_cuda_requirement() -> None:
    image = ImageInfo(id="sha256:1", env=("NVIDIA_REQUIRE_CUDA=cuda>=12.8",))
    system = dataclasses.replace(recorded(), cuda_driver_version=(12, 4))
    result = row(run_checks(facts(gpus=system, image=image), REQ), "cuda_driver")
    assert result.status == "warn"
    assert "NVIDIA_REQUIRE_CUDA" in result.detail


def test_old_docker_fails_and_unreachable_docker_keeps_its_fix() -> None:
    old = run_checks(facts(engine=engine_info(server_version="19.03.15")), REQ)
    assert row(old, "docker").status == "fail"
    down = DockerUnreachable("cannot reach the Docker daemon", "start it")
    results = run_checks(facts(engine=None, engine_error=down), REQ)
    assert row(results, "docker").fix == "start it"
    assert row(results, "nvml").status == "pass"  # NVML rows still reported


@pytest.mark.parametrize(
    ("runtimes", "hook", "mode", "status"),
    [
        (("runc", "nvidia"), None, "toolkit", "pass"),
        (("runc",), "/usr/bin/nvidia-container-runtime-hook", "toolkit", "pass"),
        (("runc",), None, "toolkit", "fail"),
        (("runc",), None, "devices", "pass"),
    ],
)
def test_gpu_runtime(runtimes: tuple[str, ...], hook: str | None, mode: str, status: str) -> None:
    result = row(
        run_checks(
            facts(engine=engine_info(runtimes=runtimes), hook_path=hook, gpu_mode=mode), REQ
        ),
        "gpu_runtime",
    )
    assert result.status == status
    if status == "fail":
        assert "nvidia-ctk runtime configure" in result.fix


def test_nvml_failure_fails_and_skips_the_gpu_rows() -> None:
    error = NvmlError("NVML: library not found", "install the NVIDIA driver", code=12)
    results = run_checks(facts(gpus=None, gpu_error=error), REQ)
    assert row(results, "nvml").status == "fail"
    assert row(results, "nvml").fix == "install the NVIDIA driver"
    assert not [r for r in results if r.name in {"gpus", "vram", "cuda_driver"}]


def test_no_gpus_requested_needs_no_nvml() -> None:
    error = NvmlError("NVML: library not found", "install", code=12)
    results = run_checks(facts(gpus=None, gpu_error=error, selection="none"), REQ)
    assert failed(results) == []


@pytest.mark.parametrize(
    ("lock", "status"),
    [
        (DaemonMemlock(hard=8 * 1024 * 1024, source="/proc/9/limits"), "fail"),
        (DaemonMemlock(hard=8 * 1024 * 1024, cap_sys_resource=True, source="p"), "pass"),
        (DaemonMemlock(source="remote daemon"), "warn"),
    ],
)
def test_memlock_against_the_daemon(lock: DaemonMemlock, status: str) -> None:
    result = row(run_checks(facts(memlock=lock), REQ), "memlock")
    assert result.status == status
    if status == "fail":
        assert "LimitMEMLOCK=infinity" in result.fix


def test_image_disk_short_fails_and_weights_disk_short_warns() -> None:
    results = run_checks(
        facts(image=None, docker_root_free=5 * GIB, weights_present=False, weights_free=GIB), REQ
    )
    assert row(results, "disk_image").status == "fail"
    assert "docker system prune" in row(results, "disk_image").fix
    assert row(results, "disk_weights").status == "warn"


def test_select_gpus_by_index_and_uuid() -> None:
    system = copies(recorded(), 2)
    assert select_gpus(("1",), system) == (system.gpus[1],)
    assert select_gpus((system.gpus[0].uuid.upper(),), system) == (system.gpus[0],)
    assert select_gpus("all", system) == system.gpus


def test_unknown_gpu_lists_the_gpus_seen() -> None:
    system = copies(recorded(), 2)
    with pytest.raises(GpuRuntimeError) as caught:
        select_gpus(("5",), system)
    assert "no GPU 5" in caught.value.message
    assert system.gpus[1].uuid in caught.value.message
    with pytest.raises(GpuRuntimeError):
        select_gpus(("GPU-00000000-0000-0000-0000-000000000000",), system)


def test_vram_row_names_a_measured_figure_as_measured() -> None:
    per_gpu = {**REQ.per_gpu, "t2v": {**REQ.per_gpu["t2v"], "720p": (58.0, "measured")}}
    measured = dataclasses.replace(REQ, per_gpu=per_gpu)
    vram = row(run_checks(facts(), measured), "vram", gpu=0)
    assert "needs 58 GiB (measured)" in vram.detail
    assert "(measured)" not in row(run_checks(facts(), REQ), "vram", gpu=0).detail


def test_vram_row_shows_the_smoke_peak_next_to_the_official_need() -> None:
    vram = row(run_checks(facts(gpus=free_gib(recorded(), 50), resolution="540p"), REQ), "vram", 0)
    assert vram.status == "pass"  # the peak is shown, it does not gate
    assert (
        "t2v 540p needs 45 GiB (peak measured 61.4 GiB on NVIDIA H200, 2026-12-03," in vram.detail
    )
    fp8 = row(run_checks(facts(fp8=True), REQ), "vram", gpu=0)
    assert "peak measured" not in fp8.detail


def test_what_fits_never_suggests_a_size_generate_refuses() -> None:
    """360p is not a text-to-video size: `generate t2v -r 360p` refuses it, so a short GPU is
    not told to use it; for image-to-video it is a real choice."""
    t2v = row(run_checks(facts(gpus=free_gib(recorded(), 41.5)), REQ), "vram", gpu=0)
    assert t2v.status == "fail"
    assert "360p" not in t2v.fix and "--cpu-offload" in t2v.fix
    i2v = row(run_checks(facts(gpus=free_gib(recorded(), 41.5), workload="i2v"), REQ), "vram", 0)
    assert "360p (~35 GiB): `--set resolution=360p`" in i2v.fix
