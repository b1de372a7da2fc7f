"""Consoles, tables, JSON and the error renderer: chosen once at the CLI edge.

Data goes to stdout, progress and messages to stderr, so `--json` output stays parseable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hvinfra.errors import HvinfraError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True, highlight=False)


class Output:
    """Where a command's results and messages go. The rich consoles are made on first use, so
    a command that prints only plain lines or JSON never imports rich."""

    def __init__(
        self, json_mode: bool = False, out: Console | None = None, err: Console | None = None
    ) -> None:
        self.json_mode = json_mode
        self._out = out
        self._err = err

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console()
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err

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
        from rich.text import Text

        self.err.print(Text("warning: ", style="yellow") + Text(message))

    def table(self, table: Table) -> None:
        self.out.print(table)

    def columns(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A plain table on stdout, columns padded to their widest cell (as `docker ps`)."""
        widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
        for cells in (headers, *rows):
            text = "   ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))
            sys.stdout.write(text.rstrip() + "\n")
        sys.stdout.flush()

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
    from rich.text import Text

    console = _console(stderr=True)
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
