"""Facts about this host that pre-flight needs and neither Docker's API nor NVML gives: free disk
under a path, the local dockerd's process (its memlock limit and capabilities), whether the
NVIDIA hook is installed. Plain reads of /proc and the filesystem; no policy here."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SOCKET = "/var/run/docker.sock"
HOOK = "nvidia-container-runtime-hook"
HOOK_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin")
CAP_SYS_RESOURCE = 24
UNLIMITED = -1


@dataclass(frozen=True)
class DiskFree:
    path: str  # the path asked about
    measured_at: str  # the nearest existing folder, where statvfs ran
    free_bytes: int


@dataclass(frozen=True)
class DaemonProcess:
    pid: int
    memlock_soft: int  # bytes, -1 unlimited
    memlock_hard: int
    cap_sys_resource: bool


def disk_free(path: str) -> DiskFree | None:
    """Free bytes (for unprivileged users) on the filesystem that holds `path` or would."""
    current = Path(path).expanduser()
    while True:
        with contextlib.suppress(OSError):
            if current.exists():
                stats = os.statvfs(current)
                return DiskFree(path, str(current), stats.f_bavail * stats.f_frsize)
        if current.parent == current:
            return None
        current = current.parent


def folder_has_files(path: str) -> bool:
    folder = Path(path).expanduser()
    with contextlib.suppress(OSError):
        return folder.is_dir() and any(folder.iterdir())
    return False


def local_socket(docker_host: str | None) -> str | None:
    """The unix socket path of a local daemon, or None when DOCKER_HOST points elsewhere."""
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://") :]
    return None


def _socket_peer_pid(path: str) -> int | None:
    with contextlib.suppress(OSError, AttributeError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(path)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid: int = struct.unpack("3i", creds)[0]
        return pid
    return None


def _comm(pid: int, proc: Path) -> str:
    with contextlib.suppress(OSError):
        return (proc / str(pid) / "comm").read_text().strip()
    return ""


def daemon_pid(socket_path: str, proc: Path = Path("/proc")) -> int | None:
    """The pid of the dockerd serving `socket_path`: the socket's peer (SO_PEERCRED), or, when
    systemd holds the socket (socket activation), the one dockerd process running."""
    pid = _socket_peer_pid(socket_path)
    if pid and _comm(pid, proc) == "dockerd":
        return pid
    with contextlib.suppress(OSError):
        found = [
            int(entry.name)
            for entry in proc.iterdir()
            if entry.name.isdigit() and _comm(int(entry.name), proc) == "dockerd"
        ]
        if len(found) == 1:
            return found[0]
    return None


def parse_limits(text: str, row: str = "Max locked memory") -> tuple[int, int] | None:
    """(soft, hard) in the row's unit from a /proc/<pid>/limits text; -1 = unlimited."""
    for line in text.splitlines():
        if line.startswith(row):
            fields = line[len(row) :].split()
            if len(fields) >= 2:

                def value(text: str) -> int:
                    return UNLIMITED if text == "unlimited" else int(text)

                return value(fields[0]), value(fields[1])
    return None


def has_capability(status_text: str, cap: int) -> bool:
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def daemon_process(pid: int, proc: Path = Path("/proc")) -> DaemonProcess | None:
    try:
        limits = parse_limits((proc / str(pid) / "limits").read_text())
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    if limits is None:
        return None
    return DaemonProcess(pid, limits[0], limits[1], has_capability(status, CAP_SYS_RESOURCE))


def process_path(pid: int, proc: Path = Path("/proc")) -> list[str]:
    """The PATH folders of a process, when its environ is readable (same user or root)."""
    with contextlib.suppress(OSError):
        for item in (proc / str(pid) / "environ").read_bytes().split(b"\0"):
            if item.startswith(b"PATH="):
                return [d for d in item[5:].decode(errors="replace").split(":") if d]
    return []


def find_hook(daemon_pid: int | None = None) -> str | None:
    """Where nvidia-container-runtime-hook is: on dockerd's own PATH when we may read it (that
    is where dockerd looks), else on ours or in the usual folders."""
    if daemon_pid is not None:
        for folder in process_path(daemon_pid):
            candidate = Path(folder) / HOOK
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which(HOOK)
    if found:
        return found
    for folder in HOOK_DIRS:
        candidate = Path(folder) / HOOK
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None
