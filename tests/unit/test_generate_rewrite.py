"""Prompt rewrite against a real HTTP server on 127.0.0.1, and its configuration."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hvinfra.cli import main
from hvinfra.errors import ExitCode, RewriteFailed
from hvinfra.generate.rewrite import (
    INSTRUCTIONS,
    RewriteConfig,
    chat_url,
    resolve_config,
    rewrite_prompt,
)


class Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.reply: Any = {"choices": [{"message": {"role": "assistant", "content": "REWRITTEN"}}]}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                server.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                data = json.dumps(server.reply).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def config(url: str, key: str | None = None) -> RewriteConfig:
    return RewriteConfig(endpoint=url, model="m1", api_key=key, timeout=5)


@pytest.mark.parametrize("mode", ["normal", "master"])
def test_rewrite_posts_an_openai_chat_request_with_the_mode_instructions(
    server: Server, mode: str
) -> None:
    assert rewrite_prompt("猫 on grass", mode, config(server.url, "sk-1")) == "REWRITTEN"
    (sent,) = server.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sk-1"
    assert sent["body"]["model"] == "m1"
    assert sent["body"]["messages"] == [
        {"role": "system", "content": INSTRUCTIONS[mode]},
        {"role": "user", "content": "猫 on grass"},
    ]


def test_master_instructions_ask_for_more_than_normal() -> None:
    assert INSTRUCTIONS["master"] != INSTRUCTIONS["normal"]
    assert "lighting" in INSTRUCTIONS["master"] and "lighting" not in INSTRUCTIONS["normal"]


def test_http_error_becomes_rewrite_failed_with_the_status(server: Server) -> None:
    server.status, server.reply = 401, {"error": "bad key"}
    with pytest.raises(RewriteFailed) as caught:
        rewrite_prompt("x", "normal", config(server.url, "sk-secret"))
    assert "HTTP 401" in caught.value.message
    assert "sk-secret" not in caught.value.message + caught.value.fix
    assert caught.value.exit_code == ExitCode.REWRITE


def test_a_reply_that_is_not_a_chat_completion_is_refused(server: Server) -> None:
    server.reply = {"unexpected": True}
    with pytest.raises(RewriteFailed, match="OpenAI chat completion"):
        rewrite_prompt("x", "normal", config(server.url))


def test_unreachable_endpoint_is_rewrite_failed() -> None:
    with pytest.raises(RewriteFailed, match="cannot reach"):
        rewrite_prompt("x", "normal", config("http://127.0.0.1:1/v1"))


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://h:8000", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/v1/", "http://h:8000/v1/chat/completions"),
        ("http://h/v1/chat/completions", "http://h/v1/chat/completions"),
    ],
)
def test_chat_url_accepts_a_base_or_the_full_url(endpoint: str, url: str) -> None:
    assert chat_url(endpoint) == url


def resolve(env: dict[str, str], **over: Any) -> RewriteConfig:
    values: dict[str, Any] = {
        "endpoint": None, "model": None, "key_file": None, "profile_endpoint": None,
        "profile_model": "pm", "profile_key_file": None, "timeout": 5.0, "env": env,
    }  # fmt: skip
    values.update(over)
    return resolve_config(**values)


def test_missing_endpoint_fails_naming_the_three_ways_to_set_it() -> None:
    with pytest.raises(RewriteFailed) as caught:
        resolve({})
    assert "--rewrite-endpoint" in caught.value.fix
    assert "HVINFRA_REWRITE_ENDPOINT" in caught.value.fix
    assert "rewrite.endpoint" in caught.value.fix


def test_flag_beats_env_beats_profile(tmp_path: Path) -> None:
    env = {"HVINFRA_REWRITE_ENDPOINT": "http://env/v1", "HVINFRA_REWRITE_API_KEY": "k-env"}
    assert resolve(env, endpoint="http://flag/v1").endpoint == "http://flag/v1"
    assert resolve(env, profile_endpoint="http://prof/v1").endpoint == "http://env/v1"
    assert resolve({}, profile_endpoint="http://prof/v1").endpoint == "http://prof/v1"
    assert resolve(env).api_key == "k-env"
    key = tmp_path / "key"
    key.write_text("k-file\n")
    assert resolve(env, key_file=str(key)).api_key == "k-file"
    assert "k-file" not in repr(resolve(env, key_file=str(key)))


def test_cli_rewrite_without_endpoint_exits_with_the_rewrite_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
    monkeypatch.delenv("HVINFRA_REWRITE_ENDPOINT", raising=False)
    code = main(["generate", "t2v", "-p", "cat", "--rewrite", "normal", "--dry-run"])
    assert code == ExitCode.REWRITE
    assert "no" in capsys.readouterr().err


def test_cli_rewrite_dry_run_uses_the_rewritten_prompt_and_keeps_the_original(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("HVINFRA_REWRITE_API_KEY", "sk-never-shown")
    code = main(["generate", "t2v", "-p", "cat", "--rewrite", "master", "--rewrite-endpoint",
                 server.url, "--dry-run", "--json", "--seed", "3"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert "--prompt=REWRITTEN" in payload["argv"]
    assert payload["request"]["original_prompt"] == "cat"
    assert payload["request"]["rewrite"] == "master"
    assert "sk-never-shown" not in captured.out + captured.err
    assert server.requests[0]["auth"] == "Bearer sk-never-shown"
