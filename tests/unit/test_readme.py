"""The README tells the truth about the CLI: every command and every exit code is documented,
and its two set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from hvinfra.cli import app
from hvinfra.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_every_exit_code_is_in_the_errors_table() -> None:
    table = _section("Errors and exit codes")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert {int(code) for code in ExitCode} <= documented


def test_every_command_has_its_own_heading() -> None:
    group = typer.main.get_group(app)
    commands = _section("Commands")
    for name in group.commands:
        assert re.search(rf"^### .*hvinfra {name}\b", commands, re.MULTILINE), name


def test_ci_runs_the_readme_test_command() -> None:
    assert "bash scripts/test.sh" in _section("Quick start")
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_a_users_document_with_links_that_resolve() -> None:
    assert len(README.splitlines()) <= 500  # ~400 of its own plus short sections of each area
    assert "## Contents" in README
    assert "shared/" not in README  # nothing outside the repository
    for target in re.findall(r"\]\(((?:docs|configs)/[^)#]+)", README):
        assert (ROOT / target).exists(), target
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([\w./-]+)[)#]", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} -> {target}"
