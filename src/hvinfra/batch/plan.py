"""The batch plan: which lines run (sharding, resume), on which workers (GPU assignment), under
which output names. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hvinfra.batch.lines import BatchLine
from hvinfra.errors import ExitCode, HvinfraError
from hvinfra.generate.plan import output_stem

# The official code at these commits offers the sampler API hvinfra_worker.py drives (the
# commits the packaged profiles pin); elsewhere the batch runs one sample script per line.
WORKER_COMMITS = {
    "t2v": "fa14b001c18f37191c938a9ef6baad3b9b472759",
    "i2v": "1481c1d5ae88e9905f54f2a3c6a1b68ef2a10528",
}


def reuse_decision(
    flag: bool | None, kind: str, commit: str | None, gpus_per_job: int
) -> tuple[bool, str]:
    """Load the model once per worker, or run one sample script per line, and why."""
    if flag is False:
        return False, "--no-reuse: one sample script per line"
    if gpus_per_job > 1:
        return False, "xDiT per job (--gpus-per-job > 1): one torchrun per line"
    if flag:
        return True, "--reuse: the model is loaded once per worker"
    if commit is not None and commit == WORKER_COMMITS.get(kind):
        return True, f"the code is at {commit[:7]}: the model is loaded once per worker"
    pinned = (commit or "unknown")[:7]
    return False, (
        f"the code is at {pinned}, not the commit the worker knows"
        f" ({WORKER_COMMITS.get(kind, '?')[:7]}): one sample script per line (--reuse forces"
        " the worker)"
    )


class BatchPlanError(HvinfraError):
    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def takes(self, position: int) -> bool:
        """Every count-th line from index, by position among the file's lines (0-based)."""
        return position % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard | None:
    """`I/N` (0 <= I < N): this run takes lines I, I+N, I+2N, … of the file."""
    if text is None:
        return None
    index_text, sep, count_text = text.partition("/")
    if not sep or not index_text.strip().isdigit() or not count_text.strip().isdigit():
        raise BatchPlanError(
            f"--shard {text!r} is not I/N", "write e.g. --shard 0/4 (the first of four shards)"
        )
    index, count = int(index_text), int(count_text)
    if count < 1 or index >= count:
        raise BatchPlanError(
            f"--shard {text}: the index must be below the count (0 <= I < N)",
            f"use --shard 0/{max(count, 1)} … {max(count, 1) - 1}/{max(count, 1)}",
        )
    return Shard(index, count)


def apply_shard(lines: list[BatchLine], shard: Shard | None) -> list[BatchLine]:
    if shard is None:
        return lines
    return [line for position, line in enumerate(lines) if shard.takes(position)]


@dataclass(frozen=True)
class Slot:
    """One worker: the GPUs its jobs run on (None: the container's first GPU)."""

    name: str
    gpus: tuple[str, ...] | None


def assign_slots(devices: list[str] | None, gpus_per_job: int) -> tuple[list[Slot], list[str]]:
    """One worker per GPU (throughput), or per group of `gpus_per_job` GPUs (xDiT per job).
    `devices` are the selected GPUs (indices or UUIDs), None when unknown. Returns the slots
    and notes (GPUs left idle)."""
    if gpus_per_job < 1:
        raise BatchPlanError(f"--gpus-per-job {gpus_per_job}: must be 1 or more", "use 1, 2, 4 …")
    if devices is None:
        if gpus_per_job > 1:
            raise BatchPlanError(
                f"--gpus-per-job {gpus_per_job}, but the number of GPUs here is unknown",
                "select the GPUs with --gpus (e.g. --gpus 0,1,2,3)",
            )
        return [Slot("gpu", None)], []
    if len(devices) < gpus_per_job:
        raise BatchPlanError(
            f"--gpus-per-job {gpus_per_job}, but only {len(devices)} GPU(s) are selected"
            f" ({','.join(devices)})",
            "select more GPUs with --gpus, or lower --gpus-per-job",
        )
    slots = []
    for start in range(0, len(devices) - gpus_per_job + 1, gpus_per_job):
        group = tuple(devices[start : start + gpus_per_job])
        slots.append(Slot("gpu" + "+".join(group), group))
    used = len(slots) * gpus_per_job
    notes = []
    if used < len(devices):
        idle = ",".join(devices[used:])
        notes.append(
            f"{len(devices)} GPUs in groups of {gpus_per_job}: GPU {idle} stays idle"
            " (choose --gpus so that the count divides)"
        )
    return slots, notes


def line_stem(line: BatchLine) -> str:
    """The line's output name: line number, mode, prompt slug, seed, size (no suffix)."""
    assert line.request is not None and line.request.seed is not None
    return f"{line.number:04d}_{output_stem(line.request, line.request.seed)}"


@dataclass(frozen=True)
class Item:
    line: BatchLine
    hash: str
    stem: str
    action: str  # run | done (skipped) | failed (skipped, no --retry-failed)


@dataclass(frozen=True)
class BatchPlan:
    source: Path
    items: tuple[Item, ...]
    slots: tuple[Slot, ...]
    invalid: tuple[BatchLine, ...]
    notes: tuple[str, ...]
    reuse: bool
    reuse_reason: str

    @property
    def to_run(self) -> list[Item]:
        return [item for item in self.items if item.action == "run"]

    def skipped(self, action: str) -> list[Item]:
        return [item for item in self.items if item.action == action]
