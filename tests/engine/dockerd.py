"""Start and stop a private Docker engine for the engine tests.

Plain functions and classes, no pytest dependency, so the same code can be
used from a REPL or a script::

    from tests.engine.dockerd import PrivateDockerd, build_standin_image

    with PrivateDockerd.in_tempdir(gpu_hook=True) as engine:
        tag = build_standin_image(engine.host)
        ...  # DOCKER_HOST=engine.host

Every daemon lives under one short root directory (a unix socket path must
fit in 108 bytes)::

    ROOT/docker.sock      the API socket          (engine.host = unix://ROOT/docker.sock)
    ROOT/data             --data-root             (images, containers, containerd root)
    ROOT/exec             --exec-root             (containerd socket/state, netns, ...)
    ROOT/dockerd.pid      --pidfile
    ROOT/daemon.json      --config-file (empty: the host's /etc/docker is never read)
    ROOT/dockerd.log      stdout+stderr of dockerd and its containerd
    ROOT/bin/             first on dockerd's PATH; holds the stand-in GPU hook
    ROOT/hook-calls.log   one line per call of the stand-in hook

dockerd 20.10 starts its own containerd with its state under the exec-root and
its root under the data-root, so several private daemons can run at once (and
beside a system daemon, which is never touched).

GPU stand-in: dockerd registers its built-in NVIDIA device driver (used for
``--gpus`` / ``DeviceRequest(capabilities=[["gpu"]])``) only when an executable
named ``nvidia-container-runtime-hook`` is on *its* PATH at start-up; at
container start it adds that executable as an OCI prestart hook and sets
``NVIDIA_VISIBLE_DEVICES`` / ``NVIDIA_DRIVER_CAPABILITIES`` in the container's
environment. The stand-in hook reads the OCI state from stdin, records the call
and exits 0, so GPU containers start on a machine without GPUs. Without the
hook the engine answers ``could not select device driver "" with capabilities:
[[gpu]]``.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

__all__ = [
    "DEFAULT_STANDIN_TAG",
    "KEEP_LABEL",
    "MANAGED_LABEL",
    "SESSION_ID",
    "TEST_SESSION_LABEL",
    "DockerdError",
    "PrivateDockerd",
    "build_standin_image",
    "docker_cli",
    "docker_cli_env",
    "find_busybox",
    "find_dockerd",
    "image_exists",
    "ping",
    "remove_stale_roots",
    "standin_rootfs_tar",
]

DEFAULT_STANDIN_TAG: Final = "hvinfra-test/hunyuanvideo-standin:latest"
STANDIN_LABEL: Final = "io.hvinfra.test-fixture"

# Labels the engine tests' clean-up goes by (tests/engine/conftest.py).
# Kept here, not in conftest.py, so tests can import them without importing a
# conftest module (pytest may load several modules named "conftest").
TEST_SESSION_LABEL: Final = "io.hvinfra.test-session"
MANAGED_LABEL: Final = "io.hvinfra.managed"  # set by the product on its containers
KEEP_LABEL: Final = "io.hvinfra.test-keep"  # "true": survives the per-test clean-up
SESSION_ID: Final = uuid.uuid4().hex  # one per test process
NVIDIA_HOOK_NAME: Final = "nvidia-container-runtime-hook"
# sizeof(sockaddr_un.sun_path) on Linux, including the terminating NUL.
_UNIX_PATH_MAX: Final = 108
_SBIN_DIRS: Final = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class DockerdError(RuntimeError):
    """A private dockerd could not be started, or a docker CLI call failed."""


# --------------------------------------------------------------------------- #
# Locating binaries
# --------------------------------------------------------------------------- #


def in_ci() -> bool:
    """CI=true: tests that cannot get what they need fail instead of skipping."""
    return os.environ.get("CI", "").strip().lower() == "true"


def _search_path() -> str:
    """PATH plus the sbin directories (dockerd lives in /usr/sbin on Debian)."""
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for extra in _SBIN_DIRS:
        if extra not in parts:
            parts.append(extra)
    return os.pathsep.join(parts)


def find_dockerd() -> str | None:
    """Path of the dockerd binary, or None when the engine is not installed."""
    return shutil.which("dockerd", path=_search_path())


def docker_cli() -> str:
    """Path of the docker CLI to drive the engine with.

    Prefers Debian's ``/usr/bin/docker`` (same release as the daemon from
    docker.io); otherwise whatever ``docker`` is on PATH. Newer clients (e.g. a
    28.x one in /usr/local/bin) negotiate the API version down to the
    daemon's 1.41 by themselves.
    """
    debian = Path("/usr/bin/docker")
    if debian.is_file() and os.access(debian, os.X_OK):
        return str(debian)
    found = shutil.which("docker")
    if found is None:
        raise DockerdError("no docker CLI found (install docker.io: scripts/install-test-deps.sh)")
    return found


def docker_cli_env(docker_host: str) -> dict[str, str]:
    """Environment for running the docker CLI against ``docker_host``.

    Drops variables that would point the CLI elsewhere (context, TLS).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"}
    }
    env["DOCKER_HOST"] = docker_host
    return env


def find_busybox() -> Path:
    """A statically linked busybox binary (Debian's busybox-static: /bin/busybox)."""
    candidates = [Path("/bin/busybox"), Path("/usr/bin/busybox")]
    which = shutil.which("busybox")
    if which:
        candidates.append(Path(which))
    for candidate in candidates:
        if candidate.is_file() and _is_static_elf(candidate):
            return candidate.resolve()
    raise DockerdError(
        "no statically linked busybox found (install busybox-static: scripts/install-test-deps.sh)"
    )


def _is_static_elf(path: Path) -> bool:
    """True for a 64-bit little-endian ELF without a PT_INTERP program header."""
    with path.open("rb") as fh:
        header = fh.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    pt_interp = 3
    for i in range(phnum):
        p_type = int.from_bytes(table[i * phentsize : i * phentsize + 4], "little")
        if p_type == pt_interp:
            return False
    return True


# --------------------------------------------------------------------------- #
# Talking to the API socket without docker-py
# --------------------------------------------------------------------------- #


def _socket_path(docker_host: str) -> str:
    if not docker_host.startswith("unix://"):
        raise ValueError(f"not a unix:// docker host: {docker_host!r}")
    return docker_host[len("unix://") :]


def ping(docker_host: str, timeout: float = 2.0) -> bool:
    """True when the engine at ``docker_host`` answers ``GET /_ping`` with 200 OK.

    unix:// hosts are probed with a raw HTTP request; tcp:// hosts with a TCP
    connect plus the same request. Anything else (ssh://, ...) is reported
    unreachable, since the harness only drives local engines.
    """
    try:
        if docker_host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(_socket_path(docker_host))
        elif docker_host.startswith("tcp://"):
            hostport = docker_host[len("tcp://") :].rstrip("/")
            host, _, port = hostport.rpartition(":")
            sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)
        else:
            return False
    except (OSError, ValueError):
        return False
    with sock:
        try:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            return False
    status_line = data.split(b"\r\n", 1)[0]
    return status_line.startswith(b"HTTP/") and b" 200 " in status_line + b" "


def image_exists(docker_host: str, tag: str) -> bool:
    """True when ``tag`` exists in the engine's image store."""
    result = subprocess.run(
        [docker_cli(), "image", "inspect", "--format", "{{.Id}}", tag],
        env=docker_cli_env(docker_host),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


# --------------------------------------------------------------------------- #
# The private daemon
# --------------------------------------------------------------------------- #

_HOOK_SCRIPT: Final = """#!/bin/sh
# Stand-in for NVIDIA's {name}, written by tests/engine/dockerd.py.
# runc passes the OCI state on stdin; a real hook would mount the driver.
# This one records the call and lets the container start.
cat >/dev/null
echo "$*" >> '{calls}'
exit 0
"""


def _set_pdeathsig() -> None:
    """In the child before exec: get SIGTERM when the parent (pytest) dies.

    So a pytest killed with SIGKILL does not leave the daemon behind.
    """
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _reaper_prefix() -> list[str]:
    """``tini -s --`` when available (docker.io depends on tini).

    containerd's shims detach from containerd; when they exit, whoever
    adopted them must reap them. Under ``tini -s`` (a child subreaper) that is
    tini, not a PID 1 that may reap late, so no ``[containerd-shim] <defunct>``
    lingers after a test. tini forwards SIGTERM to dockerd and exits with its
    status.
    """
    for name in ("tini", "docker-init"):
        found = shutil.which(name, path=_search_path())
        if found:
            return [found, "-s", "--"]
    return []


class PrivateDockerd:
    """A dockerd of our own, under ``root``, with its own containerd.

    ``gpu_hook=True`` puts a stand-in ``nvidia-container-runtime-hook`` first on
    the daemon's PATH so GPU device requests start; ``False`` gives an engine
    with no GPU support at all (as on a host without NVIDIA's toolkit).
    """

    def __init__(
        self,
        root: Path,
        gpu_hook: bool = True,
        *,
        remove_root: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.root = Path(root).absolute()
        self.gpu_hook = gpu_hook
        self.remove_root = remove_root
        self.extra_args = extra_args
        self.host: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log_fh: IO[bytes] | None = None
        if len(str(self.socket_path).encode()) >= _UNIX_PATH_MAX:
            raise DockerdError(
                f"socket path {self.socket_path} is too long for a unix socket "
                f"(max {_UNIX_PATH_MAX - 1} bytes); use a shorter root such as /tmp/hvd-XXXX"
            )

    @classmethod
    def in_tempdir(cls, gpu_hook: bool = True, *, prefix: str = "hvd-") -> PrivateDockerd:
        """A daemon under a fresh ``/tmp/hvd-XXXXXXXX`` removed again by ``stop()``."""
        root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        return cls(root, gpu_hook=gpu_hook, remove_root=True)

    # -- paths -------------------------------------------------------------- #

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def pid_file(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def config_file(self) -> Path:
        return self.root / "daemon.json"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def hook_calls_path(self) -> Path:
        return self.root / "hook-calls.log"

    # -- lifecycle ---------------------------------------------------------- #

    def command(self, dockerd: str) -> list[str]:
        return [
            dockerd,
            "--host",
            f"unix://{self.socket_path}",
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.pid_file),
            "--config-file",
            str(self.config_file),
            # No host networking changes: no iptables rules, no docker0 bridge
            # (two daemons would fight over it), no ip_forward sysctl.
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--bridge=none",
            *self.extra_args,
        ]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(var, None)
        dirs = _search_path().split(os.pathsep)
        if self.gpu_hook:
            dirs.insert(0, str(self.bin_dir))
        else:
            # No hook may be reachable: a directory holding a real one (a GPU
            # host's /usr/bin) is replaced by a shadow of links to its other
            # entries, so containerd, runc, docker-init... are still found.
            dirs = [self._shadow_without_hook(Path(d), i) for i, d in enumerate(dirs)]
        env["PATH"] = os.pathsep.join(dirs)
        return env

    def _shadow_without_hook(self, directory: Path, index: int) -> str:
        if not (directory / NVIDIA_HOOK_NAME).exists():
            return str(directory)
        shadow = self.root / f"path{index}"
        shadow.mkdir(parents=True, exist_ok=True)
        for entry in directory.iterdir():
            if entry.name != NVIDIA_HOOK_NAME and not (shadow / entry.name).exists():
                (shadow / entry.name).symlink_to(entry)
        return str(shadow)

    def _write_hook(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        hook = self.bin_dir / NVIDIA_HOOK_NAME
        if self.gpu_hook:
            hook.write_text(_HOOK_SCRIPT.format(name=NVIDIA_HOOK_NAME, calls=self.hook_calls_path))
            hook.chmod(0o755)
        elif hook.exists():
            hook.unlink()

    def start(self, timeout: float = 60.0) -> str:
        """Start dockerd and wait until ``GET /_ping`` answers; returns ``self.host``.

        Raises DockerdError (with the tail of the daemon's log) if dockerd is
        missing, exits early, or does not answer within ``timeout`` seconds.
        """
        if self.process is not None:
            raise DockerdError(f"dockerd under {self.root} is already started")
        dockerd = find_dockerd()
        if dockerd is None:
            raise DockerdError(
                "dockerd not found on PATH or in /usr/sbin "
                "(install docker.io: scripts/install-test-deps.sh)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        self._write_hook()
        self.config_file.write_text(json.dumps({}) + "\n")
        self._log_fh = self.log_path.open("ab")
        host = f"unix://{self.socket_path}"
        started = time.monotonic()
        try:
            self.process = subprocess.Popen(
                [*_reaper_prefix(), *self.command(dockerd)],
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self.root,
                # Own process group: a Ctrl-C aimed at pytest does not kill the
                # daemon behind the fixtures' backs; stop() does it in order.
                start_new_session=True,
                preexec_fn=_set_pdeathsig,  # only prctl(2): safe in the forked child
            )
        except OSError as exc:
            self._close_log()
            raise DockerdError(f"cannot run {dockerd}: {exc}") from exc

        deadline = started + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                self._kill_leftovers()
                self._close_log()
                raise DockerdError(
                    f"dockerd under {self.root} exited with status {code} during start-up\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            if self.socket_path.exists() and ping(host, timeout=1.0):
                break
            if time.monotonic() > deadline:
                remove_root, self.remove_root = self.remove_root, False
                try:
                    self.stop()
                finally:
                    self.remove_root = remove_root
                tail = self.log_tail()  # read before the root goes
                if remove_root:
                    self._remove_root()
                raise DockerdError(
                    f"dockerd under {self.root} did not answer on {host} within {timeout:.0f}s\n"
                    f"--- {self.log_path} (tail) ---\n{tail}"
                )
            time.sleep(0.1)
        self.host = host
        self.startup_seconds = time.monotonic() - started
        return host

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM dockerd (it stops its containers and its containerd), then
        SIGKILL after ``timeout``; then ends any containerd/shim of this root
        that outlived it. Removes the root when ``remove_root``."""
        process = self.process
        self.process = None
        self.host = None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=10)
        if process is not None:
            self._kill_leftovers()
        self._close_log()
        if self.remove_root:
            self._remove_root()

    def _leftover_pids(self) -> list[int]:
        """Processes (containerd, shims) whose command line names this root."""
        marker = str(self.root).encode() + b"/"
        me = os.getpid()
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                pids.append(int(entry.name))
        return pids

    def _kill_leftovers(self, grace: float = 5.0) -> None:
        pids = self._leftover_pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while pids and time.monotonic() < deadline:
                time.sleep(0.1)
                pids = [p for p in pids if p in self._leftover_pids()]

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def _mounts_under_root(self) -> list[str]:
        prefix = str(self.root) + "/"
        mounts: list[str] = []
        with contextlib.suppress(OSError), open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4:
                    point = fields[4].replace("\\040", " ")
                    if point.startswith(prefix):
                        mounts.append(point)
        return mounts

    def _remove_root(self) -> None:
        """Delete the root, never across a mount point (a leftover overlay or
        bind mount would make rmtree delete files that are not ours)."""
        if not self.root.exists():
            return
        for point in sorted(self._mounts_under_root(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        if self._mounts_under_root():
            return  # leave it rather than delete through a mount
        shutil.rmtree(self.root, ignore_errors=True)

    # -- diagnostics -------------------------------------------------------- #

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        # The grpc reconnect chatter says nothing useful; keep the rest.
        kept = [line for line in text.splitlines() if "module=grpc" not in line]
        return "\n".join(kept[-lines:]) or "(log is empty)"

    def hook_calls(self) -> list[str]:
        """Argument lines of every call of the stand-in GPU hook so far."""
        try:
            return self.hook_calls_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    # -- context manager ---------------------------------------------------- #

    def __enter__(self) -> PrivateDockerd:
        if self.process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"PrivateDockerd(root={str(self.root)!r}, gpu_hook={self.gpu_hook}, {state})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_roots(
    parent: Path = Path("/tmp"), prefix: str = "hvd-", min_age: float = 300.0
) -> list[Path]:
    """Delete roots of private daemons left by killed test runs.

    Only ``parent/prefix*`` directories holding a ``dockerd.log`` untouched for
    ``min_age`` seconds (so a daemon another session is just starting is safe)
    whose daemon is gone (pidfile absent or dead, no process naming the root,
    no mount under it) are removed. Returns the removed paths.
    """
    removed: list[Path] = []
    now = time.time()
    for root in sorted(parent.glob(f"{prefix}*")):
        log = root / "dockerd.log"
        if not root.is_dir() or root.is_symlink() or not log.exists():
            continue
        with contextlib.suppress(OSError):
            if now - log.stat().st_mtime < min_age:
                continue
        pid_text = ""
        with contextlib.suppress(OSError):
            pid_text = (root / "dockerd.pid").read_text().strip()
        if pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        probe = PrivateDockerd(root)
        if probe._leftover_pids() or probe._mounts_under_root():
            continue
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


# --------------------------------------------------------------------------- #
# The stand-in image
# --------------------------------------------------------------------------- #


def _busybox_applets(busybox: Path) -> list[str]:
    """Install paths of all applets (``bin/sh``, ``usr/bin/env``, ...)."""
    result = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode == 0 and result.stdout.strip():
        return [line.strip().lstrip("/") for line in result.stdout.splitlines() if line.strip()]
    result = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=30
    )
    return [f"bin/{line.strip()}" for line in result.stdout.splitlines() if line.strip()]


def standin_rootfs_tar(busybox: Path | None = None) -> bytes:
    """A tar of the stand-in rootfs: static busybox plus its applet symlinks,
    /bin/sh, /tmp (1777), /workspace, minimal /etc/passwd and /etc/group."""
    busybox = busybox or find_busybox()
    buf = io.BytesIO()
    mtime = 0

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.mtime = mtime
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = mtime
        tar.addfile(info, io.BytesIO(data))

    applets = _busybox_applets(busybox)
    dirs = {
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys",
        "dev", "var", "run", "workspace",
    }  # fmt: skip
    for applet in applets:
        parent = os.path.dirname(applet)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(dirs):
            add_dir(tar, name, 0o700 if name == "root" else 0o755)
        add_dir(tar, "tmp", 0o1777)
        add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
        for applet in sorted(set(applets) | {"bin/sh"}):
            if applet == "bin/busybox":
                continue
            info = tarfile.TarInfo(applet)
            info.type = tarfile.SYMTYPE
            info.linkname = "/bin/busybox"
            info.mode = 0o777
            info.mtime = mtime
            tar.addfile(info)
        add_file(
            tar,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        add_file(
            tar,
            "etc/hvinfra-standin",
            b"hvinfra test fixture: NOT HunyuanVideo. See tests/fixtures/standin/README.md\n",
        )
    return buf.getvalue()


def build_standin_image(docker_host: str, tag: str = DEFAULT_STANDIN_TAG) -> str:
    """Make the stand-in image on ``docker_host`` with ``docker import``.

    Does nothing when ``tag`` already exists there. Returns ``tag``.
    """
    if image_exists(docker_host, tag):
        return tag
    rootfs = standin_rootfs_tar()
    cmd = [
        docker_cli(),
        "import",
        "--change",
        'CMD ["/bin/sh"]',
        "--change",
        "WORKDIR /workspace",
        "--change",
        f"LABEL {STANDIN_LABEL}=hunyuanvideo-standin",
        "--message",
        "hvinfra test fixture (busybox), see tests/fixtures/standin/README.md",
        "-",
        tag,
    ]
    result = subprocess.run(
        cmd,
        input=rootfs,
        env=docker_cli_env(docker_host),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise DockerdError(
            f"docker import of {tag} on {docker_host} failed (exit {result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return tag


def build_image_from_files(client: Any, files: dict[str, tuple[bytes, int]], tag: str) -> str:
    """Build `tag` from in-memory files (name -> (content, mode)), a Dockerfile among them."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    return tag


def build_fixture_image(client: Any, folder: Path, names: tuple[str, ...], tag: str) -> str:
    """Build `tag` from the files `names` of a fixture folder (modes kept); returns the tag."""
    files = {n: ((folder / n).read_bytes(), (folder / n).stat().st_mode & 0o7777) for n in names}
    return build_image_from_files(client, files, tag)
