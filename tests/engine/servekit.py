"""The `hvinfra serve` process for the engine tests (test_serve.py, test_serve_browser.py):
the serve-standin image fixture and a Serve helper that starts, kills and restarts the server."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from dockerd import build_fixture_image

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "serve-standin"
TAG = "hvinfra-test/serve-standin:latest"


@pytest.fixture(scope="session")
def serve_image(docker_client: docker.DockerClient, generate_image: str) -> str:
    return build_fixture_image(docker_client, FIXTURE, ("Dockerfile",), TAG)


class Serve:
    """One `hvinfra serve KIND` process; start() again after a kill is a restart (same data dir,
    same container)."""

    def __init__(self, root: Path, env: dict[str, str], image: str) -> None:
        self.root = root
        self.data = root / "data"
        self.out = root / "videos"
        self.container = f"hv-serve-{uuid.uuid4().hex[:8]}"
        self.env = dict(env, PYTHONPATH=str(REPO / "src"))
        self.image = image
        self.kind = "t2v"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.lines: list[str] = []

    def argv(self, *extra: str) -> list[str]:
        sets = {
            "image": self.image,
            "container_name": self.container,
            "ulimits.memlock": "8m",
            "volumes.outputs.host": str(self.root / "outputs"),
        }
        argv = [
            sys.executable, "-m", "hvinfra", "serve", self.kind, "--port", "0", "--no-reuse",
            "--data-dir", str(self.data), "--out", str(self.out), "--skip-checks",
            "--stop-timeout", "2", *extra,
        ]  # fmt: skip
        for key, value in sets.items():
            argv += ["--set", f"{key}={value}"]
        return argv

    def start(self, *extra: str, host: str = "127.0.0.1") -> str:
        self.lines = []
        self.proc = subprocess.Popen(
            self.argv(*extra), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                match = re.search(r"serving \w+ jobs on (http://\S+/)", line)
                if match:
                    self.url = match[1].rstrip("/")
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 90
        while not found.is_set():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("serve did not start:\n" + "".join(self.lines))
            time.sleep(0.1)
        return self.url

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def serve(tmp_path: Path, hv_env: dict[str, str], serve_image: str) -> Iterator[Serve]:
    server = Serve(tmp_path, hv_env, serve_image)
    yield server
    server.stop()
