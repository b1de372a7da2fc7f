"""The Hugging Face hub adapter: the only module that imports `huggingface_hub`, and the one
place where its errors become HvinfraErrors with a fix.

The token is never handled here: `token=None` lets huggingface_hub read `HF_TOKEN` or the saved
login itself, so it never reaches argv, logs or our messages. `HF_ENDPOINT` (a mirror) is read
at call time and passed explicitly.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvinfra.errors import HubError, HvinfraError, PreflightFailed

DEFAULT_ENDPOINT = "https://huggingface.co"
INSTALL_FIX = (
    "install the hub client: `pip install 'hvinfra[models]'` (or `pip install huggingface_hub`)"
)
MAX_WORKERS = 8


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int


@dataclass(frozen=True)
class RemoteListing:
    repo_id: str
    revision: str
    sha: str  # the commit the revision resolved to: every file comes from this one
    files: tuple[RemoteFile, ...]


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or DEFAULT_ENDPOINT


def _module() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise HubError("the Python package huggingface_hub is not installed", INSTALL_FIX) from None
    return huggingface_hub


def _login_fix(repo_id: str, has_token: bool) -> str:
    page = f"{endpoint()}/{repo_id}"
    if has_token:
        return (
            f"accept the model's terms at {page} with the account of your token, or use a token"
            " of an account that has (HF_TOKEN or `hf auth login`)"
        )
    return (
        f"accept the model's terms at {page}, then log in: `hf auth login` (older clients:"
        " `huggingface-cli login`) or export HF_TOKEN"
    )


@contextlib.contextmanager
def translate(context: str, repo_id: str, has_token: bool) -> Iterator[None]:
    """huggingface_hub / network / disk exceptions -> HvinfraErrors, once, here.

    Every supported client version (0.x on requests, 1.x/2.x on httpx) is covered: errors are
    told apart by class name anywhere in the cause chain, not by the classes of one version.
    """
    try:
        yield
    except HvinfraError:
        raise
    except Exception as exc:
        raise _classify(exc, context, repo_id, has_token) from exc


# Class names, of every supported client version (requests/urllib3 and httpx), that mean the
# network failed: refused, unresolvable, timed out, or dropped in the middle of a file.
_NETWORK = {
    "ConnectError", "ConnectTimeout", "ConnectionError", "NewConnectionError", "MaxRetryError",
    "ProxyError", "OfflineModeIsEnabled", "NameResolutionError", "gaierror",
    "RemoteProtocolError", "ReadError", "ReadTimeout", "Timeout", "TimeoutException",
    "ChunkedEncodingError", "ProtocolError", "IncompleteRead", "NetworkError", "TransportError",
}  # fmt: skip


def _network_cause(exc: BaseException) -> str:
    """The innermost network exception's class name, for the message."""
    found = [e for e in _chain(exc) if {c.__name__ for c in type(e).__mro__} & _NETWORK]
    return type(found[-1]).__name__ if found else type(exc).__name__


def _names(exc: BaseException) -> set[str]:
    """The class names (with their bases) of every exception in the cause chain."""
    return {cls.__name__ for e in _chain(exc) for cls in type(e).__mro__}


def _status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _local_oserror(exc: BaseException) -> OSError | None:
    """A disk error (full, read-only, no permission) anywhere in the chain."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EACCES, errno.EPERM,
                                                  errno.EROFS, errno.EDQUOT):  # fmt: skip
            return e
        if "No space left on device" in str(e) or "Not enough free disk space" in str(e):
            return OSError(errno.ENOSPC, str(e))
    return None


def _classify(exc: BaseException, context: str, repo_id: str, has_token: bool) -> HvinfraError:
    names = _names(exc)
    where = endpoint()
    status = _status(exc)
    local = _local_oserror(exc)
    if local is not None and local.errno in (errno.ENOSPC, errno.EDQUOT):
        return PreflightFailed(
            f"{context}: the disk is full",
            "free space or choose a larger disk with --weights-dir; rerunning keeps the files"
            " already downloaded",
        )
    if local is not None:
        folder = local.filename or "the weights folder"
        return PreflightFailed(
            f"{context}: cannot write to {folder}: {local.strerror or local}",
            "make the weights folder writable for your user (or choose another with --weights-dir)",
        )
    if "GatedRepoError" in names or (status == 403 and "RepositoryNotFoundError" not in names):
        return HubError(
            f"{context}: {repo_id} is a gated repository and the hub refused access"
            f" ({status or 'gated'})",
            _login_fix(repo_id, has_token),
        )
    if "RepositoryNotFoundError" in names:
        state = "with your token" if has_token else "without a token"
        return HubError(
            f"{context}: {repo_id} is not on {where} or is private ({state})",
            "check models.weights.*.repo_id; for a private or gated repo log in (`hf auth login`)"
            " or export HF_TOKEN",
        )
    if "RevisionNotFoundError" in names:
        return HubError(
            f"{context}: {repo_id} has no such revision",
            "check models.weights.*.revision (a branch, tag or commit id)",
        )
    if names & _NETWORK or "LocalEntryNotFoundError" in names:
        return HubError(
            f"{context}: cannot reach the hub at {where} or the connection broke"
            f" ({_network_cause(exc)})",
            "check the network and proxy (HTTPS_PROXY); from regions where the hub is slow or"
            " blocked use a mirror: `export HF_ENDPOINT=https://hf-mirror.com`; then rerun the"
            " same command (finished files are kept)",
        )
    if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return HubError(
            f"{context}: a file is missing on the hub: {_first_line(exc)}",
            "check models.weights.*.allow_patterns and revision",
        )
    if status == 401:
        return HubError(
            f"{context}: the hub refused the token (401)",
            "renew it (`hf auth login`) or unset a stale HF_TOKEN",
        )
    if status is not None:
        return HubError(f"{context}: the hub answered {status}: {_first_line(exc)}", "rerun later")
    return HubError(
        f"{context}: {type(exc).__name__}: {_first_line(exc)}",
        "rerun the same command; `--debug` shows the cause",
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class HfHub:
    """What a model pull needs from the hub: file listings with sizes, and downloads."""

    def __init__(self) -> None:
        self._hub = _module()
        self.endpoint = endpoint()
        # `huggingface_hub.utils` is a submodule that 1.x/2.x no longer expose as an attribute
        # of the package: import it by name. hvinfra draws one display for the whole pull.
        importlib.import_module("huggingface_hub.utils").disable_progress_bars()

    def has_token(self) -> bool:
        """Whether a token is configured (HF_TOKEN or a saved login). Its value stays inside."""
        with contextlib.suppress(Exception):
            return bool(self._hub.get_token())
        return False

    def listing(self, repo_id: str, revision: str) -> RemoteListing:
        with translate(f"listing {repo_id}@{revision}", repo_id, self.has_token()):
            info = self._hub.HfApi(endpoint=self.endpoint).model_info(
                repo_id, revision=revision, files_metadata=True
            )
        files = tuple(RemoteFile(str(s.rfilename), int(s.size or 0)) for s in (info.siblings or ()))
        return RemoteListing(repo_id, revision, str(info.sha or revision), files)

    def download(
        self, repo_id: str, sha: str, local_dir: Path, allow_patterns: Sequence[str]
    ) -> None:
        """Resumable, parallel download of the matching files into local_dir."""
        with translate(f"downloading {repo_id}", repo_id, self.has_token()):
            self._hub.snapshot_download(
                repo_id,
                revision=sha,
                local_dir=str(local_dir),
                allow_patterns=list(allow_patterns),
                max_workers=MAX_WORKERS,
                endpoint=self.endpoint,
            )
