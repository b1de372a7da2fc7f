"""Fixtures for the image tests: real registries (docker-registry on 127.0.0.1), stand-in images
of several incompressible layers pushed to them, and a second private dockerd whose image
store starts empty, so every pull really fetches layers."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_ENGINE_DIR = Path(__file__).resolve().parents[1]
if str(_ENGINE_DIR) not in sys.path:
    sys.path.insert(0, str(_ENGINE_DIR))

from dockerd import (  # noqa: E402
    DockerdError,
    PrivateDockerd,
    docker_cli,
    docker_cli_env,
)
from registry import LocalRegistry  # noqa: E402

USER, PASSWORD = "hvtester", "s3cret-Pa55-never-printed"
# Layers of the multi-layer stand-in (bytes of random data, so gzip cannot shrink them):
# two small ones that finish first, two large ones that are still downloading when a test cuts.
LAYER_SIZES = (1_000_000, 2_000_000, 10_000_000, 10_000_000)


def cli(host: str, *args: str, config: Path | None = None, stdin: str | None = None) -> str:
    env = docker_cli_env(host)
    if config is not None:
        env["DOCKER_CONFIG"] = str(config)
    result = subprocess.run(
        [docker_cli(), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise DockerdError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Pushed:
    repo: str  # without tag, on the open registry: 127.0.0.1:PORT/hv/multi
    tag: str
    digest: str  # manifest digest the registry serves
    image_id: str
    layers: int  # layers of the image (stand-in base included)
    extended: str  # repo:tag of an image = this one + 1 layer
    auth_ref: str  # the same image on the registry that needs a login

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"


@pytest.fixture(scope="session")
def registry() -> Iterator[LocalRegistry]:
    try:
        reg = LocalRegistry().start()
    except RuntimeError as exc:
        pytest.fail(f"cannot start a local registry: {exc}", pytrace=False)
    atexit.register(reg.close)
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[LocalRegistry]:
    reg = LocalRegistry(user=USER, password=PASSWORD).start()
    atexit.register(reg.close)
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def pushed(
    docker_host: str, standin_image: str, registry: LocalRegistry, auth_registry: LocalRegistry
) -> Pushed:
    """Build the multi-layer stand-in on the session engine and push it to both registries."""
    with tempfile.TemporaryDirectory(prefix="hvimg-") as tmp:
        context = Path(tmp)
        lines = [f"FROM {standin_image}"]
        for index, size in enumerate(LAYER_SIZES):
            (context / f"blob{index}").write_bytes(os.urandom(size))
            lines.append(f"COPY blob{index} /data/blob{index}")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        (context / "extra").write_bytes(os.urandom(500_000))
        (context / "Dockerfile.extended").write_text(
            "\n".join([*lines, "COPY extra /data/extra"]) + "\n"
        )
        repo = f"{registry.address}/hv/multi"
        cli(docker_host, "build", "-q", "-t", f"{repo}:1", str(context))
        cli(
            docker_host, "build", "-q", "-f", str(context / "Dockerfile.extended"),
            "-t", f"{repo}-plus:1", str(context),
        )  # fmt: skip
    cli(docker_host, "push", f"{repo}:1")
    cli(docker_host, "push", f"{repo}-plus:1")
    auth_ref = f"{auth_registry.address}/hv/multi:1"
    config = Path(tempfile.mkdtemp(prefix="hvcfg-"))
    cli(docker_host, "tag", f"{repo}:1", auth_ref)
    cli(docker_host, "login", auth_registry.address, "-u", USER, "--password-stdin",
        config=config, stdin=PASSWORD)  # fmt: skip
    cli(docker_host, "push", auth_ref, config=config)
    digest = cli(
        docker_host, "image", "inspect", "--format", "{{index .RepoDigests 0}}", f"{repo}:1"
    )
    image_id = cli(docker_host, "image", "inspect", "--format", "{{.Id}}", f"{repo}:1")
    layers = cli(docker_host, "image", "inspect", "--format", "{{len .RootFS.Layers}}", f"{repo}:1")
    return Pushed(
        repo=repo,
        tag="1",
        digest=digest.partition("@")[2],
        image_id=image_id,
        layers=int(layers),
        extended=f"{repo}-plus:1",
        auth_ref=auth_ref,
    )


@pytest.fixture(scope="session")
def pull_host() -> Iterator[str]:
    """A private dockerd with an empty image store. `--max-download-attempts=1` keeps the
    registry-stopped case short (the daemon still waits one 5 s retry)."""
    daemon = PrivateDockerd(
        Path(tempfile.mkdtemp(prefix="hvp-", dir="/tmp")),
        gpu_hook=False,
        remove_root=True,
        extra_args=("--max-download-attempts=1",),
    )
    try:
        daemon.start(timeout=60)
    except (DockerdError, OSError) as exc:
        daemon.stop()
        pytest.fail(f"cannot start the pull test dockerd: {exc}", pytrace=False)
    atexit.register(daemon.stop)
    assert daemon.host is not None
    yield daemon.host
    daemon.stop()


@pytest.fixture
def empty_store(pull_host: str) -> str:
    """The pull daemon with no containers and no images, before each test."""
    containers = cli(pull_host, "ps", "-aq")
    if containers:
        cli(pull_host, "rm", "-f", *containers.split())
    images = cli(pull_host, "images", "-aq")
    if images:
        cli(pull_host, "rmi", "-f", *sorted(set(images.split())))
    return pull_host
