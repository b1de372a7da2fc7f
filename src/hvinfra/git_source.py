"""The model code: a real `git` checkout of the pinned commit in the code folder.

A second run at the pinned commit does nothing (no network); a checkout with local changes to
tracked files is never switched to another commit.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hvinfra.asset_probe import code_state, run_git
from hvinfra.errors import CodeSourceError
from hvinfra.profiles.models import CodeSource

FETCH_TIMEOUT = 1800


@dataclass(frozen=True)
class CodeResult:
    path: str
    action: str  # "cloned", "updated", "unchanged"
    commit: str
    previous: str | None = None
    dirty: tuple[str, ...] = ()


def _git(args: list[str], cwd: Path | None, what: str, timeout: float = FETCH_TIMEOUT) -> str:
    try:
        done = run_git(args, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise CodeSourceError(
            "git is not installed: hvinfra needs it to fetch the HunyuanVideo code",
            "install git (`sudo apt-get install git`, `sudo dnf install git`), then rerun",
        ) from None
    except subprocess.TimeoutExpired:
        raise CodeSourceError(
            f"{what}: git did not finish within {timeout:.0f}s",
            "check the network (or the repository URL in models.code.repo) and rerun",
        ) from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise _git_failure(what, said[-1] if said else f"exit code {done.returncode}")
    return done.stdout


def _git_failure(what: str, said: str) -> CodeSourceError:
    lowered = said.lower()
    if "could not resolve host" in lowered or "unable to access" in lowered:
        fix = (
            "check the network and proxy (git honours https_proxy), or point models.code.repo"
            " at a mirror"
        )
    elif "not our ref" in lowered or "unadvertised" in lowered or "did not match" in lowered:
        fix = "the repository has no such commit: check models.code.commit and models.code.repo"
    elif "authentication" in lowered or "terminal prompts disabled" in lowered:
        fix = "the repository needs credentials: check models.code.repo (a public URL needs none)"
    else:
        fix = "read git's message above; `--set models.code.repo=URL` selects a mirror or fork"
    return CodeSourceError(f"{what} failed\n  git said: {said}", fix)


def _fetch(dest: Path, source: CodeSource) -> None:
    what = f"fetching {source.commit[:7]} from {source.repo}"
    try:
        _git(["fetch", "--depth", "1", "--no-tags", source.repo, source.commit], dest, what)
    except CodeSourceError:
        # Servers that refuse a commit id in a fetch: take the whole history instead.
        _git(["fetch", "--no-tags", source.repo], dest, what)
    _git(["cat-file", "-e", f"{source.commit}^{{commit}}"], dest, what)


def ensure_code(dest: Path, source: CodeSource) -> CodeResult:
    """Check out `source.commit` of `source.repo` in `dest` (cloning when needed)."""
    state = code_state(dest, source.sample_script)
    if state.error and state.exists and state.is_repo:
        _git(["--version"], None, "running git")  # raises "git is not installed"
    if state.exists and not state.is_repo and not state.empty:
        raise CodeSourceError(
            f"{dest} exists and is not a git checkout: hvinfra will not write code into it",
            f"move it away (`mv {shlex.quote(str(dest))} {shlex.quote(str(dest))}.old`) or"
            " choose another folder with --code-dir",
        )
    if state.is_repo and state.head == source.commit:
        return CodeResult(str(dest), "unchanged", source.commit, source.commit, state.dirty)
    if state.is_repo and state.dirty:
        raise CodeSourceError(
            f"{dest} has local changes ({', '.join(state.dirty[:3])}) and is at"
            f" {(state.head or 'no commit')[:7]}, not the pinned {source.commit[:7]}:"
            " refusing to overwrite them",
            f"keep them with `git -C {shlex.quote(str(dest))} stash` (or commit them), then rerun;"
            " or use another --code-dir",
        )
    action = "updated" if state.is_repo else "cloned"
    if not state.is_repo:
        dest.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet"], dest, f"creating a git checkout in {dest}")
        _git(["remote", "add", "origin", source.repo], dest, "setting the remote")
    _fetch(dest, source)
    _git(
        ["checkout", "--quiet", "--detach", source.commit],
        dest,
        f"checking out {source.commit[:7]}",
    )
    head = _git(["rev-parse", "HEAD"], dest, "reading the checked-out commit").strip()
    if head != source.commit:
        raise CodeSourceError(
            f"after checkout {dest} is at {head[:7]}, not {source.commit[:7]}",
            f"inspect it with `git -C {shlex.quote(str(dest))} status`",
        )
    if not (dest / source.sample_script).is_file():
        raise CodeSourceError(
            f"commit {source.commit[:7]} of {source.repo} has no {source.sample_script}",
            "models.code.repo and models.code.commit must name a HunyuanVideo checkout",
        )
    return CodeResult(str(dest), action, source.commit, state.head, ())
