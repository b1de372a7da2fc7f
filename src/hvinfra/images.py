"""Image references, digest pinning, the lock file and the free-disk check.

Pure functions over records, plus the few file reads/writes of the lock file and one
`statvfs` of the daemon's data root. No docker import.

Lock file (`hvinfra.lock`, JSON, meant to be kept in git beside a team's profiles)::

    {
      "version": 1,
      "images": {
        "t2v": {
          "image": "hunyuanvideo/hunyuanvideo:cuda_12",
          "repo_digest": "hunyuanvideo/hunyuanvideo@sha256:…",
          "id": "sha256:…",
          "size": 29513473536,
          "locked_at": "2026-11-28T20:41:07Z"
        }
      }
    }

`repo_digest` is what the registry serves (the digest to pin with `image_digest:`); `id` is the
local image ID (the config digest, equal on every host that pulled the same manifest); `size`
is the unpacked size, which the free-disk check uses because registries do not publish it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hvinfra.errors import HvinfraError, PreflightFailed, ProfileError
from hvinfra.records import EngineInfo, ImageInfo

LOCK_NAME = "hvinfra.lock"
LOCK_ENV = "HVINFRA_LOCK"
LOCK_VERSION = 1
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Registries publish compressed sizes only. Python/CUDA layers like those of the HunyuanVideo
# images unpack to about 2-3x their gzip size: the warning threshold when the unpacked size is
# not known from a lock file.
UNPACK_FACTOR = 2.5


# -- references --------------------------------------------------------------------------------
def split_digest(image: str) -> tuple[str, str]:
    """'repo[:tag]@sha256:…' -> ('repo[:tag]', 'sha256:…'); no digest -> (image, '')."""
    name, sep, digest = image.partition("@")
    return (name, digest) if sep else (image, "")


def repository(image: str) -> str:
    """The repository of a reference: no tag, no digest ('host:5000/a/b:1' -> 'host:5000/a/b')."""
    name, _ = split_digest(image)
    head, sep, tag = name.rpartition(":")
    return head if sep and "/" not in tag else name


def pinned_ref(image: str, digest: str | None) -> str:
    """The reference to pull and run: `repo@digest` when a digest pins it, else `image`."""
    _, own = split_digest(image)
    digest = digest or own
    if not digest:
        return image
    return f"{repository(image)}@{digest}"


def repo_digest_of(info: ImageInfo, image: str) -> str:
    """The local image's `repo@sha256:…` for the reference's repository ('' when it has none:
    a locally built image that was never pushed or pulled)."""
    wanted = _normalize_repo(repository(image))
    for item in info.repo_digests:
        repo, digest = split_digest(item)
        if _normalize_repo(repo) == wanted and digest:
            return item
    return ""


def _normalize_repo(repo: str) -> str:
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
    if "/" not in repo:
        repo = f"library/{repo}"
    return repo


def short_digest(repo_digest_or_digest: str) -> str:
    _, digest = split_digest(repo_digest_or_digest)
    digest = digest or repo_digest_or_digest
    return digest[:19] if digest.startswith("sha256:") else digest


# -- lock file ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockEntry:
    image: str
    repo_digest: str
    id: str
    size: int | None = None
    locked_at: str = ""

    @property
    def digest(self) -> str:
        return split_digest(self.repo_digest)[1]


def find_lock(
    option: Path | None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path | None:
    """The lock file in effect: `--lock FILE`, else $HVINFRA_LOCK, else ./hvinfra.lock if it
    exists. None when there is none."""
    if option is not None:
        return option
    env = os.environ if env is None else env
    if env.get(LOCK_ENV):
        return Path(env[LOCK_ENV])
    candidate = (cwd or Path.cwd()) / LOCK_NAME
    return candidate if candidate.is_file() else None


def read_lock(path: Path) -> dict[str, LockEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ProfileError(
            f"cannot read the lock file {path}: {exc}",
            f"fix or delete it, then `hvinfra lock all --file {path}` writes it afresh",
        ) from exc
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict) or data.get("version") != LOCK_VERSION:
        raise ProfileError(
            f"{path} is not an hvinfra lock file (version {LOCK_VERSION})",
            f"`hvinfra lock all --file {path}` writes it afresh",
        )
    entries = {}
    for name, entry in images.items():
        try:
            entries[str(name)] = LockEntry(
                image=str(entry["image"]),
                repo_digest=str(entry.get("repo_digest") or ""),
                id=str(entry["id"]),
                size=int(entry["size"]) if entry.get("size") is not None else None,
                locked_at=str(entry.get("locked_at") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(
                f"{path}: entry {name!r} is incomplete ({exc})",
                f"`hvinfra lock {name} --file {path}` records it again",
            ) from exc
    return entries


def write_lock(path: Path, entries: Mapping[str, LockEntry]) -> None:
    payload = {
        "version": LOCK_VERSION,
        "images": {name: asdict(entries[name]) for name in sorted(entries)},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def lock_entry(image: str, info: ImageInfo, now: dt.datetime | None = None) -> LockEntry:
    stamp = (now or dt.datetime.now(tz=dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return LockEntry(
        image=image,
        repo_digest=repo_digest_of(info, image),
        id=info.id,
        size=info.size or None,
        locked_at=stamp,
    )


def lock_mismatch(entry: LockEntry, image: str, info: ImageInfo | None) -> str | None:
    """Why the local image is not the locked one, or None when it is."""
    if repository(entry.image) != repository(image):
        return f"the lock names {entry.image}, the profile runs {image}"
    if info is None:
        return f"{image} is not present locally (locked: {short_digest(entry.repo_digest)})"
    if entry.repo_digest:
        local = repo_digest_of(info, image)
        if entry.repo_digest in info.repo_digests:
            return None
        if local:
            return (
                f"local {image} is {short_digest(local)}, the lock has"
                f" {short_digest(entry.repo_digest)}"
            )
    if info.id == entry.id:
        return None
    return f"local {image} is image {info.id[:19]}, the lock has {entry.id[:19]}"


# -- free disk ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiskCheck:
    status: str  # ok, warn, fail, skip
    message: str
    free: int | None = None
    compressed: int | None = None
    unpacked: int | None = None


def local_free_bytes(engine: EngineInfo, env: Mapping[str, str] | None = None) -> int | None:
    """Free bytes on the daemon's data root when that daemon runs on this machine, else None."""
    env = os.environ if env is None else env
    host = env.get("DOCKER_HOST", "") or engine.host
    if host and not host.startswith("unix://"):
        return None
    root = Path(engine.docker_root_dir) if engine.docker_root_dir else None
    if root is None or not root.is_dir():
        return None
    try:
        return shutil.disk_usage(root).free
    except OSError:
        return None


def disk_check(
    data_root: str, free: int | None, compressed: int | None, unpacked: int | None
) -> DiskCheck:
    """The pull needs room for the compressed layers (downloaded to the data root first) and for
    their unpacked content. Fail when that is certainly short; warn when only an estimate is."""
    from hvinfra.pull_progress import human_bytes as hb

    if free is None:
        return DiskCheck("skip", f"Docker's data root {data_root or '?'} is not on this machine")
    if compressed is None:
        return DiskCheck("skip", "the registry did not tell the image's size", free)
    need = compressed + (unpacked or 0)
    sizes = f"{hb(compressed)} compressed" + (f" + {hb(unpacked)} unpacked" if unpacked else "")
    if free < need:
        return DiskCheck(
            "fail",
            f"Docker's data root {data_root} has {hb(free)} free; the image needs {sizes}",
            free,
            compressed,
            unpacked,
        )
    if unpacked is None and free < compressed * (1 + UNPACK_FACTOR):
        return DiskCheck(
            "warn",
            f"Docker's data root {data_root} has {hb(free)} free for {hb(compressed)} of"
            f" compressed layers; unpacked they usually take {UNPACK_FACTOR:g}x that",
            free,
            compressed,
        )
    return DiskCheck("ok", f"{hb(free)} free for {sizes}", free, compressed, unpacked)


def disk_error(check: DiskCheck) -> HvinfraError:
    return PreflightFailed(
        f"not enough disk space to pull: {check.message}",
        "free space (`docker system prune`, `docker image prune -a`), move Docker's data-root"
        " to a larger disk, or pass --skip-disk-check to try anyway",
    )


def as_json(entry: LockEntry) -> dict[str, Any]:
    return asdict(entry)
