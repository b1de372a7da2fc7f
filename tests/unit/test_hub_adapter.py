"""hvinfra.hub at the huggingface_hub call boundary: the arguments it passes (never a token),
HF_ENDPOINT, and how the library's errors become messages with a fix."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import errors as hf_errors

from hvinfra.errors import ExitCode, HubError, PreflightFailed
from hvinfra.hub import HfHub

SECRET = "hf_secretTOKENvalue123"


class Calls:
    def __init__(self) -> None:
        self.model_info: list[dict[str, Any]] = []
        self.snapshot: list[dict[str, Any]] = []
        self.raise_on_snapshot: BaseException | None = None


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    record = Calls()

    class FakeApi:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        def model_info(self, repo_id: str, **kwargs: Any) -> Any:
            record.model_info.append({"repo_id": repo_id, "api": self.kwargs, **kwargs})
            siblings = [SimpleNamespace(rfilename="a/b.pt", size=7),
                        SimpleNamespace(rfilename="README.md", size=None)]  # fmt: skip
            return SimpleNamespace(sha="0123abcd" * 5, siblings=siblings)

    def fake_snapshot(repo_id: str, **kwargs: Any) -> str:
        record.snapshot.append({"repo_id": repo_id, **kwargs})
        if record.raise_on_snapshot is not None:
            raise record.raise_on_snapshot
        return str(kwargs.get("local_dir"))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return record


def test_listing_asks_for_file_sizes_at_the_revision(calls: Calls) -> None:
    listing = HfHub().listing("tencent/HunyuanVideo", "main")
    assert calls.model_info == [{
        "repo_id": "tencent/HunyuanVideo", "api": {"endpoint": "https://huggingface.co"},
        "revision": "main", "files_metadata": True,
    }]  # fmt: skip
    assert listing.sha == "0123abcd" * 5
    assert [(f.path, f.size) for f in listing.files] == [("a/b.pt", 7), ("README.md", 0)]


def test_download_passes_the_plan_and_no_token(calls: Calls, tmp_path: Path) -> None:
    HfHub().download("openai/clip-vit-large-patch14", "sha1", tmp_path / "te2", ["*.json"])
    (call,) = calls.snapshot
    assert call == {
        "repo_id": "openai/clip-vit-large-patch14", "revision": "sha1",
        "local_dir": str(tmp_path / "te2"), "allow_patterns": ["*.json"], "max_workers": 8,
        "endpoint": "https://huggingface.co",
    }  # fmt: skip
    assert "token" not in call
    assert SECRET not in repr(call)


def test_hf_endpoint_selects_a_mirror(calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com/")
    hub = HfHub()
    hub.listing("x/y", "main")
    hub.download("x/y", "s", Path("/tmp/none"), ["*"])
    assert hub.endpoint == "https://hf-mirror.com"
    assert calls.model_info[0]["api"] == {"endpoint": "https://hf-mirror.com"}
    assert calls.snapshot[0]["endpoint"] == "https://hf-mirror.com"


def _response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/x"))


def test_gated_repo_without_token_says_how_to_log_in(
    calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    calls.raise_on_snapshot = hf_errors.GatedRepoError("gated", response=_response(401))
    with pytest.raises(HubError) as raised:
        HfHub().download("meta/gated", "s", Path("/tmp/none"), ["*"])
    assert raised.value.exit_code == ExitCode.HUB
    assert raised.value.message == (
        "downloading meta/gated: meta/gated is a gated repository and the hub refused access (401)"
    )
    assert "accept the model's terms at https://huggingface.co/meta/gated" in raised.value.fix
    assert "hf auth login" in raised.value.fix and "HF_TOKEN" in raised.value.fix


@pytest.mark.parametrize(
    "error",
    [
        hf_errors.LocalEntryNotFoundError("cannot connect"),  # 0.x wraps it
        httpx2.ConnectError("[Errno 111] Connection refused"),  # 1.x/2.x let it through
    ],
)
def test_unreachable_hub_suggests_a_mirror(calls: Calls, error: Exception) -> None:
    calls.raise_on_snapshot = error
    with pytest.raises(HubError) as raised:
        HfHub().download("x/y", "s", Path("/tmp/none"), ["*"])
    assert "cannot reach the hub at https://huggingface.co" in raised.value.message
    assert f"({type(error).__name__})" in raised.value.message
    assert "HF_ENDPOINT=https://hf-mirror.com" in raised.value.fix


def test_network_error_deep_in_the_chain_counts_as_unreachable(calls: Calls) -> None:
    try:
        try:
            raise httpx2.ConnectError("connection refused")
        except httpx2.ConnectError as inner:
            raise OSError("request failed") from inner
    except OSError as outer:
        calls.raise_on_snapshot = outer
    with pytest.raises(HubError, match="cannot reach the hub"):
        HfHub().download("x/y", "s", Path("/tmp/none"), ["*"])


def test_disk_full_mid_download_is_a_clear_error(calls: Calls) -> None:
    calls.raise_on_snapshot = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PreflightFailed) as raised:
        HfHub().download("x/y", "s", Path("/tmp/none"), ["*"])
    assert raised.value.message == "downloading x/y: the disk is full"
    assert "rerunning keeps the files already downloaded" in raised.value.fix


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(HubError) as raised:
        HfHub()
    assert raised.value.message == "the Python package huggingface_hub is not installed"
    assert "pip install 'hvinfra[models]'" in raised.value.fix


def test_a_forbidden_token_on_a_gated_repo_names_the_account(calls: Calls) -> None:
    calls.raise_on_snapshot = hf_errors.GatedRepoError("gated", response=_response(403))
    with pytest.raises(HubError) as raised:
        HfHub().download("meta/gated", "s", Path("/tmp/none"), ["*"])
    assert "refused access (403)" in raised.value.message
    assert "with the account of your token" in raised.value.fix


def test_an_unwritable_folder_is_about_the_folder_not_the_hub(calls: Calls) -> None:
    calls.raise_on_snapshot = PermissionError(errno.EACCES, "Permission denied", "/w/a.pt")
    with pytest.raises(PreflightFailed) as raised:
        HfHub().download("x/y", "s", Path("/tmp/none"), ["*"])
    assert raised.value.message == "downloading x/y: cannot write to /w/a.pt: Permission denied"
    assert "hub" not in raised.value.fix
