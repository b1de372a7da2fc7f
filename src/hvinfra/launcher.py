"""Container lifecycle as plan-then-execute over an Engine protocol.

Never imports docker, pynvml, rich or typer: the CLI passes in the engine and callbacks, and the
launcher returns records. Tests drive it with a real engine or a hand-written fake.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from hvinfra.errors import (
    ContainerExited,
    ContainerStateError,
    ExitCode,
    HvinfraError,
    ImageError,
    Interrupted,
)
from hvinfra.labels import LABEL_GPUS, LABEL_MANAGED, LABEL_PROFILE
from hvinfra.records import ContainerInfo, ContainerSummary, ImageInfo

if TYPE_CHECKING:  # the planner and the spec load only for the commands that plan (not status)
    from hvinfra.convergence import Plan
    from hvinfra.spec import RunSpec

EXIT_SIGNALS = {129: "SIGHUP", 130: "SIGINT", 134: "SIGABRT", 136: "SIGFPE", 137: "SIGKILL",
                139: "SIGSEGV", 143: "SIGTERM"}  # fmt: skip
EXIT_HINTS = {
    125: "the engine could not run the command",
    126: "the command could not be invoked (not executable)",
    127: "the command was not found in the image",
    136: "floating point exception: a known CUDA 12 problem of HunyuanVideo on some GPUs; use"
    " the cuda_12 image with CUBLAS >= 12.4.5.8, or the cuda_11 tag",
    137: "killed (SIGKILL): often the out-of-memory killer",
}


class PullPolicy(str, Enum):
    MISSING = "missing"
    ALWAYS = "always"
    NEVER = "never"


class Engine(Protocol):
    host: str

    def image(self, ref: str) -> ImageInfo | None: ...
    def pull_events(self, ref: str) -> Iterator[dict[str, Any]]: ...
    def container(self, name_or_id: str) -> ContainerInfo | None: ...
    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]: ...
    def container_summaries(self, labels: Mapping[str, str]) -> list[ContainerSummary]: ...
    def create(self, spec: RunSpec) -> str: ...
    def start(self, container_id: str, name: str = "") -> None: ...
    def stop(self, container_id: str, timeout: int = 10) -> None: ...
    def remove(self, container_id: str, force: bool = True) -> None: ...
    def log_tail(self, container_id: str, lines: int = 50) -> str: ...


PullObserver = Callable[[Iterator[dict[str, Any]]], None]


def consume(events: Iterator[dict[str, Any]]) -> None:
    for _ in events:
        pass


@dataclass(frozen=True)
class UpResult:
    container: ContainerInfo
    action: str  # "created", "started", "kept", "recreated" (the plan's kind, done)
    pulled: bool
    plan: Plan | None = None


def ensure_image(
    engine: Engine, ref: str, policy: PullPolicy, observe: PullObserver = consume
) -> bool:
    """Make `ref` present per the pull policy; True when a pull happened."""
    present = engine.image(ref) is not None
    if policy is PullPolicy.NEVER:
        if not present:
            raise ImageError(
                f"image {ref} is not present locally and --pull never forbids pulling it",
                f"pull it first (`hvinfra pull` / `docker pull {ref}`) or use --pull missing",
            )
        return False
    if present and policy is PullPolicy.MISSING:
        return False
    observe(engine.pull_events(ref))
    if engine.image(ref) is None:
        raise ImageError(f"pulled {ref} but the engine does not list it", "pull it again")
    return True


def refusal(plan: Plan, profile_name: str) -> HvinfraError:
    """The error for a REFUSE plan: what is there, and the fix."""
    if plan.differences:  # --no-recreate and a container that cannot be started
        fix = f"`hvinfra up {profile_name}` without --no-recreate recreates it"
    else:
        fix = (
            f"`docker rm -f {plan.name}` removes it if that is really meant, or pick another"
            " name with --name"
        )
    return ContainerStateError(f"refusing to touch container {plan.name}: {plan.reason}", fix)


def ensure_host_dirs(spec: RunSpec) -> None:
    """Create missing bind-mount sources as the calling user (dockerd would make them root's),
    and the mount points of nested mounts: the weights at `<code>/ckpts` need a `ckpts/` folder
    in the code folder, which dockerd would otherwise create as root. `models pull` checks the
    code out over such empty folders, so `up` before `models pull` works."""
    for mount in spec.mounts:
        path = Path(mount.source)
        if not path.exists():
            path.mkdir(parents=True, exist_ok=True)
    for inner in spec.mounts:
        for outer in spec.mounts:
            inside = PurePosixPath(inner.target)
            if inner is outer or not inside.is_relative_to(outer.target):
                continue
            point = Path(outer.source, *inside.relative_to(outer.target).parts)
            if Path(outer.source).is_dir() and not point.exists():
                point.mkdir(parents=True, exist_ok=True)


def _profile_of(info: ContainerInfo) -> str:
    return info.labels.get(LABEL_PROFILE, info.name)


def exit_explanation(code: int) -> str:
    parts = [f"exit code {code}"]
    if code in EXIT_SIGNALS:
        parts.append(EXIT_SIGNALS[code])
    if code in EXIT_HINTS:
        parts.append(EXIT_HINTS[code])
    return ", ".join(parts)


def wait_running(
    engine: Engine,
    container_id: str,
    *,
    timeout: float = 30.0,
    settle: float = 0.25,
    poll: float = 0.05,
) -> ContainerInfo:
    """Wait until running (and still running after `settle` seconds) or raise with its logs."""
    deadline = time.monotonic() + timeout
    running_since: float | None = None
    while True:
        info = engine.container(container_id)
        if info is None:
            raise ContainerStateError(
                "the container disappeared right after it was created",
                "another tool removed it (auto-remove?); check `docker events`",
            )
        if info.status in {"exited", "dead"}:
            tail = engine.log_tail(container_id, 50)
            oom = " (killed by the out-of-memory killer)" if info.oom_killed else ""
            shown = "\n".join("    " + line for line in tail.rstrip().splitlines()[-20:])
            raise ContainerExited(
                f"container {info.name} stopped right after start: "
                f"{exit_explanation(info.exit_code)}{oom}"
                + (f"\n  last log lines:\n{shown}" if shown else "\n  (it printed nothing)"),
                f"read the whole log with `hvinfra logs {_profile_of(info)}`;"
                " fix the cause, then `hvinfra up … --force-recreate`",
                status=info.exit_code,
                log_tail=tail,
            )
        now = time.monotonic()
        pause = poll
        if info.status == "running":
            running_since = running_since or now
            if now - running_since >= settle:
                return info
            pause = min(poll, running_since + settle - now)  # look again when the window ends
        if now > deadline:
            if info.status == "running":
                return info
            raise ContainerStateError(
                f"container {info.name} is still {info.status} after {timeout:.0f}s",
                "check `docker events` and the daemon's log",
            )
        time.sleep(pause)


def plan_up(
    engine: Engine, spec: RunSpec, *, force_recreate: bool = False, no_recreate: bool = False
) -> Plan:
    """Inspect what is there and plan; reads the engine, changes nothing."""
    from hvinfra.convergence import Facts
    from hvinfra.convergence import plan as make_plan

    image = engine.image(spec.image)
    return make_plan(
        spec, engine.container(spec.name), Facts(image.id if image else None),
        force_recreate=force_recreate, no_recreate=no_recreate,
    )  # fmt: skip


def up(
    engine: Engine,
    spec: RunSpec,
    *,
    profile_name: str,
    pull: PullPolicy = PullPolicy.MISSING,
    force_recreate: bool = False,
    no_recreate: bool = False,
    replace: bool = False,
    observe_pull: PullObserver = consume,
    wait_timeout: float = 30.0,
    settle: float = 0.25,
    plan: Plan | None = None,
) -> UpResult:
    """Plan, then execute: create, start, keep or recreate the container; refuse a foreign one.

    `plan`: one the caller made with `plan_up` (and acted on, e.g. by running checks), so the
    plan executed is the plan checked and the engine is not asked twice. `replace` is the old
    spelling of `force_recreate`.
    """
    from hvinfra.convergence import PlanKind

    force_recreate = force_recreate or replace
    if plan is None:
        plan = plan_up(engine, spec, force_recreate=force_recreate, no_recreate=no_recreate)
    if plan.kind is PlanKind.REFUSE:
        raise refusal(plan, profile_name)
    pulled = False
    if plan.kind in (PlanKind.CREATE, PlanKind.RECREATE) or pull is PullPolicy.ALWAYS:
        pulled = ensure_image(engine, spec.image, pull, observe_pull)
        if pulled and plan.kind is not PlanKind.CREATE:  # a new image may change the plan
            plan = plan_up(engine, spec, force_recreate=force_recreate, no_recreate=no_recreate)
            if plan.kind is PlanKind.REFUSE:
                raise refusal(plan, profile_name)
    if plan.kind is PlanKind.KEEP:
        kept = engine.container(plan.container_id)
        if kept is None:
            raise ContainerStateError(
                f"container {plan.name} disappeared while planning", "run the command again"
            )
        return UpResult(kept, plan.action, pulled, plan)
    if plan.kind is PlanKind.START:
        engine.start(plan.container_id, spec.name)
        info = wait_running(engine, plan.container_id, timeout=wait_timeout, settle=settle)
        return UpResult(info, plan.action, pulled, plan)
    if plan.kind is PlanKind.RECREATE:
        engine.remove(plan.container_id, force=True)
    ensure_host_dirs(spec)
    container_id = engine.create(spec)
    try:
        engine.start(container_id, spec.name)
        info = wait_running(engine, container_id, timeout=wait_timeout, settle=settle)
    except ContainerExited:
        raise  # keep the exited container: its logs are what the user needs next
    except KeyboardInterrupt as exc:
        engine.remove(container_id, force=True)
        raise Interrupted(
            "interrupted: the container this command created was removed", ""
        ) from exc
    except BaseException:
        engine.remove(container_id, force=True)  # nothing half-made stays behind
        raise
    return UpResult(info, plan.action, pulled, plan)


@dataclass(frozen=True)
class DownResult:
    name: str
    found: bool
    removed: bool
    container_id: str = ""


def down(engine: Engine, name: str, *, keep: bool = False, timeout: int = 10) -> DownResult:
    existing = engine.container(name)
    if existing is None:
        return DownResult(name, found=False, removed=False)
    if not existing.managed:
        raise ContainerStateError(
            f"refusing to remove container {name}: hvinfra did not create it"
            f" (no {LABEL_MANAGED} label; it is {existing.status})",
            f"`docker rm -f {name}` removes it if that is really meant",
        )
    if existing.running or existing.status in {"paused", "restarting"}:
        engine.stop(existing.id, timeout=timeout)
    if not keep:
        engine.remove(existing.id, force=True)
    return DownResult(name, found=True, removed=not keep, container_id=existing.id)


def _managed_labels(profile: str | None) -> dict[str, str]:
    labels = {LABEL_MANAGED: "true"}
    if profile:
        labels[LABEL_PROFILE] = profile
    return labels


def managed_containers(engine: Engine, profile: str | None = None) -> list[ContainerInfo]:
    return sorted(engine.containers(_managed_labels(profile)), key=lambda c: c.name)


def managed_summaries(engine: Engine, profile: str | None = None) -> list[ContainerSummary]:
    """As managed_containers, from the engine's list alone: enough for a table."""
    return sorted(engine.container_summaries(_managed_labels(profile)), key=lambda c: c.name)


def require_container(
    engine: Engine, name: str, profile_name: str, *, running: bool
) -> ContainerInfo:
    info = engine.container(name)
    if info is None:
        raise ContainerStateError(
            f"no container named {name}", f"start it with `hvinfra up {profile_name}`"
        )
    if running and not info.running:
        raise ContainerStateError(
            f"container {name} is {info.status}, not running",
            f"`hvinfra up {profile_name}` starts it again"
            f" (`hvinfra logs {profile_name}` shows why it stopped)",
        )
    return info


def gpus_of(info: ContainerInfo | ContainerSummary) -> str:
    return info.labels.get(LABEL_GPUS, "")


def join_argv(argv: Sequence[str]) -> list[str]:
    if not argv:
        raise HvinfraError(
            "no command given",
            "write the command after --, e.g. `hvinfra exec t2v -- nvidia-smi`",
            exit_code=ExitCode.USAGE,
        )
    return list(argv)
