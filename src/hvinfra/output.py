"""Consoles, tables, JSON and the error renderer: chosen once at the CLI edge.

Data goes to stdout, progress and messages to stderr, so `--json` output stays parseable.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hvinfra.errors import HvinfraError


@dataclass
class Output:
    json_mode: bool = False
    out: Console = field(default_factory=lambda: Console(soft_wrap=True, highlight=False))
    err: Console = field(
        default_factory=lambda: Console(stderr=True, soft_wrap=True, highlight=False)
    )

    def data(self, payload: Any) -> None:
        """Machine-readable result: JSON on stdout."""
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def info(self, message: str) -> None:
        if not self.json_mode:
            self.err.print(message)

    def note(self, message: str) -> None:
        """Always shown (also with --json), on stderr."""
        self.err.print(message)

    def warn(self, message: str) -> None:
        self.err.print(Text("warning: ", style="yellow") + Text(message))

    def table(self, table: Table) -> None:
        self.out.print(table)

    def line(self, text: str) -> None:
        """A plain line on stdout, no markup (a command line to copy, say)."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _cause_of(error: BaseException) -> BaseException | None:
    """The chained cause, honouring `raise … from None`."""
    if error.__cause__ is not None or error.__suppress_context__:
        return error.__cause__
    return error.__context__


def render_error(error: HvinfraError, *, debug: bool = False) -> None:
    """One red `error:` line (plus detail lines) and a `fix:` line, on stderr. Engine messages
    contain brackets (`[[gpu]]`), so the text is never read as rich markup."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(Text("error: ", style="bold red") + Text(error.message))
    if error.fix:
        console.print(Text("fix: ", style="bold") + Text(error.fix))
    if debug:
        cause = _cause_of(error)
        depth = 0
        while cause is not None and depth < 5:
            console.print(Text(f"caused by: {type(cause).__name__}: {cause}", style="dim"))
            cause = _cause_of(cause)
            depth += 1
