"""The layer sizes of an image, from its registry's manifest (Registry HTTP API v2).

The Engine API cannot tell sizes before a pull: `GET /distribution/{name}/json` returns the
manifest's descriptor (digest, media type, platforms) but not the manifest. So hvinfra reads
the manifest itself, with the credentials the docker CLI would use, only to size the free-disk
check and the progress total. Any failure here (mirror-only networks, exotic auth) returns None
and the pull goes on unchecked: this lookup never blocks a pull.
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


def _token(
    session: requests.Session, challenge: str, credentials: tuple[str, str] | None, scope: str
) -> str | None:
    params = dict(_CHALLENGE.findall(challenge))
    realm = params.pop("realm", "")
    if not realm:
        return None
    params.setdefault("scope", scope)
    response = session.get(realm, params=params, auth=credentials, timeout=TIMEOUT)
    if response.status_code != 200:
        return None
    body = response.json()
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None


def _get_manifest(
    session: requests.Session, url: str, credentials: tuple[str, str] | None, scope: str
) -> dict[str, Any] | None:
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    response = session.get(url, headers=headers, timeout=TIMEOUT)
    if response.status_code == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("bearer"):
            token = _token(session, challenge, credentials, scope)
            if token is None:
                return None
            session.headers["Authorization"] = f"Bearer {token}"
        elif challenge.lower().startswith("basic") and credentials:
            session.auth = credentials
        else:
            return None
        response = session.get(url, headers=headers, timeout=TIMEOUT)
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


def image_sizes(
    image: str,
    *,
    credentials: tuple[str, str] | None = None,
    insecure: Sequence[str] = (),
    platform: tuple[str, str] = ("linux", "amd64"),
) -> ImageSizes | None:
    """The compressed layer sizes of `image` for `platform`, or None when they cannot be had."""
    ref = parse_reference(image)
    scheme = "http" if plain_http(ref.registry, insecure) else "https"
    base = f"{scheme}://{ref.api_host}/v2/{ref.repository}/manifests/"
    scope = f"repository:{ref.repository}:pull"
    try:
        with requests.Session() as session:
            manifest = _get_manifest(session, base + ref.reference, credentials, scope)
            if manifest and (manifest.get("mediaType") in _LISTS or "manifests" in manifest):
                wanted = next(
                    (
                        item
                        for item in manifest.get("manifests") or ()
                        if (item.get("platform") or {}).get("os") == platform[0]
                        and (item.get("platform") or {}).get("architecture") == platform[1]
                    ),
                    None,
                )
                if wanted is None:
                    return None
                manifest = _get_manifest(session, base + str(wanted["digest"]), credentials, scope)
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None
    if not manifest or not isinstance(manifest.get("layers"), list):
        return None
    layers: dict[str, int] = {}
    for layer in manifest["layers"]:
        digest, size = str(layer.get("digest", "")), layer.get("size")
        if not digest.startswith("sha256:") or not isinstance(size, int):
            return None
        layers[digest[7:19]] = layers.get(digest[7:19], 0) + size
    return ImageSizes(compressed=sum(layers.values()), layers=layers)
