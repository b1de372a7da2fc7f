"""`hvinfra logs` gives exactly what `docker logs` gives, for TTY containers (raw stream) and
plain ones (multiplexed stdout/stderr frames), over many lines and with --tail / --timestamps."""

from __future__ import annotations

import subprocess
import uuid

import docker
import pytest
from tests.engine.dockerd import docker_cli

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("tty", [True, False], ids=["tty", "plain"])
def test_logs_equal_docker_logs_byte_for_byte(
    docker_client: docker.DockerClient,
    standin_image: str,
    hv_env: dict[str, str],
    test_labels: dict[str, str],
    tty: bool,
) -> None:
    name = f"hvtest-logs-{uuid.uuid4().hex[:8]}"
    script = "seq 1 20000; echo to-stderr >&2; printf 'no newline at the end'"
    container = docker_client.containers.run(
        standin_image, ["sh", "-c", script], name=name, detach=True, tty=tty, labels=test_labels
    )
    container.wait()
    for extra in ([], ["--tail", "5"], ["--timestamps"]):
        ours = subprocess.run(
            ["hvinfra", "logs", "t2v", "--name", name, *extra],
            env=hv_env, capture_output=True, check=True,
        )  # fmt: skip
        theirs = subprocess.run(
            [docker_cli(), "logs", *extra, name], env=hv_env, capture_output=True, check=True
        )
        if tty:  # one pty: stdout and stderr arrive as one stream, in order
            assert ours.stdout == theirs.stdout, f"{extra}: differs from docker logs"
        else:  # docker logs splits the two streams over its own stdout and stderr
            expected = theirs.stdout.splitlines() + theirs.stderr.splitlines()
            assert sorted(ours.stdout.splitlines()) == sorted(expected), f"{extra}: differs"
        if extra == ["--tail", "5"]:
            assert len(ours.stdout.splitlines()) == 5
        else:
            assert b"to-stderr" in ours.stdout and len(ours.stdout.splitlines()) == 20_002
