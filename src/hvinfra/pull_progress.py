"""The engine's pull events -> per-layer state. Pure: no I/O, no clock, no rich.

The engine streams JSON events such as
``{"id": "a3ed95caeb02", "status": "Downloading", "progressDetail": {"current": 1, "total": 9}}``
(one per layer and step) and a few without a layer (``"Digest: sha256:…"``,
``"Status: Downloaded newer image for …"``). `reduce` folds one event into a `PullState`; the
display (pull_display.py) only renders states, so it can be tested with recorded sequences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class Phase(str, Enum):
    WAITING = "waiting"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    DOWNLOADED = "downloaded"
    EXTRACTING = "extracting"
    DONE = "done"  # fetched and unpacked by this pull
    EXISTS = "exists"  # already present locally: kept from an earlier (maybe interrupted) pull
    RETRYING = "retrying"


FINISHED = frozenset({Phase.DONE, Phase.EXISTS})

# Engine status text (its prefix) -> phase. Order matters: the first prefix that matches wins.
_STATUS_PHASES: tuple[tuple[str, Phase], ...] = (
    ("Pulling fs layer", Phase.WAITING),
    ("Waiting", Phase.WAITING),
    ("Downloading", Phase.DOWNLOADING),
    ("Verifying Checksum", Phase.VERIFYING),
    ("Download complete", Phase.DOWNLOADED),
    ("Extracting", Phase.EXTRACTING),
    ("Pull complete", Phase.DONE),
    ("Already exists", Phase.EXISTS),
    ("Retrying in", Phase.RETRYING),
)
_DIGEST = re.compile(r"^Digest: (sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class LayerState:
    id: str  # the short (12 hex) id the engine uses: the compressed blob's digest, abbreviated
    phase: Phase = Phase.WAITING
    downloaded: int = 0  # compressed bytes fetched so far
    size: int | None = None  # compressed size, once the engine (or the manifest) tells it
    extracted: int = 0
    note: str = ""  # e.g. "Retrying in 5 seconds"

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def fetched(self) -> int:
        """Compressed bytes of this layer on disk (the whole layer once downloaded)."""
        if self.phase in {Phase.DOWNLOADED, Phase.EXTRACTING, Phase.DONE, Phase.VERIFYING}:
            return self.size if self.size is not None else self.downloaded
        return self.downloaded


@dataclass(frozen=True)
class PullState:
    ref: str
    layers: tuple[LayerState, ...] = ()
    digest: str = ""  # the manifest digest the engine reports at the end
    outcome: str = ""  # "Downloaded newer image for …" or "Image is up to date for …"
    messages: tuple[str, ...] = field(default=())  # other layer-less status lines
    expected: Mapping[str, int] = field(default_factory=dict)  # short id -> size (manifest)

    def layer(self, layer_id: str) -> LayerState | None:
        return next((layer for layer in self.layers if layer.id == layer_id), None)

    @property
    def finished_count(self) -> int:
        return sum(1 for layer in self.layers if layer.finished)

    @property
    def existing(self) -> tuple[LayerState, ...]:
        return tuple(layer for layer in self.layers if layer.phase is Phase.EXISTS)

    @property
    def to_fetch(self) -> tuple[LayerState, ...]:
        """The layers this pull downloads (not those already present)."""
        return tuple(layer for layer in self.layers if layer.phase is not Phase.EXISTS)

    @property
    def total_bytes(self) -> int | None:
        """Compressed bytes this pull downloads; None while a layer's size is still unknown."""
        sizes = [layer.size for layer in self.to_fetch]
        if any(size is None for size in sizes):
            return None
        return sum(size for size in sizes if size is not None)

    @property
    def known_bytes(self) -> int:
        return sum(layer.size or 0 for layer in self.to_fetch)

    @property
    def fetched_bytes(self) -> int:
        return sum(layer.fetched for layer in self.to_fetch)

    @property
    def complete(self) -> bool:
        return bool(self.outcome)


def initial(ref: str, expected_sizes: Mapping[str, int] | None = None) -> PullState:
    """A state before any event; `expected_sizes` (short layer id -> compressed bytes, from the
    registry's manifest) lets the overall total and ETA be right from the first event."""
    return PullState(ref=ref, expected=dict(expected_sizes or {}))


def _progress(event: Mapping[str, Any]) -> tuple[int | None, int | None]:
    detail = event.get("progressDetail") or {}
    current, total = detail.get("current"), detail.get("total")
    return (
        int(current) if isinstance(current, (int, float)) else None,
        int(total) if isinstance(total, (int, float)) and total > 0 else None,
    )


def _phase_of(status: str) -> Phase | None:
    for prefix, phase in _STATUS_PHASES:
        if status.startswith(prefix):
            return phase
    return None


def _with_layer(state: PullState, layer: LayerState) -> PullState:
    if state.layer(layer.id) is None:
        return replace(state, layers=(*state.layers, layer))
    layers = tuple(layer if old.id == layer.id else old for old in state.layers)
    return replace(state, layers=layers)


def reduce(state: PullState, event: Mapping[str, Any]) -> PullState:
    """Fold one engine pull event into the state. Unknown events leave it unchanged."""
    status = str(event.get("status") or "")
    layer_id = str(event.get("id") or "")
    phase = _phase_of(status)
    if phase is None or not layer_id:
        match = _DIGEST.match(status)
        if match:
            return replace(state, digest=match.group(1))
        if status.startswith("Status: "):
            return replace(state, outcome=status[len("Status: ") :])
        if status and not status.startswith("Pulling from"):
            return replace(state, messages=(*state.messages, status))
        return state
    layer = state.layer(layer_id) or LayerState(id=layer_id, size=state.expected.get(layer_id))
    current, total = _progress(event)
    if phase is Phase.DOWNLOADING:
        layer = replace(
            layer,
            phase=phase,
            downloaded=current if current is not None else layer.downloaded,
            size=total if total is not None else layer.size,
            note="",
        )
    elif phase is Phase.EXTRACTING:
        layer = replace(
            layer,
            phase=phase,
            extracted=current if current is not None else layer.extracted,
            size=layer.size if layer.size is not None else total,
            note="",
        )
    elif phase is Phase.RETRYING:
        # The engine starts this layer's download again from zero.
        layer = replace(layer, phase=phase, downloaded=0, note=status)
    elif phase is Phase.DONE:
        layer = replace(layer, phase=phase, extracted=layer.size or layer.extracted, note="")
    else:
        layer = replace(layer, phase=phase, note="")
    return _with_layer(state, layer)


def fold(ref: str, events: Iterable[Mapping[str, Any]]) -> PullState:
    state = initial(ref)
    for event in events:
        state = reduce(state, event)
    return state


@dataclass(frozen=True)
class Rate:
    """Download speed and time left, from two samples of fetched bytes. Pure."""

    bytes_per_second: float
    eta_seconds: float | None


def rate(state: PullState, start_bytes: int, elapsed: float) -> Rate:
    fetched = state.fetched_bytes - start_bytes
    speed = fetched / elapsed if elapsed > 0 else 0.0
    total = state.total_bytes
    if total is None or speed <= 0:
        return Rate(speed, None)
    return Rate(speed, max(0.0, (total - state.fetched_bytes) / speed))


def human_bytes(value: float) -> str:
    """Decimal units, as the engine and registries report sizes."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def human_duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def summary(state: PullState, speed: Rate | None = None) -> str:
    """One plain line: layers done, bytes, speed and ETA."""
    layers = f"{state.finished_count}/{len(state.layers)} layers"
    total = state.total_bytes
    size = human_bytes(total) if total is not None else f"≥{human_bytes(state.known_bytes)}"
    parts = [layers, f"{human_bytes(state.fetched_bytes)} of {size}"]
    if state.existing:
        parts.append(f"{len(state.existing)} already present")
    if speed is not None and speed.bytes_per_second > 0:
        parts.append(f"{human_bytes(speed.bytes_per_second)}/s")
        if speed.eta_seconds is not None:
            parts.append(f"ETA {human_duration(speed.eta_seconds)}")
    return ", ".join(parts)
