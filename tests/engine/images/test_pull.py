"""`hvinfra pull|lock|up|status` against a real registry and a real dockerd: per-layer progress,
equality with `docker pull`, interruption, registry faults, auth, digest pinning, disk check."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from registry import LocalRegistry, ThrottledProxy

from conftest import PASSWORD, USER, Pushed, cli

pytestmark = pytest.mark.timeout(240)
STANDIN_MEMLOCK = ["--set", "ulimits.memlock=8m"]  # this sandbox's dockerd cannot grant more


def hv(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvinfra", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def env(hv_env: dict[str, str], empty_store: str) -> dict[str, str]:
    return {**hv_env, "DOCKER_HOST": empty_store, "HVINFRA_PROGRESS_INTERVAL": "0"}


def done_layers(stderr: str) -> list[str]:
    return re.findall(r"^  ([0-9a-f]{12}): done \(", stderr, re.M)


def inspect(host: str, ref: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(cli(host, "image", "inspect", ref))
    return data[0]


def keeps_layers(host: str) -> bool:
    status = cli(host, "info", "--format", "{{json .DriverStatus}}")
    return "containerd.snapshotter" in status


def test_pull_shows_each_layer_and_ends_where_docker_pull_does(
    env: dict[str, str], pushed: Pushed
) -> None:
    result = hv(env, "pull", "t2v", "--image", pushed.ref, "--json")
    assert result.returncode == 0, result.stderr
    assert len(set(done_layers(result.stderr))) == pushed.layers
    assert re.search(r"^  \S+: \d/\d+ layers, .* of .*MB", result.stderr, re.M), result.stderr
    assert f"digest {pushed.digest}" in result.stderr
    ours = json.loads(result.stdout)
    assert ours["layers_fetched"] == pushed.layers and ours["layers_present"] == 0
    host = env["DOCKER_HOST"]
    cli(host, "rmi", pushed.ref)
    cli(host, "pull", pushed.ref)
    theirs = inspect(host, pushed.ref)
    assert ours["id"] == theirs["Id"] == pushed.image_id
    assert ours["repo_digest"] == theirs["RepoDigests"][0] == f"{pushed.repo}@{pushed.digest}"


def test_layers_already_present_are_shown_and_not_fetched(
    env: dict[str, str], pushed: Pushed
) -> None:
    assert hv(env, "pull", "t2v", "--image", pushed.ref).returncode == 0
    result = hv(env, "pull", "t2v", "--image", pushed.extended, "--json")
    assert result.returncode == 0, result.stderr
    present = re.findall(r"^  ([0-9a-f]{12}): already present$", result.stderr, re.M)
    assert len(present) == pushed.layers
    assert len(done_layers(result.stderr)) == 1
    assert json.loads(result.stdout)["layers_present"] == pushed.layers


def _pull_until_layers_done(
    env: dict[str, str], ref: str, count: int
) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hvinfra", "pull", "t2v", "--image", ref],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if len(done_layers("".join(lines))) >= count:
            return proc, lines
    raise AssertionError("the pull ended before the layers were done:\n" + "".join(lines))


def test_registry_stopped_mid_pull_is_a_clear_error_and_the_rerun_completes(
    env: dict[str, str], pushed: Pushed, registry: LocalRegistry
) -> None:
    proxy = ThrottledProxy(registry.port, rate=4_000_000)  # ~6 s for the ~23 MB
    ref = f"{proxy.address}/hv/multi:1"
    try:
        proc, lines = _pull_until_layers_done(env, ref, 2)
        registry.stop()
        proxy.cut()
        _, rest = proc.communicate(timeout=120)
        stderr = "".join(lines) + rest
        assert proc.returncode == 5, stderr
        assert re.search(r"^error: pulling .*registry .*(broke|cannot be reached)", stderr, re.M)
        assert "\nfix: " in stderr and "Traceback" not in stderr
        assert f"pull stopped: {len(done_layers(stderr))} of {pushed.layers} layers" in stderr
        registry.start()
        proxy.resume()
        again = hv(env, "pull", "t2v", "--image", ref, "--json")
        assert again.returncode == 0, again.stderr
        result = json.loads(again.stdout)
        assert result["id"] == pushed.image_id
        if keeps_layers(env["DOCKER_HOST"]):
            assert result["layers_present"] >= 2
        else:  # the classic store threw the finished layers away, and we said so
            assert "discards the layers" in stderr
            assert result["layers_present"] == 0
    finally:
        registry.start()
        proxy.close()


def test_ctrl_c_mid_pull_exits_130_leaves_no_image_and_the_rerun_finishes(
    env: dict[str, str], pushed: Pushed, registry: LocalRegistry
) -> None:
    proxy = ThrottledProxy(registry.port, rate=4_000_000)
    ref = f"{proxy.address}/hv/multi:1"
    try:
        proc, lines = _pull_until_layers_done(env, ref, 1)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
        stderr = "".join(lines) + rest
        assert proc.returncode == 130, stderr
        assert f"error: pull of {ref} interrupted: " in stderr
        assert "fix: run the same command again" in stderr
        time.sleep(0.5)
        assert cli(env["DOCKER_HOST"], "images", "-q", ref) == ""
        again = hv(env, "pull", "t2v", "--image", ref, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["id"] == pushed.image_id
    finally:
        proxy.close()


def test_unknown_tag_is_an_image_error_naming_the_tag(env: dict[str, str], pushed: Pushed) -> None:
    result = hv(env, "pull", "t2v", "--image", f"{pushed.repo}:no-such-tag")
    assert result.returncode == 5
    assert "the registry has no such image or tag" in result.stderr
    assert "fix: check the image name and tag" in result.stderr


def test_unreachable_registry_is_an_image_error(env: dict[str, str]) -> None:
    result = hv(env, "pull", "t2v", "--image", "127.0.0.1:1/hv/x:1")
    assert result.returncode == 5
    assert "the registry 127.0.0.1:1 cannot be reached" in result.stderr


def test_auth_registry_needs_the_docker_login_and_never_prints_the_secret(
    env: dict[str, str], pushed: Pushed, auth_registry: LocalRegistry
) -> None:
    refused = hv(env, "pull", "t2v", "--image", pushed.auth_ref)
    assert refused.returncode == 5
    assert "authentication required" in refused.stderr
    assert f"fix: `docker login {auth_registry.address}`" in refused.stderr
    config = Path(env["DOCKER_CONFIG"])
    cli(env["DOCKER_HOST"], "login", auth_registry.address, "-u", USER, "--password-stdin",
        config=config, stdin=PASSWORD)  # fmt: skip
    pulled = hv(env, "--debug", "pull", "t2v", "--image", pushed.auth_ref)
    assert pulled.returncode == 0, pulled.stderr
    assert inspect(env["DOCKER_HOST"], pushed.auth_ref)["Id"] == pushed.image_id
    assert "disk: " in pulled.stderr  # the manifest lookup used the same credentials
    for text in (refused.stdout, refused.stderr, pulled.stdout, pulled.stderr):
        assert PASSWORD not in text


def test_digest_pinned_profile_pulls_locks_runs_and_shows_the_digest(
    env: dict[str, str], pushed: Pushed, tmp_path: Path
) -> None:
    profile = tmp_path / "pinned.yaml"
    profile.write_text(
        f"extends: t2v\nimage: {pushed.repo}\nimage_digest: {pushed.digest}\n"
        f"container_name: hv-pinned-{tmp_path.name[-8:]}\n"
        "gpu: {devices: none}\n"
        f"volumes:\n  code: {{host: {tmp_path}/code}}\n  weights: {{host: {tmp_path}/w}}\n"
        f"  outputs: {{host: {tmp_path}/out}}\n"
    )
    pinned = f"{pushed.repo}@{pushed.digest}"
    pulled = hv(env, "pull", str(profile), "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["image"] == pinned
    lock = tmp_path / "hvinfra.lock"
    locked = hv(env, "lock", str(profile), "--file", str(lock))
    assert locked.returncode == 0, locked.stderr
    entry = json.loads(lock.read_text())["images"]["pinned"]
    assert entry["repo_digest"] == pinned and entry["id"] == pushed.image_id
    up = hv(env, "up", str(profile), *STANDIN_MEMLOCK, "--lock", str(lock), "--json")
    assert up.returncode == 0, up.stderr
    assert "differs from the lock" not in up.stderr
    assert json.loads(up.stdout)["image_digest"] == pinned
    status = hv(env, "status", "pinned", "--json")
    assert [row["image_digest"] for row in json.loads(status.stdout)] == [pinned]
    table = hv(env, "status", "pinned")
    assert pushed.digest[7:19] in table.stdout
    # Another image in the lock: `up` warns, and says how to pin.
    other = json.loads(lock.read_text())
    other["images"]["pinned"]["repo_digest"] = f"{pushed.repo}@sha256:{'0' * 64}"
    other["images"]["pinned"]["id"] = "sha256:" + "0" * 64
    lock.write_text(json.dumps(other))
    warned = hv(env, "up", str(profile), *STANDIN_MEMLOCK, "--lock", str(lock), "--replace")
    assert warned.returncode == 0, warned.stderr
    assert "the image differs from the lock file" in warned.stderr
    assert hv(env, "down", str(profile)).returncode == 0


def test_free_disk_check_refuses_before_anything_is_pulled(
    env: dict[str, str], pushed: Pushed, tmp_path: Path
) -> None:
    lock = tmp_path / "hvinfra.lock"
    lock.write_text(
        json.dumps(
            {
                "version": 1,
                "images": {
                    "t2v": {
                        "image": pushed.ref,
                        "repo_digest": "",
                        "id": "sha256:x",
                        "size": 10**18,
                    }
                },
            }
        )
    )
    refused = hv(env, "pull", "t2v", "--image", pushed.ref, "--lock", str(lock))
    assert refused.returncode == 10, refused.stderr
    assert "not enough disk space to pull" in refused.stderr
    assert "compressed + 1000000.0 TB unpacked" in refused.stderr
    assert "--skip-disk-check" in refused.stderr
    assert cli(env["DOCKER_HOST"], "images", "-q") == ""
    forced = hv(env, "pull", "t2v", "--image", pushed.ref, "--lock", str(lock), "--skip-disk-check")
    assert forced.returncode == 0, forced.stderr
    assert "warning:" in forced.stderr
