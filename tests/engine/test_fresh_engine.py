"""The engine adapter in a fresh interpreter (`python -c`, nothing preloaded, no fakes) against
the session's dockerd: docker-py's modules and error classes resolve as hvinfra names them, and
the engine's answers (found, not found, a refusal hvinfra has no words for) come out as records
or HvinfraErrors with a fix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

pytestmark = pytest.mark.timeout(120)

PRELUDE = """
import json
from hvinfra.engine import DockerEngine
from hvinfra.errors import HvinfraError
engine = DockerEngine.from_env()
def failure(call):
    try:
        call()
    except HvinfraError as exc:
        return [type(exc).__name__, exc.message, exc.fix, int(exc.exit_code)]
    return None
"""


def fresh(code: str, env: dict[str, str]) -> Any:
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def running(
    docker_client: docker.DockerClient, standin_image: str, test_labels: dict[str, str]
) -> Iterator[str]:
    name = f"hvfresh-{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.run(
        standin_image, ["sh", "-c", "echo first; sleep 2; echo second; sleep 300"],
        name=name, detach=True, labels=test_labels,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while b"second" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    yield name


def test_engine_adapter_reads_the_daemon_and_its_objects(
    hv_env: dict[str, str], standin_image: str, running: str
) -> None:
    seen = fresh(
        f"""
        info = engine.info()
        print(json.dumps({{
            "version": info.server_version, "root": info.docker_root_dir,
            "image": engine.image({standin_image!r}) is not None,
            "no_image": engine.image("hvinfra-test/absent:none"),
            "no_container": engine.container("hvfresh-absent"),
            "running": engine.container({running!r}).status,
            "exec": list(map(str, [*(lambda r: (r.exit_code, r.output.decode()))(
                engine.exec_run({running!r}, ["sh", "-c", "echo out; echo err >&2; exit 3"]))])),
            "tail": engine.log_tail({running!r}, lines=1),
        }}))
        """,
        hv_env,
    )
    assert seen["version"] and seen["root"]
    assert seen["image"] is True
    assert seen["no_image"] is None and seen["no_container"] is None
    assert seen["running"] == "running"
    assert seen["exec"][0] == "3" and "out" in seen["exec"][1] and "err" in seen["exec"][1]
    assert seen["tail"].strip() == "second"


def test_engine_adapter_logs_since_skips_what_came_before(
    hv_env: dict[str, str], running: str, docker_client: docker.DockerClient
) -> None:
    container = docker_client.containers.get(running)
    started = container.attrs["State"]["StartedAt"]
    seen = fresh(
        f"""
        import datetime
        start = datetime.datetime.fromisoformat({started[:26]!r})
        since = (start + datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
        print(json.dumps([
            b"".join(engine.logs({running!r})).decode(),
            b"".join(engine.logs({running!r}, since=since + "Z")).decode(),
        ]))
        """,
        hv_env,
    )
    everything, later = seen
    assert everything.split() == ["first", "second"]
    assert later.split() == ["second"]


def test_engine_adapter_errors_are_hvinfra_errors_with_a_fix(
    hv_env: dict[str, str],
    docker_client: docker.DockerClient,
    standin_image: str,
    test_labels: dict[str, str],
) -> None:
    name = f"hvfresh-{uuid.uuid4().hex[:8]}"
    docker_client.containers.create(standin_image, ["true"], name=name, labels=test_labels)
    seen = fresh(
        f"""
        print(json.dumps([
            failure(lambda: engine.start("hvfresh-absent", "hvfresh-absent")),
            failure(lambda: engine.exec_create({name!r}, ["true"])),
        ]))
        """,
        hv_env,
    )
    missing, refused = seen
    assert missing[0] == "ContainerStateError"
    assert "starting container hvfresh-absent: not found" in missing[1]
    assert "hvinfra status" in missing[2]
    # A refusal hvinfra has no table entry for: the generic fallback, engine's words kept.
    assert refused[0] == "HvinfraError", refused
    assert "the Docker engine refused" in refused[1] and "is not running" in refused[1]
    assert "--debug" in refused[2]
