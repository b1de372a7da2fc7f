"""`hvinfra pull` and `lock` against a registry that authenticates like Docker Hub (bearer-token
challenge, token realm; tests/engine/token_registry.py) and serves a multi-platform OCI index:
the size lookup and the free-disk check run through the token flow and pick the linux/amd64
manifest; when sizing is impossible the output says why."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from token_registry import DOCKER_MANIFEST, TokenRegistry, started

from conftest import PASSWORD, USER, Pushed, cli
from hvinfra.pull_progress import human_bytes

pytestmark = pytest.mark.timeout(240)

REPOSITORY = "hv/multi-platform"


@dataclass(frozen=True)
class Published:
    registry: TokenRegistry
    index_ref: str  # tag of the index: arm64 first, then amd64
    index_digest: str
    amd64_bytes: int  # the amd64 manifest's compressed layers
    arm64_bytes: int
    arm_only_ref: str  # an index without linux/amd64
    image_id: str


@pytest.fixture(scope="session")
def published(docker_host: str, pushed: Pushed) -> Iterator[Published]:
    try:
        registry = TokenRegistry(user=USER, password=PASSWORD).start()
    except RuntimeError as exc:
        pytest.fail(f"cannot start the token registry: {exc}", pytrace=False)
    try:
        config = Path(tempfile.mkdtemp(prefix="hvtokcfg-"))
        amd64_ref = f"{registry.address}/{REPOSITORY}:amd64"
        cli(docker_host, "tag", pushed.ref, amd64_ref)
        cli(docker_host, "login", registry.address, "-u", USER, "--password-stdin",
            config=config, stdin=PASSWORD)  # fmt: skip
        cli(docker_host, "push", amd64_ref, config=config)
        amd64 = registry.manifest(REPOSITORY, "amd64", DOCKER_MANIFEST)
        amd64_entry = registry.put_image_manifest(REPOSITORY, "amd64", amd64)
        arm64_entry = registry.put_image_manifest(
            REPOSITORY, "arm64", dict(amd64, layers=amd64["layers"][:1])
        )
        digest = registry.put_index(
            REPOSITORY, "multi",
            [(arm64_entry, "linux", "arm64"), (amd64_entry, "linux", "amd64"),
             (arm64_entry, "unknown", "unknown")],  # an attestation entry, as buildx adds
        )  # fmt: skip
        registry.put_index(REPOSITORY, "arm-only", [(arm64_entry, "linux", "arm64")])
        yield Published(
            registry=registry,
            index_ref=f"{registry.address}/{REPOSITORY}:multi",
            index_digest=digest,
            amd64_bytes=sum(int(layer["size"]) for layer in amd64["layers"]),
            arm64_bytes=int(amd64["layers"][0]["size"]),
            arm_only_ref=f"{registry.address}/{REPOSITORY}:arm-only",
            image_id=pushed.image_id,
        )
    finally:
        registry.close()


def hv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hvinfra", *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


@pytest.fixture
def env(hv_env: dict[str, str], empty_store: str) -> dict[str, str]:
    return {**hv_env, "DOCKER_HOST": empty_store, "HVINFRA_PROGRESS_INTERVAL": "0"}


def test_anonymous_pull_sizes_the_amd64_manifest_of_the_index_through_a_token(
    env: dict[str, str], published: Published
) -> None:
    tokens = published.registry.tokens.requests
    before = len(tokens)
    result = hv(env, "pull", "t2v", "--image", published.index_ref)
    assert result.returncode == 0, result.stderr
    assert "warning: cannot size" not in result.stderr
    assert f"free for {human_bytes(published.amd64_bytes)} compressed" in result.stderr
    assert human_bytes(published.arm64_bytes) != human_bytes(published.amd64_bytes)
    assert f"digest {published.index_digest}" in result.stderr
    # hvinfra's lookup (and dockerd's pull) asked the token realm anonymously, for pull only.
    asked = tokens[before:]
    assert any(t.scope == f"repository:{REPOSITORY}:pull" and t.user is None for t in asked)
    assert all(t.granted == ("pull",) for t in asked)
    image = json.loads(cli(env["DOCKER_HOST"], "image", "inspect", published.index_ref))[0]
    assert image["Id"] == published.image_id


def test_lock_and_a_digest_pinned_pull_go_through_the_token_flow(
    env: dict[str, str], published: Published, tmp_path: Path
) -> None:
    repo = published.index_ref.rsplit(":", 1)[0]
    profile = tmp_path / "pinned.yaml"
    profile.write_text(
        f"extends: t2v\nimage: {repo}\nimage_digest: {published.index_digest}\n"
        "gpu: {devices: none}\n"
    )
    pinned = f"{repo}@{published.index_digest}"
    pulled = hv(env, "pull", str(profile), "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["image"] == pinned
    assert "warning: cannot size" not in pulled.stderr  # warnings show also with --json
    lock = tmp_path / "hvinfra.lock"
    locked = hv(env, "lock", str(profile), "--file", str(lock))
    assert locked.returncode == 0, locked.stderr
    entry = json.loads(lock.read_text())["images"]["pinned"]
    assert entry["repo_digest"] == pinned and entry["id"] == published.image_id


def test_an_index_without_linux_amd64_warns_why_the_size_is_unknown(
    env: dict[str, str], published: Published
) -> None:
    result = hv(env, "pull", "t2v", "--image", published.arm_only_ref)
    assert (
        f"warning: cannot size {published.arm_only_ref} from its registry: the image index has"
        " no linux/amd64 manifest (it has linux/arm64)" in " ".join(result.stderr.split())
    ), result.stderr
    assert "free disk not checked" in result.stderr
    assert result.returncode == 5, result.stderr  # dockerd finds no amd64 image either


def test_a_registry_without_anonymous_pulls_warns_and_the_pull_needs_a_login(
    env: dict[str, str], pushed: Pushed, docker_host: str
) -> None:
    with started(user=USER, password=PASSWORD, anonymous=False) as registry:
        ref = f"{registry.address}/hv/private:1"
        config = Path(tempfile.mkdtemp(prefix="hvtokcfg-"))
        cli(docker_host, "tag", pushed.ref, ref)
        cli(docker_host, "login", registry.address, "-u", USER, "--password-stdin",
            config=config, stdin=PASSWORD)  # fmt: skip
        cli(docker_host, "push", ref, config=config)
        refused = hv(env, "pull", "t2v", "--image", ref)
        flat = " ".join(refused.stderr.split())
        said = f"warning: cannot size {ref} from its registry: the registry answered HTTP 401"
        assert said in flat
        assert refused.returncode == 5, refused.stderr
        assert f"docker login {registry.address}" in refused.stderr
        cli(env["DOCKER_HOST"], "login", registry.address, "-u", USER, "--password-stdin",
            config=Path(env["DOCKER_CONFIG"]), stdin=PASSWORD)  # fmt: skip
        pulled = hv(env, "pull", "t2v", "--image", ref)
        assert pulled.returncode == 0, pulled.stderr
        assert "warning: cannot size" not in pulled.stderr
        assert "disk: " in pulled.stderr
        assert any(t.user == USER and "pull" in t.granted for t in registry.tokens.requests)
        for text in (refused.stderr, pulled.stderr, pulled.stdout):
            assert PASSWORD not in text
