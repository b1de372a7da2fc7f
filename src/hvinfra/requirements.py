"""What HunyuanVideo needs from a host (data/requirements.yaml) and pure answers over it:
how much GPU memory a setting needs, and what would fit when a GPU is short."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

GIB = 1024**3
RESOLUTIONS = ("720p", "540p", "360p")  # highest first
WORKLOADS = ("t2v", "i2v")


@dataclass(frozen=True)
class VramNeed:
    gib: float
    basis: str  # "official", "measured" (scripts/gpu-generate-smoke.sh) or "estimate"
    setting: str  # e.g. "t2v 720p, fp8"
    measured_peak_gib: float | None = None  # the GPU smoke's peak for this setting, if any
    measured_on: str = ""  # where, e.g. "NVIDIA H200, 2026-12-03, synthetic weights"

    @property
    def bytes(self) -> int:
        return int(self.gib * GIB)


@dataclass(frozen=True)
class Requirements:
    per_gpu: dict[str, dict[str, tuple[float, str]]]  # workload -> resolution -> (GiB, basis)
    recommended_gib: float
    fp8_saving_gib: float
    cpu_offload_saving_gib: float
    floor_gib: float
    xdit_per_gpu_gib: float
    xdit_gpu_counts: tuple[int, ...]
    image_cuda: dict[str, tuple[int, int]]
    toolkit_drivers: dict[tuple[int, int], str]
    minor_compat_drivers: dict[int, str]
    docker_min_version: tuple[int, ...]
    image_gib: float
    weights_gib: dict[str, float]
    # workload -> resolution -> the GPU smoke's peak (GiB): shown next to the need, never gating
    measured_peaks: dict[str, dict[str, float]] = field(default_factory=dict)
    measured_on: str = ""

    def vram(
        self,
        workload: str,
        resolution: str,
        *,
        fp8: bool = False,
        cpu_offload: bool = False,
    ) -> VramNeed:
        """Free memory one GPU needs for this setting (batch 1, 129 frames)."""
        gib, basis = self.per_gpu[workload][resolution]
        savings = [0.0]
        if fp8:
            savings.append(self.fp8_saving_gib)
        if cpu_offload:
            savings.append(self.cpu_offload_saving_gib)
            basis = "estimate"
        need = max(self.floor_gib, gib - max(savings))
        flags = [name for name, on in (("fp8", fp8), ("cpu offload", cpu_offload)) if on]
        peak = None if flags else self.measured_peaks.get(workload, {}).get(resolution)
        return VramNeed(
            need, basis, ", ".join([f"{workload} {resolution}", *flags]),
            measured_peak_gib=peak, measured_on=self.measured_on if peak is not None else "",
        )  # fmt: skip

    def toolkit_driver(self, cuda: tuple[int, int]) -> str | None:
        return self.toolkit_drivers.get(cuda)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def _cuda(text: str) -> tuple[int, int]:
    major, minor, *_ = (*_version(str(text)), 0, 0)
    return major, minor


def from_data(data: Mapping[str, Any]) -> Requirements:
    vram = data["vram"]
    return Requirements(
        per_gpu={
            workload: {res: (float(v["gib"]), str(v["basis"])) for res, v in table.items()}
            for workload, table in vram["per_gpu"].items()
        },
        recommended_gib=float(vram["recommended_gib"]),
        fp8_saving_gib=float(vram["fp8_saving_gib"]),
        cpu_offload_saving_gib=float(vram["cpu_offload_saving_gib"]),
        floor_gib=float(vram["floor_gib"]),
        xdit_per_gpu_gib=float(vram["xdit_per_gpu_gib"]),
        xdit_gpu_counts=tuple(int(n) for n in vram["xdit_gpu_counts"]),
        image_cuda={ref: _cuda(v) for ref, v in data["cuda"]["images"].items()},
        toolkit_drivers={_cuda(k): str(v) for k, v in data["cuda"]["toolkit_drivers"].items()},
        minor_compat_drivers={
            int(k): str(v) for k, v in data["cuda"]["minor_compat_drivers"].items()
        },
        docker_min_version=_version(str(data["docker"]["min_version"])),
        image_gib=float(data["disk"]["image_gib"]),
        weights_gib={k: float(v) for k, v in data["disk"]["weights_gib"].items()},
        measured_peaks={
            workload: {
                res: float(v["measured_gib"]) for res, v in table.items() if "measured_gib" in v
            }
            for workload, table in vram["per_gpu"].items()
        },
        measured_on=_measured_on(vram.get("measured_on") or {}),
    )


def _measured_on(where: Mapping[str, Any]) -> str:
    parts = [str(where[key]) for key in ("gpu", "date") if key in where]
    if where.get("weights") == "synthetic":
        parts.append("synthetic weights")
    return ", ".join(parts)


@cache
def load() -> Requirements:
    import yaml

    text = (resources.files("hvinfra") / "data" / "requirements.yaml").read_text("utf-8")
    return from_data(yaml.safe_load(text))


def parse_version(text: str) -> tuple[int, ...]:
    return _version(text)


def cuda_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def image_cuda_requirement(
    req: Requirements, image_ref: str, image_env: Sequence[str] = ()
) -> tuple[tuple[int, int] | None, str]:
    """(CUDA version the image needs, where that figure came from); (None, why) if unknown."""
    env = dict(item.partition("=")[::2] for item in image_env)
    required = env.get("NVIDIA_REQUIRE_CUDA", "")
    match = re.search(r"cuda>=(\d+\.\d+)", required)
    if match:
        return _cuda(match.group(1)), "the image's NVIDIA_REQUIRE_CUDA"
    if env.get("CUDA_VERSION"):
        return _cuda(env["CUDA_VERSION"]), "the image's CUDA_VERSION"
    if image_ref in req.image_cuda:
        return req.image_cuda[image_ref], "hvinfra's table of the official images"
    return None, f"no CUDA requirement known for {image_ref} (pull it so its env can be read)"


# -- what would fit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FitOption:
    """One way to make the job fit, with how to ask for it."""

    what: str
    need_gib: float
    how: str
    estimate: bool


def what_would_fit(
    req: Requirements,
    workload: str,
    resolution: str,
    *,
    fp8: bool,
    cpu_offload: bool,
    free_gib: Mapping[int, float],
    short_gpus: Sequence[int] = (),
) -> list[FitOption]:
    """Settings that would fit given each GPU's free memory (index -> GiB), best first.

    Pure. Considers: another GPU that has room, a lower resolution, FP8 weights, CPU offload,
    and xDiT across several GPUs that each hold enough.
    """
    if not free_gib:
        return []
    best = max(free_gib.values())
    options: list[FitOption] = []
    need = req.vram(workload, resolution, fp8=fp8, cpu_offload=cpu_offload)
    roomy = [i for i, free in sorted(free_gib.items()) if free >= need.gib and i not in short_gpus]
    if roomy and short_gpus:
        options.append(
            FitOption(
                f"GPU {', '.join(map(str, roomy))} has room for {need.setting}",
                need.gib,
                f"--gpus {roomy[0]}",
                need.basis == "estimate",
            )
        )
    from hvinfra.generate.tables import tables

    # only sizes `generate` offers for the workload (T2V has no 360p)
    offered = tables().resolutions if workload == "t2v" else tables().i2v_resolutions
    index = RESOLUTIONS.index(resolution)
    for lower in RESOLUTIONS[index + 1 :]:
        if lower not in offered:
            continue
        alt = req.vram(workload, lower, fp8=fp8, cpu_offload=cpu_offload)
        if alt.gib <= best:
            options.append(
                FitOption(f"{lower}", alt.gib, f"--set resolution={lower}", alt.basis != "official")
            )
            break
    if not fp8:
        alt = req.vram(workload, resolution, fp8=True, cpu_offload=cpu_offload)
        if alt.gib <= best:
            options.append(
                FitOption(
                    f"{resolution} with FP8 weights", alt.gib, "--fp8", alt.basis != "official"
                )
            )
    if not cpu_offload:
        alt = req.vram(workload, resolution, fp8=fp8, cpu_offload=True)
        if alt.gib <= best:
            options.append(
                FitOption(f"{resolution} with CPU offload, slower", alt.gib, "--cpu-offload", True)
            )
    per_gpu = max(req.xdit_per_gpu_gib, req.floor_gib)
    able = [i for i, free in sorted(free_gib.items()) if free >= per_gpu]
    for count in req.xdit_gpu_counts:
        if len(able) >= count:
            chosen = able[:count]
            options.append(
                FitOption(
                    f"{resolution} across {count} GPUs with xDiT",
                    per_gpu,
                    "--gpus " + ",".join(map(str, chosen)),
                    True,
                )
            )
            break
    return options


def describe_options(options: Sequence[FitOption]) -> str:
    if not options:
        return ""
    parts = []
    for option in options:
        mark = "~" if option.estimate else ""
        parts.append(f"{option.what} ({mark}{option.need_gib:g} GiB): `{option.how}`")
    return "; ".join(parts)
