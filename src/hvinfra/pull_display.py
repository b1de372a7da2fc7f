"""Showing an image pull: feeds the engine's pull events through the pure reducer
(pull_progress.py) and renders each new state, live (rich, one row per layer) on a terminal,
or as plain periodic lines when stderr is not one (CI, pipes)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from hvinfra.errors import HvinfraError, Interrupted
from hvinfra.output import Output
from hvinfra.pull_progress import (
    Phase,
    PullState,
    human_bytes,
    human_duration,
    initial,
    rate,
    reduce,
    summary,
)

DEFAULT_INTERVAL = 5.0  # seconds between plain progress lines
INTERVAL_ENV = "HVINFRA_PROGRESS_INTERVAL"

Clock = Callable[[], float]


class Renderer(Protocol):
    def update(self, state: PullState) -> None: ...
    def close(self, state: PullState) -> None: ...


class PlainRenderer:
    """One line per finished (or retrying) layer and a summary line every `interval` seconds."""

    def __init__(self, write: Callable[[str], None], interval: float, clock: Clock) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._start_bytes = 0
        self._shown: dict[str, Phase] = {}

    def update(self, state: PullState) -> None:
        for layer in state.layers:
            noteworthy = layer.finished or layer.phase is Phase.RETRYING
            if noteworthy and self._shown.get(layer.id) is not layer.phase:
                if layer.phase is Phase.RETRYING and self._shown.get(layer.id) is Phase.RETRYING:
                    continue
                self._shown[layer.id] = layer.phase
                size = f" ({human_bytes(layer.size)})" if layer.size else ""
                text = {
                    Phase.DONE: f"done{size}",
                    Phase.EXISTS: "already present",
                    Phase.RETRYING: layer.note.lower() or "retrying",
                }[layer.phase]
                self._write(f"  {layer.id}: {text}")
        now = self._clock()
        if state.layers and now - self._last_line >= self._interval:
            self._last_line = now
            speed = rate(state, self._start_bytes, now - self._started)
            self._write(f"  {state.ref}: {summary(state, speed)}")

    def close(self, state: PullState) -> None:
        return None


class LiveRenderer:
    """A rich Progress: an overall row (bytes, speed, ETA) and one row per layer."""

    def __init__(self, output: Output, ref: str) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.fields[label]:<14}"),
            TextColumn("{task.fields[phase]:<16}"),
            BarColumn(bar_width=30),
            DownloadColumn(binary_units=False),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=output.err,
            transient=False,
            refresh_per_second=8,
        )
        self._overall = self._progress.add_task(
            "overall", label=ref.rsplit("/", 1)[-1][:14], phase="starting", total=None
        )
        self._tasks: dict[str, Any] = {}
        self._progress.start()

    def update(self, state: PullState) -> None:
        for layer in state.layers:
            task = self._tasks.get(layer.id)
            if task is None:
                task = self._progress.add_task(layer.id, label=layer.id, phase="", total=None)
                self._tasks[layer.id] = task
            phase = layer.phase.value
            if layer.phase is Phase.EXTRACTING and layer.size:
                phase = f"extracting {100 * layer.extracted // layer.size}%"
            elif layer.phase is Phase.RETRYING:
                phase = layer.note.lower().replace("retrying in ", "retry in ")
            self._progress.update(
                task, phase=phase, total=layer.size, completed=layer.fetched,
            )  # fmt: skip
        fetched = len(state.to_fetch)
        self._progress.update(
            self._overall,
            phase=f"{state.finished_count}/{len(state.layers)} layers",
            total=state.total_bytes if state.total_bytes is not None else None,
            completed=state.fetched_bytes,
            visible=fetched > 0 or not state.layers,
        )

    def close(self, state: PullState) -> None:
        self.update(state)
        self._progress.stop()


def interval_from_env(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    try:
        return max(0.0, float(env.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def interruption_note(state: PullState, layers_kept: bool | None) -> str:
    """What an interrupted pull leaves behind, said truthfully for this engine."""
    done = [layer for layer in state.to_fetch if layer.phase is Phase.DONE]
    counted = f"{len(done)} of {len(state.to_fetch)} layers were complete"
    if layers_kept is False:
        return (
            f"{counted}; this engine (classic image store) discards the layers of an"
            " interrupted pull (moby/moby#26146), so the rerun fetches them again;"
            " nothing half-made stays behind"
        )
    if layers_kept:
        return f"{counted} and are kept: the rerun fetches only the rest"
    return counted


class PullDisplay:
    """The pull observer `up` and `pull` hand to the launcher; `.state` holds the last state."""

    def __init__(
        self,
        output: Output,
        ref: str,
        *,
        expected_sizes: Mapping[str, int] | None = None,
        layers_kept: bool | None = None,
        live: bool | None = None,
        interval: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.output = output
        self.ref = ref
        self.state = initial(ref, expected_sizes)
        self.layers_kept = layers_kept
        self.live = output.err.is_terminal if live is None else live
        self.interval = interval_from_env() if interval is None else interval
        self.clock = clock
        self.seconds = 0.0

    def _renderer(self) -> Renderer:
        if self.live:
            return LiveRenderer(self.output, self.ref)
        return PlainRenderer(self.output.note, self.interval, self.clock)

    def __call__(self, events: Iterator[dict[str, Any]]) -> None:
        started = self.clock()
        self.output.note(f"pulling {self.ref}")
        renderer = self._renderer()
        try:
            for event in events:
                self.state = reduce(self.state, event)
                renderer.update(self.state)
        except KeyboardInterrupt as exc:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # closes the HTTP stream: the daemon cancels the pull
            renderer.close(self.state)
            note = interruption_note(self.state, self.layers_kept)
            raise Interrupted(
                f"pull of {self.ref} interrupted: {note}",
                "run the same command again to finish the pull",
            ) from exc
        except HvinfraError:
            renderer.close(self.state)
            if self.state.to_fetch:
                self.output.note(f"pull stopped: {interruption_note(self.state, self.layers_kept)}")
            raise
        renderer.close(self.state)
        self.seconds = self.clock() - started
        self.output.note(final_line(self.state, self.seconds))


def final_line(state: PullState, seconds: float) -> str:
    if state.outcome.startswith("Image is up to date"):
        return f"{state.ref} is up to date ({state.digest or 'no digest'})"
    fetched = len(state.to_fetch)
    existing = len(state.existing)
    parts = [f"{fetched} layer{'s' if fetched != 1 else ''} fetched"]
    if existing:
        parts.append(f"{existing} already present")
    parts.append(f"{human_bytes(state.fetched_bytes)} in {human_duration(seconds)}")
    digest = f", digest {state.digest}" if state.digest else ""
    return f"pulled {state.ref}: {', '.join(parts)}{digest}"


def pull_observer(output: Output, ref: str, **options: Any) -> PullDisplay:
    """The observer `up` passes to the launcher (kept as a function for the CLI's callers)."""
    return PullDisplay(output, ref, **options)
