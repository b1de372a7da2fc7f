"""Showing an image build: the engine's build stream (`stream` text, `status` lines of base-image
pulls, `aux` with the image ID) as plain lines on stderr, each step marked with its number."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from hvinfra.output import Output

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
# The classic builder's bookkeeping between steps: layer ids and intermediate containers.
_NOISE = re.compile(r"^\s*(---> |Removing intermediate container |Successfully built )")


class BuildDisplay:
    def __init__(self, output: Output) -> None:
        self.output = output
        self.image_id = ""
        self.steps: list[str] = []

    def _line(self, text: str) -> None:
        self.output.err.print(text, markup=False, highlight=False, emoji=False)

    def __call__(self, events: Iterator[dict[str, Any]]) -> None:
        pending = ""
        for event in events:
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                self.image_id = str(aux["ID"])
            text = event.get("stream")
            if isinstance(text, str):
                pending += text
                *lines, pending = pending.split("\n")
                for line in lines:
                    self._show(line)
            elif event.get("status"):
                layer = f"{event['id']}: " if event.get("id") else ""
                if "Downloading" not in str(event["status"]):
                    self._line(f"  {layer}{event['status']}")
        if pending:
            self._show(pending)

    def _show(self, line: str) -> None:
        if not line.strip() or _NOISE.match(line):
            return
        match = _STEP.match(line)
        if match:
            self.steps.append(match.group(3))
            self._line(f"[{match.group(1)}/{match.group(2)}] {match.group(3)}")
        else:
            self._line(f"  {line}")
