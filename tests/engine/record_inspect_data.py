"""Records the inspect data that tests/unit/test_convergence.py plans over, from a real dockerd.

Not collected by default; run it after a change to RunSpec or to the labels:
    .venv/bin/python -m pytest -p no:cacheprovider tests/engine/record_inspect_data.py
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from hvinfra.cli import main

OUT = Path(__file__).resolve().parents[1] / "unit" / "data" / "inspect"
BASE = "/tmp/hvinfra-recorded"  # host folders named in the recording (created when recorded)


def _args(image: str, name: str) -> list[str]:
    return [
        "--set", f"image={image}", "--set", f"container_name={name}",
        "--set", "ulimits.memlock=8m",
        "--set", f"volumes.code.host={BASE}/code",
        "--set", f"volumes.weights.host={BASE}/ckpts",
        "--set", f"volumes.outputs.host={BASE}/outputs",
    ]  # fmt: skip


def _save(client: docker.DockerClient, name: str, file: str, args: list[str]) -> None:
    data = {"args": args, "inspect": client.api.inspect_container(name)}
    (OUT / file).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def test_record(
    docker_host: str, docker_client: docker.DockerClient, standin_image: str,
    test_labels: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    args = _args("hvinfra-recorded:1", "hv-recorded")
    docker_client.images.get(standin_image).tag("hvinfra-recorded", "1")
    assert main(["up", "t2v", *args]) == 0
    _save(docker_client, "hv-recorded", "running.json", args)
    docker_client.containers.get("hv-recorded").stop(timeout=1)
    _save(docker_client, "hv-recorded", "exited.json", args)
    assert main(["down", "t2v", *args]) == 0
    docker_client.containers.create(standin_image, name="hv-recorded", labels=test_labels)
    _save(docker_client, "hv-recorded", "foreign.json", args)
    docker_client.api.remove_container("hv-recorded", force=True)
    docker_client.images.remove("hvinfra-recorded:1")
