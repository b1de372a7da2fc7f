"""A registry that authenticates the way Docker Hub does, for the pull/size/lock tests.

Debian's `docker-registry` (distribution 2.8) configured for token auth: every request without a
bearer token gets `401` with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, and the
client fetches a token from `TokenServer` (a small HTTP server in a thread, standing in for
auth.docker.io): anonymous pulls are granted (as Hub grants them for public images) unless
`anonymous=False`; pushes need the user and password. Tokens are JWTs signed RS256 with a key
made by `openssl`, whose self-signed certificate is the registry's `rootcertbundle` (the token
carries it in its `x5c` header). No pytest dependency.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from registry import LocalRegistry, free_port

SERVICE = "hvinfra-test-registry"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ISSUER = "hvinfra-test-token-issuer"

_TOKEN_AUTH = """auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {cert}
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered (for tests of the flow)."""

    scope: str
    service: str
    user: str | None  # None: anonymous
    granted: tuple[str, ...]  # the actions granted


class Signer:
    """An RSA key and its self-signed certificate (openssl), signing JWTs as RS256."""

    def __init__(self, folder: Path) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("no openssl (install it: scripts/install-test-deps.sh)")
        self.openssl = openssl
        self.key, self.cert = folder / "token.key", folder / "token.crt"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=hvinfra test token issuer", "-keyout", str(self.key),
             "-out", str(self.cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        der = subprocess.run(
            [openssl, "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True, timeout=30,
        ).stdout  # fmt: skip
        self.x5c = base64.b64encode(der).decode()

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        payload = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            [self.openssl, "dgst", "-sha256", "-sign", str(self.key)],
            input=payload.encode(), check=True, capture_output=True, timeout=30,
        ).stdout  # fmt: skip
        return f"{payload}.{_b64(signature)}"


class TokenServer:
    """The token realm: GET /token?service=...&scope=repository:NAME:pull,push."""

    def __init__(self, signer: Signer, *, user: str, password: str, anonymous: bool = True) -> None:
        self.signer, self.user, self.password, self.anonymous = signer, user, password, anonymous
        self.requests: list[TokenRequest] = []
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _user(self, header: str) -> str | bool | None:
        """The authenticated user, None when anonymous, False for wrong credentials."""
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        ok = secrets.compare_digest(user, self.user) and secrets.compare_digest(
            password, self.password
        )
        return user if ok else False

    def grant(self, user: str | None, scope: str) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None, ()
        wanted = [a for a in actions.split(",") if a]
        allowed = {"pull", "push"} if user else ({"pull"} if self.anonymous else set())
        granted = tuple(a for a in wanted if a in allowed or (a == "*" and user))
        return {"type": "repository", "name": name, "actions": list(granted)}, granted

    def token(self, user: str | None, service: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            entry, granted = self.grant(user, scope)
            self.requests.append(TokenRequest(scope, service, user, granted))
            if entry is not None:
                access.append(entry)
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": user or "", "aud": service, "iat": now, "nbf": now - 60,
            "exp": now + 600, "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        return self.signer.sign(claims)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/token":
                    self.send_error(404)
                    return
                query = urllib.parse.parse_qs(url.query)
                user = server._user(self.headers.get("Authorization", ""))
                if user is False:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="hvinfra-test"')
                    self.end_headers()
                    return
                scopes = [s for value in query.get("scope", []) for s in value.split(" ")]
                name = user if isinstance(user, str) else None
                token = server.token(name, query.get("service", [""])[0], scopes)
                body = json.dumps(
                    {"token": token, "access_token": token, "expires_in": 600}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def started(*, user: str, password: str, anonymous: bool = True) -> Iterator[TokenRegistry]:
    """`with started(user=…, password=…) as registry:` — started, and closed afterwards."""
    registry = TokenRegistry(user=user, password=password, anonymous=anonymous).start()
    try:
        yield registry
    finally:
        registry.close()


class TokenRegistry:
    """docker-registry with token auth + its TokenServer, on 127.0.0.1 (plain HTTP)."""

    def __init__(self, *, user: str, password: str, anonymous: bool = True) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hvtok-"))
        self.tokens = TokenServer(
            Signer(self.folder), user=user, password=password, anonymous=anonymous
        )
        auth = _TOKEN_AUTH.format(
            realm=self.tokens.realm, service=SERVICE, issuer=ISSUER, cert=self.tokens.signer.cert
        )
        self.registry = LocalRegistry(auth_config=auth)
        self.user, self.password = user, password

    @property
    def address(self) -> str:
        return self.registry.address

    def start(self) -> TokenRegistry:
        self.registry.start()
        return self

    def close(self) -> None:
        self.registry.close()
        self.tokens.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the registry API with a pushing token (to build multi-platform indexes) --------------
    def _request(
        self, method: str, path: str, repository: str, body: bytes = b"", media_type: str = ""
    ) -> tuple[int, bytes, dict[str, str]]:
        token = self.tokens.token(self.user, SERVICE, [f"repository:{repository}:pull,push"])
        headers = {"Authorization": f"Bearer {token}"}
        if media_type:
            headers["Content-Type" if body else "Accept"] = media_type
        request = urllib.request.Request(
            f"http://{self.address}{path}", data=body or None, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(Exception):
                return exc.code, exc.read(), dict(exc.headers)
            return exc.code, b"", {}

    def manifest(self, repository: str, reference: str, media_type: str) -> dict[str, Any]:
        status, body, _ = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}", repository, media_type=media_type
        )
        if status != 200:
            raise RuntimeError(f"GET manifest {repository}:{reference}: HTTP {status} {body!r}")
        data: dict[str, Any] = json.loads(body)
        return data

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload a blob (monolithic: POST, then PUT with the digest); returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, answer, headers = self._request(
            "POST", f"/v2/{repository}/blobs/uploads/", repository
        )
        location = headers.get("Location", "")
        if status != 202 or not location:
            raise RuntimeError(f"POST blob upload {repository}: HTTP {status} {answer!r}")
        path = urllib.parse.urlsplit(location)
        query = (path.query + "&" if path.query else "") + f"digest={digest}"
        status, answer, _ = self._request(
            "PUT", f"{path.path}?{query}", repository, data, "application/octet-stream"
        )
        if status != 201:
            raise RuntimeError(f"PUT blob {repository}: HTTP {status} {answer!r}")
        return digest

    def put_manifest(
        self, repository: str, reference: str, manifest: dict[str, Any], media_type: str
    ) -> str:
        """PUT a manifest; returns its digest."""
        body = json.dumps(manifest, indent=2).encode()
        status, answer, _ = self._request(
            "PUT", f"/v2/{repository}/manifests/{reference}", repository, body, media_type
        )
        if status not in (200, 201):
            raise RuntimeError(f"PUT manifest {repository}:{reference}: HTTP {status} {answer!r}")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def put_image_manifest(
        self, repository: str, tag: str, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT a Docker v2 image manifest; returns its index entry (no platform yet)."""
        digest = self.put_manifest(repository, tag, manifest, DOCKER_MANIFEST)
        size = len(json.dumps(manifest, indent=2).encode())
        return {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": size}

    def push_image(self, repository: str, tag: str, layers: list[bytes]) -> dict[str, Any]:
        """A minimal image made of `layers` (stored as given; they are never unpacked)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": self.put_blob(repository, config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": self.put_blob(repository, layer),
                }
                for layer in layers
            ],
        }
        return self.put_image_manifest(repository, tag, manifest)

    def put_index(
        self, repository: str, tag: str, entries: list[tuple[dict[str, Any], str, str]]
    ) -> str:
        """PUT an OCI index of (manifest entry, os, architecture); returns its digest."""
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {**entry, "platform": {"architecture": arch, "os": os_name}}
                for entry, os_name, arch in entries
            ],
        }
        return self.put_manifest(repository, tag, index, OCI_INDEX)
