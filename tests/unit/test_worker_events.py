"""The in-container worker's JSON lines are container output: hvinfra keeps only fields of the
expected types, so a hostile or broken worker cannot crash the batch or smuggle values in."""

from __future__ import annotations

from hvinfra.batch.pool import worker_event


def test_a_done_event_keeps_its_fields() -> None:
    line = b'{"event": "done", "id": "j1", "paths": ["/w/a.mp4"], "load_s": 21.5, "seconds": 9}'
    assert worker_event(line) == {
        "event": "done", "id": "j1", "paths": ["/w/a.mp4"], "load_s": 21.5, "seconds": 9.0,
    }  # fmt: skip


def test_fields_of_the_wrong_type_are_dropped() -> None:
    line = b'{"event": "done", "id": 7, "paths": "/etc/passwd", "load_s": "soon", "seconds": -1}'
    assert worker_event(line) == {"event": "done"}
    mixed = b'{"event": "done", "paths": ["/w/a.mp4", 3, null], "load_s": true}'
    assert worker_event(mixed) == {"event": "done", "paths": ["/w/a.mp4"]}


def test_lines_that_are_not_json_objects_are_ignored() -> None:
    for line in (b"Loading checkpoint shards", b"5", b"[1, 2]", b'"done"', b"{broken"):
        assert worker_event(line) is None


def test_a_long_error_is_cut() -> None:
    event = worker_event(b'{"event": "failed", "id": "j", "error": "' + b"x" * 10_000 + b'"}')
    assert event is not None and len(event["error"]) == 2000
