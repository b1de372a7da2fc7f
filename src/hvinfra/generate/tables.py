"""The generation tables (sizes, frames, xDiT), loaded once from `hvinfra/data/*.yaml`.

One source of truth: validation, argv, `--help` and the README all read these.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class FrameRule:
    default: int
    step: int
    minimum: int
    maximum: int
    fps: int

    def valid(self, frames: int) -> bool:
        return self.minimum <= frames <= self.maximum and (frames - 1) % self.step == 0

    def nearest(self, frames: int) -> tuple[int, ...]:
        """The valid lengths closest to `frames` (one or two, ascending)."""
        clamped = min(max(frames, self.minimum), self.maximum)
        below = clamped - (clamped - 1) % self.step
        above = below + self.step
        options = [v for v in (below, above) if self.minimum <= v <= self.maximum]
        best = min(abs(v - frames) for v in options)
        return tuple(v for v in options if abs(v - frames) == best)


@dataclass(frozen=True)
class Tables:
    t2v_sizes: dict[str, dict[str, tuple[int, int]]]  # resolution -> aspect -> (height, width)
    t2v_default_resolution: str
    t2v_default_aspect: str
    i2v_resolutions: tuple[str, ...]
    i2v_default_resolution: str
    frames: FrameRule
    xdit_t2v: dict[tuple[int, int], dict[int, tuple[tuple[int, int], ...]]]
    xdit_i2v_max_gpus: int
    xdit_i2v_heads: int
    xdit_i2v_env: dict[str, str]

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(self.t2v_sizes)

    @property
    def aspects(self) -> tuple[str, ...]:
        return tuple(next(iter(self.t2v_sizes.values())))


def _read(name: str) -> Any:
    return yaml.safe_load((resources.files("hvinfra") / "data" / name).read_text("utf-8"))


def _pair(text: str) -> tuple[int, int]:
    left, _, right = str(text).lower().partition("x")
    return int(left), int(right)


@lru_cache(maxsize=1)
def tables() -> Tables:
    sizes = _read("sizes.yaml")
    xdit = _read("xdit.yaml")
    t2v = sizes["t2v"]
    frames = sizes["frames"]
    return Tables(
        t2v_sizes={
            str(res): {str(aspect): (int(hw[0]), int(hw[1])) for aspect, hw in row.items()}
            for res, row in t2v["sizes"].items()
        },
        t2v_default_resolution=str(t2v["default_resolution"]),
        t2v_default_aspect=str(t2v["default_aspect"]),
        i2v_resolutions=tuple(str(r) for r in sizes["i2v"]["resolutions"]),
        i2v_default_resolution=str(sizes["i2v"]["default_resolution"]),
        frames=FrameRule(
            default=int(frames["default"]),
            step=int(frames["step"]),
            minimum=int(frames["minimum"]),
            maximum=int(frames["maximum"]),
            fps=int(frames["fps"]),
        ),
        xdit_t2v={
            tuple(int(v) for v in str(size).split()): {  # type: ignore[misc]
                int(n): tuple(_pair(p) for p in pairs) for n, pairs in by_n.items()
            }
            for size, by_n in xdit["t2v"].items()
        },
        xdit_i2v_max_gpus=int(xdit["i2v"]["max_gpus"]),
        xdit_i2v_heads=int(xdit["i2v"]["attention_heads"]),
        xdit_i2v_env={str(k): str(v) for k, v in xdit["i2v"]["env"].items()},
    )
