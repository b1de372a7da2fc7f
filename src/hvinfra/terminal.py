"""Relay a local terminal to a container socket (attach, interactive exec). No docker import."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import termios
import tty
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # TCSAFLUSH would drop keys typed before the switch
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def relay(
    sock: socket.socket,
    *,
    stdin_fd: int | None = None,
    stdout_fd: int | None = None,
    on_resize: Callable[[int, int], None] | None = None,
) -> None:
    """Copy stdin -> socket and socket -> stdout until the container side closes."""
    stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    stdout_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    previous_handler = None
    if on_resize is not None and os.isatty(stdout_fd):

        def _resized(_signum: int, _frame: object) -> None:
            size = terminal_size(stdout_fd)
            if size:
                on_resize(*size)

        previous_handler = signal.signal(signal.SIGWINCH, _resized)
        size = terminal_size(stdout_fd)
        if size:
            on_resize(*size)
    stdin_open = True
    try:
        with raw_terminal(stdin_fd):
            while True:
                watched = [sock] + ([stdin_fd] if stdin_open else [])
                try:
                    readable, _, _ = select.select(watched, [], [])
                except InterruptedError:
                    continue
                if sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    os.write(stdout_fd, data)
                if stdin_open and stdin_fd in readable:
                    chunk = os.read(stdin_fd, 4096)
                    if chunk:
                        sock.sendall(chunk)
                    else:
                        stdin_open = False
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGWINCH, previous_handler)
        with contextlib.suppress(OSError):
            sock.close()
