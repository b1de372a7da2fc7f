"""`up`'s convergence plan, a pure function: from the desired RunSpec, the container of that name
as the engine reports it (or None) and a few facts, decide create / start / keep / recreate /
refuse, and say why. Modelled on docker compose's plan; no I/O, no docker import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hvinfra.labels import LABEL_MANAGED, LABEL_SPEC, LABEL_SPEC_HASH, LABEL_VERSION
from hvinfra.records import ContainerInfo
from hvinfra.spec import RunSpec, spec_summary

# Statuses in which the container keeps running (or is about to) without our help.
LIVE = frozenset({"running", "restarting", "paused"})
# Statuses a plain `docker start` brings back.
STARTABLE = frozenset({"created", "exited"})


class PlanKind(str, Enum):
    CREATE = "create"
    START = "start"
    KEEP = "keep"
    RECREATE = "recreate"
    REFUSE = "refuse"


# The JSON `action` of `up` once the plan ran.
ACTIONS = {
    PlanKind.CREATE: "created",
    PlanKind.START: "started",
    PlanKind.KEEP: "kept",
    PlanKind.RECREATE: "recreated",
}


@dataclass(frozen=True)
class Facts:
    """What the plan needs besides the spec and the container: the image id that the spec's
    image reference names locally now (None when it is not present or unknown)."""

    image_id: str | None = None


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    name: str
    differences: tuple[str, ...] = ()  # how the container differs from the desired spec
    reason: str = ""  # one line: why this kind
    container_id: str = ""

    @property
    def differs(self) -> bool:
        return bool(self.differences)

    @property
    def action(self) -> str:
        return ACTIONS.get(self.kind, self.kind.value)

    def describe(self) -> str:
        """One line for people: `recreate hunyuanvideo: env FOO added, gpus all → none`."""
        text = f"{self.kind.value} {self.name}"
        if self.reason:
            text += f": {self.reason}"
        return text


def _fmt(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "(empty)"
    return str(value) if value != "" else "(empty)"


_KEYED = {"env": "env", "labels": "label"}  # dict-valued keys: name each entry
_LISTED = {  # list-valued keys compared as sets: name each added/removed item
    "mounts": "mount",
    "devices": "device",
    "security_opt": "security-opt",
    "cap_add": "cap-add",
    "ulimits": "ulimit",
    "gpu_ids": "gpu",
}


def summary_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human text for each key that differs, e.g. `env FOO added`, `gpus all → none`."""
    out: list[str] = []
    for key in list(new) + [k for k in old if k not in new]:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key in _KEYED:
            word = _KEYED[key]
            b, a = dict(before or {}), dict(after or {})
            out += [f"{word} {k} added" for k in a if k not in b]
            out += [f"{word} {k} removed" for k in b if k not in a]
            out += [f"{word} {k} changed" for k in a if k in b and a[k] != b[k]]
        elif key in _LISTED:
            word = _LISTED[key]
            b_items, a_items = list(before or []), list(after or [])
            out += [f"{word} {item} added" for item in a_items if item not in b_items]
            out += [f"{word} {item} removed" for item in b_items if item not in a_items]
        else:
            out.append(f"{key} {_fmt(before)} → {_fmt(after)}")
    return out


def recorded_summary(existing: ContainerInfo) -> dict[str, Any] | None:
    raw = existing.labels.get(LABEL_SPEC)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def differences(desired: RunSpec, existing: ContainerInfo, facts: Facts) -> list[str]:
    """How `existing` differs from `desired`; empty when it is the same container."""
    wanted_hash = desired.label_map.get(LABEL_SPEC_HASH, "")
    found_hash = existing.labels.get(LABEL_SPEC_HASH, "")
    found: list[str] = []
    if wanted_hash != found_hash:
        old = recorded_summary(existing)
        if old is not None:
            found = summary_differences(old, spec_summary(desired))
        else:  # made by an hvinfra that recorded no summary: what the inspect data shows
            if existing.image != desired.image:
                found.append(f"image {existing.image} → {desired.image}")
            version = existing.labels.get(LABEL_VERSION, "an older hvinfra")
            found.append(f"spec changed (created by hvinfra {version}, which kept no details)")
        if not found:
            found.append(f"spec hash {found_hash or '(none)'} → {wanted_hash}")
    elif facts.image_id and existing.image_id and facts.image_id != existing.image_id:
        found.append(
            f"image {desired.image} now names {facts.image_id[7:19]}"
            f" (the container runs {existing.image_id[7:19]})"
        )
    return found


def plan(
    desired: RunSpec,
    existing: ContainerInfo | None,
    facts: Facts = Facts(),
    *,
    force_recreate: bool = False,
    no_recreate: bool = False,
) -> Plan:
    """The plan for making a container named `desired.name` run `desired`.

    `force_recreate`: recreate even when nothing differs. `no_recreate`: never recreate; keep
    (or start) the container that is there and say how it differs.
    """
    name = desired.name
    if existing is None:
        return Plan(PlanKind.CREATE, name, reason="no container of that name")
    cid = existing.id
    if existing.labels.get(LABEL_MANAGED) != "true":
        return Plan(
            PlanKind.REFUSE, name, container_id=cid,
            reason=f"a container named {name} exists ({existing.status}) that hvinfra did not"
            f" create (no {LABEL_MANAGED} label)",
        )  # fmt: skip
    diffs = tuple(differences(desired, existing, facts))
    live = existing.status in LIVE
    if no_recreate:
        suffix = ("; it differs: " + ", ".join(diffs) + " (kept: --no-recreate)") if diffs else ""
        if live:
            return Plan(PlanKind.KEEP, name, diffs, f"{existing.status}{suffix}", cid)
        if existing.status in STARTABLE:
            return Plan(PlanKind.START, name, diffs, f"{existing.status}{suffix}", cid)
        return Plan(
            PlanKind.REFUSE, name, diffs, container_id=cid,
            reason=f"it is {existing.status} and cannot be started; --no-recreate forbids"
            " recreating it",
        )  # fmt: skip
    if force_recreate:
        why = ", ".join(diffs) if diffs else "nothing differs"
        return Plan(PlanKind.RECREATE, name, diffs, f"--force-recreate ({why})", cid)
    if diffs:
        return Plan(PlanKind.RECREATE, name, diffs, ", ".join(diffs), cid)
    if live:
        return Plan(PlanKind.KEEP, name, reason=f"{existing.status}, same spec", container_id=cid)
    if existing.status in STARTABLE:
        return Plan(PlanKind.START, name, reason=f"{existing.status}, same spec", container_id=cid)
    return Plan(PlanKind.RECREATE, name, reason=f"it is {existing.status}", container_id=cid)
