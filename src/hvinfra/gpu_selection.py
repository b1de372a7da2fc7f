"""Which GPUs: `all`, `none`, or listed indices / UUIDs, as one value type. Profiles write
`gpu.devices: all | none | [0, 1]`, the CLI `--gpus all|none|0,1`, a job `--gpus …`; every
module that needs to tell those apart asks this type instead of unwrapping `str | list`.
Ground floor: imports nothing from hvinfra."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSelection:
    listed: tuple[str, ...] = ()  # indices or UUIDs, when neither all nor none
    everything: bool = False
    nothing: bool = False

    @classmethod
    def of(cls, value: str | Sequence[str] | GpuSelection | None) -> GpuSelection:
        """From a profile's `gpu.devices`, a `--gpus` value or a list; None means all."""
        if isinstance(value, GpuSelection):
            return value
        if value is None or value == "all":
            return cls(everything=True)
        if value == "none":
            return cls(nothing=True)
        if isinstance(value, str):
            return cls(tuple(part.strip() for part in value.split(",") if part.strip()))
        return cls(tuple(str(item) for item in value))

    @property
    def label(self) -> str:
        """`all`, `none` or `0,1`: the io.hvinfra.gpus label and what messages show."""
        if self.everything:
            return "all"
        if self.nothing:
            return "none"
        return ",".join(self.listed)

    @property
    def value(self) -> str | tuple[str, ...]:
        """`all`, `none` or the tuple of ids: what the checks' selection takes."""
        return self.listed if not (self.everything or self.nothing) else self.label

    def first(self, default: str = "0") -> str:
        """The first listed GPU, else `default` (a job's GPU when none is given)."""
        return self.listed[0] if self.listed else default
