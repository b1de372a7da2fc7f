"""Running `hvinfra` as a subprocess against the local hub server, as a user runs it: the
environment points HF_ENDPOINT at the server and keeps the machine's hub login, profiles and
data folders out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TOKEN = "hf_testTOKENvalue0123456789"


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


def hub_env(tmp_path: Path, endpoint: str, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf-home"),  # no saved login of the machine
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user profiles of the machine
        "HOME": str(tmp_path / "home"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    })  # fmt: skip
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def pull_argv(weights: Path, target: str = "i2v", *extra: str) -> list[str]:
    return [sys.executable, "-m", "hvinfra", "models", "pull", target, "--only", "weights",
            "--weights-dir", str(weights), *extra]  # fmt: skip


def run_cli(argv: Sequence[str], env: dict[str, str], timeout: float = 120) -> Run:
    start = time.monotonic()
    done = subprocess.run(
        list(argv), env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - start)
