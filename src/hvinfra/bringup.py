"""Bringing a profile's container up: what `up` and `generate` share below the CLI.

One function, `bring_up`: resolve the GPU selection against the command's one GPU probe, add
devices-mode access, build the RunSpec, plan (convergence), run doctor's pre-flight checks when
the plan starts something, pull with the sized, disk-checked display, and execute the plan. The
CLI parses flags into `BringUpOptions` and renders the `BroughtUp` it gets back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvinfra.launcher import PullPolicy

if TYPE_CHECKING:
    from hvinfra.context import AppContext
    from hvinfra.convergence import Plan
    from hvinfra.images import LockEntry
    from hvinfra.launcher import UpResult
    from hvinfra.output import Output
    from hvinfra.profiles.models import Profile
    from hvinfra.pull_display import PullDisplay
    from hvinfra.spec import DevicesAccess, RunSpec


@dataclass(frozen=True)
class BringUpOptions:
    pull: PullPolicy = PullPolicy.MISSING
    force_recreate: bool = False
    no_recreate: bool = False
    skip_checks: bool = False
    fp8: bool = False
    cpu_offload: bool = False
    lock: Path | None = None
    skip_disk_check: bool = False
    wait_timeout: float = 60.0
    settle: float = 0.25


@dataclass(frozen=True)
class BroughtUp:
    result: UpResult
    profile: Profile  # with the GPU selection resolved to UUIDs where NVML answered
    spec: RunSpec
    lock_mismatch: str | None = None


# -- GPUs ----------------------------------------------------------------------------------------
def resolve_gpus(context: AppContext, profile: Profile) -> Profile:
    """An explicit GPU list resolved to the UUIDs NVML reports (GpuRuntimeError, exit 7, for a
    GPU it does not see); the profile as it is where NVML does not answer."""
    from hvinfra.preflight import with_resolved_gpus

    if profile.gpu.devices == "none":
        return profile
    system = context.gpu_system()
    return with_resolved_gpus(profile, system) if system is not None else profile


def _image_env(context: AppContext, image: str) -> dict[str, str]:
    """The image's own environment when a reachable engine has it, else empty (best effort:
    PATH and LD_LIBRARY_PATH then build on Docker's defaults)."""
    from hvinfra.errors import HvinfraError

    try:
        info = context.engine().image(image)
    except HvinfraError:
        return {}
    if info is None:
        return {}
    return dict(item.partition("=")[::2] for item in info.env)


def devices_access_for(context: AppContext, profile: Profile, output: Output) -> DevicesAccess:
    """gpu.mode `devices`: the device nodes and driver files of the selected GPUs."""
    from hvinfra import host_gpu
    from hvinfra.gpu_access import devices_access
    from hvinfra.spec import DevicesAccess

    if profile.gpu.devices == "none":
        return DevicesAccess((), (), (), ())
    system, error = context.gpus()
    if system is None:
        if error is not None:
            raise error
        return DevicesAccess((), (), (), ())
    host = host_gpu.gather(profile, system)
    access = devices_access(profile, system, host, _image_env(context, profile.image))
    gpus = ", ".join(f"{g.index} ({g.name}, /dev/nvidia{g.minor_number})" for g in access.gpus)
    driver = host.driver
    where = f"{driver.lib_dir} (found by {driver.found_by})" if driver else "?"
    output.info(f"gpu.mode devices: GPU {gpus}; driver {system.driver_version} from {where}")
    return access


def gpu_access_for(context: AppContext, profile: Profile, output: Output) -> DevicesAccess | None:
    """What `build_run_spec(gpu_access=…)` needs: None in toolkit mode."""
    return devices_access_for(context, profile, output) if profile.gpu.mode == "devices" else None


def run_spec(context: AppContext, profile: Profile, output: Output) -> tuple[Profile, RunSpec]:
    """The profile with its GPUs resolved, and the RunSpec `up` creates from it."""
    return _spec_of(context, output, profile, resolve_gpus(context, profile))


def _spec_of(
    context: AppContext, output: Output, asked: Profile, resolved: Profile
) -> tuple[Profile, RunSpec]:
    """The spec of the resolved profile; its io.hvinfra.gpus label keeps the selection as the
    user wrote it (`0,1`, which jobs compare with their own --gpus), the device request the
    checked UUIDs."""
    from hvinfra.labels import LABEL_GPUS
    from hvinfra.spec import build_run_spec, gpus_label

    spec = build_run_spec(
        resolved,
        extra_labels={LABEL_GPUS: gpus_label(asked)},
        gpu_access=gpu_access_for(context, resolved, output),
    )
    return resolved, spec


# -- pre-flight ------------------------------------------------------------------------------------
def preflight(
    context: AppContext, output: Output, profile: Profile, options: BringUpOptions
) -> None:
    """Doctor's checks; raises PreflightFailed (exit 10, the table on stderr) when one fails."""
    from hvinfra import requirements
    from hvinfra.checks import failed, run_checks
    from hvinfra.checks_display import show_checks
    from hvinfra.errors import PreflightFailed
    from hvinfra.preflight import Options, gather

    gpus = context.gpus() if profile.gpu.devices != "none" else (None, None)
    facts = gather(
        profile,
        connect=context.engine,
        probe=context.probe,
        options=Options(fp8=options.fp8, cpu_offload=options.cpu_offload),
        gpus=gpus,
    )
    results = run_checks(facts, requirements.load())
    bad = failed(results)
    if bad:
        show_checks(output, results, stderr=True)
        raise PreflightFailed(
            f"pre-flight: {len(bad)} check(s) failed: "
            + "; ".join(f"{r.title}: {r.detail}" for r in bad),
            bad[0].fix + " (the table above lists every check; `--skip-checks` starts anyway)"
            if bad[0].fix
            else "see the table above; `--skip-checks` starts anyway",
        )
    for result in results:
        if result.status == "warn":
            output.warn(f"{result.title}: {result.detail}")


def warn_skipped_checks(output: Output) -> None:
    output.err.print(
        "[bold yellow]WARNING: --skip-checks: starting without the pre-flight checks"
        " (VRAM, driver, runtime, disk, memlock). Failures will show up inside the"
        " container instead.[/bold yellow]"
    )


# -- pulls -----------------------------------------------------------------------------------------
class PreparedPull:
    """A pull observer that first sizes the image and checks the disk, then shows progress.

    The check runs only when the launcher really pulls (it calls the observer), before the
    engine's stream is read, so a refusal leaves nothing started.
    """

    def __init__(
        self,
        engine: Any,
        output: Output,
        ref: str,
        *,
        unpacked: int | None = None,
        skip_disk_check: bool = False,
    ) -> None:
        self.engine, self.output, self.ref = engine, output, ref
        self.unpacked, self.skip_disk_check = unpacked, skip_disk_check
        self.display: PullDisplay | None = None
        self.disk: Any = None

    def __call__(self, events: Iterator[dict[str, Any]]) -> None:
        from hvinfra.images import disk_check, disk_error, local_free_bytes
        from hvinfra.pull_display import PullDisplay
        from hvinfra.registry import ImageSizes, SizingFailed, size_image

        info = self.engine.info()
        sizes: ImageSizes | None = None
        try:
            sizes = size_image(
                self.ref,
                credentials=self.engine.registry_credentials(self.ref),
                insecure=info.insecure_registries,
            )
        except SizingFailed as exc:
            self.output.warn(
                f"cannot size {self.ref} from its registry: {exc}; the free-disk check has no"
                " image size and the progress no total"
            )
        check = disk_check(
            info.docker_root_dir,
            local_free_bytes(info),
            sizes.compressed if sizes else None,
            self.unpacked,
        )
        self.disk = check
        if check.status == "fail" and not self.skip_disk_check:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            raise disk_error(check)
        if check.status in {"fail", "warn"}:
            self.output.warn(check.message)
        elif check.status == "skip":
            self.output.info(f"free disk not checked: {check.message}")
        else:
            self.output.info(f"disk: {check.message}")
        self.display = PullDisplay(
            self.output,
            self.ref,
            expected_sizes=sizes.layers if sizes else None,
            layers_kept=info.containerd_store,
        )
        self.display(events)


def lock_entry_for(profile_name: str, lock: Path | None) -> LockEntry | None:
    from hvinfra.images import find_lock, read_lock

    path = find_lock(lock)
    if path is None:
        return None
    return read_lock(path).get(profile_name)


def prepared_pull(
    engine: Any,
    output: Output,
    ref: str,
    *,
    entry: LockEntry | None = None,
    skip_disk_check: bool = False,
) -> PreparedPull:
    from hvinfra.images import repository

    unpacked = entry.size if entry and repository(entry.image) == repository(ref) else None
    return PreparedPull(engine, output, ref, unpacked=unpacked, skip_disk_check=skip_disk_check)


# -- the whole thing ------------------------------------------------------------------------------
def plan_for(context: AppContext, spec: RunSpec, options: BringUpOptions) -> Plan:
    from hvinfra.launcher import plan_up

    return plan_up(
        context.engine(), spec,
        force_recreate=options.force_recreate, no_recreate=options.no_recreate,
    )  # fmt: skip


def bring_up(
    context: AppContext, output: Output, profile: Profile, options: BringUpOptions
) -> BroughtUp:
    """Plan, check, pull, execute. Pre-flight runs only when the plan starts a container
    (create, start, recreate): a container that is kept is not checked again."""
    from hvinfra.convergence import PlanKind
    from hvinfra.images import lock_mismatch
    from hvinfra.launcher import up

    profile, spec = run_spec(context, profile, output)
    engine = context.engine()
    plan = plan_for(context, spec, options)
    if plan.kind not in (PlanKind.KEEP, PlanKind.REFUSE):
        if options.skip_checks:
            warn_skipped_checks(output)
        else:
            preflight(context, output, profile, options)
    entry = lock_entry_for(profile.name, options.lock)
    result = up(
        engine, spec, profile_name=profile.name, pull=options.pull,
        force_recreate=options.force_recreate, no_recreate=options.no_recreate,
        observe_pull=prepared_pull(
            engine, output, spec.image, entry=entry, skip_disk_check=options.skip_disk_check
        ),
        wait_timeout=options.wait_timeout, settle=options.settle, plan=plan,
    )  # fmt: skip
    mismatch = lock_mismatch(entry, spec.image, engine.image(spec.image)) if entry else None
    return BroughtUp(result, profile, spec, mismatch)


def dry_run_spec(context: AppContext, output: Output, profile: Profile) -> tuple[Profile, RunSpec]:
    """`up --dry-run`: the spec `up` would create; GPUs resolved when NVML answers (a dry run
    also works on a machine without GPUs, with a note)."""
    resolved = profile
    if profile.gpu.devices != "none":
        system, error = context.gpus()
        if system is None:
            reason = error.message.splitlines()[0] if error else "no answer"
            output.note(
                f"note: GPUs not resolved ({reason}); the line uses the profile's selection as"
                " written and no checks ran"
            )
        else:
            resolved = resolve_gpus(context, profile)
            if resolved is not profile:
                output.note("note: GPUs resolved with NVML: " + ", ".join(resolved.gpu.devices))
    return _spec_of(context, output, profile, resolved)
