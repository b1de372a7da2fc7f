"""Showing a generation job: a rich progress bar over the denoising steps with ETA on a
terminal, plain lines otherwise. Turns the runner's observer calls into output."""

from __future__ import annotations

import sys

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hvinfra.generate.plan import JobPlan
from hvinfra.generate.progress import Step
from hvinfra.output import Output


class JobDisplay:
    def __init__(self, output: Output, *, verbose: bool = False, live: bool | None = None) -> None:
        self.output = output
        self.verbose = verbose
        self.live = (output.err.is_terminal and not output.json_mode) if live is None else live
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_step = -1
        self._total = 0

    def _plain(self, text: str) -> None:
        if not self.output.json_mode:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def started(self, plan: JobPlan, total_steps: int) -> None:
        self._total = total_steps
        where = f"{plan.xdit.nproc} GPUs" if plan.xdit.distributed else "1 GPU"
        if not self.live:
            self._plain(f"job {plan.job_id}: {plan.kind} on {where} in {plan.container}")
            return
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.output.err,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(f"loading models ({where})", total=total_steps)

    def line(self, text: str) -> None:
        if self.verbose:
            if self._progress is not None:
                self._progress.console.print(text, markup=False, highlight=False)
            else:
                self._plain(text)

    def step(self, step: Step) -> None:
        if step.n == self._last_step:
            return
        self._last_step = step.n
        done = step.n >= step.total
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=step.n,
                total=step.total,
                description="decoding and saving" if done else "denoising",
            )
            return
        remaining = f", remaining {step.remaining}" if step.remaining else ""
        self._plain(f"step {step.n}/{step.total} (elapsed {step.elapsed or '?'}{remaining})")
        if done:
            self._plain("denoising done: decoding and saving the video")

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self.output.note(text)

    def finished(self, ok: bool) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
