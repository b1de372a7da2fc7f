"""Untrusted inputs that need no engine: hostile profiles (alias bombs, huge files, settings
that open the host), symlink loops in path arguments, the rewrite key (redirects and echoes,
against real HTTP servers on 127.0.0.1), and the file-system rules of copy-out."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hvinfra.cli import main
from hvinfra.errors import ExitCode, OutputError, ProfileError, RewriteFailed
from hvinfra.exposure import exposures
from hvinfra.generate import safe_output
from hvinfra.generate.job_control import running_jobs
from hvinfra.generate.rewrite import RewriteConfig, rewrite_prompt
from hvinfra.generate.run import reserve_output_files
from hvinfra.profiles import load_profile
from hvinfra.records import ExecResult

BOMB = "name: t2v\nenvironment:\n  A: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  {k}: &{k.lower()} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, k in zip("abcdefgh", "BCDEFGHI", strict=True)
)


# -- hostile profiles ------------------------------------------------------------------------------
def test_an_alias_bomb_profile_is_refused_fast_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 700
    started = time.monotonic()
    with pytest.raises(ProfileError) as info:
        load_profile("t2v", profile_file=path, env={})
    assert time.monotonic() - started < 1.0
    assert str(path) in info.value.message and "alias" in info.value.message
    assert info.value.exit_code == ExitCode.PROFILE


def test_an_alias_bomb_in_set_is_refused_too(capsys: pytest.CaptureFixture[str]) -> None:
    value = "{a: &a [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]" for p, k in zip("abcdef", "bcdefg", strict=True)
    )
    assert main(["config", "show", "t2v", "--set", f"environment={value}}}"]) == 3
    assert "alias" in capsys.readouterr().err


def test_recursive_alias_and_huge_files_are_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("environment: &e\n  X: *e\n")
    with pytest.raises(ProfileError, match="refers to itself"):
        load_profile("t2v", profile_file=loop, env={})
    huge = tmp_path / "huge.yaml"
    huge.write_text("labels:\n" + "".join(f"  k{i}: {'v' * 60}\n" for i in range(20000)))
    with pytest.raises(ProfileError, match="over the 1024 KiB limit"):
        load_profile("t2v", profile_file=huge, env={})


def test_ordinary_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("labels: &l {team: video}\nenvironment: *l\n")
    assert load_profile("t2v", profile_file=path, env={}).profile.environment["team"] == "video"


def test_settings_that_open_the_host_are_named_with_their_source(tmp_path: Path) -> None:
    assert exposures(*_loaded()) == []  # the packaged profile opens nothing
    lines = exposures(
        *_loaded(
            sets=[
                "privileged=true",
                "volumes.root.host=/",
                "volumes.root.container=/host",
                "volumes.sock.host=/var/run/docker.sock",
                "volumes.sock.container=/s",
            ],
            env={"HVINFRA_CAP_ADD": "[SYS_ADMIN]", "HVINFRA_SECURITY_OPT": "[seccomp=unconfined]"},
        )
    )
    text = "\n".join(lines)
    assert "privileged=true (from --set)" in text
    assert "cap_add SYS_ADMIN (from env:HVINFRA_CAP_ADD" in text
    assert "security_opt seccomp=unconfined (from env:" in text
    assert "mounts the host's root file system" in text
    assert "mounts the container engine's socket" in text
    (secret,) = exposures(*_loaded(sets=["environment.HF_TOKEN=hf_x"]))
    assert secret.startswith("environment.HF_TOKEN (from --set)") and "hf_x" not in secret


def _loaded(sets: list[str] | None = None, env: dict[str, str] | None = None) -> Any:
    loaded = load_profile("t2v", sets=sets or [], env=env or {})
    return loaded.profile, loaded.sources


# -- symlink loops -------------------------------------------------------------------------------
@pytest.fixture
def loop(tmp_path: Path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["generate", "i2v", "-p", "x", "--dry-run", "--image", "{loop}"], 2),
        (["models", "check", "t2v", "--code-dir", "{loop}"], 2),
        (["models", "check", "t2v", "--weights-dir", "{loop}"], 2),
        (["up", "t2v", "--dry-run", "-v", "{loop}:/x"], 3),
        (["config", "show", "t2v", "--set", "volumes.weights.host={loop}"], 3),
    ],
)
def test_symlink_loops_are_a_clear_error_not_a_traceback(
    loop: Path, argv: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.format(loop=loop) for a in argv]) == code
    err = capsys.readouterr().err
    assert f"{loop}: a symbolic link loop" in err and "Traceback" not in err


# -- the rewrite key -----------------------------------------------------------------------------
KEY = "sk-very-secret-key-1234"


class _Http:
    """A tiny HTTP server: `answer(handler)` replies; every request's headers are kept."""

    def __init__(self, answer: Any) -> None:
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                outer.seen.append(dict(self.headers))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                answer(self)

            do_POST = do_GET = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def servers() -> Iterator[list[_Http]]:
    made: list[_Http] = []
    yield made
    for server in made:
        server.httpd.shutdown()


def _reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def test_the_key_never_follows_a_redirect_to_another_host(servers: list[_Http]) -> None:
    other = _Http(_reply(200, b'{"choices": [{"message": {"content": "stolen"}}]}'))
    first = _Http(_reply(307, b"", {"Location": other.url + "/v1/chat/completions"}))
    servers += [other, first]
    config = RewriteConfig(endpoint=first.url + "/v1", model="m", api_key=KEY)
    with pytest.raises(RewriteFailed) as info:
        rewrite_prompt("a cat", "normal", config)
    assert "redirect" in info.value.message and other.url in info.value.message
    assert first.seen[0]["Authorization"] == f"Bearer {KEY}"
    assert other.seen == []  # never contacted, so the key never left


def test_an_echoed_key_is_in_no_message_even_with_debug(
    servers: list[_Http], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = _Http(_reply(401, f'{{"error": "bad key Bearer {KEY}"}}'.encode()))
    servers.append(echo)
    monkeypatch.setenv("HVINFRA_REWRITE_API_KEY", KEY)
    code = main(["--debug", "generate", "t2v", "-p", "a cat", "--rewrite", "normal",
                 "--rewrite-endpoint", echo.url + "/v1", "--dry-run"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == ExitCode.REWRITE
    assert "HTTP 401" in captured.err and "bad key Bearer ***" in captured.err
    assert KEY not in captured.err + captured.out


# -- copy-out and --out --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/outputs/j/../../etc/passwd", "/etc/passwd", "/outputs/j/./x.mp4", "/outputs/j//x.mp4",
     "/outputs/jx/x.mp4", "/outputs/j/", "/outputs/j/a\0.mp4"],
)  # fmt: skip
def test_paths_the_container_reports_outside_its_save_folder_are_refused(path: str) -> None:
    assert safe_output.relative_parts(path, "/outputs/j") is None


def test_a_path_inside_the_save_folder_is_accepted() -> None:
    assert safe_output.relative_parts("/outputs/j/sub/x.mp4", "/outputs/j/") == ("sub", "x.mp4")


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "victim"
    path.write_text("host secret\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    yield path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_reading_never_follows_a_link_or_opens_a_fifo(tmp_path: Path, victim: Path) -> None:
    root = tmp_path / "outputs"
    (root / "job").mkdir(parents=True)
    (root / "job" / "link.mp4").symlink_to(victim)
    (root / "job" / "dir").symlink_to(victim.parent)
    os.mkfifo(root / "job" / "fifo.mp4")
    for parts in (("job", "link.mp4"), ("job", "dir", "victim")):
        with pytest.raises(OutputError, match="never followed"):
            safe_output.open_below(root, parts)
    with pytest.raises(OutputError, match="not a regular file"):
        safe_output.open_below(root, ("job", "fifo.mp4"))
    assert safe_output.regular_files_in(root, "job", ".mp4") == []


def test_writes_never_go_through_or_over_a_planted_name(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "v.json").symlink_to(victim)
    with pytest.raises(OutputError, match="already taken by a symbolic link"):
        safe_output.write_new(out / "v.json", b"{}")
    with pytest.raises(OutputError, match="already taken"):
        safe_output.create_new(out / "v.json")
    assert sorted(p.name for p in out.iterdir()) == ["v.json"]  # no temp file left


def test_reserving_skips_names_taken_by_planted_links(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "s.log").symlink_to(victim)
    (tmp_path / "s-2.mp4").symlink_to(tmp_path / "missing")  # a dangling link counts too
    files = reserve_output_files(tmp_path, "s")
    assert files.log.name == "s-3.log" and not files.log.is_symlink()
    with pytest.raises(OutputError):  # the log swapped for a link after reservation
        files.log.unlink()
        files.log.symlink_to(victim)
        safe_output.open_append_own(files.log, files.log_identity)


class _Listing:
    def __init__(self, text: str) -> None:
        self.text = text

    def exec_run(self, container_id: str, argv: Any) -> ExecResult:
        return ExecResult(0, self.text.encode())

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {}


def test_running_jobs_read_markers_and_owners() -> None:
    listing = "PROC 12 job-a\nPROC 13 job-a\nPROC 40 job-b\nFILE job-a 12 otherhost 999\n"
    jobs = running_jobs(_Listing(listing), "c")
    assert [(j.job_id, j.pids) for j in jobs] == [("job-a", (12, 13)), ("job-b", (40,))]
    assert jobs[0].owner_host == "otherhost" and jobs[0].owner_pid == 999
    assert jobs[1].orphaned  # no pid file: nobody owns it
