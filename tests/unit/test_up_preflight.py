"""`hvinfra up` runs doctor's checks first: the VRAM gate, GPU selection, --skip-checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpu_fakes import FakeEngine, FakeProbe, copies, free_gib, recorded

from hvinfra.cli import main
from hvinfra.context import AppContext
from hvinfra.errors import ExitCode, NvmlError


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".local/share/hvinfra/t2v/ckpts").mkdir(parents=True)
    (home / ".local/share/hvinfra/t2v/ckpts/README").write_text("weights here")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_HOST", "tcp://fake.invalid:2375")
    monkeypatch.delenv("HVINFRA_SKIP_CHECKS", raising=False)


def use(probe: Any, engine: Any = None) -> tuple[FakeEngine, AppContext]:
    """The fakes, handed to the CLI through its composition root (no patched modules)."""
    engine = engine or FakeEngine()
    return engine, AppContext(engine_factory=lambda: engine, probe=probe)


def test_up_refuses_720p_on_a_gpu_with_less_than_60gib_free(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, ctx = use(FakeProbe(free_gib(recorded(), 55)))
    code = main(["up", "t2v"], context=ctx)
    err = capsys.readouterr().err
    assert code == ExitCode.PREFLIGHT
    assert engine.created == []
    assert "vram (GPU 0)" in err
    assert "needs 60 GiB" in err
    assert "--set resolution=540p" in err
    assert "--skip-checks" in err


def test_up_starts_when_the_checks_pass_and_requests_the_checked_gpu_by_uuid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    system = copies(recorded(), 2)
    engine, ctx = use(FakeProbe(system))
    code = main(["up", "t2v", "--gpus", "1", "--json"], context=ctx)
    assert code == 0, capsys.readouterr().err
    (spec,) = engine.created
    assert spec.gpu_request.device_ids == (system.gpus[1].uuid,)
    assert spec.label_map["io.hvinfra.gpus"] == "1"  # the selection as written, for jobs


def test_up_540p_profile_fits_where_720p_does_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, ctx = use(FakeProbe(free_gib(recorded(), 55)))
    assert main(["up", "t2v", "--set", "resolution=540p", "--json"], context=ctx) == 0
    assert len(engine.created) == 1


def test_skip_checks_warns_loudly_and_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, ctx = use(FakeProbe(free_gib(recorded(), 10)))
    code = main(["up", "t2v", "--skip-checks", "--json"], context=ctx)
    err = capsys.readouterr().err
    assert code == 0
    assert "WARNING: --skip-checks" in err
    assert len(engine.created) == 1


def test_up_with_an_unknown_gpu_lists_the_gpus_seen(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    system = copies(recorded(), 2)
    engine, ctx = use(FakeProbe(system))
    code = main(["up", "t2v", "--gpus", "3"], context=ctx)
    err = capsys.readouterr().err
    assert code == ExitCode.GPU_RUNTIME
    assert "no GPU 3" in err
    assert system.gpus[0].uuid in err and system.gpus[1].uuid in err
    assert engine.created == []


def test_dry_run_resolves_gpu_index_to_its_uuid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    system = recorded()
    _, ctx = use(FakeProbe(system))
    assert main(["up", "t2v", "--dry-run", "--gpus", "0", "--json"], context=ctx) == 0
    argv = json.loads(capsys.readouterr().out)["argv"]
    assert argv[argv.index("--gpus") + 1] == f"device={system.gpus[0].uuid}"


def test_dry_run_works_without_nvml_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = FakeProbe(error=NvmlError("NVML: library not found", "install", code=12))
    _, ctx = use(probe)
    assert main(["up", "t2v", "--dry-run", "--gpus", "0"], context=ctx) == 0
    out = capsys.readouterr()
    assert "--gpus device=0" in out.out
    assert "GPUs not resolved" in out.err
