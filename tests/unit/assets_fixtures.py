"""Builders for model-asset trees and code checkouts, shared by the models tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hvinfra.assets import is_glob
from hvinfra.profiles import Profile, load_profile

SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull,
}  # fmt: skip


def write_required(root: Path, entry: str) -> list[Path]:
    """Create one required entry (a glob becomes one matching file); index files get shards."""
    if is_glob(entry):
        entry = entry.replace("*", "example", 1)
    path = root / entry
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.endswith(".index.json"):
        weight_map = {f"layer.{i}": SHARDS[i % 2] for i in range(4)}
        path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        shards = [path.parent / shard for shard in SHARDS]
        for shard in shards:
            shard.write_bytes(b"\0" * 2048)
        return [path, *shards]
    path.write_bytes(b"x" * 1024)
    return [path]


def build_weights(
    root: Path,
    profile: Profile,
    *,
    skip: tuple[str, ...] = (),
    fp8: bool = True,
    preprocessed: bool = True,
) -> None:
    """Every piece's files as `models check` expects them (minus the pieces in `skip`)."""
    assert profile.models is not None
    for name, piece in profile.models.weights.items():
        if name in skip or (piece.optional == "fp8" and not fp8):
            continue
        for entry in piece.required:
            write_required(root, entry)
        if piece.preprocess is not None and preprocessed:
            for entry in piece.preprocess.required:
                write_required(root, entry)


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return done.stdout.strip()


def make_upstream(path: Path, script: str = "sample_video.py") -> tuple[str, str]:
    """A local 'official repo' with two commits; returns (first, second) commit ids."""
    path.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    (path / script).write_text("print('v1')\n")
    (path / "ckpts").mkdir()
    (path / "ckpts" / "README.md").write_text("weights go here\n")
    git("add", "-A", cwd=path)
    git("commit", "--quiet", "-m", "first", cwd=path)
    first = git("rev-parse", "HEAD", cwd=path)
    (path / script).write_text("print('v2')\n")
    git("commit", "--quiet", "-am", "second", cwd=path)
    second = git("rev-parse", "HEAD", cwd=path)
    return first, second


def clone_at(upstream: Path, dest: Path, commit: str) -> None:
    git("clone", "--quiet", str(upstream), str(dest), cwd=upstream.parent)
    git("checkout", "--quiet", "--detach", commit, cwd=dest)


def profile_for(name: str, code: Path, weights: Path, sets: tuple[str, ...] = ()) -> Profile:
    env = {"HOME": str(weights.parent)}
    return load_profile(
        name,
        env=env,
        sets=[f"volumes.code.host={code}", f"volumes.weights.host={weights}", *sets],
    ).profile


def ready_assets(workload: str, code: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A complete code checkout and weights tree for the packaged profile, with the pinned commit
    pointed (through the HVINFRA_* environment layer) at the local checkout's; returns it."""
    script = "sample_video.py" if workload == "t2v" else "sample_image2video.py"
    upstream = code.parent / f"{code.name}-upstream"
    _, commit = make_upstream(upstream, script)
    clone_at(upstream, code, commit)
    monkeypatch.setenv("HVINFRA_MODELS__CODE__COMMIT", commit)
    monkeypatch.setenv("HVINFRA_MODELS__CODE__REPO", str(upstream))
    build_weights(weights, profile_for(workload, code, weights))
    return commit
