"""Generation tables, the request model, argv building and xDiT planning (pure)."""

from __future__ import annotations

import argparse
import shlex

import pytest

from hvinfra.generate.plan import (
    JobPlan,
    build_plan,
    exec_env,
    official_file_name_bytes,
    plan_xdit,
    slug,
)
from hvinfra.generate.request import I2VRequest, RequestInvalid, T2VRequest, make_request
from hvinfra.generate.tables import tables
from hvinfra.profiles import load_profile

# The official README's size table, as width:height -> `--video-size H W`.
OFFICIAL_SIZES = {
    ("540p", "16:9"): (544, 960), ("540p", "9:16"): (960, 544), ("540p", "4:3"): (624, 832),
    ("540p", "3:4"): (832, 624), ("540p", "1:1"): (720, 720),
    ("720p", "16:9"): (720, 1280), ("720p", "9:16"): (1280, 720), ("720p", "4:3"): (832, 1104),
    ("720p", "3:4"): (1104, 832), ("720p", "1:1"): (960, 960),
}  # fmt: skip

# The HunyuanVideo README's "Supported Parallel Configurations" table, row by row.
OFFICIAL_XDIT = [
    ("1280 720 or 720 1280", 8, "8x1,4x2,2x4,1x8"),
    ("1280 720 or 720 1280", 5, "1x5"),
    ("1280 720 or 720 1280", 4, "4x1,2x2,1x4"),
    ("1280 720 or 720 1280", 3, "3x1,1x3"),
    ("1280 720 or 720 1280", 2, "2x1,1x2"),
    ("1104 832 or 832 1104", 4, "4x1,2x2,1x4"),
    ("1104 832 or 832 1104", 3, "3x1,1x3"),
    ("1104 832 or 832 1104", 2, "2x1,1x2"),
    ("960 960", 6, "6x1,3x2,2x3,1x6"),
    ("960 960", 4, "4x1,2x2,1x4"),
    ("960 960", 3, "3x1,1x3"),
    ("960 960", 2, "1x2,2x1"),
    ("960 544 or 544 960", 6, "6x1,3x2,2x3,1x6"),
    ("960 544 or 544 960", 4, "4x1,2x2,1x4"),
    ("960 544 or 544 960", 3, "3x1,1x3"),
    ("960 544 or 544 960", 2, "1x2,2x1"),
    ("832 624 or 624 832", 4, "4x1,2x2,1x4"),
    ("832 624 or 624 832", 3, "3x1,1x3"),  # the README writes "624 832 or 624 832" (a typo)
    ("832 624 or 624 832", 2, "2x1,1x2"),
    ("720 720", 5, "1x5"),
    ("720 720", 3, "3x1,1x3"),
]
SIZE_OF = {hw: key for key, hw in OFFICIAL_SIZES.items()}


def official_parser() -> argparse.ArgumentParser:
    """The flags of Tencent-Hunyuan/HunyuanVideo hyvideo/config.py (fa14b00) and the I2V repo's
    (1481c1d) that hvinfra passes, with their types, nargs and choices as verified there."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["HYVideo-T/2", "HYVideo-T/2-cfgdistill"])
    parser.add_argument("--prompt", type=str)
    parser.add_argument("--neg-prompt", type=str)
    parser.add_argument("--video-size", type=int, nargs="+", default=(720, 1280))
    parser.add_argument("--video-length", type=int, default=129)
    parser.add_argument("--infer-steps", type=int, default=50)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--flow-shift", type=float)
    parser.add_argument("--flow-reverse", action="store_true")
    parser.add_argument("--embedded-cfg-scale", type=float)
    parser.add_argument("--use-cpu-offload", action="store_true")
    parser.add_argument("--use-fp8", action="store_true")
    parser.add_argument("--dit-weight", type=str)
    parser.add_argument("--save-path", type=str, default="./results")
    parser.add_argument("--ulysses-degree", type=int, default=1)
    parser.add_argument("--ring-degree", type=int, default=1)
    parser.add_argument("--i2v-mode", action="store_true")
    parser.add_argument("--i2v-resolution", choices=["720p", "540p", "360p"], default="720p")
    parser.add_argument("--i2v-image-path", type=str)
    parser.add_argument("--i2v-stability", action="store_true")
    parser.add_argument("--use-lora", action="store_true")
    parser.add_argument("--lora-path", type=str, default="")
    parser.add_argument("--lora-scale", type=float, default=1.0)
    return parser


def parsed(plan: JobPlan) -> argparse.Namespace:
    argv = list(plan.argv)
    script = next(i for i, a in enumerate(argv) if a.endswith(".py"))
    return official_parser().parse_args(argv[script + 1 :])


@pytest.fixture
def t2v_profile():  # type: ignore[no-untyped-def]
    return load_profile("t2v", env={"HOME": "/home/u"}).profile


@pytest.fixture
def i2v_profile():  # type: ignore[no-untyped-def]
    return load_profile("i2v", env={"HOME": "/home/u"}).profile


def t2v(**values: object) -> T2VRequest:
    request = make_request("t2v", **{"prompt": "a cat walks on the grass", "seed": 42, **values})
    assert isinstance(request, T2VRequest)
    return request


def i2v(**values: object) -> I2VRequest:
    request = make_request(
        "i2v", **{"prompt": "she smiles", "image": "/h/in.png", "seed": 1, **values}
    )
    assert isinstance(request, I2VRequest)
    return request


# -- tables -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("resolution", "aspect"), sorted(OFFICIAL_SIZES))
def test_every_resolution_and_aspect_maps_to_the_official_video_size(
    resolution: str, aspect: str
) -> None:
    height, width = t2v(resolution=resolution, aspect=aspect).video_size
    assert (height, width) == OFFICIAL_SIZES[(resolution, aspect)]
    w, h = (int(x) for x in aspect.split(":"))
    assert (width > height) == (w > h) and (width == height) == (w == h)  # aspect is w:h


def test_720p_portrait_is_1280_high_and_540p_square_is_720() -> None:
    assert t2v(resolution="720p", aspect="9:16").video_size == (1280, 720)
    assert t2v(resolution="540p", aspect="1:1").video_size == (720, 720)
    assert t2v().video_size == (720, 1280)  # the official default


def test_xdit_table_has_exactly_the_official_rows() -> None:
    expected: dict[tuple[int, int], dict[int, set[tuple[int, int]]]] = {}
    for sizes, nproc, pairs in OFFICIAL_XDIT:
        for size in sizes.split(" or "):
            hw = tuple(int(v) for v in size.split())
            combos = {tuple(int(v) for v in p.split("x")) for p in pairs.split(",")}
            expected.setdefault(hw, {}).setdefault(nproc, set()).update(combos)  # type: ignore[arg-type]
    table = tables().xdit_t2v
    assert {hw: {n: set(c) for n, c in by_n.items()} for hw, by_n in table.items()} == expected
    assert set(table) == set(OFFICIAL_SIZES.values())


# -- xDiT ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "nproc", "pair"),
    [
        (tuple(int(v) for v in size.split()), n, tuple(int(v) for v in p.split("x")))
        for sizes, n, pairs in OFFICIAL_XDIT
        for size in sizes.split(" or ")
        for p in pairs.split(",")
    ],
)
def test_every_official_xdit_configuration_is_accepted(
    size: tuple[int, int], nproc: int, pair: tuple[int, int]
) -> None:
    resolution, aspect = SIZE_OF[size]
    gpus = ",".join(str(i) for i in range(nproc))
    request = t2v(resolution=resolution, aspect=aspect, gpus=gpus, ulysses_degree=pair[0],
                  ring_degree=pair[1])  # fmt: skip
    plan = plan_xdit(request, nproc)
    assert (plan.ulysses, plan.ring) == pair


def test_xdit_default_is_the_ulysses_heavy_choice() -> None:
    assert plan_xdit(t2v(gpus="all"), 8).ulysses == 8
    assert (plan_xdit(t2v(gpus="all"), 5).ulysses, plan_xdit(t2v(gpus="all"), 5).ring) == (1, 5)


def test_xdit_refuses_a_gpu_count_the_table_lacks_and_names_the_valid_counts() -> None:
    with pytest.raises(RequestInvalid) as caught:
        plan_xdit(t2v(resolution="540p", aspect="1:1"), 4)
    assert "allows 3, 5 GPUs" in caught.value.message
    assert caught.value.exit_code == 2


def test_xdit_refuses_an_invalid_split_and_lists_the_valid_ones() -> None:
    with pytest.raises(RequestInvalid) as caught:
        plan_xdit(t2v(ulysses_degree=5, ring_degree=1), 5)
    assert "1x5" in caught.value.fix


def test_xdit_refuses_degrees_that_do_not_multiply_to_the_gpu_count() -> None:
    with pytest.raises(RequestInvalid):
        plan_xdit(t2v(ulysses_degree=2, ring_degree=2), 8)
    with pytest.raises(RequestInvalid, match="needs 2 GPUs"):
        plan_xdit(t2v(ulysses_degree=2), 1)


def test_cpu_offload_is_refused_with_several_gpus() -> None:
    with pytest.raises(RequestInvalid, match="cpu-offload"):
        plan_xdit(t2v(cpu_offload=True), 2)


def test_i2v_xdit_splits_any_gpu_count_whose_ulysses_divides_the_24_heads() -> None:
    assert (plan_xdit(i2v(), 8).ulysses, plan_xdit(i2v(), 8).ring) == (8, 1)
    assert (plan_xdit(i2v(), 5).ulysses, plan_xdit(i2v(), 5).ring) == (1, 5)
    with pytest.raises(RequestInvalid):
        plan_xdit(i2v(ulysses_degree=5), 5)
    with pytest.raises(RequestInvalid, match="at most 8"):
        plan_xdit(i2v(), 16)


# -- request validation -------------------------------------------------------------------------
NEAREST = [(128, "129"), (99, "97 or 101"), (130, "129"), (2, "5"), (64, "65"), (63, "61 or 65")]


@pytest.mark.parametrize(("frames", "nearest"), NEAREST)
def test_frame_counts_other_than_4k_plus_1_are_refused_naming_the_nearest(
    frames: int, nearest: str
) -> None:
    with pytest.raises(RequestInvalid) as caught:
        t2v(frames=frames)
    assert f"--frames: {frames} frames" in caught.value.message
    assert caught.value.message.endswith(f"nearest valid: {nearest}")


@pytest.mark.parametrize("frames", [5, 33, 65, 129])
def test_4k_plus_1_frame_counts_are_accepted(frames: int) -> None:
    assert t2v(frames=frames).frames == frames


@pytest.mark.parametrize(
    ("values", "flag"),
    [
        ({"resolution": "1080p"}, "--resolution"),
        ({"aspect": "21:9"}, "--aspect"),
        ({"steps": 0}, "--steps"),
        ({"prompt": "   "}, "--prompt"),
        ({"prompt": "a\x00b"}, "--prompt"),
        ({"gpus": "none"}, "--gpus"),
        ({"gpus": "0,0"}, "--gpus"),
    ],
)
def test_invalid_values_name_their_option(values: dict[str, object], flag: str) -> None:
    with pytest.raises(RequestInvalid) as caught:
        t2v(**values)
    assert f"\n  {flag}:" in caught.value.message


def test_i2v_resolution_360p_is_valid_and_1080p_is_not() -> None:
    assert i2v(resolution="360p").resolution == "360p"
    with pytest.raises(RequestInvalid, match="--resolution"):
        i2v(resolution="1080p")


def test_i2v_flow_shift_follows_the_mode_unless_given() -> None:
    assert i2v().effective_flow_shift == 7.0
    assert i2v(mode="dynamic").effective_flow_shift == 17.0
    assert i2v(mode="dynamic", flow_shift=9.5).effective_flow_shift == 9.5


# -- argv ---------------------------------------------------------------------------------------
def test_done_when_720p_9_16_parses_to_video_size_1280_720(t2v_profile) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(t2v(resolution="720p", aspect="9:16"), t2v_profile, job_id="j1")
    assert plan.argv[:2] == ("python3", "sample_video.py")
    args = parsed(plan)
    assert args.video_size == [1280, 720]
    assert args.prompt == "a cat walks on the grass"
    assert args.flow_reverse is True
    assert (args.video_length, args.infer_steps, args.seed) == (129, 50, 42)
    assert (args.flow_shift, args.embedded_cfg_scale) == (7.0, 6.0)
    assert args.save_path == "/workspace/outputs/j1"
    assert plan.workdir == "/workspace/HunyuanVideo"
    assert plan.container == "hunyuanvideo"
    assert plan.save_dir_host == "/home/u/.local/share/hvinfra/t2v/outputs/j1"


@pytest.mark.parametrize(
    "prompt",
    [
        "-x starts with a dash",
        "--help",
        "--video-size 1 1",
        "quote ' \" $(id) `id`",
        "two\nlines",
        "ünïcödé 猫",
        "=equals",
    ],
)
def test_any_prompt_text_stays_one_value(prompt: str, t2v_profile) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(t2v(prompt=prompt, neg_prompt=prompt), t2v_profile, job_id="j")
    args = parsed(plan)
    assert args.prompt == prompt and args.neg_prompt == prompt
    assert args.video_size == [720, 1280]


def test_fp8_points_dit_weight_at_the_fp8_file_in_the_weights_mount(t2v_profile) -> None:  # type: ignore[no-untyped-def]
    args = parsed(build_plan(t2v(fp8=True, cpu_offload=True), t2v_profile, job_id="j"))
    assert args.use_fp8 and args.use_cpu_offload
    assert args.dit_weight == (
        "/workspace/HunyuanVideo/ckpts/hunyuan-video-t2v-720p/transformers/"
        "mp_rank_00_model_states_fp8.pt"
    )


def test_multi_gpu_t2v_is_a_torchrun_line_with_degrees(t2v_profile) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(t2v(gpus="0,1,2,3"), t2v_profile, job_id="j")
    assert plan.argv[:3] == ("torchrun", "--nproc_per_node=4", "sample_video.py")
    args = parsed(plan)
    assert (args.ulysses_degree, args.ring_degree) == (4, 1)
    assert plan.env == ()


def test_gpus_all_uses_the_host_count_or_plans_one_gpu_with_a_note(t2v_profile) -> None:  # type: ignore[no-untyped-def]
    assert build_plan(t2v(gpus="all"), t2v_profile, job_id="j", host_gpu_count=8).xdit.nproc == 8
    plan = build_plan(t2v(gpus="all"), t2v_profile, job_id="j", host_gpu_count=None)
    assert plan.xdit.nproc == 1 and plan.notes


def test_i2v_argv_has_the_official_i2v_flags(i2v_profile) -> None:  # type: ignore[no-untyped-def]
    request = i2v(mode="stability", lora="/elsewhere/embrace.safetensors", lora_scale=0.5)
    plan = build_plan(request, i2v_profile, job_id="j")
    assert plan.argv[:2] == ("python3", "sample_image2video.py")
    args = parsed(plan)
    assert args.model == "HYVideo-T/2" and args.i2v_mode and args.i2v_stability
    assert args.i2v_resolution == "720p" and args.flow_shift == 7.0
    assert args.i2v_image_path == "/tmp/hvinfra-inputs/j/input.png"
    assert args.use_lora and args.lora_scale == 0.5
    assert args.lora_path == "/tmp/hvinfra-inputs/j/lora.safetensors"
    assert [(c.host_path, c.container_path) for c in plan.copy_in] == [
        ("/h/in.png", "/tmp/hvinfra-inputs/j/input.png"),
        ("/elsewhere/embrace.safetensors", "/tmp/hvinfra-inputs/j/lora.safetensors"),
    ]
    assert plan.workdir == "/workspace/HunyuanVideo-I2V"


def test_i2v_lora_inside_the_weights_mount_is_used_in_place(i2v_profile) -> None:  # type: ignore[no-untyped-def]
    lora = "/home/u/.local/share/hvinfra/i2v/ckpts/hunyuan-video-i2v-720p/lora/embrace.safetensors"
    plan = build_plan(i2v(lora=lora), i2v_profile, job_id="j")
    assert parsed(plan).lora_path == (
        "/workspace/HunyuanVideo-I2V/ckpts/hunyuan-video-i2v-720p/lora/embrace.safetensors"
    )
    assert len(plan.copy_in) == 1


def test_multi_gpu_i2v_sets_allow_resize_for_sp(i2v_profile) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(i2v(gpus="0,1"), i2v_profile, job_id="j")
    assert plan.env == (("ALLOW_RESIZE_FOR_SP", "1"),)
    assert plan.line.startswith("ALLOW_RESIZE_FOR_SP=1 torchrun --nproc_per_node=2 ")
    assert shlex.split(plan.line)[1:] == list(plan.argv)


def test_docker_exec_line_carries_workdir_env_and_container(i2v_profile) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(i2v(gpus="0,1"), i2v_profile, job_id="j")
    argv = plan.docker_exec_argv()
    assert argv[:4] == ["docker", "exec", "--workdir", "/workspace/HunyuanVideo-I2V"]
    assert argv[4:7] == ["--env", "ALLOW_RESIZE_FOR_SP=1", "hunyuanvideo-i2v"]
    assert argv[7:] == list(plan.argv)


def test_output_stem_is_mode_slug_seed_and_size(t2v_profile, i2v_profile) -> None:  # type: ignore[no-untyped-def]
    plan = build_plan(t2v(aspect="9:16", seed=7), t2v_profile, job_id="j")
    assert plan.output_stem == "t2v_a-cat-walks-on-the-grass_seed7_720x1280"
    assert build_plan(i2v(), i2v_profile, job_id="j").output_stem == "i2v_she-smiles_seed1_720p"
    assert slug("猫!!") == "video" and slug("Ünïcode café") == "unicode-cafe"


def test_a_subset_of_gpus_in_a_container_with_all_gpus_uses_cuda_visible_devices(
    t2v_profile,  # type: ignore[no-untyped-def]
) -> None:
    plan = build_plan(t2v(gpus="2,3"), t2v_profile, job_id="j")
    assert exec_env(plan, "all") == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert exec_env(plan, "2,3") == {}
    with pytest.raises(RequestInvalid) as caught:
        exec_env(plan, "0,1")
    assert "hvinfra up t2v --gpus 2,3` recreates" in caught.value.fix


def test_official_file_name_length_counts_utf8_bytes_of_the_first_100_characters() -> None:
    assert official_file_name_bytes("a" * 300, 42) == len("2025-01-01-00:00:00_seed42_") + 100 + 4
    assert official_file_name_bytes("猫" * 100, 42) > 255
