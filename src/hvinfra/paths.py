"""Host paths the user gives (flags, profile volumes), resolved without tracebacks: a symbolic
link loop becomes a clear error naming the setting. Imports nothing heavy."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from hvinfra.errors import ExitCode, HvinfraError


def loop_error(path: str | Path, what: str, exit_code: ExitCode) -> HvinfraError:
    return HvinfraError(
        f"{what} {path}: a symbolic link loop (too many levels of symbolic links)",
        f"point {what} at a real file or folder (`ls -l {path}` shows the link)",
        exit_code=exit_code,
    )


def resolved(path: Path, what: str, *, exit_code: ExitCode = ExitCode.USAGE) -> Path:
    """`path` with ~ expanded and links resolved; a link loop raises an HvinfraError."""
    try:
        result = path.expanduser().resolve()
    except RuntimeError as exc:  # Python < 3.13: "Symlink loop from …"
        raise loop_error(path, what, exit_code) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise loop_error(path, what, exit_code) from exc
        raise
    check_no_loop(result, what, exit_code=exit_code)
    return result


def check_no_loop(path: str | Path, what: str, *, exit_code: ExitCode = ExitCode.PROFILE) -> None:
    """Refuse a path that is (or goes through) a link loop; a missing path is fine here."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise loop_error(path, what, exit_code) from None
