"""Showing an image pull: turns the engine's pull events into progress for the user."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hvinfra.output import Output


def pull_observer(output: Output, ref: str) -> Callable[[Iterator[dict[str, Any]]], None]:
    def observe(events: Iterator[dict[str, Any]]) -> None:
        output.info(f"pulling {ref} …")
        last: dict[str, str] = {}
        for event in events:
            layer, status = event.get("id", ""), event.get("status", "")
            if layer and last.get(layer) != status and "Downloading" not in status:
                last[layer] = status
                output.info(f"  {layer}: {status}")
        output.info(f"pulled {ref}")

    return observe
