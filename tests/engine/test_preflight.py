"""Pre-flight against a real dockerd: doctor's Docker rows, the memlock check predicting what the
engine really does, the hook seen on dockerd's PATH, and `up` refusing without leaving anything."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.types import Ulimit

from hvinfra.cli import main
from hvinfra.errors import ExitCode


@pytest.fixture(autouse=True)
def _checks_on(monkeypatch: pytest.MonkeyPatch, docker_host: str) -> None:
    monkeypatch.delenv("HVINFRA_SKIP_CHECKS", raising=False)
    monkeypatch.setenv("DOCKER_HOST", docker_host)


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "t2v", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _row(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["checks"] if c["name"] == name)


def _engine_grants_unlimited_memlock(client: docker.DockerClient, image: str) -> bool:
    """The oracle: does this engine start a container with memlock unlimited?"""
    try:
        client.containers.run(
            image, ["true"], remove=True, name=f"hvtest-memlock-{uuid.uuid4().hex[:8]}",
            ulimits=[Ulimit(name="memlock", soft=-1, hard=-1)],
            labels={"io.hvinfra.managed": "true"},
        )  # fmt: skip
    except docker.errors.APIError as exc:
        assert "rlimit" in str(exc), exc
        return False
    return True


def test_doctor_reports_the_real_daemon(
    docker_client: docker.DockerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = _doctor(capsys)
    assert _row(data, "docker")["status"] == "pass"
    assert data["docker"]["server_version"] == docker_client.version()["Version"]
    assert _row(data, "nvml")["status"] in {"pass", "fail"}  # reported whatever Docker says


def test_memlock_check_predicts_whether_the_engine_grants_unlimited(
    docker_client: docker.DockerClient, standin_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = _doctor(capsys)
    memlock = _row(data, "memlock")
    assert memlock["status"] != "warn", memlock  # a local daemon: its limits were read
    grants = _engine_grants_unlimited_memlock(docker_client, standin_image)
    assert (memlock["status"] == "pass") is grants, memlock
    if not grants:
        assert "LimitMEMLOCK=infinity" in memlock["fix"]
        _, data = _doctor(capsys, "--set", "ulimits.memlock=8m")
        assert _row(data, "memlock")["status"] == "pass"


def test_hook_on_dockerds_own_path_is_found(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = _doctor(capsys)
    runtime = _row(data, "gpu_runtime")
    assert runtime["status"] == "pass", runtime
    assert "nvidia-container-runtime-hook" in runtime["detail"]


def test_daemon_without_hook_fails_the_runtime_row(
    docker_host_no_gpu_hook: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if (
        shutil.which("nvidia-container-runtime-hook")
        or Path("/usr/bin/nvidia-container-runtime-hook").exists()
    ):
        pytest.skip("a real NVIDIA hook is installed on this host")
    monkeypatch.setenv("DOCKER_HOST", docker_host_no_gpu_hook)
    _, data = _doctor(capsys)
    runtime = _row(data, "gpu_runtime")
    assert runtime["status"] == "fail"
    assert "nvidia-ctk runtime configure" in runtime["fix"]


def test_up_refused_by_a_check_creates_nothing(
    docker_client: docker.DockerClient, standin_image: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    name = f"hvtest-{uuid.uuid4().hex[:10]}"
    code = main([
        "up", "t2v", "--set", f"image={standin_image}", "--set", f"container_name={name}",
        "--set", f"volumes.code.host={tmp_path}/code",
        "--set", f"volumes.weights.host={tmp_path}/ckpts",
        "--set", f"volumes.outputs.host={tmp_path}/outputs",
        "--set", "resolution=720p", "--gpus", "all",
    ])  # fmt: skip
    err = capsys.readouterr().err
    if code == 0:
        pytest.skip("every check passed on this host (a GPU host): nothing to refuse")
    assert code == ExitCode.PREFLIGHT, err
    assert "pre-flight" in err and "--skip-checks" in err
    assert docker_client.containers.list(all=True, filters={"name": name}) == []
