"""What a generation job measured: the GPU memory peak (sampled through NVML while the job runs)
and the phase times read from the sample script's tqdm lines (load / steps / decode, s/step).

The arithmetic is pure and works over GpuSystem records and (time, Step) events, so tests feed
recorded records; `MemorySampler` is the only part with a thread, and it takes its probe as a
callable (the CLI passes NVML's, from gpu.py).
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hvinfra.generate.progress import Step
from hvinfra.records import GpuSystem

SAMPLE_INTERVAL_S = 0.5


# -- memory ------------------------------------------------------------------------------------
@dataclass
class MemoryPeak:
    """Peak GPU memory of a job on the selected GPUs (indices), from successive NVML records.

    Per process where the driver lists processes (the job's are those absent before it
    started), else per GPU: memory used minus what was used before the job. `whole_gpu`: the
    GPUs' memory in use (a job in a worker that already holds the model, on its own GPU)."""

    gpus: tuple[int, ...]
    whole_gpu: bool = False
    baseline_used: dict[int, int] = field(default_factory=dict)
    baseline_pids: set[int] = field(default_factory=set)
    peak_process_bytes: int | None = None
    peak_gpu_used_bytes: int | None = None
    peak_over_baseline_bytes: int | None = None
    samples: int = 0
    errors: int = 0

    def start(self, system: GpuSystem) -> None:
        for gpu in self._selected(system):
            self.baseline_used[gpu.index] = gpu.memory_used_bytes
            self.baseline_pids.update(p.pid for p in gpu.processes)

    def add(self, system: GpuSystem) -> None:
        self.samples += 1
        used = 0
        over = 0
        process_total: int | None = None
        for gpu in self._selected(system):
            used += gpu.memory_used_bytes
            over += max(0, gpu.memory_used_bytes - self.baseline_used.get(gpu.index, 0))
            for proc in gpu.processes:
                if proc.pid in self.baseline_pids or proc.used_memory_bytes is None:
                    continue
                process_total = (process_total or 0) + proc.used_memory_bytes
        self.peak_gpu_used_bytes = max(self.peak_gpu_used_bytes or 0, used)
        self.peak_over_baseline_bytes = max(self.peak_over_baseline_bytes or 0, over)
        if process_total is not None:
            self.peak_process_bytes = max(self.peak_process_bytes or 0, process_total)

    def _selected(self, system: GpuSystem) -> list[Any]:
        return [g for g in system.gpus if not self.gpus or g.index in self.gpus]

    @property
    def peak_bytes(self) -> int | None:
        """The job's peak: per process when NVML listed the job's processes, else per GPU."""
        if self.whole_gpu:
            return self.peak_gpu_used_bytes
        if self.peak_process_bytes is not None:
            return self.peak_process_bytes
        return self.peak_over_baseline_bytes

    @property
    def source(self) -> str:
        if self.whole_gpu:
            return "nvml-gpu-used" if self.samples else "none"
        if self.peak_process_bytes is not None:
            return "nvml-process"
        return "nvml-gpu-used-minus-baseline" if self.samples else "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "peak_gib": None if self.peak_bytes is None else round(self.peak_bytes / 2**30, 2),
            "source": self.source,
            "peak_process_bytes": self.peak_process_bytes,
            "peak_gpu_used_bytes": self.peak_gpu_used_bytes,
            "baseline_used_bytes": sum(self.baseline_used.values()) if self.baseline_used else None,
            "gpus": list(self.gpus),
            "samples": self.samples,
            "sample_interval_s": SAMPLE_INTERVAL_S,
            "errors": self.errors,
        }


class MemorySampler:
    """Calls `probe` every interval in a thread and feeds a MemoryPeak; never raises."""

    def __init__(
        self,
        probe: Callable[[], GpuSystem],
        gpus: Sequence[int],
        interval: float = SAMPLE_INTERVAL_S,
        *,
        whole_gpu: bool = False,
    ) -> None:
        self.peak = MemoryPeak(tuple(gpus), whole_gpu=whole_gpu)
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        try:
            self.peak.start(self._probe())
        except Exception:
            self.peak.errors += 1
            return self
        self._thread = threading.Thread(target=self._loop, name="hvinfra-nvml", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        try:
            self.peak.add(self._probe())
        except Exception:
            self.peak.errors += 1

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._sample()


# -- phases --------------------------------------------------------------------------------------
@dataclass
class PhaseClock:
    """Times of the denoising loop's tqdm updates, relative to the job's start."""

    total_steps: int
    started: float = field(default_factory=time.monotonic)
    step_times: dict[int, float] = field(default_factory=dict)  # step n -> first seen
    last_rate: str = ""
    ended: float | None = None

    def step(self, step: Step, now: float | None = None) -> None:
        if step.total != self.total_steps:
            return
        at = (time.monotonic() if now is None else now) - self.started
        self.step_times.setdefault(step.n, at)
        if step.rate:
            self.last_rate = step.rate

    def end(self, now: float | None = None) -> None:
        self.ended = (time.monotonic() if now is None else now) - self.started

    def seconds_per_step(self) -> float | None:
        """Median of the steady steps (the first step, which warms up, left out when there
        are others); from tqdm's own rate when only one update was seen."""
        ns = sorted(self.step_times)
        gaps = [
            (self.step_times[b] - self.step_times[a]) / (b - a)
            for a, b in itertools.pairwise(ns)
            if b > a
        ]
        steady = gaps[1:] if len(gaps) > 1 else gaps
        if steady:
            return round(statistics.median(steady), 3)
        return rate_seconds(self.last_rate)

    def as_dict(self) -> dict[str, Any]:
        ns = sorted(self.step_times)
        first = self.step_times[ns[0]] if ns else None
        done = self.step_times.get(self.total_steps)
        data: dict[str, Any] = {
            "seconds_per_step": self.seconds_per_step(),
            "tqdm_rate": self.last_rate or None,
            "load_s": None if first is None else round(first, 1),
            "steps_s": None if first is None or done is None else round(done - first, 1),
            "decode_s": None if done is None or self.ended is None else round(self.ended - done, 1),
            "steps_seen": len(ns),
        }
        return data


def rate_seconds(rate: str) -> float | None:
    """tqdm's rate as seconds per step: '1.27s/it' -> 1.27, '2.50it/s' -> 0.4."""
    text = rate.strip()
    try:
        if text.endswith("s/it"):
            return round(float(text[:-4]), 3)
        if text.endswith("it/s"):
            value = float(text[:-4])
            return round(1 / value, 3) if value > 0 else None
    except ValueError:
        return None
    return None


def summary_line(measurements: dict[str, Any]) -> str:
    """`peak 41.9 GiB (nvml-process), 1.27 s/step, load 20s / steps 6s / decode 5s`."""
    parts = []
    memory = measurements.get("gpu_memory") or {}
    if memory.get("peak_gib") is not None:
        parts.append(f"peak {memory['peak_gib']:.1f} GiB ({memory['source']})")
    phases = measurements.get("phases") or {}
    if phases.get("seconds_per_step") is not None:
        parts.append(f"{phases['seconds_per_step']:.2f} s/step")
    times = [
        f"{name} {phases[key]:.0f}s"
        for name, key in (("load", "load_s"), ("steps", "steps_s"), ("decode", "decode_s"))
        if phases.get(key) is not None
    ]
    if times:
        parts.append(" / ".join(times))
    return ", ".join(parts)


def gpu_indices(selection: str | Sequence[str] | None) -> tuple[int, ...]:
    """A GPU selection as NVML indices; () for all, none given or UUIDs (not resolved here)."""
    if selection is None or isinstance(selection, str):
        return ()
    if not all(s.isdigit() for s in selection):
        return ()
    return tuple(int(s) for s in selection)
