"""The host side of the batch worker's stream (docker's multiplexed frames over one socket): a
request's event can arrive before its last stderr lines, as the engine forwards stdout and
stderr apart. `run` returns only once the request's end line has reached the log."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

from hvinfra.batch.plan import Slot
from hvinfra.batch.pool import ContainerWorker, request_end_line
from hvinfra.records import ContainerInfo


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_run_waits_for_the_end_line_that_comes_after_the_event_split_in_two() -> None:
    host, container = socket.socketpair()
    info = ContainerInfo(id="c", name="c", image="i", image_id="sha256:i", status="running")
    no_engine: Any = None  # run() reads the socket only
    worker = ContainerWorker(no_engine, info, "t2v", Slot("gpu0", ("0",)), {}, "/w")
    worker._sock = host  # what start() connects, without an engine
    reader = threading.Thread(target=worker._read, daemon=True)  # as start() does
    reader.start()
    end = request_end_line("job-1")

    def the_engine() -> None:
        request = json.loads(container.makefile("r").readline())
        assert request["id"] == "job-1"
        container.sendall(frame(2, b" 33%|###  | 1/3\r"))
        done = {"event": "done", "id": "job-1", "paths": ["/o/v.mp4"]}
        container.sendall(frame(1, json.dumps(done).encode() + b"\n"))  # the event overtakes
        time.sleep(0.2)
        container.sendall(frame(2, b"100%|#####| 3/3\nSample save to: /o/v.mp4\n" + end[:12]))
        time.sleep(0.1)
        container.sendall(frame(2, end[12:]))  # the end line, split across two frames

    engine = threading.Thread(target=the_engine, daemon=True)
    engine.start()
    log = bytearray()
    event = worker.run("job-1", ["--prompt=x"], log.extend)
    assert event["event"] == "done"
    assert bytes(log).endswith(end)  # everything up to the end line, once run returned
    assert b"Sample save to: /o/v.mp4" in log
    container.close()
    reader.join(5)
    host.close()
