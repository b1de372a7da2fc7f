"""The engine adapter's log stream decoding: HTTP chunked framing and the engine's multiplexed
frames, however the bytes are split across reads (the engine test compares with `docker logs`)."""

from __future__ import annotations

import pytest
import urllib3

from hvinfra.engine import dechunk, demultiplex


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def _frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_dechunk_gives_the_body_whatever_the_read_sizes() -> None:
    body = [b"line %d\n" % i for i in range(300)] + [b"x" * 5000]
    wire = _chunked(*body)
    for size in (1, 2, 7, 64, 4096, len(wire)):
        assert b"".join(dechunk(_split(wire, size))) == b"".join(body)


def test_dechunk_stops_at_the_last_chunk_and_ignores_extensions() -> None:
    wire = b"5;name=value\r\nhello\r\n0\r\n\r\nGARBAGE"
    assert b"".join(dechunk([wire])) == b"hello"


def test_a_stream_cut_before_its_last_chunk_is_an_error_not_a_quiet_end() -> None:
    wire = _chunked(b"first\n", b"second\n")[:-5]
    with pytest.raises(urllib3.exceptions.ProtocolError):
        b"".join(dechunk(_split(wire, 4)))


def test_demultiplex_joins_stdout_and_stderr_payloads_in_order() -> None:
    stream = _frame(1, b"out one\n") + _frame(2, b"err\n") + _frame(1, b"") + _frame(1, b"out 2\n")
    for size in (1, 3, 8, 9, len(stream)):
        assert b"".join(demultiplex(_split(stream, size))) == b"out one\nerr\nout 2\n"
