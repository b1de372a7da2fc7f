"""`up`'s convergence plan against a real dockerd: keep, recreate (env, GPUs, image, mounts),
--no-recreate, start a stopped container, refuse a foreign one (up and down), --dry-run; and
`up` before `models pull` (the code folder it mounts stays pullable)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from hvinfra.cli import main
from hvinfra.errors import ExitCode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from assets_fixtures import git, make_upstream  # a real local git repository


@pytest.fixture
def created(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str
) -> str:
    """The id of the container a first `hvinfra up t2v` created."""
    assert main(["up", "t2v", *runnable, "--json"]) == 0
    return _id(docker_client, name)


def _up(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["up", "t2v", *args, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else {}), captured.err


def _id(client: docker.DockerClient, name: str) -> str:
    return str(client.api.inspect_container(name)["Id"])


def test_up_again_keeps_and_a_changed_env_or_gpus_recreates_with_the_diff(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, first, _ = _up(capsys, *runnable)
    assert code == 0 and first["action"] == "created"
    created = _id(docker_client, name)

    code, again, _ = _up(capsys, *runnable)
    assert code == 0 and again["action"] == "kept" and again["plan"]["kind"] == "keep"
    assert _id(docker_client, name) == created

    code, changed, _ = _up(capsys, *runnable, "-e", "FOO=bar", "--gpus", "none")
    assert code == 0 and changed["action"] == "recreated"
    assert changed["plan"]["differences"] == ["env FOO added", "gpus all → none"]
    attrs = docker_client.api.inspect_container(name)
    assert attrs["Id"] != created
    assert "FOO=bar" in attrs["Config"]["Env"]
    assert not attrs["HostConfig"]["DeviceRequests"]

    assert main(["up", "t2v", *runnable, "-e", "FOO=baz", "--gpus", "none"]) == 0
    out = capsys.readouterr().out
    assert "recreated and started" in out and "env FOO changed" in out


def test_a_changed_image_or_mount_recreates(
    docker_host: str, docker_client: docker.DockerClient, standin_image: str,
    runnable: list[str], name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _up(capsys, *runnable)[0] == 0
    other = f"hvinfra-test-other:{uuid.uuid4().hex[:8]}"
    repo, tag = other.split(":")
    docker_client.images.get(standin_image).tag(repo, tag)
    try:
        code, row, _ = _up(capsys, *runnable, "--set", f"image={other}")
        assert code == 0 and row["action"] == "recreated"
        assert row["plan"]["differences"] == [f"image {standin_image} → {other}"]
    finally:
        docker_client.api.remove_container(name, force=True)
        docker_client.images.remove(other)

    assert _up(capsys, *runnable)[0] == 0
    extra = tmp_path / "extra"
    code, row, _ = _up(capsys, *runnable, "-v", f"{extra}:/extra:ro")
    assert code == 0 and row["action"] == "recreated"
    assert row["plan"]["differences"] == [f"mount {extra}:/extra:ro added"]
    assert f"{extra}:/extra:ro" in docker_client.api.inspect_container(name)["HostConfig"]["Binds"]


def test_no_recreate_keeps_the_old_container_and_says_how_it_differs(
    docker_client: docker.DockerClient, runnable: list[str], name: str, created: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    capsys.readouterr()
    assert main(["up", "t2v", *runnable, "--gpus", "none", "--no-recreate"]) == 0
    captured = capsys.readouterr()
    assert "differs from the profile: gpus all → none" in captured.err
    assert "--no-recreate" in captured.err
    assert _id(docker_client, name) == created
    assert docker_client.api.inspect_container(name)["HostConfig"]["DeviceRequests"]


def test_a_stopped_container_of_the_same_spec_is_started(
    docker_client: docker.DockerClient, runnable: list[str], name: str, created: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    capsys.readouterr()
    docker_client.containers.get(name).stop(timeout=1)
    code, row, _ = _up(capsys, *runnable)
    assert code == 0 and row["action"] == "started" and row["status"] == "running"
    assert _id(docker_client, name) == created


def test_a_foreign_container_of_that_name_is_refused_by_up_and_down(
    docker_host: str, docker_client: docker.DockerClient, standin_image: str,
    runnable: list[str], name: str, test_labels: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    foreign = docker_client.containers.create(standin_image, name=name, labels=test_labels)
    assert main(["up", "t2v", *runnable]) == ExitCode.CONTAINER_STATE
    err = capsys.readouterr().err
    assert "hvinfra did not create" in err and f"docker rm -f {name}" in err
    assert main(["down", "t2v", *runnable]) == ExitCode.CONTAINER_STATE
    err = capsys.readouterr().err
    assert "hvinfra did not create" in err and f"docker rm -f {name}" in err
    assert _id(docker_client, name) == foreign.id  # nothing removed


def test_dry_run_prints_the_plan_and_changes_nothing(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["up", "t2v", *runnable, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# plan: create {name}") and "docker run" in out
    assert _up(capsys, *runnable)[0] == 0
    created = _id(docker_client, name)
    assert main(["up", "t2v", *runnable, "-e", "FOO=1", "--dry-run"]) == 0
    assert f"# plan: recreate {name}: env FOO added" in capsys.readouterr().out
    assert _id(docker_client, name) == created


def test_up_before_models_pull_leaves_a_code_folder_that_the_pull_checks_out(
    docker_client: docker.DockerClient, runnable: list[str], name: str, created: str,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code = tmp_path / "code"
    assert sorted(p.name for p in code.iterdir()) == ["ckpts"]  # the weights' mount point
    upstream = tmp_path / "upstream"
    first, _ = make_upstream(upstream)
    capsys.readouterr()
    pull = [
        "models", "pull", "t2v", "--only", "code", "--json", *runnable,
        "--set", f"models.code.repo={upstream}", "--set", f"models.code.commit={first}",
    ]  # fmt: skip
    assert main(pull) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["code"] == "cloned"
    assert git("rev-parse", "HEAD", cwd=code) == first
    container = docker_client.containers.get(name)
    assert container.id == created and container.status == "running"
    listing = container.exec_run(["ls", "/workspace/HunyuanVideo"]).output.decode().split()
    assert "sample_video.py" in listing  # the running container sees the checkout
