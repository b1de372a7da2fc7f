"""A real image registry for the pull tests: Debian's `docker-registry` (distribution 2.8) on
127.0.0.1, plus a throttling TCP proxy in front of it so a pull of a few tens of MB takes long
enough to be interrupted. No pytest dependency.

Plain HTTP is fine: dockerd treats 127.0.0.0/8 as an insecure registry by default.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["LocalRegistry", "ThrottledProxy", "find_registry_binary", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_registry_binary() -> str | None:
    return shutil.which("docker-registry") or shutil.which("registry")


_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}"""

_AUTH = """auth:
  htpasswd:
    realm: hvinfra-test
    path: {htpasswd}
"""


class LocalRegistry:
    """One `docker-registry serve` process with its storage in a temp folder.

    `stop()` kills the process but keeps the storage, so `start()` serves the same images
    again (the "registry went away and came back" case).
    """

    def __init__(
        self, *, user: str | None = None, password: str | None = None, auth_config: str = ""
    ) -> None:
        binary = find_registry_binary()
        if binary is None:
            raise RuntimeError(
                "no docker-registry binary (install it: scripts/install-test-deps.sh)"
            )
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="hvreg-"))
        self.port = free_port()
        self.user, self.password = user, password
        auth = auth_config  # an `auth:` section of the registry's config (token auth)
        if user is not None and password is not None:
            htpasswd = self.root / "htpasswd"
            hashed = subprocess.run(
                ["htpasswd", "-Bbn", user, password],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.strip()
            htpasswd.write_text(hashed + "\n")
            auth = _AUTH.format(htpasswd=htpasswd)
        self.config = self.root / "config.yml"
        self.config.write_text(
            _CONFIG.format(storage=self.root / "storage", port=self.port, auth=auth)
        )
        self.log = self.root / "registry.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LocalRegistry:
        if self.process is not None and self.process.poll() is None:
            return self
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "serve", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited at start:\n{self.log_tail()}")
            if self.answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.address}:\n{self.log_tail()}")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ThrottledProxy:
    """127.0.0.1:<port> -> target, at most `rate` bytes/s downstream over all connections.

    `cut()` closes every open connection (a network failure mid-pull) and refuses new ones
    until `resume()`.
    """

    def __init__(self, target_port: int, rate: int) -> None:
        self.target_port = target_port
        self.rate = rate
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._accepting = True
        self._closed = False
        self._budget_time = time.monotonic()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _take(self, amount: int) -> None:
        """Shared token bucket: sleep so the total rate stays at or below `rate`."""
        with self._lock:
            now = time.monotonic()
            self._budget_time = max(self._budget_time, now) + amount / self.rate
            wait = self._budget_time - now
        if wait > 0:
            time.sleep(wait)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._accepting:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update({client, upstream})
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, throttle: bool) -> None:
        try:
            while True:
                data = source.recv(16384)
                if not data:
                    break
                if throttle:
                    self._take(len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._conns.discard(source)
                self._conns.discard(sink)

    def cut(self) -> None:
        self._accepting = False
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def resume(self) -> None:
        self._accepting = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
        self._thread.join(timeout=2)
