"""Profile -> RunSpec (what to create), a pure function; the engine adapter turns a RunSpec into
docker-py kwargs and `argv.py` into the equivalent `docker run` line, so the two cannot drift."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from hvinfra import __version__
from hvinfra.gpu_selection import GpuSelection
from hvinfra.labels import (
    LABEL_GPUS,
    LABEL_MANAGED,
    LABEL_PROFILE,
    LABEL_SPEC,
    LABEL_SPEC_HASH,
    LABEL_VERSION,
    UNHASHED,
)
from hvinfra.records import GpuInfo

if TYPE_CHECKING:  # the profile models (pydantic) load only where a profile is read
    from hvinfra.profiles.models import Profile

__all__ = [
    "LABEL_GPUS", "LABEL_MANAGED", "LABEL_PROFILE", "LABEL_SPEC", "LABEL_SPEC_HASH",
    "LABEL_VERSION", "DevicesAccess", "RunSpec", "build_run_spec", "spec_hash", "spec_summary",
]  # fmt: skip

# What `--privileged` turns on: exactly the official line's two isolation-lowering flags.
OFFICIAL_PRIVILEGED_SECURITY_OPT = ("seccomp=unconfined",)


@dataclass(frozen=True)
class UlimitSpec:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class GpuRequest:
    """A device request for the NVIDIA Container Toolkit: all GPUs (count -1) or listed ones."""

    count: int = 0
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[tuple[str, ...], ...] = (("gpu",),)
    driver: str = ""


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class DeviceNode:
    host_path: str
    container_path: str
    permissions: str = "rwm"


@dataclass(frozen=True)
class DevicesAccess:
    """What gpu.mode `devices` adds to a RunSpec (`gpu_access.devices_access` makes it)."""

    gpus: tuple[GpuInfo, ...]
    devices: tuple[DeviceNode, ...]
    mounts: tuple[Mount, ...]
    environment: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RunSpec:
    image: str
    name: str
    command: tuple[str, ...] | None = None
    tty: bool = False
    stdin_open: bool = False
    init: bool = False
    network_mode: str | None = None
    uts_mode: str | None = None
    ipc_mode: str | None = None
    ulimits: tuple[UlimitSpec, ...] = ()
    gpu_request: GpuRequest | None = None
    devices: tuple[DeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    shm_size: int | None = None
    restart_policy: str = "no"
    privileged: bool = False
    security_opt: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = field(default=())

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def env_map(self) -> dict[str, str]:
        return dict(self.environment)


def gpu_request_for(profile: Profile) -> GpuRequest | None:
    devices = profile.gpu.devices
    if profile.gpu.mode != "toolkit" or devices == "none":
        return None
    capabilities = (tuple(profile.gpu.capabilities),)
    if devices == "all":
        return GpuRequest(count=-1, capabilities=capabilities)
    return GpuRequest(device_ids=tuple(devices), capabilities=capabilities)


def gpus_label(profile: Profile) -> str:
    return GpuSelection.of(profile.gpu.devices).label


def spec_hash(spec: RunSpec) -> str:
    """A digest of everything that defines the container, to tell a changed profile apart
    (hvinfra's own version and the summary label are not part of it)."""
    data = asdict(replace(spec, labels=tuple(kv for kv in spec.labels if kv[0] not in UNHASHED)))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def spec_summary(spec: RunSpec) -> dict[str, object]:
    """What `up`'s plan compares, key by key, to say how a container differs from its spec.

    Stored as a label on the container; environment values only as digests (no secrets twice).
    """
    own = {k: v for k, v in spec.labels if not k.startswith("io.hvinfra.")}
    return {
        "image": spec.image,
        "command": list(spec.command) if spec.command is not None else None,
        "env": {key: _digest(value) for key, value in spec.environment},
        "gpus": spec.label_map.get(LABEL_GPUS, ""),
        "gpu_ids": list(spec.gpu_request.device_ids) if spec.gpu_request else [],
        "mounts": sorted(
            f"{m.source}:{m.target}" + (":ro" if m.read_only else "") for m in spec.mounts
        ),
        "devices": sorted(d.host_path for d in spec.devices),
        "labels": {key: _digest(value) for key, value in sorted(own.items())},
        "privileged": spec.privileged,
        "security_opt": sorted(spec.security_opt),
        "cap_add": sorted(spec.cap_add),
        "ulimits": sorted(f"{u.name}={u.soft}:{u.hard}" for u in spec.ulimits),
        "shm_size": spec.shm_size,
        "ipc": spec.ipc_mode,
        "network": spec.network_mode,
        "uts": spec.uts_mode,
        "workdir": spec.working_dir,
        "tty": spec.tty,
        "stdin_open": spec.stdin_open,
        "init": spec.init,
        "restart": spec.restart_policy,
    }


def with_identity(spec: RunSpec) -> RunSpec:
    """`spec` with its spec-hash and summary labels (replacing any it had)."""
    base = tuple(kv for kv in spec.labels if kv[0] not in (LABEL_SPEC_HASH, LABEL_SPEC))
    bare = replace(spec, labels=base)
    summary = json.dumps(spec_summary(bare), sort_keys=True, separators=(",", ":"))
    return replace(bare, labels=(*base, (LABEL_SPEC, summary), (LABEL_SPEC_HASH, spec_hash(bare))))


def _merged_env(
    base: dict[str, str], extra: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    return tuple({**base, **dict(extra)}.items())


def build_run_spec(
    profile: Profile,
    *,
    extra_labels: dict[str, str] | None = None,
    gpu_access: DevicesAccess | None = None,
) -> RunSpec:
    """The container the profile describes. Pure: no I/O, no docker import.

    `gpu_access`: what gpu.mode `devices` adds (device nodes, driver mounts, PATH and
    LD_LIBRARY_PATH), from `gpu_access.devices_access`.
    """
    security_opt = list(profile.security_opt)
    if profile.privileged:
        security_opt = [opt for opt in security_opt if not opt.startswith("no-new-privileges")]
        security_opt += [o for o in OFFICIAL_PRIVILEGED_SECURITY_OPT if o not in security_opt]
    labels = {
        **profile.labels,
        LABEL_MANAGED: "true",
        LABEL_PROFILE: profile.name,
        LABEL_VERSION: __version__,
        LABEL_GPUS: gpus_label(profile),
        **(extra_labels or {}),
    }
    spec = RunSpec(
        image=profile.image_ref,
        name=profile.container_name,
        command=tuple(profile.command) if profile.command is not None else None,
        tty=profile.tty,
        stdin_open=profile.stdin_open,
        init=profile.init,
        network_mode=profile.network_mode,
        uts_mode=profile.uts_mode,
        ipc_mode=profile.ipc_mode,
        ulimits=tuple(
            UlimitSpec(name, limit.soft, limit.hard)
            for name, limit in sorted(profile.ulimits.items())
        ),
        gpu_request=gpu_request_for(profile),
        devices=gpu_access.devices if gpu_access else (),
        mounts=tuple(Mount(v.host, v.container, v.read_only) for v in profile.volumes.values())
        + (gpu_access.mounts if gpu_access else ()),
        environment=_merged_env(profile.environment, gpu_access.environment if gpu_access else ()),
        working_dir=profile.working_dir,
        shm_size=profile.shm_size,
        restart_policy=profile.restart_policy,
        privileged=profile.privileged,
        security_opt=tuple(security_opt),
        cap_add=tuple(profile.cap_add),
        labels=tuple(sorted(labels.items())),
    )
    return with_identity(spec)
