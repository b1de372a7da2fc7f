"""Pre-flight checks: pure functions from records (what NVML, Docker and the host reported) to
pass / warn / fail results, each with a one-line fix. No I/O here: preflight.py gathers the facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from hvinfra.assets import AssetRow, AssetState
from hvinfra.errors import GpuRuntimeError, HvinfraError
from hvinfra.fixes import MEMLOCK_FIX, TOOLKIT_FIX
from hvinfra.records import EngineInfo, GpuInfo, GpuSystem, ImageInfo
from hvinfra.requirements import (
    GIB,
    Requirements,
    cuda_text,
    describe_options,
    image_cuda_requirement,
    parse_version,
    what_would_fit,
)

Status = Literal["pass", "warn", "fail"]
PASS: Status = "pass"
WARN: Status = "warn"
FAIL: Status = "fail"


@dataclass(frozen=True)
class CheckResult:
    name: str  # stable id for scripts: docker, gpu_runtime, nvml, gpus, vram, ...
    status: Status
    detail: str
    fix: str = ""
    gpu: int | None = None  # the GPU index for per-GPU rows

    @property
    def title(self) -> str:
        return self.name if self.gpu is None else f"{self.name} (GPU {self.gpu})"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DaemonMemlock:
    """The local dockerd's memlock limit as /proc showed it; None fields = could not tell."""

    hard: int | None = None  # bytes, -1 unlimited
    cap_sys_resource: bool = False
    source: str = ""  # "/proc/123/limits", or why it is unknown


@dataclass(frozen=True)
class Facts:
    """Everything the checks look at, gathered once."""

    workload: str
    resolution: str
    image_ref: str
    fp8: bool = False
    cpu_offload: bool = False
    gpu_mode: str = "toolkit"
    selection: str | tuple[str, ...] = "all"  # 'all' | 'none' | indices/UUIDs
    engine: EngineInfo | None = None
    engine_error: HvinfraError | None = None
    gpus: GpuSystem | None = None
    gpu_error: HvinfraError | None = None
    image: ImageInfo | None = None  # the local image, when present
    hook_path: str | None = None  # nvidia-container-runtime-hook on this host
    daemon_local: bool = True
    docker_root_free: int | None = None  # bytes free at DockerRootDir; None = unknown
    weights_path: str | None = None
    weights_free: int | None = None
    weights_present: bool = False
    memlock_wanted: int | None = None  # the profile's memlock hard limit (bytes, -1 unlimited)
    memlock: DaemonMemlock = field(default_factory=DaemonMemlock)


def gib(num_bytes: float) -> str:
    return f"{num_bytes / GIB:.1f} GiB"


# -- GPU selection ----------------------------------------------------------------------------


def seen_gpus(system: GpuSystem) -> str:
    if not system.gpus:
        return "NVML sees no GPUs"
    return "GPUs seen: " + "; ".join(
        f"{g.index}: {g.name} {g.uuid} ({gib(g.memory_total_bytes)})" for g in system.gpus
    )


def select_gpus(selection: str | Sequence[str], system: GpuSystem) -> tuple[GpuInfo, ...]:
    """Resolve 'all' / 'none' / indices / GPU- or MIG-UUIDs against what NVML sees."""
    if selection == "none":
        return ()
    if selection == "all":
        if not system.gpus:
            raise GpuRuntimeError(
                "--gpus all, but NVML sees no GPUs", "check `nvidia-smi`; or use `--gpus none`"
            )
        return system.gpus
    by_uuid = {g.uuid.lower(): g for g in system.gpus}
    chosen: list[GpuInfo] = []
    for item in selection:
        gpu: GpuInfo | None = None
        if item.isdigit():
            gpu = next((g for g in system.gpus if g.index == int(item)), None)
        else:
            gpu = by_uuid.get(item.lower())
            if gpu is None and item.upper().startswith("MIG-"):
                raise GpuRuntimeError(
                    f"--gpus {item}: MIG devices cannot be checked by hvinfra yet",
                    "pass the parent GPU's index or UUID, or `--skip-checks` to use the MIG UUID"
                    " as is",
                )
        if gpu is None:
            raise GpuRuntimeError(
                f"no GPU {item} on this host. {seen_gpus(system)}",
                "pick one of the GPUs listed (index or UUID), or `--gpus all`",
            )
        if gpu in chosen:
            raise GpuRuntimeError(f"--gpus names GPU {gpu.index} twice ({item})", "list it once")
        chosen.append(gpu)
    return tuple(chosen)


# -- the checks -------------------------------------------------------------------------------


def check_docker(facts: Facts, req: Requirements) -> CheckResult:
    if facts.engine is None:
        error = facts.engine_error
        return CheckResult(
            "docker",
            FAIL,
            error.message if error else "Docker was not asked",
            error.fix if error else "",
        )
    version = parse_version(facts.engine.server_version)
    wanted = ".".join(map(str, req.docker_min_version))
    detail = f"dockerd {facts.engine.server_version} (API {facts.engine.api_version})"
    if version[: len(req.docker_min_version)] < req.docker_min_version:
        return CheckResult(
            "docker",
            FAIL,
            f"{detail}: older than {wanted}",
            f"upgrade Docker Engine to {wanted} or newer (https://docs.docker.com/engine/install/)",
        )
    return CheckResult("docker", PASS, detail)


def check_gpu_runtime(facts: Facts) -> CheckResult:
    """Can the daemon hand GPUs to containers? What is checked, and its limits:

    - `nvidia` in the daemon's runtimes (`docker info`): registered by `nvidia-ctk runtime
      configure`.
    - otherwise nvidia-container-runtime-hook found: dockerd registers its GPU device driver for
      `--gpus` when it finds the hook on ITS PATH at start, which `docker info` does not show.
      We read dockerd's PATH from /proc/<pid>/environ when allowed (root), else look on our own
      PATH and in the usual folders.
    Neither proves a GPU container starts; only starting one does (`hvinfra up`).
    """
    name = "gpu_runtime"
    if facts.gpu_mode != "toolkit":
        return CheckResult(name, PASS, f"not needed: gpu.mode={facts.gpu_mode}")
    if facts.selection == "none":
        return CheckResult(name, PASS, "not needed: no GPUs requested")
    if facts.engine is None:
        return CheckResult(name, WARN, "not checked: Docker is unreachable", "see the docker row")
    if "nvidia" in facts.engine.runtimes:
        return CheckResult(name, PASS, "runtime `nvidia` registered with the daemon")
    if facts.hook_path and facts.daemon_local:
        return CheckResult(
            name,
            PASS,
            f"{facts.hook_path} installed: dockerd serves --gpus through it (not listed by"
            " `docker info`; restart dockerd if it was installed after dockerd started)",
        )
    if not facts.daemon_local:
        return CheckResult(
            name,
            WARN,
            "no `nvidia` runtime registered, and the daemon is remote, so its hook cannot be seen",
            TOOLKIT_FIX,
        )
    return CheckResult(
        name, FAIL, "no `nvidia` runtime and no nvidia-container-runtime-hook found", TOOLKIT_FIX
    )


def check_nvml(facts: Facts) -> CheckResult:
    if facts.gpus is None:
        error = facts.gpu_error
        status = WARN if facts.selection == "none" else FAIL
        return CheckResult(
            "nvml",
            status,
            error.message if error else "NVML was not asked",
            error.fix if error else "",
        )
    where = facts.gpus.nvml_library_path or "the loader path"
    return CheckResult("nvml", PASS, f"driver {facts.gpus.driver_version}, NVML from {where}")


def check_gpus(facts: Facts, system: GpuSystem) -> tuple[CheckResult, tuple[GpuInfo, ...]]:
    try:
        chosen = select_gpus(facts.selection, system)
    except GpuRuntimeError as error:
        return CheckResult("gpus", FAIL, error.message, error.fix), ()
    names = ", ".join(f"{g.index}: {g.name} ({gib(g.memory_total_bytes)})" for g in chosen)
    detail = f"{len(chosen)} of {len(system.gpus)} selected: {names}"
    return CheckResult("gpus", PASS, detail), chosen


def check_vram(
    facts: Facts, req: Requirements, system: GpuSystem, chosen: Sequence[GpuInfo]
) -> list[CheckResult]:
    need = req.vram(facts.workload, facts.resolution, fp8=facts.fp8, cpu_offload=facts.cpu_offload)
    mark = {"official": "", "measured": " (measured)"}.get(need.basis, " (estimate)")
    free = {g.index: g.memory_free_bytes / GIB for g in system.gpus}
    short = [g.index for g in chosen if g.memory_free_bytes < need.bytes]
    xdit_ok = len(chosen) > 1 and all(
        g.memory_free_bytes >= req.xdit_per_gpu_gib * GIB for g in chosen
    )
    results = []
    for gpu in chosen:
        detail = (
            f"{gib(gpu.memory_free_bytes)} free of {gib(gpu.memory_total_bytes)};"
            f" {need.setting} needs {need.gib:g} GiB{mark}"
        )
        if need.measured_peak_gib is not None:
            detail += f" (peak measured {need.measured_peak_gib:g} GiB on {need.measured_on})"
        if gpu.memory_free_bytes >= need.bytes:
            if gpu.memory_total_bytes < req.recommended_gib * GIB * 0.95:
                results.append(
                    CheckResult(
                        "vram",
                        PASS,
                        detail + f" (below the recommended {req.recommended_gib:g} GiB GPU)",
                        gpu=gpu.index,
                    )
                )
            else:
                results.append(CheckResult("vram", PASS, detail, gpu=gpu.index))
            continue
        options = what_would_fit(
            req, facts.workload, facts.resolution, fp8=facts.fp8,
            cpu_offload=facts.cpu_offload, free_gib=free, short_gpus=short,
        )  # fmt: skip
        fits = describe_options(options)
        if xdit_ok:
            results.append(
                CheckResult(
                    "vram",
                    WARN,
                    detail + f"; fits only with xDiT across the {len(chosen)} selected GPUs"
                    f" (~{req.xdit_per_gpu_gib:g} GiB each, estimate)",
                    "generate with all selected GPUs (xDiT), or " + (fits or "free memory"),
                    gpu=gpu.index,
                )
            )
            continue
        fix = (
            f"what would fit: {fits}"
            if fits
            else f"nothing fits in {gib(gpu.memory_free_bytes)}: HunyuanVideo needs at least"
            f" ~{req.floor_gib:g} GiB (estimate); free the GPU or use a larger one"
        )
        results.append(CheckResult("vram", FAIL, detail, fix, gpu=gpu.index))
    return results


def check_cuda_driver(facts: Facts, req: Requirements, system: GpuSystem) -> CheckResult:
    name = "cuda_driver"
    have = system.cuda_driver_version
    env = facts.image.env if facts.image else ()
    wanted, source = image_cuda_requirement(req, facts.image_ref, env)
    detail = f"driver {system.driver_version} supports CUDA {cuda_text(have)}"
    if wanted is None:
        return CheckResult(name, WARN, f"{detail}; {source}")
    driver = req.toolkit_driver(wanted)
    driver_text = f" (Linux driver >= {driver})" if driver else ""
    detail += f"; {facts.image_ref} needs CUDA >= {cuda_text(wanted)} ({source})"
    if have >= wanted:
        return CheckResult(name, PASS, detail)
    update = f"update the NVIDIA driver to one supporting CUDA {cuda_text(wanted)}{driver_text}"
    compat = req.minor_compat_drivers.get(wanted[0])
    if have[0] == wanted[0] and compat:
        return CheckResult(
            name,
            WARN,
            detail + f"; CUDA minor version compatibility (driver >= {compat}) may run it, but"
            " the container toolkit can refuse the image's requirement",
            update,
        )
    return CheckResult(name, FAIL, detail, update + ", or use an image built for an older CUDA")


def check_mig(chosen: Sequence[GpuInfo]) -> CheckResult:
    on = [g for g in chosen if g.mig_mode]
    if not on:
        unknown = [g.index for g in chosen if g.mig_mode is None]
        detail = "off" + (f" (not supported by GPU {unknown})" if unknown else "")
        return CheckResult("mig", PASS, detail)
    listed = ", ".join(str(g.index) for g in on)
    return CheckResult(
        "mig",
        FAIL,
        f"MIG mode is on for GPU {listed}: a whole-GPU request gets no usable slice, and every"
        " slice is smaller than HunyuanVideo's need",
        f"disable MIG (`sudo nvidia-smi -i {on[0].index} -mig 0`, then reset the GPU) or choose"
        " other GPUs with --gpus",
    )


def check_processes(chosen: Sequence[GpuInfo]) -> CheckResult:
    name = "gpu_processes"
    blocked = [g for g in chosen if g.compute_mode == "prohibited"]
    if blocked:
        return CheckResult(
            name,
            FAIL,
            f"GPU {blocked[0].index} is in compute mode PROHIBITED: no CUDA process may use it",
            f"`sudo nvidia-smi -i {blocked[0].index} -c DEFAULT`, or choose other GPUs",
        )
    busy = [g for g in chosen if g.processes]
    exclusive = [g for g in busy if g.compute_mode == "exclusive_process"]
    lines = []
    for gpu in busy:
        procs = ", ".join(
            f"{p.pid}{' ' + p.name if p.name else ''}"
            + (f" {gib(p.used_memory_bytes)}" if p.used_memory_bytes is not None else "")
            for p in gpu.processes
        )
        lines.append(f"GPU {gpu.index}: {procs}")
    if exclusive:
        return CheckResult(
            name,
            FAIL,
            f"GPU {exclusive[0].index} is EXCLUSIVE_PROCESS and already used ({'; '.join(lines)})",
            "stop that process, choose another GPU, or `sudo nvidia-smi -c DEFAULT`",
        )
    unknown = [f"GPU {g.index}: {g.processes_unknown}" for g in chosen if g.processes_unknown]
    if unknown:
        lines.append("could not list the processes on " + "; ".join(unknown))
    if busy or unknown:
        return CheckResult(
            name,
            WARN,
            ("other processes use the GPU: " if busy else "") + "; ".join(lines),
            (
                "they share its memory and compute; stop them or choose other GPUs with --gpus"
                if busy
                else "update the NVIDIA driver (`nvidia-smi` lists the processes meanwhile)"
            ),
        )
    return CheckResult(name, PASS, "no other processes on the selected GPUs")


def check_disk_image(facts: Facts, req: Requirements) -> CheckResult:
    name = "disk_image"
    if facts.image is not None:
        return CheckResult(
            name, PASS, f"{facts.image_ref} is present locally ({gib(facts.image.size)})"
        )
    need = req.image_gib * GIB
    if facts.engine is None:
        return CheckResult(name, WARN, "not checked: Docker is unreachable")
    root = facts.engine.docker_root_dir or "Docker's data root"
    if facts.docker_root_free is None:
        return CheckResult(
            name,
            WARN,
            f"free space at {root} unknown (remote daemon or unreadable); the image needs"
            f" ~{req.image_gib:g} GiB (estimate)",
            f"make sure {root} on the daemon's host has room",
        )
    detail = (
        f"{gib(facts.docker_root_free)} free at {root}; pulling {facts.image_ref} needs"
        f" ~{req.image_gib:g} GiB (estimate)"
    )
    if facts.docker_root_free < need:
        return CheckResult(
            name,
            FAIL,
            detail,
            "free space (`docker system prune`) or move Docker's data-root to a larger disk",
        )
    return CheckResult(name, PASS, detail)


def check_disk_weights(facts: Facts, req: Requirements) -> CheckResult:
    name = "disk_weights"
    if not facts.weights_path:
        return CheckResult(name, PASS, "the profile mounts no weights folder")
    if facts.weights_present:
        free = "" if facts.weights_free is None else f" ({gib(facts.weights_free)} free)"
        return CheckResult(name, PASS, f"{facts.weights_path} holds files{free}")
    need_gib = req.weights_gib.get(facts.workload, max(req.weights_gib.values()))
    if facts.weights_free is None:
        return CheckResult(name, WARN, f"free space at {facts.weights_path} unknown")
    detail = (
        f"{gib(facts.weights_free)} free for {facts.weights_path} (empty); the {facts.workload}"
        f" weights need ~{need_gib:g} GiB (estimate)"
    )
    if facts.weights_free < need_gib * GIB:
        # A warning: `up` does not download weights; `hvinfra models pull` will need the room.
        return CheckResult(
            name,
            WARN,
            detail,
            "free space there, or point the weights volume at a larger disk"
            " (`--set volumes.weights.host=/big/disk/ckpts`)",
        )
    return CheckResult(name, PASS, detail)


def _limit(value: int) -> str:
    return "unlimited" if value < 0 else f"{value // 1024} KiB"


def check_memlock(facts: Facts) -> CheckResult:
    name = "memlock"
    wanted = facts.memlock_wanted
    if wanted is None:
        return CheckResult(name, PASS, "the profile sets no memlock limit")
    if facts.engine is None:
        return CheckResult(name, WARN, "not checked: Docker is unreachable")
    lock = facts.memlock
    if lock.cap_sys_resource:
        return CheckResult(
            name,
            PASS,
            f"dockerd has CAP_SYS_RESOURCE ({lock.source}): it can grant memlock {_limit(wanted)}",
        )
    if lock.hard is None:
        return CheckResult(
            name,
            WARN,
            f"the daemon's memlock limit is unknown ({lock.source or 'not read'}); the profile"
            f" asks for {_limit(wanted)}",
            "if `up` then fails with `error setting rlimit type 8`: " + MEMLOCK_FIX,
        )
    enough = lock.hard < 0 or (0 <= wanted <= lock.hard)
    detail = (
        f"dockerd's hard memlock limit is {_limit(lock.hard)} ({lock.source}); the profile asks"
        f" for {_limit(wanted)}"
    )
    if enough:
        return CheckResult(name, PASS, detail)
    return CheckResult(name, FAIL, detail + " and dockerd lacks CAP_SYS_RESOURCE", MEMLOCK_FIX)


def run_checks(facts: Facts, req: Requirements) -> list[CheckResult]:
    """Every pre-flight check, in the order a user reads them. Pure."""
    results = [check_docker(facts, req), check_gpu_runtime(facts), check_nvml(facts)]
    system = facts.gpus
    if system is not None and facts.selection != "none":
        gpus_row, chosen = check_gpus(facts, system)
        results.append(gpus_row)
        if chosen:
            results += check_vram(facts, req, system, chosen)
            results.append(check_mig(chosen))
            results.append(check_processes(chosen))
        results.append(check_cuda_driver(facts, req, system))
    results += [check_disk_image(facts, req), check_disk_weights(facts, req), check_memlock(facts)]
    return results


def failed(results: Sequence[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status == FAIL]


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    return {s: sum(1 for r in results if r.status == s) for s in (PASS, WARN, FAIL)}


def job_vram_checks(
    req: Requirements,
    system: GpuSystem,
    *,
    workload: str,
    resolution: str,
    selection: str | tuple[str, ...],
    fp8: bool = False,
    cpu_offload: bool = False,
) -> list[CheckResult]:
    """The VRAM gate for one generation job: its own resolution, flags and GPUs. Pure."""
    facts = Facts(
        workload=workload, resolution=resolution, image_ref="", fp8=fp8,
        cpu_offload=cpu_offload, selection=selection, gpus=system,
    )  # fmt: skip
    gpus_row, chosen = check_gpus(facts, system)
    if gpus_row.status == FAIL:
        return [gpus_row]
    return check_vram(facts, req, system, chosen)


def asset_checks(rows: Sequence[AssetRow]) -> list[CheckResult]:
    """`models check` rows as doctor rows: a required piece not ok fails, an optional one warns."""
    results = []
    for row in rows:
        if row.state is AssetState.OK:
            status: Status = PASS
        else:
            status = FAIL if row.required else WARN
        results.append(CheckResult(f"models.{row.piece}", status, row.detail, row.fix))
    return results
