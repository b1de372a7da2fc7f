"""`up`'s convergence plan over inspect data recorded from a real dockerd
(tests/engine/record_inspect_data.py wrote tests/unit/data/inspect/*.json): every plan kind and
the text that says how a container differs from its spec."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hvinfra.convergence import Facts, PlanKind, plan, summary_differences
from hvinfra.engine import container_info
from hvinfra.labels import LABEL_SPEC, LABEL_SPEC_HASH
from hvinfra.profiles import load_profile
from hvinfra.records import ContainerInfo
from hvinfra.spec import RunSpec, build_run_spec

DATA = Path(__file__).parent / "data" / "inspect"
ENV = {"HOME": "/home/tester"}


def _recorded(file: str) -> tuple[ContainerInfo, list[str]]:
    data = json.loads((DATA / file).read_text())
    args: list[str] = data["args"]
    return container_info(data["inspect"]), [a for a in args if a != "--set"]


def _desired(sets: list[str], *more: str) -> RunSpec:
    return build_run_spec(load_profile("t2v", env=ENV, sets=[*sets, *more]).profile)


def _facts(info: ContainerInfo) -> Facts:
    return Facts(image_id=info.image_id)


@pytest.fixture
def running() -> tuple[ContainerInfo, list[str]]:
    return _recorded("running.json")


def test_no_container_is_a_create(running: Any) -> None:
    _, sets = running
    result = plan(_desired(sets), None)
    assert result.kind is PlanKind.CREATE and result.action == "created"


def test_a_running_container_of_the_same_spec_is_kept(running: Any) -> None:
    info, sets = running
    result = plan(_desired(sets), info, _facts(info))
    assert result.kind is PlanKind.KEEP and not result.differs
    assert result.describe() == "keep hv-recorded: running, same spec"


def test_an_exited_container_of_the_same_spec_is_started() -> None:
    info, sets = _recorded("exited.json")
    assert info.status == "exited"
    result = plan(_desired(sets), info, _facts(info))
    assert result.kind is PlanKind.START and result.container_id == info.id
    assert result.action == "started"


def test_a_changed_env_and_gpus_recreate_and_say_which_keys(running: Any) -> None:
    info, sets = running
    desired = _desired(sets, "environment.FOO=bar", "gpu.devices=none")
    result = plan(desired, info, _facts(info))
    assert result.kind is PlanKind.RECREATE and result.action == "recreated"
    assert result.differences == ("env FOO added", "gpus all → none")
    assert result.describe() == "recreate hv-recorded: env FOO added, gpus all → none"


def test_changed_removed_image_mount_and_privileged_are_named(running: Any) -> None:
    info, sets = running
    desired = _desired(
        [s for s in sets if not s.startswith("volumes.outputs")],
        "environment.MODEL_BASE=/elsewhere",
        "image=hvinfra-recorded:2",
        "volumes.outputs.host=/tmp/hvinfra-recorded/out2",
        "privileged=true",
    )
    diffs = plan(desired, info, _facts(info)).differences
    assert "image hvinfra-recorded:1 → hvinfra-recorded:2" in diffs
    assert "env MODEL_BASE changed" in diffs
    assert "mount /tmp/hvinfra-recorded/out2:/workspace/outputs added" in diffs
    assert "mount /tmp/hvinfra-recorded/outputs:/workspace/outputs removed" in diffs
    assert "privileged false → true" in diffs
    assert "security-opt seccomp=unconfined added" in diffs


def test_a_newer_image_behind_the_same_reference_recreates(running: Any) -> None:
    info, sets = running
    result = plan(_desired(sets), info, Facts(image_id="sha256:" + "ab" * 32))
    assert result.kind is PlanKind.RECREATE
    (text,) = result.differences
    assert text.startswith("image hvinfra-recorded:1 now names abababababab")


def test_force_recreate_recreates_an_unchanged_container(running: Any) -> None:
    info, sets = running
    result = plan(_desired(sets), info, _facts(info), force_recreate=True)
    assert result.kind is PlanKind.RECREATE
    assert result.reason == "--force-recreate (nothing differs)"


def test_no_recreate_keeps_a_differing_container_and_says_how(running: Any) -> None:
    info, sets = running
    desired = _desired(sets, "gpu.devices=none")
    result = plan(desired, info, _facts(info), no_recreate=True)
    assert result.kind is PlanKind.KEEP and result.differences == ("gpus all → none",)
    assert "it differs: gpus all → none (kept: --no-recreate)" in result.reason
    exited, _ = _recorded("exited.json")
    assert plan(desired, exited, _facts(exited), no_recreate=True).kind is PlanKind.START


def test_a_container_hvinfra_did_not_create_is_refused(running: Any) -> None:
    foreign, _ = _recorded("foreign.json")
    _, sets = running
    for flags in ({}, {"force_recreate": True}, {"no_recreate": True}):
        result = plan(_desired(sets), foreign, _facts(foreign), **flags)
        assert result.kind is PlanKind.REFUSE
        assert "hvinfra did not create" in result.reason
        assert "io.hvinfra.managed" in result.reason


def test_a_dead_container_is_recreated_or_refused_under_no_recreate(running: Any) -> None:
    info, sets = running
    dead = replace(info, status="dead")
    assert plan(_desired(sets), dead, _facts(dead)).kind is PlanKind.RECREATE
    assert plan(_desired(sets), dead, _facts(dead), no_recreate=True).kind is PlanKind.REFUSE


def test_a_container_from_before_the_summary_label_still_gets_a_reason(running: Any) -> None:
    info, sets = running
    labels = {k: v for k, v in info.labels.items() if k != LABEL_SPEC}
    old = replace(info, labels=labels | {LABEL_SPEC_HASH: "0123456789abcdef"})
    (text,) = plan(_desired(sets), old, _facts(old)).differences
    assert text == "spec changed (created by hvinfra 0.1.0, which kept no details)"


def test_summary_differences_text() -> None:
    old = {"env": {"A": "1", "B": "2"}, "gpus": "all", "mounts": ["/a:/a"], "command": None}
    new = {"env": {"A": "9", "C": "3"}, "gpus": "0,1", "mounts": ["/b:/b"], "command": ["sh"]}
    assert summary_differences(old, new) == [
        "env C added", "env B removed", "env A changed", "gpus all → 0,1",
        "mount /b:/b added", "mount /a:/a removed", "command (unset) → sh",
    ]  # fmt: skip
