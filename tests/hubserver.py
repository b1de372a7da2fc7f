"""A local stand-in for the Hugging Face hub's HTTP API (a test fixture, loopback only).

It speaks enough of the hub's protocol for the real `huggingface_hub` client (0.23 to 2.x) to
run `model_info`, `list_repo_tree`, `snapshot_download` and `hf_hub_download` against it through
`HF_ENDPOINT`:

- `GET /api/models/{repo}[/revision/{rev}]`: model info with `sha` and `siblings` (sizes, LFS).
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: the file listing with sizes.
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: small (git) files answer 200 with `ETag`,
  `X-Repo-Commit` and `Content-Length`; large (LFS) files answer 302 to `/lfs/{sha256}` with
  `X-Linked-Etag` and `X-Linked-Size`, as the hub redirects to its CDN.
- `Range: bytes=N-` on file bodies (206 + `Content-Range`), for resumed downloads.
- Gated repositories: 401 `X-Error-Code: GatedRepo` without `Authorization: Bearer <token>`,
  403 with another token. Unknown repo: 401 `RepoNotFound`; unknown revision or file: 404.

Fault knobs for tests: `rate` (bytes per second per file body, so a pull can be interrupted
mid-file), `stop()` (the server goes away, open connections included), and `requests` (what
the client sent, to check where a token went).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_MIN_SIZE = 10_000  # files at least this big are served the LFS way (redirect + linked etag)


def payload(name: str, size: int) -> bytes:
    """Deterministic bytes for a file: the same name and size give the same content."""
    return random.Random(name).randbytes(size)


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, bytes]
    sha: str = ""
    gated: bool = False
    claimed: dict[str, int] = field(default_factory=dict)  # sizes to announce instead of real

    def size(self, path: str) -> int:
        return self.claimed.get(path, len(self.files[path]))

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha1(self.repo_id.encode()).hexdigest()

    def is_lfs(self, path: str) -> bool:
        return len(self.files[path]) >= LFS_MIN_SIZE

    def blob_id(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def sha256(self, path: str) -> str:
        return hashlib.sha256(self.files[path]).hexdigest()

    def etag(self, path: str) -> str:
        return self.sha256(path) if self.is_lfs(path) else self.blob_id(path)

    def entry(self, path: str) -> dict[str, object]:
        size = self.size(path)
        entry: dict[str, object] = {
            "type": "file", "path": path, "oid": self.blob_id(path), "size": size,
        }  # fmt: skip
        if self.is_lfs(path):
            entry["lfs"] = {"oid": self.sha256(path), "size": size, "pointerSize": 134}
        return entry


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    headers: dict[str, str] = field(default_factory=dict)


class HubServer:
    """`with HubServer(repos) as hub:` then `HF_ENDPOINT=hub.url`."""

    def __init__(self, repos: Iterable[HubRepo], *, token: str = "") -> None:
        self.repos = {repo.repo_id: repo for repo in repos}
        self.token = token
        self.rate = 0  # bytes per second per body; 0 = as fast as possible
        self.requests: list[Seen] = []
        self.body_bytes = 0  # file bytes sent so far (all files)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopped = threading.Event()
        handler = _handler_for(self)
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        # LFS files redirect to "another host" (as the hub redirects to its CDN): the same
        # server under another loopback name, so the client does not follow the redirect itself.
        self.cdn_url = f"http://localhost:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Go away like a crashed server: stop listening and cut every open connection."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def wait_for_bytes(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.body_bytes < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the client fetched only {self.body_bytes} bytes")
            time.sleep(0.01)

    def file_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "GET" and "/api/" not in r.path]

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def count(self, sent: int) -> None:
        with self._lock:
            self.body_bytes += sent


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that goes away mid-request (Ctrl-C, kill) is what the tests do


_API = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$")
_TREE = re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_LFS = re.compile(r"^/lfs/([^/]+/[^/]+)/([0-9a-f]{64})$")


def _handler_for(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            server.track(self.connection, True)

        def finish(self) -> None:
            server.track(self.connection, False)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            with server._lock:
                server.requests.append(Seen(
                    self.command, self.path, self.headers.get("Authorization"),
                    dict(self.headers.items()),
                ))  # fmt: skip
            if match := _TREE.match(path):
                repo = self._repo(match[1], match[2])
                if repo is not None:
                    prefix = (match[3] or "").strip("/")
                    entries = [repo.entry(p) for p in sorted(repo.files)
                               if not prefix or p.startswith(prefix + "/")]  # fmt: skip
                    self._json(entries)
            elif match := _API.match(path):
                repo = self._repo(match[1], match[2] or "main")
                if repo is not None:
                    self._json(_model_info(repo))
            elif match := _RESOLVE.match(path):
                self._resolve(match[1], match[2], match[3], head)
            elif match := _LFS.match(path):
                self._lfs(match[1], match[2], head)
            else:
                self._error(404, "EntryNotFound", "no such route")

        def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
            repo = server.repos.get(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return None
            if revision not in ("main", repo.sha):
                self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
                return None
            return repo

        def _allowed(self, repo: HubRepo) -> bool:
            if not repo.gated:
                return True
            auth = self.headers.get("Authorization")
            if auth is None:
                self._error(401, "GatedRepo", "Access to model is restricted")
                return False
            if auth != f"Bearer {server.token}":
                self._error(403, "GatedRepo", "Access to model is restricted")
                return False
            return True

        def _resolve(self, repo_id: str, revision: str, file: str, head: bool) -> None:
            repo = self._repo(repo_id, revision)
            if repo is None or not self._allowed(repo):
                return
            if file not in repo.files:
                self._error(404, "EntryNotFound", "Entry not found", commit=repo.sha)
                return
            common = {"X-Repo-Commit": repo.sha, "ETag": f'"{repo.blob_id(file)}"'}
            if repo.is_lfs(file):
                location = f"{server.cdn_url}/lfs/{repo_id}/{repo.sha256(file)}"
                self._send(302, b"", {
                    **common, "Location": location, "X-Linked-Etag": f'"{repo.sha256(file)}"',
                    "X-Linked-Size": str(repo.size(file)),
                }, head=True)  # fmt: skip
                return
            self._body(repo.files[file], common, head)

        def _lfs(self, repo_id: str, oid: str, head: bool) -> None:
            repo = server.repos.get(repo_id)
            data = next(
                (repo.files[p] for p in repo.files if repo.sha256(p) == oid), None
            ) if repo else None  # fmt: skip
            if data is None:
                self._error(404, "EntryNotFound", "no such object")
                return
            self._body(data, {"ETag": f'"{oid}"'}, head)

        def _body(self, data: bytes, headers: Mapping[str, str], head: bool) -> None:
            start = 0
            status = 200
            extra = dict(headers)
            if match := re.match(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = min(int(match[1]), len(data))
                status = 206
                extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            self._send(status, body, {**extra, "Accept-Ranges": "bytes"}, head=head)

        def _send(
            self, status: int, body: bytes, headers: Mapping[str, str], *, head: bool
        ) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            step = 64 * 1024
            for offset in range(0, len(body), step):
                chunk = body[offset : offset + step]
                try:
                    self.wfile.write(chunk)
                except OSError:
                    return
                server.count(len(chunk))
                if server.rate:
                    time.sleep(len(chunk) / server.rate)
                if server._stopped.is_set():
                    return

        def _json(self, value: object) -> None:
            body = json.dumps(value).encode()
            self._send(200, body, {"Content-Type": "application/json"}, head=self.command == "HEAD")

        def _error(self, status: int, code: str, message: str, commit: str = "") -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message,
                       "Content-Type": "application/json"}  # fmt: skip
            if commit:
                headers["X-Repo-Commit"] = commit
            body = json.dumps({"error": message}).encode()
            self._send(status, body, headers, head=self.command == "HEAD")

    return Handler


def _model_info(repo: HubRepo) -> dict[str, object]:
    siblings = []
    for path in sorted(repo.files):
        sibling: dict[str, object] = {
            "rfilename": path, "size": repo.size(path), "blobId": repo.blob_id(path),
        }  # fmt: skip
        if repo.is_lfs(path):
            sibling["lfs"] = {"sha256": repo.sha256(path), "size": repo.size(path),
                              "pointerSize": 134}  # fmt: skip
        siblings.append(sibling)
    return {
        "_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha,
        "private": False, "gated": "manual" if repo.gated else False, "disabled": False,
        "downloads": 0, "likes": 0, "tags": [], "library_name": None,
        "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2024-12-01T00:00:00.000Z",
        "siblings": siblings,
    }  # fmt: skip


# The four repositories hvinfra pulls, with small files at their real paths (the names the
# profiles select and the official sample scripts read), plus a few files the patterns skip.
_JSON = b'{"model_type": "stand-in"}\n'


def _llava_files() -> dict[str, bytes]:
    shards = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    index = {"metadata": {}, "weight_map": {f"w{i}": name for i, name in enumerate(shards)}}
    files = {name: payload(name, 20_000) for name in shards}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    for name in (
        "config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ):
        files[name] = _JSON
    files["README.md"] = b"# stand-in\n"
    return files


def standard_repos(big: int = 200_000) -> list[HubRepo]:
    """The four repositories; `big` is the size of each DiT transformer file."""
    t2v = "hunyuan-video-t2v-720p"
    i2v = "hunyuan-video-i2v-720p"
    hunyuan = {
        f"{t2v}/transformers/mp_rank_00_model_states.pt": payload("t2v-dit", big),
        f"{t2v}/transformers/mp_rank_00_model_states_fp8.pt": payload("t2v-fp8", big // 2),
        f"{t2v}/transformers/mp_rank_00_model_states_fp8_map.pt": payload("t2v-map", 12_000),
        f"{t2v}/vae/config.json": _JSON,
        f"{t2v}/vae/pytorch_model.pt": payload("t2v-vae", 30_000),
        "README.md": b"# stand-in\n",
        "LICENSE": b"stand-in\n",
    }
    hunyuan_i2v = {
        f"{i2v}/transformers/mp_rank_00_model_states.pt": payload("i2v-dit", big),
        f"{i2v}/vae/config.json": _JSON,
        f"{i2v}/vae/pytorch_model.pt": payload("i2v-vae", 30_000),
        f"{i2v}/lora/embrace_kohaya_weights.safetensors": payload("embrace", 15_000),
        f"{i2v}/lora/hair_growth_kohaya_weights.safetensors": payload("hair", 15_000),
        "README.md": b"# stand-in\n",
    }
    clip = {
        name: _JSON
        for name in ("config.json", "preprocessor_config.json", "special_tokens_map.json",
                     "tokenizer.json", "tokenizer_config.json", "vocab.json")
    }  # fmt: skip
    clip["merges.txt"] = b"#version: 0.2\n"
    clip["model.safetensors"] = payload("clip", 25_000)
    clip["pytorch_model.bin"] = payload("clip-bin", 25_000)  # not selected: safetensors only
    clip["flax_model.msgpack"] = payload("clip-flax", 11_000)
    return [
        HubRepo("tencent/HunyuanVideo", hunyuan),
        HubRepo("tencent/HunyuanVideo-I2V", hunyuan_i2v),
        HubRepo("xtuner/llava-llama-3-8b-v1_1-transformers", _llava_files()),
        HubRepo("openai/clip-vit-large-patch14", clip),
    ]
