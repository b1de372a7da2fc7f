"""The requirements table and the 'what would fit' advice."""

from __future__ import annotations

import pytest

from hvinfra.requirements import (
    describe_options,
    image_cuda_requirement,
    load,
    what_would_fit,
)

REQ = load()


def test_official_figures_come_from_the_data_file() -> None:
    assert REQ.vram("t2v", "720p").gib == 60
    assert REQ.vram("t2v", "720p").basis == "official"
    assert REQ.vram("t2v", "540p").gib == 45
    assert REQ.vram("i2v", "720p").gib == 60
    assert REQ.recommended_gib == 80


def test_fp8_saves_ten_gib_and_offload_does_not_stack_with_it() -> None:
    assert REQ.vram("t2v", "720p", fp8=True).gib == 50
    offload = REQ.vram("t2v", "720p", cpu_offload=True)
    both = REQ.vram("t2v", "720p", fp8=True, cpu_offload=True)
    assert offload.gib < 50
    assert both.gib == offload.gib
    assert offload.basis == "estimate"


def test_no_setting_goes_below_the_floor() -> None:
    assert REQ.vram("i2v", "360p", fp8=True, cpu_offload=True).gib == REQ.floor_gib


def test_image_env_beats_the_table() -> None:
    env = ("PATH=/usr/bin", "NVIDIA_REQUIRE_CUDA=cuda>=12.1 brand=tesla,driver>=470")
    assert image_cuda_requirement(REQ, "hunyuanvideo/hunyuanvideo:cuda_12", env)[0] == (12, 1)
    assert image_cuda_requirement(REQ, "hunyuanvideo/hunyuanvideo:cuda_12")[0] == (12, 4)
    assert image_cuda_requirement(REQ, "x:1", ("CUDA_VERSION=11.8.0",))[0] == (11, 8)
    assert image_cuda_requirement(REQ, "someone/else:latest")[0] is None


def test_48gib_gpu_at_720p_is_offered_540p_and_offload_not_fp8() -> None:
    options = what_would_fit(
        REQ, "t2v", "720p", fp8=False, cpu_offload=False, free_gib={0: 48.0}, short_gpus=[0]
    )
    hows = [o.how for o in options]
    assert "--set resolution=540p" in hows
    assert "--cpu-offload" in hows
    assert "--fp8" not in hows  # 50 GiB does not fit in 48


def test_52gib_gpu_is_offered_fp8() -> None:
    options = what_would_fit(
        REQ, "t2v", "720p", fp8=False, cpu_offload=False, free_gib={0: 52.0}, short_gpus=[0]
    )
    assert "--fp8" in [o.how for o in options]


def test_another_gpu_with_room_is_named() -> None:
    options = what_would_fit(
        REQ, "t2v", "720p", fp8=False, cpu_offload=False, free_gib={0: 10.0, 1: 79.0},
        short_gpus=[0],
    )  # fmt: skip
    assert options[0].how == "--gpus 1"


@pytest.mark.parametrize(("free", "offered"), [(44.0, True), (31.0, False)])
def test_xdit_is_offered_only_when_each_gpu_holds_the_weights(free: float, offered: bool) -> None:
    gpus = {i: free for i in range(8)}
    options = what_would_fit(
        REQ, "t2v", "720p", fp8=True, cpu_offload=True, free_gib=gpus, short_gpus=list(gpus)
    )
    assert any("xDiT" in o.what for o in options) is offered


def test_nothing_fits_gives_no_options_and_empty_text() -> None:
    options = what_would_fit(
        REQ, "t2v", "720p", fp8=False, cpu_offload=False, free_gib={0: 8.0}, short_gpus=[0]
    )
    assert options == []
    assert describe_options(options) == ""
