"""Settings for the whole suite."""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Tests press Ctrl-C on the hvinfra processes they start, as a terminal would. A test run
    started in the background by a non-interactive shell (`bash script &`, CI runners) inherits
    SIGINT ignored, and every process it starts would inherit that too: Python then installs no
    KeyboardInterrupt handler and the Ctrl-C tests test nothing. The children get SIGINT's
    default back (a Python handler here becomes the default across exec)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
