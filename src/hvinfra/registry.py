"""The layer sizes of an image, from its registry's manifest (Registry HTTP API v2).

The Engine API cannot tell sizes before a pull: `GET /distribution/{name}/json` returns the
manifest's descriptor (digest, media type, platforms) but not the manifest. So hvinfra reads
the manifest itself, with the credentials the docker CLI would use, only to size the free-disk
check and the progress total. Any failure here (mirror-only networks, exotic auth) raises
SizingFailed with the reason, which the pull shows as a warning and goes on unchecked: this lookup
never blocks a pull, and never skips its check silently.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
_LISTS = MANIFEST_TYPES[:2]
TIMEOUT = 10.0


@dataclass(frozen=True)
class ImageSizes:
    compressed: int  # sum of the layer blobs' sizes: what a pull downloads at most
    layers: dict[str, int] = field(default_factory=dict)  # short layer id (12 hex) -> bytes


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port] as written ('docker.io' for Docker Hub)
    repository: str  # 'library/busybox'
    reference: str  # a tag or a digest

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry


def parse_reference(image: str) -> Reference:
    """Split an image reference the way the docker CLI does (docker.io and library/ implied)."""
    name, _, digest = image.partition("@")
    head, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        name = head
    else:
        tag = "latest"
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return Reference(registry, path, digest or tag)


def plain_http(registry: str, insecure: Sequence[str]) -> bool:
    """True where dockerd would talk plain HTTP: loopback (always insecure) and the daemon's
    `insecure-registries` (CIDRs or host names)."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    if host == "localhost" or registry in insecure or host in insecure:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if address.is_loopback:
        return True
    for item in insecure:
        try:
            if address in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class SizingFailed(Exception):
    """Why the registry could not tell an image's layer sizes (the text is shown as a warning)."""


def _token(
    session: requests.Session, challenge: str, credentials: tuple[str, str] | None, scope: str
) -> str:
    """A bearer token from the challenge's realm (the Docker Hub token flow)."""
    params = dict(_CHALLENGE.findall(challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise SizingFailed(f"the registry's bearer challenge names no token realm: {challenge}")
    params.setdefault("scope", scope)
    response = session.get(realm, params=params, auth=credentials, timeout=TIMEOUT)
    if response.status_code != 200:
        login = "" if credentials else " (no `docker login` for this registry)"
        raise SizingFailed(f"the token server {realm} answered HTTP {response.status_code}{login}")
    body = response.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise SizingFailed(f"the token server {realm} answered without a token")
    return str(token)


def _get_manifest(
    session: requests.Session, url: str, credentials: tuple[str, str] | None, scope: str
) -> dict[str, Any]:
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    response = session.get(url, headers=headers, timeout=TIMEOUT)
    if response.status_code == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("bearer"):
            token = _token(session, challenge, credentials, scope)
            session.headers["Authorization"] = f"Bearer {token}"
        elif challenge.lower().startswith("basic") and credentials:
            session.auth = credentials
        else:
            raise SizingFailed(
                "the registry asks for credentials"
                + (f" ({challenge.split()[0]} auth, not supported)" if challenge else "")
                + ("" if credentials else " and there is no `docker login` for it")
            )
        response = session.get(url, headers=headers, timeout=TIMEOUT)
    if response.status_code != 200:
        raise SizingFailed(f"the registry answered HTTP {response.status_code} for {url}")
    body: dict[str, Any] = response.json()
    return body


def _platforms(index: dict[str, Any]) -> list[str]:
    found = []
    for item in index.get("manifests") or ():
        platform = item.get("platform") or {}
        found.append(f"{platform.get('os', '?')}/{platform.get('architecture', '?')}")
    return found


def _pick(index: dict[str, Any], platform: tuple[str, str]) -> str:
    """The digest of `platform`'s manifest in a multi-platform index."""
    for item in index.get("manifests") or ():
        wanted = item.get("platform") or {}
        if (wanted.get("os"), wanted.get("architecture")) == platform:
            return str(item["digest"])
    raise SizingFailed(
        f"the image index has no {platform[0]}/{platform[1]} manifest"
        f" (it has {', '.join(_platforms(index)) or 'none'})"
    )


def size_image(
    image: str,
    *,
    credentials: tuple[str, str] | None = None,
    insecure: Sequence[str] = (),
    platform: tuple[str, str] = ("linux", "amd64"),
) -> ImageSizes:
    """The compressed layer sizes of `image` for `platform`; SizingFailed says why not."""
    ref = parse_reference(image)
    scheme = "http" if plain_http(ref.registry, insecure) else "https"
    base = f"{scheme}://{ref.api_host}/v2/{ref.repository}/manifests/"
    scope = f"repository:{ref.repository}:pull"
    try:
        with requests.Session() as session:
            manifest = _get_manifest(session, base + ref.reference, credentials, scope)
            if manifest.get("mediaType") in _LISTS or "manifests" in manifest:
                digest = _pick(manifest, platform)
                manifest = _get_manifest(session, base + digest, credentials, scope)
    except requests.RequestException as exc:
        raise SizingFailed(f"cannot reach {ref.api_host}: {type(exc).__name__}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise SizingFailed(f"the registry's answer is not a manifest: {exc}") from exc
    if not isinstance(manifest.get("layers"), list):
        raise SizingFailed(f"the manifest lists no layers (media type {manifest.get('mediaType')})")
    layers: dict[str, int] = {}
    for layer in manifest["layers"]:
        digest, size = str(layer.get("digest", "")), layer.get("size")
        if not digest.startswith("sha256:") or not isinstance(size, int):
            raise SizingFailed(f"a layer of the manifest has no sha256 digest or size: {layer}")
        layers[digest[7:19]] = layers.get(digest[7:19], 0) + size
    return ImageSizes(compressed=sum(layers.values()), layers=layers)
