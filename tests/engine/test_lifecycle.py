"""The container lifecycle against a real dockerd: up, status, logs, exec, attach, down, and the
engine's real refusals. Containers that start here keep memlock within the daemon's limit."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from hvinfra.cli import main
from hvinfra.errors import ExitCode


def _init_env(client: docker.DockerClient, name: str) -> dict[str, str]:
    """The environment of the container's first process, where the engine's GPU driver puts
    NVIDIA_VISIBLE_DEVICES (an exec'd process only sees Config.Env)."""
    result = client.containers.get(name).exec_run(["cat", "/proc/1/environ"])
    assert isinstance(result.output, bytes)
    pairs = [item.partition("=") for item in result.output.decode().split("\0") if item]
    return {key: value for key, _, value in pairs}


def _json_out(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_up_starts_the_official_spec_and_down_removes_it(
    docker_host: str,
    docker_client: docker.DockerClient,
    runnable: list[str],
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["up", "t2v", *runnable, "--json"]) == 0
    row = _json_out(capsys)
    assert row["name"] == name and row["status"] == "running" and row["action"] == "created"
    attrs = docker_client.api.inspect_container(name)
    host = attrs["HostConfig"]
    assert (host["NetworkMode"], host["UTSMode"], host["IpcMode"]) == ("host", "host", "host")
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert "seccomp=unconfined" not in (host["SecurityOpt"] or [])
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
    assert ulimits == {"stack": (67108864, 67108864), "memlock": (8388608, 8388608)}
    (request,) = host["DeviceRequests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert attrs["Config"]["Tty"] is True and attrs["Config"]["OpenStdin"] is True
    assert attrs["Config"]["Labels"]["io.hvinfra.profile"] == "t2v"
    assert f"{tmp_path}/ckpts:/workspace/HunyuanVideo/ckpts:ro" in host["Binds"]
    assert (tmp_path / "outputs").is_dir()
    # The GPU hook stand-in hands the request to the container as the toolkit would.
    assert _init_env(docker_client, name)["NVIDIA_VISIBLE_DEVICES"] == "all"

    assert main(["up", "t2v", *runnable, "--json"]) == 0
    assert _json_out(capsys)["action"] == "kept"

    assert main(["status", "--json"]) == 0
    rows = {r["name"]: r for r in _json_out(capsys)}
    assert rows[name]["profile"] == "t2v" and rows[name]["gpus"] == "all"
    assert main(["status"]) == 0  # plain columns, one line per container, as `docker ps`
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "PROFILE", "STATUS", "IMAGE", "IMAGE", "ID", "DIGEST",
                              "GPUS", "ID"]  # fmt: skip
    mine = next(line.split() for line in lines if line.startswith(name + " "))
    assert mine[:3] == [name, "t2v", "running"] and mine[-2] == "all"
    assert mine[-1] == rows[name]["id"]

    assert main(["down", "t2v", *runnable, "--json"]) == 0
    assert _json_out(capsys) == {"name": name, "found": True, "removed": True}
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_container(name)


def test_status_names_the_image_a_container_was_created_from_after_its_tag_moved(
    docker_client: docker.DockerClient, standin_image: str, runnable: list[str], name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    tag = f"hvtest/retag:{name}"
    docker_client.images.get(standin_image).tag(tag)
    assert main(["up", "t2v", *runnable, "--set", f"image={tag}", "--json"]) == 0
    capsys.readouterr()
    docker_client.images.remove(tag)  # the engine's list now names the image by its ID
    assert main(["status", "t2v"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(name + " "))
    assert line.split()[3] == tag


def test_gpu_selection_reaches_the_device_request(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["up", "t2v", *runnable, "--gpus", "0,1", "--json"]) == 0
    (request,) = docker_client.api.inspect_container(name)["HostConfig"]["DeviceRequests"]
    assert request["DeviceIDs"] == ["0", "1"]
    assert _init_env(docker_client, name)["NVIDIA_VISIBLE_DEVICES"] == "0,1"


def _comparable(value: Any) -> Any:
    """HostConfig with "not set" written one way: the docker CLI sends empty lists and maps where
    docker-py sends null (DnsSearch, DeviceIDs, PortBindings, ...); the engine treats them
    alike. ConsoleSize is what the CLI fills in for a terminal it does not have."""
    if isinstance(value, dict):
        # The docker CLI collects -v flags in a Go map, so its Binds come in any order.
        return {
            k: sorted(v) if k == "Binds" and v else _comparable(v)
            for k, v in value.items()
            if k != "ConsoleSize"
        } or None
    if isinstance(value, list):
        return [_comparable(v) for v in value] or None
    return value


def test_dry_run_line_creates_the_same_host_config_as_up(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    hv_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["up", "t2v", *runnable, "--dry-run", "--json"]) == 0
    argv = _json_out(capsys)["argv"]
    cli_name = name + "-cli"
    argv[argv.index("--name") + 1] = cli_name
    result = subprocess.run(argv, env=hv_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert main(["up", "t2v", *runnable, "--json"]) == 0
    ours = docker_client.api.inspect_container(name)
    theirs = docker_client.api.inspect_container(cli_name)
    assert _comparable(ours["HostConfig"]) == _comparable(theirs["HostConfig"])
    for key in ("Tty", "OpenStdin", "Env", "WorkingDir", "Image", "Labels", "Cmd"):
        assert ours["Config"][key] == theirs["Config"][key], key


OFFICIAL = [
    "run", "-itd", "--gpus", "all", "--init", "--net=host", "--uts=host", "--ipc=host",
    "--ulimit=stack=67108864", "--ulimit=memlock=-1",
]  # fmt: skip
NAMED_FIELDS = ("NetworkMode", "UTSMode", "IpcMode", "Init", "Ulimits", "DeviceRequests")


def test_default_profile_equals_the_official_line_in_every_named_field(
    docker_host: str, docker_client: docker.DockerClient, standin_image: str, name: str,
    hv_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The full default spec (memlock -1 included) via `docker create`, which this daemon accepts
    even where it cannot start it."""
    official = subprocess.run(
        ["docker", *OFFICIAL, "--name", name + "-official", standin_image],
        env=hv_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Here the start may fail (memlock above the daemon's hard limit); the container exists.
    assert "No such image" not in official.stderr
    sets = ["--set", f"image={standin_image}", "--set", f"container_name={name}"]
    assert main(["up", "t2v", *sets, "--dry-run", "--json"]) == 0
    argv = _json_out(capsys)["argv"]
    created = subprocess.run(
        ["docker", "create", *argv[argv.index("--detach") + 1 :]],
        env=hv_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    ours = docker_client.api.inspect_container(name)["HostConfig"]
    theirs = docker_client.api.inspect_container(name + "-official")["HostConfig"]
    for field in NAMED_FIELDS:
        assert ours[field] == theirs[field], field
    assert {u["Name"]: u["Hard"] for u in ours["Ulimits"]}["memlock"] == -1
    assert ours["Privileged"] is False and theirs["Privileged"] is False


def test_privileged_equals_the_whole_official_line(
    docker_host: str, docker_client: docker.DockerClient, standin_image: str, name: str,
    hv_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """With --privileged, the security flags match the official line too."""
    official = [*OFFICIAL, "--security-opt=seccomp=unconfined", "--privileged"]
    subprocess.run(
        ["docker", *official, "--name", name + "-official", standin_image],
        env=hv_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    sets = ["--set", f"image={standin_image}", "--set", f"container_name={name}"]
    assert main(["up", "t2v", *sets, "--privileged", "--dry-run", "--json"]) == 0
    argv = _json_out(capsys)["argv"]
    created = subprocess.run(
        ["docker", "create", *argv[argv.index("--detach") + 1 :]],
        env=hv_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    ours = docker_client.api.inspect_container(name)
    theirs = docker_client.api.inspect_container(name + "-official")
    for field in (*NAMED_FIELDS, "Privileged", "SecurityOpt"):
        assert ours["HostConfig"][field] == theirs["HostConfig"][field], field
    assert ours["HostConfig"]["Privileged"] is True
    for key in ("Tty", "OpenStdin", "Image"):
        assert ours["Config"][key] == theirs["Config"][key], key


def test_logs_tail_and_follow_end_when_the_container_exits(
    docker_host: str, runnable: list[str], name: str, hv_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    script = "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.4; done"
    assert main(["up", "t2v", *runnable, "--set", f"command=[sh, -c, '{script}']", "--json"]) == 0
    capsys.readouterr()
    follow = subprocess.run(
        ["hvinfra", "logs", "t2v", *runnable, "--follow"],
        env=hv_env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert follow.returncode == 0, follow.stderr
    lines = [line.strip() for line in follow.stdout.splitlines()]
    assert lines == [f"line{i}" for i in range(1, 7)]
    tail = subprocess.run(
        ["hvinfra", "logs", "t2v", *runnable, "--tail", "2", "--timestamps"],
        env=hv_env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    lines = tail.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith("line5") and lines[1].endswith("line6")
    assert lines[0][:4].isdigit()  # an RFC 3339 timestamp first


def test_exec_streams_output_and_returns_the_exit_code(
    docker_host: str, runnable: list[str], hv_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["up", "t2v", *runnable, "--json"]) == 0
    result = subprocess.run(
        ["hvinfra", "exec", "t2v", *runnable, "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
        env=hv_env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    quoted = subprocess.run(
        ["hvinfra", "exec", "t2v", *runnable, "--", "echo", "a b", "$(id)", "--flag"],
        env=hv_env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert quoted.stdout == "a b $(id) --flag\n"


def _read_until(fd: int, needle: bytes, timeout: float = 15.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"did not see {needle!r}; got {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _spawn_in_pty(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    return process, master


@pytest.mark.timeout(60)
def test_attach_through_a_pty_and_detach_with_ctrl_p_ctrl_q(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    hv_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["up", "t2v", *runnable, "--json"]) == 0
    process, master = _spawn_in_pty(["hvinfra", "attach", "t2v", *runnable], hv_env)
    try:
        _read_until(master, b"detach with ctrl-p,ctrl-q")
        os.write(master, b"echo attached-$((6*7))\r")
        _read_until(master, b"attached-42")
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        output = _read_until(master, b"detached from")
        assert process.wait(timeout=15) == 0, output
    finally:
        process.kill()
        os.close(master)
    assert docker_client.containers.get(name).status == "running"


@pytest.mark.timeout(60)
def test_attach_honours_custom_detach_keys(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    hv_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["up", "t2v", *runnable, "--json"]) == 0
    argv = ["hvinfra", "attach", "t2v", *runnable, "--detach-keys", "ctrl-x,x"]
    process, master = _spawn_in_pty(argv, hv_env)
    try:
        _read_until(master, b"detach with ctrl-x,x")
        os.write(master, b"\x10\x11")  # the default keys no longer detach...
        os.write(master, b"echo still-$((2+3))\r")
        _read_until(master, b"still-5")
        os.write(master, b"\x18x")  # ...ctrl-x x does
        _read_until(master, b"detached from")
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        os.close(master)
    assert docker_client.containers.get(name).status == "running"


def test_a_container_that_exits_at_once_shows_its_code_and_log(
    docker_host: str, runnable: list[str], name: str, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    command = "command=[sh, -c, 'echo loading weights; echo no CUDA here >&2; exit 3']"
    assert main(["up", "t2v", *runnable, "--set", command]) == ExitCode.CONTAINER_EXITED
    err = capsys.readouterr().err
    assert f"container {name} stopped right after start: exit code 3" in err
    assert "loading weights" in err and "no CUDA here" in err
    assert "hvinfra logs t2v" in err
    # The exited container stays; status's table (from the engine's list) and --json (from an
    # inspect per container) report the same exit code.
    assert main(["status", "t2v", "--json"]) == 0
    (row,) = [r for r in _json_out(capsys) if r["name"] == name]
    assert row["status"] == "exited" and row["exit_code"] == 3
    assert main(["status", "t2v"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(name + " "))
    assert line.split()[2:4] == ["exited", "(3)"]


def test_missing_gpu_hook_is_the_toolkit_error_and_leaves_nothing(
    docker_host_no_gpu_hook: str, docker_client_no_gpu_hook: docker.DockerClient,
    runnable: list[str], name: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DOCKER_HOST", docker_host_no_gpu_hook)
    assert main(["up", "t2v", *runnable]) == ExitCode.GPU_RUNTIME
    err = capsys.readouterr().err
    assert "no NVIDIA Container Toolkit is registered" in err
    assert 'could not select device driver "" with capabilities: [[gpu]]' in err
    assert "nvidia-ctk runtime configure --runtime=docker" in err
    assert docker_client_no_gpu_hook.containers.list(all=True, filters={"name": name}) == []
    # Without a GPU request the same daemon starts the container.
    assert main(["up", "t2v", *runnable, "--gpus", "none", "--json"]) == 0


def _dockerd_memlock_hard(docker_host: str) -> int | None:
    """Hard RLIMIT_MEMLOCK of the dockerd serving `docker_host` (None if not found here)."""
    socket_path = docker_host.removeprefix("unix://")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            limits = (proc / "limits").read_text()
        except OSError:
            continue
        if args and args[0].endswith("dockerd") and any(socket_path in a for a in args):
            for line in limits.splitlines():
                if line.startswith("Max locked memory"):
                    hard = line.split()[4]
                    return -1 if hard == "unlimited" else int(hard)
    return None


def test_unlimited_memlock_starts_or_fails_with_the_memlock_fix(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    hard = _dockerd_memlock_hard(docker_host)
    code = main(["up", "t2v", *runnable, "--set", "ulimits.memlock=-1"])
    err = capsys.readouterr().err
    if hard is not None and hard != -1:
        assert code == ExitCode.ENGINE_REFUSED
        assert "error setting rlimit type 8" in err
        assert "LimitMEMLOCK=infinity" in err and "--set ulimits.memlock=8m" in err
        assert docker_client.containers.list(all=True, filters={"name": name}) == []
    else:  # a daemon that may grant it (e.g. the GPU runner's)
        assert code == 0, err


def test_privileged_starts_or_fails_with_the_caps_fix(
    docker_host: str, docker_client: docker.DockerClient, runnable: list[str], name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code = main(["up", "t2v", *runnable, "--privileged", "--json"])
    captured = capsys.readouterr()
    if code == 0:
        host = docker_client.api.inspect_container(name)["HostConfig"]
        assert host["Privileged"] is True and host["SecurityOpt"] == ["seccomp=unconfined"]
    else:
        assert code == ExitCode.ENGINE_REFUSED, captured.err
        assert "unable to apply caps" in captured.err and "drop --privileged" in captured.err
        assert docker_client.containers.list(all=True, filters={"name": name}) == []


def test_a_daemon_that_is_down_is_exit_code_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    path = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the socket file stays, nobody answers: a stopped daemon
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    assert main(["status"]) == ExitCode.DOCKER_UNREACHABLE
    err = capsys.readouterr().err
    assert "is dockerd running?" in err and "Traceback" not in err


def test_exec_and_logs_on_a_missing_container_say_how_to_start_it(
    docker_host: str, runnable: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "t2v", *runnable]) == ExitCode.CONTAINER_STATE
    assert "hvinfra up t2v" in capsys.readouterr().err
    assert main(["exec", "t2v", *runnable, "--", "true"]) == ExitCode.CONTAINER_STATE
