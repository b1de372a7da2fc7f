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
        "generate.progress", "generate.run", "convergence", "labels", "gpu_selection", "context",
        "generate.options", "render", "render.compose", "render.k8s", "render.slurm",
        "render.jobs", "generate.safe_output", "generate.job_control", "exposure",
        "paths", "generate.measure", "synth", "synthetic_marker", "batch.lines", "batch.manifest",
        "batch.plan", "batch.pool", "batch.runner", "worker.hvinfra_worker", "serve.store",
        "serve.submission", "serve.service", "serve.runner")  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # a submodule?
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
    [
        ("docker", {"engine"}),
        ("pynvml", {"gpu"}),
        ("huggingface_hub", {"hub"}),
        ("fastapi", {"serve.api"}),
        ("starlette", {"serve.api"}),
        ("uvicorn", {"cli.serve_cmd"}),
    ],
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


def _hvinfra_graph() -> dict[str, set[str]]:
    """hvinfra module -> the hvinfra modules it imports anywhere (top level, in functions and
    under TYPE_CHECKING alike: a lazy import still ties the two modules together)."""
    graph = {
        "hvinfra." + name.removesuffix(".__init__"): names for name, names in _modules().items()
    }
    return {name: {n for n in names if n in graph and n != name} for name, names in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None: a depth-first search
    that keeps the current path."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                done.add(path.pop())
            elif child in path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = _cycle(_hvinfra_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
