"""gpu.mode `devices` against a real dockerd, with stand-ins for the GPU: character devices made
with mknod (1,3: what /dev/null is) named /dev/nvidia0, nvidiactl, nvidia-uvm, a folder of
"driver" files, and GPU records from a file instead of NVML (HVINFRA_GPU_RECORDS)."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from hvinfra.cli import main

NODES = ("nvidia0", "nvidiactl", "nvidia-uvm")


@pytest.fixture
def name() -> str:
    return f"hvtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def fake_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dev = tmp_path / "dev"
    dev.mkdir()
    for node in NODES:
        try:
            os.mknod(dev / node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip("mknod needs root")
    lib, bin_ = tmp_path / "nvidia" / "lib64", tmp_path / "nvidia" / "bin"
    lib.mkdir(parents=True)
    bin_.mkdir(parents=True)
    (lib / "libnvidia-ml.so.1").write_text("fake-nvml\n")
    (lib / "libcuda.so.1").write_text("fake-cuda\n")
    smi = bin_ / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho fake-nvidia-smi\n")
    smi.chmod(0o755)
    records = {
        "driver_version": "580.0-test",
        "cuda_driver_version": [13, 0],
        "nvml_library_path": str(lib / "libnvidia-ml.so.1"),
        "gpus": [
            {
                "index": 0, "uuid": "GPU-00000000-0000-4000-8000-00000000abcd",
                "name": "Stand-in GPU", "memory_total_bytes": 1, "memory_used_bytes": 0,
                "memory_free_bytes": 1, "compute_capability": [9, 0], "minor_number": 0,
            }
        ],
    }  # fmt: skip
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    monkeypatch.setenv("HVINFRA_GPU_RECORDS", str(path))
    monkeypatch.setenv("HVINFRA_DEV_DIR", str(dev))
    return {"dev": dev, "lib": lib, "bin": bin_}


@pytest.fixture
def devices_flags(standin_image: str, tmp_path: Path, name: str) -> list[str]:
    return [
        "--set", f"image={standin_image}",
        "--set", f"container_name={name}",
        "--set", "ulimits.memlock=8m",
        "--set", "gpu.mode=devices",
        "--set", f"volumes.code.host={tmp_path}/code",
        "--set", f"volumes.weights.host={tmp_path}/ckpts",
        "--set", f"volumes.outputs.host={tmp_path}/outputs",
    ]  # fmt: skip


def _exec(client: docker.DockerClient, name: str, *argv: str) -> tuple[int, str]:
    result = client.containers.get(name).exec_run(list(argv))
    assert isinstance(result.output, bytes) and result.exit_code is not None
    return result.exit_code, result.output.decode(errors="replace")


def test_devices_mode_passes_the_nodes_and_the_driver_read_only(
    docker_host: str,
    docker_client: docker.DockerClient,
    fake_gpu: dict[str, Path],
    devices_flags: list[str],
    name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["up", "t2v", *devices_flags, "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["status"] == "running"
    attrs: dict[str, Any] = docker_client.api.inspect_container(name)
    host = attrs["HostConfig"]
    dev = fake_gpu["dev"]
    assert host["Devices"] == [
        {"PathOnHost": f"{dev}/{n}", "PathInContainer": f"/dev/{n}", "CgroupPermissions": "rwm"}
        for n in NODES
    ]
    assert not host.get("DeviceRequests")
    assert f"{fake_gpu['lib']}:/usr/local/nvidia/lib64:ro" in host["Binds"]
    assert f"{fake_gpu['bin']}:/usr/local/nvidia/bin:ro" in host["Binds"]
    env = dict(item.partition("=")[::2] for item in attrs["Config"]["Env"])
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    assert env["PATH"].startswith("/usr/local/nvidia/bin:")

    # Inside: the nodes are character devices the container may use, the driver is there and
    # read-only, and its tools are on PATH.
    code, out = _exec(docker_client, name, "sh", "-c", "ls -l /dev/nvidia0 && echo x >/dev/nvidia0")
    assert code == 0 and out.startswith("c"), out
    assert _exec(docker_client, name, "cat", "/usr/local/nvidia/lib64/libnvidia-ml.so.1") == (
        0,
        "fake-nvml\n",
    )
    assert _exec(docker_client, name, "nvidia-smi") == (0, "fake-nvidia-smi\n")
    code, out = _exec(docker_client, name, "touch", "/usr/local/nvidia/lib64/x")
    assert code != 0 and "Read-only" in out

    assert main(["exec", "t2v", *devices_flags, "--", "sh", "-c", "test -c /dev/nvidia-uvm"]) == 0
    assert main(["down", "t2v", *devices_flags]) == 0


def test_devices_mode_dry_run_line_creates_the_same_devices_as_up(
    docker_host: str,
    docker_client: docker.DockerClient,
    fake_gpu: dict[str, Path],
    devices_flags: list[str],
    name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["up", "t2v", *devices_flags, "--dry-run", "--json"]) == 0
    argv = json.loads(capsys.readouterr().out)["argv"]
    assert argv.count("--device") == len(NODES)
    assert main(["up", "t2v", *devices_flags]) == 0
    devices = docker_client.api.inspect_container(name)["HostConfig"]["Devices"]
    shown = [argv[i + 1] for i, a in enumerate(argv) if a == "--device"]
    assert shown == [
        f"{d['PathOnHost']}:{d['PathInContainer']}:{d['CgroupPermissions']}" for d in devices
    ]


def test_devices_mode_refuses_a_gpu_nvml_does_not_list(
    docker_host: str,
    docker_client: docker.DockerClient,
    fake_gpu: dict[str, Path],
    devices_flags: list[str],
    name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["up", "t2v", *devices_flags, "--gpus", "3"]) == 7
    assert "no GPU 3 on this host" in capsys.readouterr().err
    assert not docker_client.containers.list(all=True, filters={"name": name})
