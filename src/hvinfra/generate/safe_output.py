"""Reading what a job left behind, and writing the job's files to --out, as untrusted input.

The container controls the outputs mount and, when --out is (inside) that mount, --out too.
So nothing it names may make hvinfra read or write another host path:

- a saved path is accepted only below the job's save folder, without `..` or empty parts;
- reading walks the host folder one component at a time with O_NOFOLLOW, and takes only a
  regular file (never a link, fifo or device);
- every host write creates a new file with O_CREAT|O_EXCL|O_NOFOLLOW (a planted name or link
  is refused, never followed or overwritten), or writes a private temp file (mkstemp) and links
  it to its final name, which fails rather than clobbers;
- a full disk (ENOSPC/EDQUOT) becomes an OutputError naming the folder and the space needed,
  after the partial file is removed.

Pure file-system code: no docker, no rich.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import posixpath
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hvinfra.errors import OutputError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
CHUNK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def free_bytes(folder: Path) -> int | None:
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def disk_full(folder: Path, needed: int | None, what: str) -> OutputError:
    """The error for ENOSPC/EDQUOT while writing `what` into `folder`."""
    free = free_bytes(folder)
    need = f"; it needs {_mib(needed)}" if needed else ""
    have = f" ({_mib(free)} free)" if free is not None else ""
    return OutputError(
        f"the output folder {folder} is full{have} while writing {what}{need}; the job was"
        " stopped and no partial file was kept",
        f"free space in {folder} (at least {_mib(needed or CHUNK)}) or choose another --out",
    )


def is_full(exc: OSError) -> bool:
    return exc.errno in FULL_ERRNOS


# -- names from the container ------------------------------------------------------------------
def relative_parts(container_path: str, save_dir: str) -> tuple[str, ...] | None:
    """The parts of `container_path` below `save_dir`, or None when it is not safely below it
    (absolute elsewhere, `..`, `.`, empty parts or NUL)."""
    if "\0" in container_path:
        return None
    prefix = save_dir.rstrip("/") + "/"
    if not container_path.startswith(prefix):
        return None
    parts = tuple(container_path[len(prefix) :].split("/"))
    if not parts or any(p in ("", ".", "..") for p in parts):
        return None
    if posixpath.normpath(container_path) != container_path:
        return None
    return parts


# -- reading the host side of the outputs mount --------------------------------------------------
def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)


def open_below(root: Path, parts: tuple[str, ...]) -> BinaryIO:
    """Open root/part/…/part for reading without following any link below `root` (which
    hvinfra itself chose); only a regular file is returned. Raises OutputError otherwise."""
    shown = "/".join(parts)
    try:
        fd = _open_dir(root)
    except OSError as exc:
        raise OutputError(
            f"cannot open the job's output folder {root}: {exc.strerror or exc}",
            "check the outputs volume in the profile",
        ) from exc
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise _refused(root, shown, exc) from None
            os.close(fd)
            fd = child
        try:
            leaf = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=fd)
        except OSError as exc:
            raise _refused(root, shown, exc) from None
    finally:
        os.close(fd)
    info = os.fstat(leaf)
    if not stat.S_ISREG(info.st_mode):
        os.close(leaf)
        raise OutputError(
            f"the job's output {root / shown} is not a regular file; refused",
            "the sample script must write a plain .mp4 file",
        )
    return os.fdopen(leaf, "rb")


def _refused(root: Path, shown: str, exc: OSError) -> OSError | OutputError:
    if isinstance(exc, FileNotFoundError):
        return exc  # not there on the host side: the caller may try the container's archive
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return OutputError(
            f"the job's output {root / shown} is (or goes through) a symbolic link; links from"
            " the container are never followed",
            "the sample script must write a plain .mp4 file into its --save-path",
        )
    return OutputError(
        f"cannot read the job's output {root / shown}: {exc.strerror or exc}",
        "read the job's log for the script's own messages",
    )


def regular_files_in(root: Path, name: str, suffix: str) -> list[str]:
    """The regular files (not links) ending in `suffix` in root/name, newest first; `name`
    itself is not followed when it is a link."""
    found: list[tuple[float, str]] = []
    try:
        top = _open_dir(root)
    except OSError:
        return []
    try:
        fd = os.open(name, _DIR_NOFOLLOW, dir_fd=top)
    except OSError:
        return []
    finally:
        os.close(top)
    try:
        for entry in os.scandir(fd):
            with contextlib.suppress(OSError):
                if entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False):
                    found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    finally:
        os.close(fd)
    return [entry for _, entry in sorted(found, reverse=True)]


# -- writing into --out --------------------------------------------------------------------------
def create_new(path: Path, mode: int = 0o644) -> int:
    """A new file at `path` opened for writing; refuse (OutputError) a name that exists,
    whatever it is (file, planted link, folder): it was not made by this job."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    except FileExistsError as exc:
        raise name_taken(path) from exc
    except OSError as exc:
        if is_full(exc):
            raise disk_full(path.parent, None, path.name) from exc
        raise OutputError(
            f"cannot create {path}: {exc.strerror or exc}", "choose another folder with --out"
        ) from exc


def name_taken(path: Path) -> OutputError:
    kind = "a symbolic link" if path.is_symlink() else "something"
    return OutputError(
        f"{path} is already taken by {kind} that this hvinfra job did not make; refused to"
        " write through or over it",
        f"remove it, or use an --out outside the container's outputs mount ({path.parent})",
    )


def open_append_own(path: Path, identity: tuple[int, int]) -> BinaryIO:
    """Reopen a file this job created (device, inode) for appending, refusing a swapped name.
    Unbuffered, so that a full disk shows at the write (see write_all), never at close."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        raise name_taken(path) from exc
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != identity or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise name_taken(path)
    return os.fdopen(fd, "ab", buffering=0)


def write_all(sink: BinaryIO, data: bytes) -> None:
    """Write all of `data` to an unbuffered file (a short write is retried, so a full disk
    raises ENOSPC here)."""
    view = memoryview(data)
    while view:
        written = sink.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def identity_of(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


@contextlib.contextmanager
def private_temp(dest: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A new private file next to `dest` (random name, O_EXCL, mode 0600); removed on the way
    out unless it was published."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    except OSError as exc:
        if is_full(exc):
            raise disk_full(dest.parent, None, dest.name) from exc
        raise OutputError(
            f"cannot write into {dest.parent}: {exc.strerror or exc}",
            "choose another folder with --out",
        ) from exc
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, temp
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def publish(temp: Path, dest: Path) -> None:
    """Give the private temp file its final name without replacing anything there."""
    os.chmod(temp, 0o644)
    try:
        os.link(temp, dest, follow_symlinks=False)
    except FileExistsError as exc:
        raise name_taken(dest) from exc
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise OutputError(
                f"cannot write {dest}: {exc.strerror or exc}", "choose another folder with --out"
            ) from exc
        if os.path.lexists(dest):  # a file system without hard links: check, then rename
            raise name_taken(dest) from exc
        os.rename(temp, dest)
        return
    temp.unlink()


def copy_stream(source: BinaryIO, dest: Path, size: int | None) -> None:
    """Copy `source` to a new file at `dest` (private temp, then published); a full disk
    removes the partial file and raises the disk_full OutputError."""
    free = free_bytes(dest.parent)
    if size is not None and free is not None and size > free:
        raise disk_full(dest.parent, size, dest.name)
    with private_temp(dest) as (sink, temp):
        try:
            while chunk := source.read(CHUNK):
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        except OSError as exc:
            if is_full(exc):
                raise disk_full(dest.parent, size, dest.name) from exc
            raise
        publish(temp, dest)


def write_new(dest: Path, data: bytes) -> None:
    """`data` at a new name `dest` (the sidecar): private temp file, then published."""
    copy_stream(io.BytesIO(data), dest, len(data))
