"""The hub client's partial files as `models pull` sees them: the progress counts each byte
once when pieces share a folder, per-process partials (clients >= 1.18) are told apart from
resumable ones, and stale ones of a killed run are found. The real client's behaviour is
tested end to end in tests/hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvinfra.errors import PreflightFailed
from hvinfra.hub import RemoteFile, RemoteListing
from hvinfra.model_pull import (
    Download,
    SizedDownload,
    bytes_on_disk,
    is_per_process_partial,
    pull_lock,
    run_interruptibly,
    size_download,
    stale_partials,
)

ETAG = "c869ef029671c0633316c1db7081ff3630dcd8649a80ed210365c5122c7aec3b"


def _sized(weights: Path, piece: str, files: dict[str, int]) -> SizedDownload:
    listing = RemoteListing("r/x", "main", "0" * 40,
                            tuple(RemoteFile(p, s) for p, s in files.items()))  # fmt: skip
    return size_download(Download(piece, "r/x", "main", weights, tuple(files)), listing)


def test_pieces_sharing_a_folder_count_its_partials_once(tmp_path: Path) -> None:
    partial_dir = tmp_path / ".cache/huggingface/download/m"
    partial_dir.mkdir(parents=True)
    (partial_dir / f"a1b2.{ETAG}.0badc0de.incomplete").write_bytes(b"x" * 600)
    sized = [
        _sized(tmp_path, "model", {"m/model.pt": 1000}),
        _sized(tmp_path, "vae", {"v/vae.pt": 100}),
        _sized(tmp_path, "lora", {"l/lora.safetensors": 100}),
    ]
    assert bytes_on_disk(sized) == 600


def test_progress_never_passes_the_total(tmp_path: Path) -> None:
    old = tmp_path / ".huggingface/download/m"  # 0.23/0.24 keep partials here
    old.mkdir(parents=True)
    (old / f"model.pt.{ETAG}.incomplete").write_bytes(b"x" * 5000)
    assert bytes_on_disk([_sized(tmp_path, "model", {"m/model.pt": 1000})]) == 1000


@pytest.mark.parametrize(
    ("name", "per_process"),
    [
        (f"a1b2c3d4e5.{ETAG}.0badc0de.incomplete", True),  # >= 1.18
        (f"mp_rank_00_model_states.pt.{ETAG}.incomplete", False),  # 0.x, resumable
        ("config.json.0123456789abcdef0123456789abcdef01234567.incomplete", False),
    ],
)
def test_per_process_partials_are_told_apart(name: str, per_process: bool) -> None:
    assert is_per_process_partial(Path(name)) is per_process


def test_stale_partials_are_the_per_process_ones(tmp_path: Path) -> None:
    folder = tmp_path / ".cache/huggingface/download"
    folder.mkdir(parents=True)
    stale = folder / f"aa.{ETAG}.12345678.incomplete"
    resumable = folder / f"cc.pt.{ETAG}.incomplete"
    for path in (stale, resumable):
        path.write_bytes(b"x")
    assert stale_partials([tmp_path, tmp_path]) == [stale]


def test_one_pull_at_a_time_per_weights_folder(tmp_path: Path) -> None:
    with pull_lock(tmp_path), pytest.raises(PreflightFailed) as raised, pull_lock(tmp_path):
        pass
    assert raised.value.message == f"another `hvinfra models pull` is downloading into {tmp_path}"
    with pull_lock(tmp_path):  # released again
        pass


def test_the_worker_thread_hands_its_error_to_the_caller() -> None:
    def fail() -> None:
        raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        run_interruptibly(fail)
