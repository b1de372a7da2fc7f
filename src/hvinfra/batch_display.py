"""Showing a batch: one live display (lines done / failed / left, ETA from the measured seconds
per video) with each worker's step bar under it on a terminal; plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from hvinfra.batch.manifest import Entry
from hvinfra.batch.plan import BatchPlan, Item, Slot
from hvinfra.generate.plan import JobPlan
from hvinfra.generate.progress import Step
from hvinfra.output import Output


class _SlotObserver:
    """A worker's current job, shown as its step bar (or plain lines)."""

    def __init__(self, display: BatchDisplay, slot: Slot, item: Item) -> None:
        self.display, self.slot, self.item = display, slot, item
        self._last = -1

    def started(self, plan: JobPlan, total_steps: int) -> None:
        self.display.slot_update(self.slot, self.item, 0, total_steps, "loading")

    def line(self, text: str) -> None:
        if self.display.verbose:
            self.display.note(f"[{self.slot.name}] {text}")

    def step(self, step: Step) -> None:
        if step.n == self._last:
            return
        self._last = step.n
        stage = "decoding" if step.n >= step.total else "denoising"
        self.display.slot_update(self.slot, self.item, step.n, step.total, stage)

    def note(self, text: str) -> None:
        self.display.note(f"[{self.slot.name}] {text}")

    def finished(self, ok: bool) -> None:
        pass


class BatchDisplay:
    def __init__(self, output: Output, *, verbose: bool = False, live: bool | None = None) -> None:
        self.output = output
        self.verbose = verbose
        self.live = (output.err.is_terminal and not output.json_mode) if live is None else live
        self._progress: Progress | None = None
        self._batch: TaskID | None = None
        self._slots: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._total = 0
        self._done = 0
        self._failed = 0
        self._durations: list[float] = []
        self._workers = 1
        self._started = time.monotonic()

    def _plain(self, text: str) -> None:
        if not self.output.json_mode:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def eta(self) -> str:
        left = self._total - self._done - self._failed
        if not self._durations or left <= 0:
            return "?" if left > 0 else "0s"
        per_video = sum(self._durations) / len(self._durations)
        seconds = per_video * left / self._workers
        return (
            f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
            if seconds >= 3600
            else (f"{int(seconds // 60)}m{int(seconds % 60):02d}s")
        )

    def _batch_text(self) -> str:
        left = self._total - self._done - self._failed
        return f"batch: {self._done} done, {self._failed} failed, {left} left, ETA {self.eta()}"

    # -- BatchObserver ------------------------------------------------------------------------
    def batch_started(self, plan: BatchPlan, to_run: int) -> None:
        self._total = to_run
        self._workers = max(1, len(plan.slots))
        self._started = time.monotonic()
        if not self.live:
            self._plain(
                f"batch: {to_run} line(s) to run on {self._workers} worker(s)"
                f" ({', '.join(s.name for s in plan.slots)})"
            )
            return
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.output.err,
            transient=False,
        )
        self._progress.start()
        self._batch = self._progress.add_task(self._batch_text(), total=max(to_run, 1))

    def job_started(self, slot: Slot, item: Item) -> None:
        if not self.live:
            self._plain(f"[{slot.name}] line {item.line.number}: started ({item.stem})")

    def job_observer(self, slot: Slot, item: Item) -> _SlotObserver:
        return _SlotObserver(self, slot, item)

    def slot_update(self, slot: Slot, item: Item, n: int, total: int, stage: str) -> None:
        with self._lock:
            if self._progress is None:
                if stage == "denoising" and (n == 1 or n % 10 == 0):
                    self._plain(f"[{slot.name}] line {item.line.number}: step {n}/{total}")
                return
            text = f"  {slot.name} line {item.line.number}: {stage}"
            task = self._slots.get(slot.name)
            if task is None:
                self._slots[slot.name] = self._progress.add_task(text, total=total, completed=n)
            else:
                self._progress.update(task, description=text, completed=n, total=total)

    def job_finished(self, item: Item, entry: Entry) -> None:
        with self._lock:
            if entry.state == "done":
                self._done += 1
                if entry.duration_s is not None:
                    self._durations.append(entry.duration_s)
                message = (
                    f"line {item.line.number}: done in {entry.duration_s or 0:.0f}s: {entry.video}"
                )
            elif entry.state == "failed":
                self._failed += 1
                message = f"line {item.line.number}: FAILED: {entry.error} (log: {entry.log})"
            else:
                message = f"line {item.line.number}: interrupted"
            if self._progress is not None and self._batch is not None:
                self._progress.console.print(message, markup=False, highlight=False)
                self._progress.update(
                    self._batch, completed=self._done + self._failed,
                    description=self._batch_text(),
                )  # fmt: skip
            else:
                self._plain(message + f" [{self._batch_text()}]")

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self.output.note(text)

    def batch_finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
