"""Fixtures for `hvinfra models pull` against the real `huggingface_hub` client and a local hub
server (tests/hubserver.py, a test fixture on 127.0.0.1). Helpers to run the CLI: hub_cli.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from hub_cli import TOKEN  # noqa: E402

from hubserver import HubRepo, HubServer, standard_repos  # noqa: E402


@pytest.fixture
def repos() -> list[HubRepo]:
    return standard_repos()


@pytest.fixture
def hub(repos: list[HubRepo]) -> Iterator[HubServer]:
    with HubServer(repos, token=TOKEN) as server:
        yield server
