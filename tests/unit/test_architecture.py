"""Layering rules of shared/architecture.md, checked on the source: one module talks to docker,
one to NVML, the core never touches the terminal, and nothing imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "hvinfra"
CORE = ("launcher", "spec", "argv", "profiles", "checks", "records", "errors", "requirements",
        "assets", "model_pull", "preprocess", "git_source", "asset_probe", "gpu_access",
        "pull_progress", "images", "generate.plan", "generate.request", "generate.tables",
        "generate.progress", "generate.run", "convergence", "labels",
        "render", "render.compose", "render.k8s", "render.slurm", "render.jobs",
        "batch.lines", "batch.manifest", "batch.plan", "batch.pool", "batch.runner",
        "worker.hvinfra_worker")  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules() -> dict[str, set[str]]:
    return {
        str(path.relative_to(SRC).with_suffix("")).replace("/", "."): _imports(path)
        for path in SRC.rglob("*.py")
    }


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("package", "allowed"),
    [("docker", {"engine"}), ("pynvml", {"gpu"}), ("huggingface_hub", {"hub"})],
)
def test_only_the_adapter_imports_its_library(package: str, allowed: set[str]) -> None:
    users = {mod for mod, names in _modules().items() if package in {_top(n) for n in names}}
    assert users <= allowed, f"{package} imported outside its adapter: {sorted(users - allowed)}"


def test_core_modules_stay_free_of_io_libraries_and_the_cli() -> None:
    banned = {"docker", "pynvml", "rich", "typer", "click"}
    for mod, names in _modules().items():
        if mod in CORE or mod.split(".")[0] in CORE:
            leaked = {_top(n) for n in names} & banned
            assert not leaked, f"{mod} imports {sorted(leaked)}"


def test_nothing_imports_the_cli() -> None:
    for mod, names in _modules().items():
        if not mod.startswith("cli") and mod != "__main__":
            assert not any(n == "hvinfra.cli" or n.startswith("hvinfra.cli.") for n in names), mod
