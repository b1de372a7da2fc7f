"""Sharding, GPU assignment (one worker per GPU, or groups for xDiT) and the reuse decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvinfra.batch.lines import parse_text
from hvinfra.batch.plan import (
    WORKER_COMMITS,
    BatchPlanError,
    Slot,
    apply_shard,
    assign_slots,
    line_stem,
    parse_shard,
    reuse_decision,
)


def test_shard_i_of_n_takes_every_nth_line_from_i(tmp_path: Path) -> None:
    lines = parse_text("\n".join(f"p{i}" for i in range(10)), tmp_path / "p.txt", "t2v", {})
    taken = [apply_shard(lines, parse_shard(f"{i}/3")) for i in range(3)]
    assert [[line.number for line in part] for part in taken] == [
        [1, 4, 7, 10], [2, 5, 8], [3, 6, 9],
    ]  # fmt: skip
    assert sorted(line.number for part in taken for line in part) == list(range(1, 11))


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2", "1/0"])
def test_a_bad_shard_is_a_usage_error(text: str) -> None:
    with pytest.raises(BatchPlanError):
        parse_shard(text)


def test_one_worker_per_gpu_by_default() -> None:
    slots, notes = assign_slots(["0", "1", "2", "3"], 1)
    assert slots == [Slot("gpu0", ("0",)), Slot("gpu1", ("1",)), Slot("gpu2", ("2",)),
                     Slot("gpu3", ("3",))]  # fmt: skip
    assert notes == []


def test_gpus_per_job_groups_the_gpus_and_says_which_stay_idle() -> None:
    slots, notes = assign_slots(["0", "1", "2", "3", "4"], 2)
    assert [slot.gpus for slot in slots] == [("0", "1"), ("2", "3")]
    assert "GPU 4 stays idle" in notes[0]
    with pytest.raises(BatchPlanError, match="only 1 GPU"):
        assign_slots(["0"], 2)


def test_unknown_gpu_count_means_one_worker_on_the_first_gpu() -> None:
    assert assign_slots(None, 1) == ([Slot("gpu", None)], [])
    with pytest.raises(BatchPlanError, match="--gpus"):
        assign_slots(None, 2)


def test_output_names_carry_line_slug_seed_and_size(tmp_path: Path) -> None:
    line = parse_text('{"prompt": "A cat walks!", "seed": 5, "resolution": "540p"}',
                      tmp_path / "p.jsonl", "t2v", {})[0]  # fmt: skip
    assert line_stem(line) == "0001_t2v_a-cat-walks_seed5_960x544"


def test_the_model_is_loaded_once_only_at_the_known_commit_unless_forced() -> None:
    assert reuse_decision(None, "t2v", WORKER_COMMITS["t2v"], 1)[0]
    reuse, reason = reuse_decision(None, "t2v", "f" * 40, 1)
    assert not reuse and "one sample script per line" in reason and "--reuse" in reason
    assert reuse_decision(True, "t2v", "f" * 40, 1)[0]
    assert not reuse_decision(False, "t2v", WORKER_COMMITS["t2v"], 1)[0]
    assert not reuse_decision(True, "t2v", WORKER_COMMITS["t2v"], 2)[0]  # xDiT: torchrun


def test_a_worker_gpu_inside_a_container_started_with_a_gpu_list_is_its_position(
    tmp_path: Path,
) -> None:
    from hvinfra.generate.plan import build_plan, exec_env
    from hvinfra.generate.request import RequestInvalid
    from hvinfra.profiles import load_profile

    line = parse_text("a cat", tmp_path / "p.txt", "t2v", {})[0]
    assert line.request is not None
    profile = load_profile("t2v").profile
    job = build_plan(line.request.model_copy(update={"gpus": ["3"]}), profile, job_id="j")
    assert exec_env(job, "all")["CUDA_VISIBLE_DEVICES"] == "3"
    assert exec_env(job, "2,3")["CUDA_VISIBLE_DEVICES"] == "1"
    with pytest.raises(RequestInvalid, match="started with GPUs 0,1"):
        exec_env(job, "0,1")
