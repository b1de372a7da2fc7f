"""batch.json: the line state machine, atomic saves, resume by request hash, --retry-failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hvinfra.batch.manifest import Entry, Manifest, ManifestError, exclusive


def entry(line: int, digest: str = "h1") -> Entry:
    return Entry(line=line, hash=digest, stem=f"{line:04d}_x", prompt="p", seed=1)


def test_states_move_pending_running_done_and_are_saved_each_time(tmp_path: Path) -> None:
    manifest = Manifest.load(tmp_path)
    manifest.prepare(entry(1))
    manifest.save()
    manifest.transition(1, "running", worker="gpu0")
    on_disk = json.loads((tmp_path / "batch.json").read_text())
    assert on_disk["lines"][0]["state"] == "running" and on_disk["lines"][0]["attempts"] == 1
    manifest.transition(1, "done", video="0001_x.mp4")
    assert json.loads((tmp_path / "batch.json").read_text())["lines"][0]["state"] == "done"
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file and a rename


def test_a_transition_the_state_machine_does_not_have_is_refused(tmp_path: Path) -> None:
    manifest = Manifest.load(tmp_path)
    manifest.prepare(entry(1))
    with pytest.raises(ValueError, match="pending -> done"):
        manifest.transition(1, "done")


def test_a_line_left_running_by_a_crash_is_pending_again(tmp_path: Path) -> None:
    manifest = Manifest.load(tmp_path)
    manifest.prepare(entry(1))
    manifest.transition(1, "running")
    reloaded = Manifest.load(tmp_path)
    assert reloaded.entries[1].state == "pending"
    assert reloaded.entries[1].error == "interrupted"


def test_resume_skips_done_lines_with_the_same_hash_and_an_existing_video(tmp_path: Path) -> None:
    manifest = Manifest.load(tmp_path)
    manifest.prepare(entry(1))
    manifest.transition(1, "running")
    manifest.transition(1, "done", video="0001_x.mp4")
    (tmp_path / "0001_x.mp4").write_bytes(b"v")
    again = Manifest.load(tmp_path)
    assert again.decide(1, "h1", tmp_path, retry_failed=False) == "done"
    assert again.decide(1, "edited", tmp_path, retry_failed=False) == "run"
    assert again.decide(2, "h1", tmp_path, retry_failed=False) == "run"
    (tmp_path / "0001_x.mp4").unlink()
    assert again.decide(1, "h1", tmp_path, retry_failed=False) == "run"


def test_failed_lines_are_skipped_unless_retry_failed(tmp_path: Path) -> None:
    manifest = Manifest.load(tmp_path)
    manifest.prepare(entry(3))
    manifest.transition(3, "running")
    manifest.transition(3, "failed", error="CUDA out of memory", log_tail=["a", "b"])
    again = Manifest.load(tmp_path)
    assert again.entries[3].log_tail == ["a", "b"]
    assert again.decide(3, "h1", tmp_path, retry_failed=False) == "failed"
    assert again.decide(3, "h1", tmp_path, retry_failed=True) == "run"
    again.prepare(entry(3))
    assert again.entries[3].attempts == 1  # the count goes on for the same request
    again.transition(3, "running")
    assert again.entries[3].attempts == 2 and again.entries[3].error == ""


def test_a_foreign_or_broken_manifest_is_refused_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "batch.json").write_text("{broken")
    with pytest.raises(ManifestError) as caught:
        Manifest.load(tmp_path)
    assert "move it away" in caught.value.fix


def test_one_batch_per_out_folder(tmp_path: Path) -> None:
    with (
        exclusive(tmp_path),
        pytest.raises(ManifestError, match="another hvinfra batch"),
        exclusive(tmp_path),
    ):
        pass
