"""Edges of the adapters that the real counterparts in tests/adapters and tests/engine do not
reach (docs/coverage.md lists them): docker's --since forms, a socket without permission, the
daemon's insecure-registry list, and a version mismatch on a call NVML cannot do without."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pynvml
import pytest
from gpu_fakes import FakeNvml, recorded

from hvinfra.engine import _since_value, _unreachable
from hvinfra.errors import ExitCode, HvinfraError, NvmlError
from hvinfra.gpu import NvmlProbe
from hvinfra.registry import plain_http


def test_since_accepts_durations_unix_times_and_dates_and_refuses_the_rest() -> None:
    now = dt.datetime.now(tz=dt.timezone.utc)
    ten_minutes_ago = _since_value("10m")
    assert abs((now - ten_minutes_ago).total_seconds() - 600) < 5
    assert _since_value("1764324000") == 1764324000
    assert _since_value("2026-11-28T10:00:00Z") == dt.datetime(
        2026, 11, 28, 10, tzinfo=dt.timezone.utc
    )
    with pytest.raises(HvinfraError) as caught:
        _since_value("yesterday")
    assert caught.value.exit_code == ExitCode.USAGE
    assert "10m, 2h" in caught.value.fix


def test_a_socket_without_permission_names_the_docker_group() -> None:
    error = _unreachable(PermissionError(13, "Permission denied"), "unix:///run/docker.sock")
    assert "no permission to use the Docker socket" in error.message
    assert "docker group" in error.fix


def test_insecure_registries_match_by_cidr_and_skip_entries_that_are_not_networks() -> None:
    assert plain_http("10.1.2.3:5000", ("registry.local", "10.0.0.0/8"))
    assert not plain_http("192.168.1.9:5000", ("not/a-network", "10.0.0.0/8"))


def test_a_version_mismatch_on_a_required_call_is_an_nvml_error_with_the_fix(
    tmp_path: Path,
) -> None:
    class OlderLibrary(FakeNvml):
        NVMLLibraryMismatchError = pynvml.NVMLLibraryMismatchError  # as the real module has

        def nvmlDeviceGetCount(self) -> int:
            raise pynvml.NVMLLibraryMismatchError("Unversioned function called …")

    maps = tmp_path / "maps"
    maps.write_text("")
    with pytest.raises(NvmlError) as caught:
        NvmlProbe(nvml=OlderLibrary(recorded()), maps_path=str(maps)).probe()
    assert "older than the nvidia-ml-py bindings" in caught.value.message
    assert "counting GPUs" in caught.value.message
    assert "update the NVIDIA driver" in caught.value.fix
