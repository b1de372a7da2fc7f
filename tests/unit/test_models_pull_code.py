"""The code pull: a real `git` against a real local repository with two commits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from assets_fixtures import clone_at, git, make_upstream

from hvinfra.cli import main
from hvinfra.errors import CodeSourceError, ExitCode
from hvinfra.git_source import ensure_code
from hvinfra.profiles.models import CodeSource


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "upstream"
    first, second = make_upstream(path)
    return path, first, second


def _source(repo: tuple[Path, str, str], commit: str | None = None) -> CodeSource:
    return CodeSource(repo=str(repo[0]), commit=commit or repo[1], sample_script="sample_video.py")


def test_clone_lands_the_pinned_commit_not_the_branch_tip(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    dest = tmp_path / "code"
    result = ensure_code(dest, _source(repo))
    assert result.action == "cloned"
    assert git("rev-parse", "HEAD", cwd=dest) == repo[1]
    assert (dest / "sample_video.py").read_text() == "print('v1')\n"
    assert git("remote", "get-url", "origin", cwd=dest) == str(repo[0])


def test_second_run_is_a_no_op_without_touching_the_remote(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    dest = tmp_path / "code"
    ensure_code(dest, _source(repo))
    shutil.rmtree(repo[0])  # the remote is gone: a no-op must not need it
    again = ensure_code(dest, _source(repo))
    assert again.action == "unchanged"
    assert git("rev-parse", "HEAD", cwd=dest) == repo[1]


def test_checkout_at_another_commit_is_moved_to_the_pinned_one(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    dest = tmp_path / "code"
    clone_at(repo[0], dest, repo[2])
    result = ensure_code(dest, _source(repo))
    assert (result.action, result.previous) == ("updated", repo[2])
    assert git("rev-parse", "HEAD", cwd=dest) == repo[1]


def test_local_changes_are_refused_and_kept(tmp_path: Path, repo: tuple[Path, str, str]) -> None:
    dest = tmp_path / "code"
    clone_at(repo[0], dest, repo[2])
    (dest / "sample_video.py").write_text("print('my patch')\n")
    with pytest.raises(CodeSourceError) as raised:
        ensure_code(dest, _source(repo))
    assert "has local changes (sample_video.py)" in raised.value.message
    assert "refusing to overwrite them" in raised.value.message
    assert f"git -C {dest} stash" in raised.value.fix
    assert raised.value.exit_code == ExitCode.CODE_SOURCE
    assert (dest / "sample_video.py").read_text() == "print('my patch')\n"
    assert git("rev-parse", "HEAD", cwd=dest) == repo[2]


def test_local_changes_at_the_pinned_commit_are_left_alone(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    dest = tmp_path / "code"
    ensure_code(dest, _source(repo))
    (dest / "sample_video.py").write_text("print('tweak')\n")
    result = ensure_code(dest, _source(repo))
    assert result.action == "unchanged"
    assert result.dirty == ("sample_video.py",)
    assert (dest / "sample_video.py").read_text() == "print('tweak')\n"


def test_a_non_git_folder_with_files_is_refused(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    dest = tmp_path / "code"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(CodeSourceError, match="is not a git checkout"):
        ensure_code(dest, _source(repo))
    assert (dest / "keep.txt").read_text() == "mine"


def test_an_unknown_commit_is_a_clear_error(tmp_path: Path, repo: tuple[Path, str, str]) -> None:
    with pytest.raises(CodeSourceError) as raised:
        ensure_code(tmp_path / "code", _source(repo, "0" * 40))
    assert "fetching 0000000 from" in raised.value.message
    assert "git said:" in raised.value.message


def test_git_missing_is_a_clear_error(
    tmp_path: Path, repo: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(CodeSourceError) as raised:
        ensure_code(tmp_path / "code", _source(repo))
    assert raised.value.message.startswith("git is not installed")
    assert "apt-get install git" in raised.value.fix


def test_cli_pull_only_code_checks_out_the_pinned_commit(
    tmp_path: Path, repo: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "code"
    argv = [
        "models", "pull", "t2v", "--only", "code", "--code-dir", str(dest), "--json",
        "--set", f"models.code.repo={repo[0]}", "--set", f"models.code.commit={repo[1]}",
    ]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["code"] == "cloned"
    assert git("rev-parse", "HEAD", cwd=dest) == repo[1]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["code"] == "unchanged"


def test_cli_pull_refuses_dirty_checkout_with_exit_code_20(
    tmp_path: Path, repo: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "code"
    clone_at(repo[0], dest, repo[2])
    (dest / "sample_video.py").write_text("print('mine')\n")
    code = main([
        "models", "pull", "t2v", "--only", "code", "--code-dir", str(dest),
        "--set", f"models.code.repo={repo[0]}", "--set", f"models.code.commit={repo[1]}",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == ExitCode.CODE_SOURCE
    assert "error:" in err and "local changes" in err and "fix:" in err
    assert "Traceback" not in err


def test_a_code_folder_holding_only_empty_mount_points_is_checked_out_over(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    dest = tmp_path / "code"
    (dest / "ckpts" / "nested").mkdir(parents=True)  # what `up` leaves before `models pull`
    result = ensure_code(dest, _source(repo))
    assert result.action == "cloned"
    assert git("rev-parse", "HEAD", cwd=dest) == repo[1]
    assert (dest / "ckpts" / "README.md").is_file()


def test_a_file_below_an_empty_looking_tree_still_counts_as_content(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    dest = tmp_path / "code"
    (dest / "ckpts" / "nested").mkdir(parents=True)
    (dest / "ckpts" / "nested" / "mine.txt").write_text("keep me\n")
    with pytest.raises(CodeSourceError, match="is not a git checkout"):
        ensure_code(dest, _source(repo))
    assert (dest / "ckpts" / "nested" / "mine.txt").read_text() == "keep me\n"
