"""GPU smoke tests: real NVML. Skipped where NVML finds no GPU, never faked; on the GPU runner
HVINFRA_REQUIRE_GPU=1 turns that skip into a failure, so a broken runner cannot pass."""

from __future__ import annotations

import os

import pytest

from hvinfra.errors import NvmlError
from hvinfra.gpu import NvmlProbe
from hvinfra.records import GpuSystem


@pytest.fixture(scope="session")
def gpu_system() -> GpuSystem:
    reason = ""
    try:
        system = NvmlProbe().probe()
        if not system.gpus:
            reason = "NVML works but sees no GPU"
    except NvmlError as error:
        reason = f"no GPU through NVML: {error.message.splitlines()[0]}"
    if reason:
        if os.environ.get("HVINFRA_REQUIRE_GPU") == "1":
            pytest.fail(reason + " (HVINFRA_REQUIRE_GPU=1)")
        pytest.skip(reason)
    return system
