"""The pre-flight checks as a rich table (doctor prints it on stdout, `up` on stderr)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from hvinfra.checks import CheckResult
    from hvinfra.output import Output

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def checks_table(results: list[CheckResult]) -> Table:
    table = Table("CHECK", "STATUS", "DETAIL")
    for result in results:
        detail = Text(result.detail)
        if result.fix and result.status != "pass":
            detail.append(f"\nfix: {result.fix}", style="dim")
        table.add_row(result.title, Text(result.status.upper(), style=STYLE[result.status]), detail)
    return table


def show_checks(output: Output, results: list[CheckResult], *, stderr: bool) -> None:
    table = checks_table(results)
    (output.err if stderr else output.out).print(table)
