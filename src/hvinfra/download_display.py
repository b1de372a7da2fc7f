"""Showing a weights download: one rich progress bar (bytes, rate, ETA) for the whole pull on a
terminal, plain lines otherwise. Fed by `model_pull`, which knows nothing about rich."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hvinfra.assets import human_size


class RichDownload:
    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description:<16}"),
            BarColumn(),
            DownloadColumn(binary_units=False),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None

    def start(self, total: int, label: str) -> None:
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def update(self, done: int, label: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=done, description=label)

    def finish(self) -> None:
        self._progress.stop()


class PlainDownload:
    """A line at every 5% step or every 30 seconds, whichever comes first."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self._write, self._clock = write, clock
        self._total = 0
        self._last_step = -1
        self._last_time = 0.0

    def start(self, total: int, label: str) -> None:
        self._total = total
        self._last_time = self._clock()
        self._write(f"downloading {human_size(total)} in all")

    def update(self, done: int, label: str) -> None:
        percent = int(done * 100 / self._total) if self._total else 100
        now = self._clock()
        if percent // 5 > self._last_step or now - self._last_time >= 30:
            self._last_step = percent // 5
            self._last_time = now
            self._write(f"  {percent:3d}%  {human_size(done)} / {human_size(self._total)}  {label}")

    def finish(self) -> None:
        pass


class NoDisplay:
    def start(self, total: int, label: str) -> None:
        pass

    def update(self, done: int, label: str) -> None:
        pass

    def finish(self) -> None:
        pass
