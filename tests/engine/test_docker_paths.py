"""docker-py paths the other engine tests do not reach, each through the CLI in a subprocess
against the session's dockerd: an error inside a build stream, `exec -i` under a pseudo-terminal,
`logs --since`, and the preprocessing container's clean-up after Ctrl-C. (The generic API-error
fallback: tests/engine/test_fresh_engine.py.)"""

from __future__ import annotations

import io
import os
import pty
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from test_lifecycle import _read_until
from test_models_preprocess import _code_checkout, _downloaded_llava, _pull_argv
from test_models_preprocess import preprocess_image as preprocess_image

pytestmark = pytest.mark.timeout(120)


def hv(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvinfra", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_a_failing_step_inside_the_build_stream_is_an_image_error_with_a_fix(
    hv_env: dict[str, str], docker_client: docker.DockerClient
) -> None:
    """A base image without /bin/sh: the Dockerfile's first RUN fails inside the stream."""
    base = "hvinfra-test/no-shell-base:1"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for file_name, data in (("Dockerfile", b"FROM scratch\nCOPY marker /marker\n"),
                                ("marker", b"x\n")):  # fmt: skip
            info = tarfile.TarInfo(file_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=base, rm=True)
    tag = f"hvinfra-test/broken-build:{uuid.uuid4().hex[:6]}"
    result = hv(hv_env, "build", "t2v", "--tag", tag, "--build-arg", f"BASE_IMAGE={base}")
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert f"building {tag} from Dockerfile.t2v: the build failed:" in result.stderr
    assert "fix: read the build output above" in result.stderr
    assert not docker_client.images.list(name=tag)


def test_interactive_exec_under_a_pty_gets_a_terminal_and_returns_the_exit_code(
    hv_env: dict[str, str], runnable: list[str]
) -> None:
    assert hv(hv_env, "up", "t2v", *runnable, "--json").returncode == 0
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "hvinfra", "exec", "t2v", *runnable, "-i", "--", "sh"],
        stdin=slave, stdout=slave, stderr=slave, env=hv_env,
    )  # fmt: skip
    os.close(slave)
    try:
        os.write(master, b"tty; echo in-pty-$((6*7)); exit 4\r")
        seen = _read_until(master, b"in-pty-42")
        assert b"/dev/pts/" in seen  # the command has a terminal of its own
        assert process.wait(timeout=30) == 4
    finally:
        process.kill()
        os.close(master)


def test_logs_since_a_unix_time_leaves_out_the_earlier_lines(
    hv_env: dict[str, str], runnable: list[str], docker_client: docker.DockerClient, name: str
) -> None:
    script = "echo early; sleep 3; echo late; sleep 300"
    up = hv(hv_env, "up", "t2v", *runnable, "--set", f"command=[sh, -c, '{script}']", "--json")
    assert up.returncode == 0, up.stderr
    container = docker_client.containers.get(name)
    deadline = time.monotonic() + 20
    while b"early" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    since = str(int(time.time()))
    while b"late" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    everything = hv(hv_env, "logs", "t2v", *runnable)
    later = hv(hv_env, "logs", "t2v", *runnable, "--since", since)
    assert everything.stdout.split() == ["early", "late"], everything.stderr
    assert later.stdout.split() == ["late"], later.stderr


def test_ctrl_c_during_preprocessing_removes_its_container(
    hv_env: dict[str, str],
    preprocess_image: str,
    docker_client: docker.DockerClient,
    docker_engine: Any,
    tmp_path: Path,
) -> None:
    sleepy = "hvinfra-test/preprocess-sleeps:1"
    script = b"#!/bin/sh\necho preprocessing-started\nexec sleep 300\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for file_name, data, mode in (
            ("Dockerfile", f"FROM {preprocess_image}\nCOPY python /usr/local/bin/python\n".encode(),
             0o644),
            ("python", script, 0o755),
        ):  # fmt: skip
            info = tarfile.TarInfo(file_name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=sleepy, rm=True)
    (tmp_path / "code").mkdir()
    commit = _code_checkout(tmp_path / "code")
    _downloaded_llava(tmp_path / "ckpts")
    argv = _pull_argv(tmp_path, commit, docker_engine.gpu_hook, "--set", f"image={sleepy}")
    label: dict[str, str | list[str] | bool] = {"label": "io.hvinfra.job=preprocess-text_encoder"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hvinfra", *argv],
        env=hv_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = docker_client.containers.list(filters=label)
            if running and b"preprocessing-started" in running[0].logs():
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the preprocessing container did not start")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "the preprocessing container was removed" in err
    assert docker_client.containers.list(all=True, filters=label) == []
