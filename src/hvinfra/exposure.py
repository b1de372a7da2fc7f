"""Profile settings that open the host to the container, with where each came from.

hvinfra's packaged profiles set none of these. When a profile file, `--set`, `HVINFRA_*` or a
flag does, every command that creates a container with it (`up`, and `generate` when it starts
the container) prints one loud warning per setting, naming the setting and its source. Pure:
works on the validated profile and the loader's source map.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from hvinfra.argv import is_secret_name
from hvinfra.profiles.models import Profile

UNCONFINED = ("seccomp=unconfined", "seccomp:unconfined", "apparmor=unconfined",
              "apparmor:unconfined", "label=disable", "label:disable")  # fmt: skip
HOST_FOLDERS = ("/", "/etc", "/root", "/boot", "/proc", "/sys", "/dev", "/run", "/var/run")
SOCKETS = ("docker.sock", "containerd.sock", "podman.sock")


def _source(sources: Mapping[str, str], key: str) -> str:
    label = sources.get(key) or next(
        (v for k, v in sources.items() if k.startswith(key + ".")), "default"
    )
    return label.split(":", 1)[0] if label.startswith("packaged:") else label


def _host_opening(path: str) -> str | None:
    norm = posixpath.normpath(path) if path else path
    if posixpath.basename(norm) in SOCKETS:
        return "the container engine's socket (root on the host)"
    if norm in HOST_FOLDERS:
        return "the host's root file system" if norm == "/" else f"the host's {norm}"
    return None


def exposures(profile: Profile, sources: Mapping[str, str]) -> list[str]:
    """One line per setting that opens the host, with its source (file, --set, env:…)."""
    found: list[str] = []
    if profile.privileged:
        found.append(
            f"privileged=true (from {_source(sources, 'privileged')}): the container gets every"
            " capability and host device and no seccomp/AppArmor confinement"
        )
    for option in profile.security_opt:
        if option.replace(" ", "") in UNCONFINED:
            found.append(
                f"security_opt {option} (from {_source(sources, 'security_opt')}): a kernel"
                " confinement of the container is switched off"
            )
    for cap in profile.cap_add:
        found.append(
            f"cap_add {cap} (from {_source(sources, 'cap_add')}): an extra kernel capability for"
            " the container"
        )
    for name, volume in sorted(profile.volumes.items()):
        what = _host_opening(volume.host)
        if what:
            mode = "read-only" if volume.read_only else "writable"
            found.append(
                f"volumes.{name}: {volume.host} -> {volume.container} ({mode}, from"
                f" {_source(sources, f'volumes.{name}')}) mounts {what} into the container"
            )
    for name in sorted(profile.environment):
        if is_secret_name(name):
            found.append(
                f"environment.{name} (from {_source(sources, f'environment.{name}')}): a secret in"
                " the container's environment is readable by anyone who can `docker inspect` it;"
                " mount it as a read-only file instead"
            )
    return found
