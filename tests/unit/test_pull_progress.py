"""Pull events -> layer state -> what the user sees, from sequences recorded off dockerd 20.10
pulling from a local docker-registry (tests/unit/data/*.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hvinfra.errors import ExitCode, ImageError, Interrupted
from hvinfra.output import Output
from hvinfra.pull_display import PlainRenderer, PullDisplay, final_line, interruption_note
from hvinfra.pull_progress import Phase, fold, initial, rate, reduce, summary

DATA = Path(__file__).parent / "data"
REF = "127.0.0.1:5055/hv/multi:1"


def recorded(name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((DATA / name).read_text())
    return events


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Notes(Output):
    """An Output whose stderr lines are kept for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_a_fresh_pull_ends_with_every_layer_done_and_the_digest() -> None:
    state = fold(REF, recorded("pull_fresh.json"))
    assert [layer.phase for layer in state.layers] == [Phase.DONE] * 5
    assert state.digest == "sha256:3843ad5447fad0c1622bad9be0e11646ad8c5738e25ed2b9e44f8359e1e5741e"
    assert state.outcome.startswith("Downloaded newer image")
    sizes = 1069030 + 1000524 + 2000852 + 8002672 + 8002671
    assert state.total_bytes == state.fetched_bytes == sizes


def test_layer_sizes_are_unknown_until_the_engine_or_the_manifest_tells_them() -> None:
    events = recorded("pull_fresh.json")
    announced = [e for e in events if e.get("status") == "Pulling fs layer"]
    assert fold(REF, announced).total_bytes is None
    sizes = {e["id"]: 1000 for e in announced}
    state = initial(REF, sizes)
    for event in announced:
        state = reduce(state, event)
    assert state.total_bytes == 5000


def test_a_cut_connection_shows_retries_and_keeps_the_finished_layers_apart() -> None:
    events = recorded("pull_registry_cut.json")
    state = fold(REF, [e for e in events if "error" not in e])
    phases = {layer.id: layer.phase for layer in state.layers}
    assert sorted(phases.values()).count(Phase.DONE) == 2
    retrying = [layer for layer in state.layers if layer.phase is Phase.RETRYING]
    assert len(retrying) == 3
    assert all(layer.downloaded == 0 and "Retrying in" in layer.note for layer in retrying)


def test_layers_already_present_are_not_counted_as_fetched() -> None:
    events: list[dict[str, Any]] = [
        {"status": "Pulling from hv/multi", "id": "1"},
        {"status": "Already exists", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
        {"status": "Downloading", "progressDetail": {"current": 50, "total": 200},
         "id": "bbbbbbbbbbbb"},
    ]  # fmt: skip
    state = fold(REF, events)
    assert [layer.id for layer in state.existing] == ["aaaaaaaaaaaa"]
    assert state.total_bytes == 200 and state.fetched_bytes == 50
    assert "1 already present" in summary(state)


def test_eta_comes_from_bytes_left_over_the_speed_so_far() -> None:
    events = [
        {"status": "Downloading", "progressDetail": {"current": 300, "total": 1000}, "id": "a"},
    ]
    state = fold(REF, events)
    speed = rate(state, start_bytes=0, elapsed=3.0)
    assert speed.bytes_per_second == 100
    assert speed.eta_seconds == pytest.approx(7.0)
    assert "ETA 7s" in summary(state, speed)


def test_plain_output_prints_each_finished_layer_once_and_a_summary_per_interval() -> None:
    clock, lines = Clock(), list[str]()
    renderer = PlainRenderer(lines.append, interval=5.0, clock=clock)
    state = initial(REF)
    for index, event in enumerate(recorded("pull_fresh.json")):
        clock.now = index * 0.5  # 43 events over ~21 s
        state = reduce(state, event)
        renderer.update(state)
    done = [line for line in lines if line.endswith("MB)") and ": done" in line]
    assert len(done) == 5 and len(set(done)) == 5
    summaries = [line for line in lines if line.startswith(f"  {REF}: ")]
    assert 3 <= len(summaries) <= 5
    assert "layers" in summaries[-1]


def _stream(events: list[dict[str, Any]], then: BaseException | None = None) -> Iterator[Any]:
    yield from events
    if then is not None:
        raise then


def test_ctrl_c_closes_the_stream_and_says_what_the_engine_keeps() -> None:
    events = recorded("pull_fresh.json")[:30]
    stream = _stream(events, KeyboardInterrupt())
    output = Notes()
    display = PullDisplay(output, REF, layers_kept=False, live=False, clock=Clock())
    with pytest.raises(Interrupted) as caught:
        display(stream)
    assert caught.value.exit_code == ExitCode.INTERRUPTED
    assert "discards the layers" in caught.value.message
    assert "run the same command again" in caught.value.fix
    with pytest.raises(StopIteration):
        next(stream)  # closed


def test_interruption_note_on_an_engine_that_keeps_layers() -> None:
    state = fold(REF, recorded("pull_fresh.json")[:30])
    done = sum(1 for layer in state.layers if layer.phase is Phase.DONE)
    note = interruption_note(state, layers_kept=True)
    assert note.startswith(f"{done} of 5 layers were complete and are kept")


def test_a_registry_failure_mid_pull_reports_progress_then_the_error() -> None:
    events = [e for e in recorded("pull_registry_cut.json") if "error" not in e]
    output = Notes()
    display = PullDisplay(output, REF, layers_kept=False, live=False, clock=Clock())
    with pytest.raises(ImageError):
        display(_stream(events, ImageError("registry gone", "rerun")))
    assert any(line.startswith("pull stopped: 2 of 5 layers") for line in output.lines)


def test_up_to_date_pull_says_so() -> None:
    state = fold(
        REF,
        [
            {"status": "Pulling from hv/multi", "id": "1"},
            {"status": "Digest: sha256:" + "c" * 64},
            {"status": f"Status: Image is up to date for {REF}"},
        ],
    )
    assert final_line(state, 0.1) == f"{REF} is up to date (sha256:{'c' * 64})"
    assert not state.to_fetch
