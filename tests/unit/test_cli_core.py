"""The CLI's contract: exit codes, one error line plus a fix, no tracebacks, --json, --dry-run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from hvinfra.cli import main
from hvinfra.errors import ExitCode

FIXTURES = Path(__file__).parent.parent / "fixtures" / "profiles"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("HVINFRA_IMAGE", "HVINFRA_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def test_dry_run_prints_a_docker_run_line_and_touches_no_engine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code = main(["up", "t2v", "--dry-run"])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0
    argv = shlex.split(out)
    assert argv[:3] == ["docker", "run", "--detach"]
    assert argv[-1] == "hunyuanvideo/hunyuanvideo:cuda_12"


def test_dry_run_json_has_the_argv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "i2v", "--dry-run", "--json", "--gpus", "0", "--name", "mine"]) == 0
    payload = json.loads(capsys.readouterr().out)
    argv = payload["argv"]
    assert argv[argv.index("--name") + 1] == "mine"
    assert argv[argv.index("--gpus") + 1] == "device=0"


def test_volume_flag_replaces_the_profile_mount_with_the_same_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["up", "t2v", "--dry-run", "--json", "-v", f"{tmp_path}/o:/workspace/outputs"])
    assert code == 0
    argv = json.loads(capsys.readouterr().out)["argv"]
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    assert f"{tmp_path}/o:/workspace/outputs" in volumes
    assert sum(v.endswith(":/workspace/outputs") for v in volumes) == 1


def test_unreachable_daemon_is_one_error_and_a_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code = main(["status"])
    err = capsys.readouterr().err
    assert code == ExitCode.DOCKER_UNREACHABLE
    assert "error: cannot reach the Docker daemon at unix:///nonexistent/docker.sock" in err
    assert "fix:" in err and "DOCKER_HOST" in err
    assert "Traceback" not in err


def test_debug_shows_the_chained_cause(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["--debug", "status"]) == ExitCode.DOCKER_UNREACHABLE
    assert "caused by:" in capsys.readouterr().err


def test_bad_profile_file_exit_code_and_location(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "validate", str(FIXTURES / "bad-type.yaml")])
    err = capsys.readouterr().err
    assert code == ExitCode.PROFILE
    assert "bad-type.yaml:5: gpu.devices" in err
    assert "Traceback" not in err


def test_validate_accepts_a_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(FIXTURES / "standalone.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_config_show_json_with_sources(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HVINFRA_IMAGE", "env/image:9")
    assert main(["config", "show", "t2v", "--json", "--sources", "--set", "shm_size=2g"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["profile"]["image"] == "env/image:9"
    assert payload["profile"]["shm_size"] == 2 * 1024**3
    assert payload["sources"]["image"] == "env:HVINFRA_IMAGE"
    assert payload["sources"]["shm_size"] == "--set"


def test_config_show_yaml_is_loadable(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    assert main(["config", "show", "i2v"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["container_name"] == "hunyuanvideo-i2v"


def test_bad_pull_policy_is_a_usage_level_profile_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "t2v", "--pull", "sometimes"]) == ExitCode.PROFILE
    assert "missing, always or never" in capsys.readouterr().err


def test_bad_env_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "t2v", "--dry-run", "-e", "=x"]) == ExitCode.PROFILE


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "t2v", "--no-such-flag"]) == ExitCode.USAGE


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("hvinfra ")


HEAVY = ("docker", "pynvml", "pydantic", "yaml", "rich.table", "rich.markdown", "requests")


def _loaded_after(argv: list[str]) -> list[str]:
    import ast
    import subprocess
    import sys

    code = (
        "import sys\nfrom hvinfra.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} + ('hvinfra.cli.lifecycle', 'hvinfra.cli.generate_cmd')"
        " if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    loaded: list[str] = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    return loaded


def test_help_loads_no_heavy_module_and_no_command_module() -> None:
    assert _loaded_after(["--help"]) == []


def test_a_commands_help_loads_only_that_commands_module() -> None:
    assert _loaded_after(["status", "--help"]) == ["hvinfra.cli.lifecycle"]


def test_the_help_table_lists_exactly_the_commands_the_modules_register() -> None:
    import importlib

    import typer
    import typer.main

    from hvinfra.cli import COMMANDS

    registered: dict[str, str] = {}
    for module_name in {module for module, _ in COMMANDS.values()}:
        holder = typer.Typer()
        importlib.import_module(f"hvinfra.cli.{module_name}").register(holder)
        for name in typer.main.get_group(holder).commands:
            registered[name] = module_name
    assert registered == {name: module for name, (module, _) in COMMANDS.items()}


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bogus"]) == 2
    assert "No such command 'bogus'" in capsys.readouterr().err
