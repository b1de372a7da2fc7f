"""`hvinfra serve` refuses what it cannot do safely before touching an engine: exit code 26
(SERVE) with one message and a fix."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hvinfra.cli import main
from hvinfra.cli.serve_cmd import default_data_dir, is_loopback
from hvinfra.errors import ExitCode
from hvinfra.serve.store import DataDirLock

pytest.importorskip("fastapi")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def test_binding_off_loopback_without_a_token_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "t2v", "--host", "0.0.0.0"]) == ExitCode.SERVE
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 makes the API reachable from other machines" in err
    assert "--token-file" in err


def test_a_short_token_is_refused_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "t"
    token.write_text("hunter2\n")
    assert main(["serve", "t2v", "--host", "0.0.0.0", "--token-file", str(token)]) == 26
    err = capsys.readouterr().err
    assert "too short" in err and "hunter2" not in err


def test_a_busy_port_is_exit_26(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "t2v", "--port", str(port)]) == 26
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_second_server_on_the_data_dir_is_exit_26(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = DataDirLock(tmp_path / "d")
    lock.acquire("pid 4242, 127.0.0.1:8188")
    try:
        assert main(["serve", "t2v", "--port", "0", "--data-dir", str(tmp_path / "d")]) == 26
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert "in use by another hvinfra serve (pid 4242, 127.0.0.1:8188)" in err


def test_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "v2v"]) == ExitCode.USAGE


def test_defaults() -> None:
    assert default_data_dir("t2v", {"XDG_DATA_HOME": "/x"}) == Path("/x/hvinfra/serve/t2v")
    assert default_data_dir("i2v", {"HOME": "/h"}) == Path("/h/.local/share/hvinfra/serve/i2v")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_help_does_not_import_the_web_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom hvinfra.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "web = ('fastapi', 'uvicorn', 'starlette', 'docker')\n"
        "print(sorted(m for m in web if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
