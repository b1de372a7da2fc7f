"""`hvinfra build t2v|i2v` on the local engine with the stand-in as BASE_IMAGE, then what the
additions do in a running container: labels, entrypoint, healthcheck read by `hvinfra status`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dockerd import docker_cli, docker_cli_env

from conftest import cli
from hvinfra import __version__

pytestmark = pytest.mark.timeout(240)
MARKERS = {
    "t2v": ("HunyuanVideo", "sample_video.py",
            ("hunyuan-video-t2v-720p", "text_encoder", "text_encoder_2")),
    "i2v": ("HunyuanVideo-I2V", "sample_image2video.py",
            ("hunyuan-video-i2v-720p", "text_encoder_i2v", "text_encoder_2")),
}  # fmt: skip


def hv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvinfra", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


@pytest.fixture(scope="module")
def built(docker_host: str, standin_image: str) -> dict[str, str]:
    """Both Dockerfiles built once through `hvinfra build`, tag per model."""
    import os

    env = {**os.environ, "DOCKER_HOST": docker_host, "NO_COLOR": "1"}
    tags = {}
    for model in MARKERS:
        tag = f"hvinfra-test/built-{model}:1"
        result = hv(
            env, "build", model, "--tag", tag, "--build-arg", f"BASE_IMAGE={standin_image}",
            "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "[1/" in result.stderr  # the steps, numbered, as they ran
        assert json.loads(result.stdout)["tag"] == tag
        tags[model] = tag
    return tags


def image_config(host: str, tag: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(cli(host, "image", "inspect", tag))[0]["Config"]
    return config


@pytest.mark.parametrize("model", sorted(MARKERS))
def test_built_image_carries_labels_healthcheck_and_entrypoint(
    docker_host: str, standin_image: str, built: dict[str, str], model: str
) -> None:
    config = image_config(docker_host, built[model])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.base.name"] == standin_image
    assert labels["org.opencontainers.image.revision"]  # a commit, or "unknown" outside git
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["io.hvinfra.model"] == model
    assert config["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/hvinfra-healthcheck"]
    assert config["Entrypoint"] == ["/usr/local/bin/hvinfra-entrypoint"]
    assert config["WorkingDir"] == f"/workspace/{MARKERS[model][0]}"


@pytest.mark.parametrize("model", sorted(MARKERS))
def test_without_weights_the_container_says_what_to_mount_and_stops(
    docker_host: str, built: dict[str, str], test_labels: dict[str, str], model: str
) -> None:
    label = [f"--label={k}={v}" for k, v in test_labels.items()]
    name = f"hv-noweights-{model}"
    cli(docker_host, "run", "-d", "--name", name, *label, built[model])
    status = cli(docker_host, "wait", name)
    logs = subprocess.run(
        [docker_cli(), "logs", name], env=docker_cli_env(docker_host),
        capture_output=True, text=True, timeout=30, check=False,
    ).stderr  # fmt: skip
    assert status == "3"
    assert f"the HunyuanVideo {model} weights are not mounted at /workspace/" in logs
    assert f"hvinfra models pull {model}" in logs
    for item in MARKERS[model][2]:
        assert item in logs


def test_missing_weights_can_be_allowed_and_the_command_runs(
    docker_host: str, built: dict[str, str]
) -> None:
    out = cli(docker_host, "run", "--rm", "-e", "HV_ALLOW_MISSING_WEIGHTS=1", built["t2v"],
              "echo", "ran")  # fmt: skip
    assert out == "ran"


def _assets(root: Path, model: str) -> tuple[Path, Path]:
    code, weights = root / "code", root / "ckpts"
    code.mkdir()
    (code / MARKERS[model][1]).write_text("# stand-in\n")
    for item in MARKERS[model][2]:
        (weights / item).mkdir(parents=True)
        (weights / item / "weights.bin").write_bytes(b"\0")
    return code, weights


@pytest.mark.parametrize("model", sorted(MARKERS))
def test_launched_by_hvinfra_it_starts_a_shell_and_status_reports_healthy(
    hv_env: dict[str, str], built: dict[str, str], tmp_path: Path, model: str
) -> None:
    code, weights = _assets(tmp_path, model)
    name = f"hv-built-{model}"
    target = f"/workspace/{MARKERS[model][0]}"
    up = hv(
        hv_env, "up", model, "--image", built[model], "--name", name, "--gpus", "none",
        "--set", "ulimits.memlock=8m",
        "-v", f"{code}:{target}", "-v", f"{weights}:{target}/ckpts:ro",
        "-v", f"{tmp_path}/out:/workspace/outputs", "--json",
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    host = hv_env["DOCKER_HOST"]
    # The image's 15 s interval is too slow for a test: run the same check now, as docker would.
    probe = cli(host, "exec", name, "/usr/local/bin/hvinfra-healthcheck")
    assert probe.startswith("healthy:")
    top = cli(host, "top", name)
    assert " sh" in top or "bash" in top  # no command given: the entrypoint's default shell
    deadline = time.monotonic() + 90
    health = ""
    while time.monotonic() < deadline:
        rows = json.loads(hv(hv_env, "status", model, "--json").stdout)
        health = rows[0]["health"] if rows else ""
        if health == "healthy":
            break
        time.sleep(2)
    assert health == "healthy"
    table = hv(hv_env, "status", model).stdout
    assert "running, healthy" in table
    assert hv(hv_env, "down", model, "--name", name).returncode == 0
