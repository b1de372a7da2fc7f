"""Gathers what `assets.check_assets` judges: file sizes under the weights folder and the code
folder's git state, and runs the check over them. Reads only; git runs as an argv list, never
through a shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from hvinfra.assets import (
    AssetRow,
    CodeState,
    FixContext,
    TreeSnapshot,
    check_assets,
    failed,
    host_dirs,
    is_glob,
    overall_fix,
)
from hvinfra.errors import AssetsMissing
from hvinfra.profiles.models import ModelsConfig, Profile

GIT_TIMEOUT = 60
# git must never stop to ask for a password: a private URL fails with a message instead.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "LC_ALL": "C"}


def git_env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def run_git(
    args: list[str], cwd: Path | None = None, timeout: float = GIT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise FileNotFoundError("git")
    return subprocess.run(
        [git, *args], cwd=cwd, env=git_env(), capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


def holds_no_files(path: Path) -> bool:
    """True when `path` holds nothing but (nested) empty folders, such as the `ckpts/` mount
    point that `up` makes inside the code folder: git can check out over those."""
    for root, dirs, files in os.walk(path, onerror=_raise):
        if files or any(Path(root, name).is_symlink() for name in dirs):
            return False
    return True


def _raise(error: OSError) -> None:
    raise error


def code_state(path: Path, sample_script: str) -> CodeState:
    shown = str(path)
    if not path.exists():
        return CodeState(path=shown, exists=False)
    if not path.is_dir():
        return CodeState(path=shown, exists=True, empty=False)
    try:
        empty = holds_no_files(path)
    except OSError as exc:
        return CodeState(path=shown, exists=True, error=f"cannot read {shown}: {exc.strerror}")
    script = (path / sample_script).is_file()
    if not (path / ".git").exists():
        return CodeState(path=shown, exists=True, empty=empty, script_present=script)
    try:
        head = run_git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=path)
        status = run_git(["status", "--porcelain", "--untracked-files=no"], cwd=path)
    except FileNotFoundError:
        return CodeState(
            path=shown, exists=True, empty=False, is_repo=True, script_present=script,
            error="git is not installed, so the checkout's commit cannot be read",
        )  # fmt: skip
    dirty = tuple(line[3:] for line in status.stdout.splitlines() if line.strip())
    return CodeState(
        path=shown, exists=True, empty=False, is_repo=True,
        head=head.stdout.strip() or None if head.returncode == 0 else None,
        dirty=dirty, script_present=script,
    )  # fmt: skip


def _roots(models: ModelsConfig) -> set[str]:
    """The top folders (or files) the pieces name, so unrelated files are never walked."""
    tops = set()
    for piece in models.weights.values():
        entries = list(piece.required)
        if piece.preprocess is not None:
            entries += piece.preprocess.required
        for entry in entries:
            top = entry.split("/", 1)[0]
            tops.add("" if is_glob(top) else top)
    return tops


def weights_snapshot(root: Path, models: ModelsConfig) -> TreeSnapshot:
    files: dict[str, int] = {}
    refs: dict[str, tuple[str, ...] | None] = {}
    if root.is_dir():
        for top in sorted(_roots(models)):
            start = root / top if top else root
            if start.is_file():
                files[top] = start.stat().st_size
                continue
            for folder, dirs, names in os.walk(start):
                dirs[:] = [d for d in dirs if not d.startswith(".")]  # .cache: the hub's partials
                for name in names:
                    full = Path(folder) / name
                    rel = full.relative_to(root).as_posix()
                    try:
                        files[rel] = full.stat().st_size
                    except OSError:
                        continue
                    if name.endswith(".index.json"):
                        refs[rel] = _index_refs(full)
    return TreeSnapshot(root=str(root), files=files, index_refs=refs)


def _index_refs(path: Path) -> tuple[str, ...] | None:
    """The shard files a sharded-checkpoint index names (its weight_map values)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        return None
    return tuple(sorted({str(v) for v in weight_map.values()}))


# -- entry points for other commands: gather, then judge ------------------------------------
def assets_report(profile: Profile, fix: FixContext | None = None) -> list[AssetRow]:
    """Check the profile's code and weights folders on this host (reads the disk and git).

    Returns no rows for a profile without a `models` section.
    """
    if profile.models is None:
        return []
    code_dir, weights_dir = host_dirs(profile)
    fix = fix or FixContext(profile.name)
    models = profile.models
    return check_assets(
        models,
        code_state(code_dir, models.code.sample_script),
        weights_snapshot(weights_dir, models),
        fix,
    )


def require_assets(profile: Profile, fix: FixContext | None = None) -> list[AssetRow]:
    """Raise AssetsMissing (exit code 11) when a required piece is not ready; else the rows."""
    fix = fix or FixContext(profile.name)
    rows = assets_report(profile, fix)
    bad = failed(rows)
    if bad:
        listed = ", ".join(f"{row.piece} ({row.state.value})" for row in bad)
        raise AssetsMissing(
            f"model assets for {profile.name} are not ready: {listed}"
            f"\n  `hvinfra models check {fix.target}` shows each piece",
            overall_fix(rows, fix),
        )
    return rows
