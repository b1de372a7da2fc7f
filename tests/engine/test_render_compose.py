"""`hvinfra render compose` against a real engine: Debian's docker-compose 1.29 starts the
rendered service, and the container's HostConfig equals what `hvinfra up` creates for the same
profile, except UTSMode (and the default `:rw` compose writes out in Binds): 1.29 predates the
Compose Specification's `uts` key, so the test drops only that key (what `render compose
--check` does with a 1.x compose)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import docker
import pytest
import yaml
from conftest import in_ci
from test_lifecycle import _comparable

from hvinfra.cli import main
from hvinfra.render.compose import V1_MISSING_SERVICE_KEYS, v1_compatible

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def compose_bin() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if in_ci():
            pytest.fail("CI=true and no docker-compose (apt: docker-compose)", pytrace=False)
        pytest.skip("docker-compose is not installed (apt: docker-compose)")
    return found


def test_docker_compose_up_creates_the_host_config_of_hvinfra_up(
    docker_client: docker.DockerClient, standin_image: str, hv_env: dict[str, str],
    compose_bin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    name = f"hvtest-{uuid.uuid4().hex[:10]}"
    base = [
        "--set", f"image={standin_image}",
        "--set", "ulimits.memlock=8m",  # within the test daemon's hard limit
        "--set", f"volumes.code.host={tmp_path}/code",
        "--set", f"volumes.weights.host={tmp_path}/ckpts",
        "--set", f"volumes.outputs.host={tmp_path}/outputs",
        "--set", "environment.EXTRA=1",
    ]  # fmt: skip
    compose_name = name + "-compose"
    assert main(["render", "compose", "t2v", *base, "--set", f"container_name={compose_name}"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    legacy = v1_compatible(document)
    assert V1_MISSING_SERVICE_KEYS == ("uts",)
    assert {k for k in document["services"]["t2v"] if k not in legacy["services"]["t2v"]} == {"uts"}
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(yaml.safe_dump(legacy))
    project = ["-f", str(compose_file), "-p", name]
    try:
        up = subprocess.run(
            [compose_bin, *project, "up", "-d"], env=hv_env, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert main(["up", "t2v", *base, "--set", f"container_name={name}", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "running"
        ours = docker_client.api.inspect_container(name)
        theirs = docker_client.api.inspect_container(compose_name)
        assert theirs["State"]["Running"] is True
        ours_host, theirs_host = _comparable(ours["HostConfig"]), _comparable(theirs["HostConfig"])
        assert ours_host.pop("UTSMode") == "host"
        theirs_host.pop("UTSMode")  # the key 1.29 cannot express
        # compose 1.29 spells out the default mode (`src:dst:rw`); docker-py leaves it off.
        theirs_host["Binds"] = sorted(b.removesuffix(":rw") for b in theirs_host["Binds"])
        assert ours_host == theirs_host
        for key in ("Tty", "OpenStdin", "WorkingDir", "Image", "Cmd"):
            assert ours["Config"][key] == theirs["Config"][key], key
        assert sorted(ours["Config"]["Env"]) == sorted(theirs["Config"]["Env"])  # compose sorts
        labels = theirs["Config"]["Labels"]
        assert labels["io.hvinfra.profile"] == "t2v"
        assert labels["io.hvinfra.managed"] == "true"
    finally:
        subprocess.run(
            [compose_bin, *project, "down", "--timeout", "1"], env=hv_env, capture_output=True,
            timeout=120,
        )  # fmt: skip


def test_render_compose_check_runs_the_compose_found_here(
    compose_bin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compose.yaml"
    assert main(["render", "compose", "t2v", "-o", str(out), "--check"]) == 0
    err = capsys.readouterr().err
    assert f"check: docker-compose 1.x accepts {out} less uts" in err or "docker compose" in err
    assert "uts: host" in out.read_text()  # the file itself keeps the key
