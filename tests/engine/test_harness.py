"""Tests of the engine-test harness itself (tests/engine/dockerd.py, conftest.py).

They prove what the product's engine tests rely on: a private daemon answers,
the stand-in image runs, GPU device requests start on the hooked daemon and
fail on the unhooked one with Docker's own message, the official memlock
ulimit is accepted at create, two daemons run side by side, and the clean-up
removes what it should and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import pytest
from docker.types import DeviceRequest, Ulimit
from dockerd import (
    DEFAULT_STANDIN_TAG,
    KEEP_LABEL,
    MANAGED_LABEL,
    SESSION_ID,
    TEST_SESSION_LABEL,
    DockerdError,
    PrivateDockerd,
    build_standin_image,
    docker_cli,
    docker_cli_env,
    image_exists,
    ping,
)

if TYPE_CHECKING:
    from conftest import Engine

GPU_ALL = [DeviceRequest(count=-1, capabilities=[["gpu"]])]


def _run(client: docker.DockerClient, image: str, command: list[str], **kwargs: Any) -> str:
    """Run to completion; return the output; raise with the logs on a non-zero exit."""
    container = client.containers.create(image, command, **kwargs)
    try:
        container.start()
        status = container.wait(timeout=60)
        logs: str = container.logs().decode()
        assert status["StatusCode"] == 0, f"{command} exited {status}: {logs}"
        return logs
    finally:
        container.remove(force=True)


# --------------------------------------------------------------------------- #
# The daemon and the stand-in image
# --------------------------------------------------------------------------- #


def test_daemon_answers(docker_engine: Engine, docker_client: docker.DockerClient) -> None:
    assert docker_client.ping() is True
    assert ping(docker_engine.host)
    assert os.environ["DOCKER_HOST"] == docker_engine.host
    version = docker_client.version()
    assert version["ApiVersion"]
    if docker_engine.daemon is not None:
        info = docker_client.info()
        assert info["DockerRootDir"] == str(docker_engine.daemon.data_root)
        assert docker_engine.daemon.startup_seconds is not None
        assert docker_engine.daemon.startup_seconds < 60


def test_engine_marker_is_added(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("engine") is not None


def test_standin_image_runs_echo(
    docker_client: docker.DockerClient, standin_image: str, test_labels: dict[str, str]
) -> None:
    assert standin_image == DEFAULT_STANDIN_TAG
    image = docker_client.images.get(standin_image)
    assert image.attrs["Config"]["Cmd"] == ["/bin/sh"]
    assert image.attrs["Config"]["WorkingDir"] == "/workspace"
    assert image.labels.get("io.hvinfra.test-fixture") == "hunyuanvideo-standin"
    out = _run(
        docker_client, standin_image, ["echo", "hello from the stand-in"], labels=test_labels
    )
    assert out == "hello from the stand-in\n"
    out = _run(
        docker_client,
        standin_image,
        ["sh", "-c", "pwd; test -d /tmp && test -w /tmp && echo tmp-ok; id -un; ls /usr/bin/env"],
        labels=test_labels,
    )
    assert out.splitlines() == ["/workspace", "tmp-ok", "root", "/usr/bin/env"]


def test_standin_build_is_skipped_when_present(docker_host: str, standin_image: str) -> None:
    before = docker.DockerClient(base_url=docker_host).images.get(standin_image).id
    assert build_standin_image(docker_host, standin_image) == standin_image
    after = docker.DockerClient(base_url=docker_host).images.get(standin_image).id
    assert before == after
    assert image_exists(docker_host, standin_image)
    assert not image_exists(docker_host, "hvinfra-test/does-not-exist:1")


def test_docker_cli_talks_to_the_daemon(docker_host: str) -> None:
    result = subprocess.run(
        [docker_cli(), "version", "--format", "{{.Server.APIVersion}}"],
        env=docker_cli_env(docker_host),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


# --------------------------------------------------------------------------- #
# GPU device requests
# --------------------------------------------------------------------------- #


def test_gpu_request_starts_on_hooked_daemon(
    docker_engine: Engine,
    docker_client: docker.DockerClient,
    standin_image: str,
    test_labels: dict[str, str],
) -> None:
    if not docker_engine.gpu_hook:
        pytest.skip("reused engine: whether it starts GPU requests is not the harness's to know")
    assert docker_engine.daemon is not None
    calls_before = len(docker_engine.daemon.hook_calls())
    out = _run(
        docker_client,
        standin_image,
        ["sh", "-c", "echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"],
        device_requests=GPU_ALL,
        labels=test_labels,
    )
    assert out.strip() == "NVIDIA_VISIBLE_DEVICES=all"
    # The daemon ran the stand-in hook as an OCI prestart hook.
    assert docker_engine.daemon.hook_calls()[calls_before:] == ["prestart"]

    # A request by device index is passed through the same way.
    out = _run(
        docker_client,
        standin_image,
        ["sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES"],
        device_requests=[DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]])],
        labels=test_labels,
    )
    assert out.strip() == "0,1"


def test_gpu_request_fails_on_unhooked_daemon(
    docker_client_no_gpu_hook: docker.DockerClient, test_labels: dict[str, str]
) -> None:
    container = docker_client_no_gpu_hook.containers.create(
        DEFAULT_STANDIN_TAG, ["true"], device_requests=GPU_ALL, labels=test_labels
    )
    with pytest.raises(docker.errors.APIError) as excinfo:
        container.start()
    assert 'could not select device driver "" with capabilities: [[gpu]]' in str(excinfo.value)
    container.reload()
    assert container.status == "created"  # left behind in Created, as the fault table says


# --------------------------------------------------------------------------- #
# The official memlock ulimit
# --------------------------------------------------------------------------- #


def test_memlock_unlimited_is_created_and_start_is_consistent(
    docker_client: docker.DockerClient, standin_image: str, test_labels: dict[str, str]
) -> None:
    ulimits = [Ulimit(name="memlock", soft=-1, hard=-1), Ulimit(name="stack", soft=67108864)]
    results = []
    for _ in range(2):
        container = docker_client.containers.create(
            standin_image, ["sh", "-c", "ulimit -l"], ulimits=ulimits, labels=test_labels
        )
        host_ulimits = {u["Name"]: u for u in container.attrs["HostConfig"]["Ulimits"]}
        assert host_ulimits["memlock"]["Soft"] == -1
        assert host_ulimits["memlock"]["Hard"] == -1
        assert host_ulimits["stack"]["Soft"] == 67108864
        try:
            container.start()
        except docker.errors.APIError as exc:
            # A daemon without CAP_SYS_RESOURCE (this sandbox: hard memlock 8 MiB).
            assert "error setting rlimit type 8" in str(exc), str(exc)
            assert "operation not permitted" in str(exc), str(exc)
            results.append("refused")
        else:
            # A daemon that may raise the limit: the container sees it.
            assert container.wait(timeout=60)["StatusCode"] == 0
            assert container.logs().decode().strip() == "unlimited"
            results.append("applied")
    assert results[0] == results[1], f"the engine answered differently twice: {results}"


# --------------------------------------------------------------------------- #
# Two daemons at once
# --------------------------------------------------------------------------- #


def test_two_daemons_at_once(
    docker_engine: Engine,
    docker_client: docker.DockerClient,
    docker_host_no_gpu_hook: str,
    docker_client_no_gpu_hook: docker.DockerClient,
    standin_image: str,
    test_labels: dict[str, str],
) -> None:
    assert docker_engine.host != docker_host_no_gpu_hook
    assert ping(docker_engine.host) and ping(docker_host_no_gpu_hook)
    outputs: dict[str, str] = {}
    errors: list[BaseException] = []

    def run_on(name: str, client: docker.DockerClient) -> None:
        try:
            outputs[name] = _run(
                client, DEFAULT_STANDIN_TAG, ["echo", name], labels=test_labels
            ).strip()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run_on, args=("hooked", docker_client)),
        threading.Thread(target=run_on, args=("unhooked", docker_client_no_gpu_hook)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert outputs == {"hooked": "hooked", "unhooked": "unhooked"}

    # Each daemon has its own containers.
    held = docker_client_no_gpu_hook.containers.create(
        DEFAULT_STANDIN_TAG, ["true"], labels=test_labels
    )
    ids_on_first = {c.id for c in docker_client.containers.list(all=True)}
    assert held.id not in ids_on_first


# --------------------------------------------------------------------------- #
# Clean-up and environment
# --------------------------------------------------------------------------- #


def test_cleanup_removes_labelled_containers_only(
    docker_engine: Engine,
    docker_client: docker.DockerClient,
    standin_image: str,
    container_reaper: Callable[[], list[str]],
) -> None:
    if not docker_engine.private:
        pytest.skip("unlabelled containers are only made on a private daemon")
    session = docker_client.containers.create(
        standin_image, ["true"], labels={TEST_SESSION_LABEL: SESSION_ID}
    )
    managed = docker_client.containers.create(
        standin_image, ["sleep", "300"], labels={MANAGED_LABEL: "true"}
    )
    managed.start()  # running ones go too
    other_session = docker_client.containers.create(
        standin_image, ["true"], labels={TEST_SESSION_LABEL: "another-session"}
    )
    kept = docker_client.containers.create(
        standin_image, ["true"], labels={TEST_SESSION_LABEL: SESSION_ID, KEEP_LABEL: "true"}
    )
    try:
        removed = container_reaper()
        assert session.name in removed
        assert managed.name in removed
        remaining = {c.id for c in docker_client.containers.list(all=True)}
        assert session.id not in remaining
        assert managed.id not in remaining
        assert other_session.id in remaining
        assert kept.id in remaining
    finally:
        other_session.remove(force=True)
        kept.remove(force=True)


def test_hv_env_reaches_the_engine(hv_env: dict[str, str], docker_host: str) -> None:
    assert hv_env["DOCKER_HOST"] == docker_host
    assert Path(hv_env["DOCKER_CONFIG"]).is_dir()
    probe = "import docker; c = docker.from_env(); print(c.ping(), c.api.base_url)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=hv_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True")


# --------------------------------------------------------------------------- #
# PrivateDockerd on its own
# --------------------------------------------------------------------------- #


def test_private_dockerd_stops_cleanly() -> None:
    """stop() ends dockerd, its containerd and shims, and removes the root,
    even with a container still running."""
    daemon = PrivateDockerd.in_tempdir(gpu_hook=False)
    try:
        host = daemon.start(timeout=60)
    except DockerdError as exc:  # pragma: no cover - the session daemon started
        pytest.fail(str(exc))
    root = daemon.root
    try:
        build_standin_image(host)
        client = docker.DockerClient(base_url=host)
        # init=True: busybox sleep as PID 1 would ignore SIGTERM and make
        # dockerd's shutdown wait the full 10 s stop timeout.
        running = client.containers.run(
            DEFAULT_STANDIN_TAG, ["sleep", "300"], detach=True, init=True
        )
        assert running.status in {"created", "running"}
        assert daemon._leftover_pids(), "containerd should mention the root"
        client.close()
    finally:
        daemon.stop()
    assert not daemon.is_running()
    assert daemon._leftover_pids() == []
    assert not root.exists()
    assert not ping(host)


def test_private_dockerd_reports_early_exit() -> None:
    root = Path(tempfile.mkdtemp(prefix="hvd-", dir="/tmp"))
    daemon = PrivateDockerd(root, gpu_hook=False, remove_root=True, extra_args=("--no-such-flag",))
    with pytest.raises(DockerdError) as excinfo:
        daemon.start(timeout=30)
    message = str(excinfo.value)
    assert "exited with status" in message
    assert "no-such-flag" in message  # the log tail is in the message
    daemon.stop()
    assert not root.exists()


def test_private_dockerd_refuses_long_socket_path(tmp_path: Path) -> None:
    with pytest.raises(DockerdError, match="too long for a unix socket"):
        PrivateDockerd(tmp_path / ("x" * 120))


def test_private_dockerd_reports_timeout_and_cleans_up() -> None:
    daemon = PrivateDockerd.in_tempdir(gpu_hook=True)
    root = daemon.root
    with pytest.raises(DockerdError, match=r"did not answer .* within 0s") as excinfo:
        daemon.start(timeout=0)
    # The log tail is in the message (empty here: stopped before it said anything).
    assert "dockerd.log (tail) ---\n" in str(excinfo.value)
    assert not daemon.is_running()
    assert daemon._leftover_pids() == []
    assert not root.exists()
