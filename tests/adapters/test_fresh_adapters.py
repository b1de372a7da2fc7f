"""Each adapter in a fresh interpreter (`python -c`, nothing preloaded, no fakes) against a real
local counterpart, so import-time and attribute-resolution problems cannot hide behind what a
test session has already imported: the GPU adapter through the real nvidia-ml-py and the NVML
stand-in library, the registry adapter against docker-registry with token auth, the rewrite
client against a local OpenAI-style HTTP server, the hub adapter with the real huggingface_hub
against the local hub server (tests/hubserver.py). (The engine adapter: tests/engine/
test_fresh_engine.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nvml_stub
import pytest
from adapter_fixtures import cli_env as cli_env
from adapter_fixtures import nvml_libraries as nvml_libraries

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from registry import find_registry_binary
from token_registry import TokenRegistry, started

from hubserver import HubRepo, HubServer, payload


def fresh(code: str, env: dict[str, str]) -> Any:
    """Run `code` in a new interpreter; it prints one JSON value, returned here."""
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gpu_adapter_probes_through_the_real_bindings(
    tmp_path: Path, cli_env: dict[str, str], nvml_libraries: dict[str, Path]
) -> None:
    system = nvml_stub.records("h200x2-captured.json")
    description = nvml_stub.describe(tmp_path / "gpus.txt", system)
    env = nvml_stub.environment(nvml_libraries["full"], description, cli_env)
    code = (
        "import json; from hvinfra.gpu import probe; from hvinfra.records import"
        " gpu_system_as_dict; print(json.dumps(gpu_system_as_dict(probe())))"
    )
    seen = fresh(code, env)
    assert [g["uuid"] for g in seen["gpus"]] == [g["uuid"] for g in system["gpus"]]
    assert [g["memory_free_bytes"] for g in seen["gpus"]] == [
        g["memory_free_bytes"] for g in system["gpus"]
    ]
    assert seen["driver_version"] == system["driver_version"]
    assert seen["nvml_library_path"] == str(nvml_libraries["full"] / "libnvidia-ml.so.1")


@pytest.fixture(scope="module")
def token_registry() -> Iterator[TokenRegistry]:
    if find_registry_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no docker-registry binary (scripts/install-test-deps.sh)")
        pytest.skip("no docker-registry binary")
    with started(user="hvtester", password="fresh-Pa55") as registry:
        yield registry


def test_registry_adapter_sizes_the_amd64_image_of_an_index_through_a_token(
    token_registry: TokenRegistry, cli_env: dict[str, str]
) -> None:
    repo = "hv/fresh"
    amd64 = token_registry.push_image(repo, "amd64", [os.urandom(3000), os.urandom(5000)])
    arm64 = token_registry.push_image(repo, "arm64", [os.urandom(700)])
    token_registry.put_index(repo, "multi", [(arm64, "linux", "arm64"), (amd64, "linux", "amd64")])
    before = len(token_registry.tokens.requests)
    code = (
        "import json; from hvinfra.registry import size_image;"
        f" s = size_image('{token_registry.address}/{repo}:multi');"
        " print(json.dumps([s.compressed, sorted(s.layers.values())]))"
    )
    assert fresh(code, cli_env) == [8000, [3000, 5000]]
    asked = token_registry.tokens.requests[before:]
    assert [(t.scope, t.user) for t in asked] == [(f"repository:{repo}:pull", None)]


def sizing_failure(env: dict[str, str], ref: str, credentials: tuple[str, str] | None) -> Any:
    """What SizingFailed says for `ref`, from size_image in a fresh interpreter."""
    code = (
        "import json; from hvinfra.registry import size_image, SizingFailed\n"
        f"try:\n    size_image({ref!r}, credentials={credentials!r})\n"
        "except SizingFailed as exc:\n    print(json.dumps(str(exc)))\n"
    )
    return fresh(code, env)


def test_registry_adapter_says_why_sizing_failed(
    token_registry: TokenRegistry, cli_env: dict[str, str]
) -> None:
    said = sizing_failure(cli_env, f"{token_registry.address}/hv/absent:1", None)
    assert said.startswith("the registry answered HTTP 404 for http://")


def test_registry_adapter_reports_a_refused_login_at_the_token_server(
    token_registry: TokenRegistry, cli_env: dict[str, str]
) -> None:
    ref = f"{token_registry.address}/hv/fresh:amd64"
    said = sizing_failure(cli_env, ref, ("hvtester", "no"))
    assert said == f"the token server {token_registry.tokens.realm} answered HTTP 401"


@pytest.fixture
def chat_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local OpenAI-style chat completions endpoint that answers with a fixed rewrite."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            seen.append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            answer = {"choices": [{"message": {"role": "assistant", "content": '"A cat."'}}]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_rewrite_client_posts_a_chat_completion_and_returns_the_text(
    chat_server: tuple[str, list[dict[str, Any]]], cli_env: dict[str, str]
) -> None:
    endpoint, seen = chat_server
    code = (
        "import json; from hvinfra.generate.rewrite import RewriteConfig, rewrite_prompt;"
        f" c = RewriteConfig(endpoint='{endpoint}', model='m1', api_key='k-123');"
        " print(json.dumps(rewrite_prompt('a cat', 'normal', c)))"
    )
    assert fresh(code, cli_env) == "A cat."
    (request,) = seen
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer k-123"
    assert request["body"]["model"] == "m1"
    assert "a cat" in json.dumps(request["body"])


def test_hub_adapter_lists_and_downloads_with_the_real_client(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    files = {"config.json": b'{"a": 1}', "model.safetensors": payload("model", 20_000)}
    repo = HubRepo("hvtest/tiny", files)
    with HubServer([repo]) as hub:
        env = dict(cli_env, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1")
        env.pop("HF_TOKEN", None)
        code = (
            "import json; from pathlib import Path; from hvinfra.hub import HfHub; h = HfHub();"
            " listing = h.listing('hvtest/tiny', 'main');"
            f" h.download('hvtest/tiny', listing.sha, Path({str(tmp_path / 'out')!r}), ['*']);"
            " print(json.dumps([listing.sha, sorted((f.path, f.size) for f in listing.files),"
            " h.has_token()]))"
        )
        sha, listed, has_token = fresh(code, env)
    assert sha == repo.sha
    assert listed == [["config.json", 8], ["model.safetensors", 20_000]]
    assert has_token is False
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
