"""Fixtures for tests/adapters (imported by the test modules, not a conftest: `conftest` is
a module name other test folders import from).

nvml_libraries (session)  folder -> built stand-in libnvidia-ml.so.1 variants ("full",
                          "no_v3": without nvmlDeviceGetComputeRunningProcesses_v3,
                          "no_processes": without _v3 and _v2); needs gcc (skips without it,
                          fails under CI=true).
cli_env (function)        a plain environment for running `hvinfra` as a subprocess: empty
                          XDG folders, no Docker reachable, no recorded GPU records.
"""

from __future__ import annotations

import os
from pathlib import Path

import nvml_stub
import pytest

VARIANTS = {
    "full": (),
    "no_v3": ("nvmlDeviceGetComputeRunningProcesses_v3",),
    "no_processes": (
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetComputeRunningProcesses_v2",
    ),
}


@pytest.fixture(scope="session")
def nvml_libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nvml-stub")
    try:
        return {name: nvml_stub.build(root / name, drop) for name, drop in VARIANTS.items()}
    except nvml_stub.CompilerMissing as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("HVINFRA_GPU_RECORDS", "HVINFRA_DEV_DIR", "HVINFRA_SKIP_CHECKS", "DOCKER_CONTEXT"):
        env.pop(var, None)
    home = tmp_path / "home"
    for sub in ("config", "cache", "data", "state", "docker"):
        (home / sub).mkdir(parents=True)
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
            "DOCKER_CONFIG": str(home / "docker"),
            "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "200",
        }
    )
    return env
