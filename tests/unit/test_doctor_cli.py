"""`hvinfra doctor` end to end through the CLI, with fake NVML/engine or this machine's own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from assets_fixtures import ready_assets
from gpu_fakes import FakeEngine, FakeNvml, FakeProbe, copies, engine_info, free_gib, recorded

from hvinfra.cli import main
from hvinfra.context import AppContext
from hvinfra.errors import DockerUnreachable, ExitCode, NvmlError
from hvinfra.gpu import NvmlProbe


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    data = home / ".local/share/hvinfra/t2v"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    ready_assets("t2v", data / "code", data / "ckpts", monkeypatch)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("HVINFRA_SKIP_CHECKS", raising=False)
    # A remote daemon: no host reads of a dockerd process that may or may not run here.
    monkeypatch.setenv("DOCKER_HOST", "tcp://fake.invalid:2375")
    return home


def use(probe: Any, engine: Any) -> AppContext:
    """The fakes, handed to the CLI through its composition root (no patched modules)."""

    def connect() -> Any:
        if isinstance(engine, Exception):
            raise engine
        return engine

    return AppContext(engine_factory=connect, probe=probe)


def run_json(
    capsys: pytest.CaptureFixture[str], ctx: AppContext | None, *args: str
) -> tuple[int, dict[str, Any], str]:
    code = main(["doctor", *args, "--json"], context=ctx)
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def rows(data: dict[str, Any]) -> dict[str, str]:
    return {c["name"] + (f":{c['gpu']}" if c["gpu"] is not None else ""): c["status"]
            for c in data["checks"]}  # fmt: skip


def test_doctor_json_reports_the_gpu_and_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    system = recorded()
    ctx = use(FakeProbe(system), FakeEngine())
    code, data, _ = run_json(capsys, ctx, "t2v")
    assert data["schema"] == 1
    assert data["gpus"]["driver_version"] == system.driver_version
    assert data["gpus"]["gpus"][0]["memory_total_bytes"] == system.gpus[0].memory_total_bytes
    assert data["gpus"]["cuda_driver_version"] == "{}.{}".format(*system.cuda_driver_version)
    assert rows(data)["vram:0"] == "pass"
    assert data["ok"] is True, data["checks"]
    assert code == 0


def test_doctor_lists_missing_model_assets_with_the_pull_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ctx = use(FakeProbe(recorded()), FakeEngine())
    code, data, _ = run_json(capsys, ctx, "t2v", "--set", f"volumes.weights.host={tmp_path}/empty")
    assert code == ExitCode.PREFLIGHT and data["ok"] is False
    statuses = rows(data)
    assert statuses["models.code"] == "pass"
    failing = [
        c for c in data["checks"] if c["name"].startswith("models.") and c["status"] == "fail"
    ]
    assert failing and all("hvinfra models pull t2v" in c["fix"] for c in failing)
    assert statuses["vram:0"] == "pass"  # the GPU rows are unaffected


def test_doctor_fails_with_exit_10_when_vram_is_short(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = use(FakeProbe(free_gib(recorded(), 40)), FakeEngine())
    code, data, _ = run_json(capsys, ctx, "t2v")
    assert code == ExitCode.PREFLIGHT
    assert rows(data)["vram:0"] == "fail"
    assert data["ok"] is False


def test_doctor_resolution_option_changes_the_need(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = use(FakeProbe(free_gib(recorded(), 50)), FakeEngine())
    _, data, _ = run_json(capsys, ctx, "t2v", "--resolution", "540p")
    assert data["resolution"] == "540p"
    assert rows(data)["vram:0"] == "pass"


def test_doctor_reports_nvml_rows_when_docker_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = use(FakeProbe(recorded()), DockerUnreachable("cannot reach Docker", "start it"))
    code, data, _ = run_json(capsys, ctx, "t2v")
    assert code == ExitCode.PREFLIGHT
    assert rows(data)["docker"] == "fail"
    assert rows(data)["nvml"] == "pass"
    assert rows(data)["vram:0"] == "pass"


def test_doctor_unknown_gpu_is_a_failed_row_listing_the_gpus(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    system = copies(recorded(), 2)
    ctx = use(FakeProbe(system), FakeEngine())
    code, data, _ = run_json(capsys, ctx, "t2v", "--gpus", "7")
    gpus_row = next(c for c in data["checks"] if c["name"] == "gpus")
    assert gpus_row["status"] == "fail"
    assert system.gpus[1].uuid in gpus_row["detail"]
    assert code == ExitCode.PREFLIGHT


def test_doctor_without_nvml_library_fails_clearly_in_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = NvmlProbe(nvml=FakeNvml(recorded(), fail={"nvmlInit": 12}))
    ctx = use(probe, FakeEngine())
    code = main(["doctor", "t2v"], context=ctx)
    out = capsys.readouterr()
    assert code == ExitCode.PREFLIGHT
    assert "libnvidia-ml.so.1" in out.out
    assert "install the NVIDIA driver" in out.out
    assert "failed" in out.err and "nvml" in out.err


def test_doctor_on_this_machine_without_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The real NVML probe and a Docker socket that does not exist: clear fails, exit 10."""
    try:
        NvmlProbe().probe()
    except NvmlError:
        pass
    else:
        pytest.skip("NVML works on this machine: the no-GPU behaviour cannot be shown here")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    code, data, _ = run_json(capsys, None, "t2v")
    assert code == ExitCode.PREFLIGHT
    nvml = next(c for c in data["checks"] if c["name"] == "nvml")
    assert nvml["status"] == "fail"
    assert nvml["fix"]
    assert rows(data)["docker"] == "fail"
    assert data["gpus"] is None
    assert os.environ["DOCKER_HOST"].endswith("no-such.sock")


def test_generate_runs_ups_preflight_before_it_starts_a_container(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A check only up's pre-flight makes (the Docker version) stops generate too, through the
    same bring-up, before any container exists."""
    engine = FakeEngine(info=engine_info(server_version="19.03.1"))
    ctx = use(FakeProbe(recorded()), engine)
    code = main(["generate", "t2v", "-p", "a cat", "--out", str(tmp_path / "o")], context=ctx)
    err = capsys.readouterr().err
    assert code == ExitCode.PREFLIGHT, err
    assert "pre-flight" in err and "docker" in err
    assert engine.created == []
