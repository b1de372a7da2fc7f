"""The docker-py adapter: the only module that imports `docker`, and the one place where the
engine's errors become HvinfraErrors with a fix."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import docker
import docker.auth as docker_auth
import docker.errors
import requests
import urllib3
from docker.types import DeviceRequest, Ulimit

from hvinfra.errors import (
    ContainerStateError,
    DockerUnreachable,
    EngineRefused,
    ExitCode,
    GpuRuntimeError,
    HvinfraError,
    ImageError,
)
from hvinfra.fixes import MEMLOCK_FIX, TOOLKIT_FIX
from hvinfra.records import ContainerInfo, ContainerSummary, EngineInfo, ExecResult, ImageInfo

if TYPE_CHECKING:
    from hvinfra.spec import RunSpec

LOG_TIMEOUT = 60


@dataclass(frozen=True)
class Fault:
    """A known engine message, what it means, and the fix."""

    pattern: str
    error: type[HvinfraError]
    message: str
    fix: str


# Order matters: the first pattern found in the engine's message wins.
FAULTS: tuple[Fault, ...] = (
    Fault(
        r"could not select device driver .* capabilities: \[\[gpu\]\]"
        r"|nvidia-container-runtime-hook.*executable file not found"
        r"|unknown or invalid runtime name: nvidia",
        GpuRuntimeError,
        "Docker cannot give GPUs to containers: no NVIDIA Container Toolkit is registered"
        " with the daemon",
        TOOLKIT_FIX,
    ),
    Fault(
        r"error setting rlimit type 8",
        EngineRefused,
        "the Docker daemon cannot grant the profile's locked-memory limit (memlock): its own"
        " hard limit is lower (rootless, nested or sandboxed daemon)",
        MEMLOCK_FIX,
    ),
    Fault(
        r"unable to apply caps|privileged mode is incompatible with user namespaces",
        EngineRefused,
        "the Docker daemon cannot start privileged containers (rootless, userns-remap or"
        " sandboxed engine)",
        "drop --privileged (the default profiles do not need it), or use a rootful daemon",
    ),
    Fault(
        r"error setting rlimit",
        EngineRefused,
        "the Docker daemon refused one of the profile's ulimits",
        "lower the ulimit in the profile (`--set ulimits.NAME=…`) or raise the daemon's limits",
    ),
    Fault(
        r"toomanyrequests|rate limit",
        ImageError,
        "the registry refused the pull: rate limit reached",
        "wait and retry, `docker login {registry}` for a higher limit, or use a registry mirror"
        " (`registry-mirrors` in /etc/docker/daemon.json)",
    ),
    Fault(
        r"pull access denied|repository does not exist or may require",
        ImageError,
        "the registry refused the pull: the repository does not exist, or it needs a login",
        "check the image name; if it is private, `docker login {registry}` with an account"
        " that may pull it",
    ),
    Fault(
        r"no basic auth credentials|unauthorized|authentication required"
        r"|denied: requested access",
        ImageError,
        "the registry refused the pull: authentication required or access denied",
        "`docker login {registry}` (hvinfra uses the docker CLI's credentials: $DOCKER_CONFIG"
        " or ~/.docker/config.json, credential helpers included)",
    ),
    Fault(
        r"no space left on device",
        ImageError,
        "Docker's data root ran out of disk space",
        "free space (`docker system prune`, `docker image prune -a`) or move Docker's data-root"
        " (`data-root` in /etc/docker/daemon.json) to a larger disk",
    ),
    Fault(
        r"manifest unknown|manifest for .* not found|not found: manifest|name unknown"
        r"|repository name not known",
        ImageError,
        "the registry has no such image or tag",
        "check the image name and tag (`--image REPO:TAG`), or build it (`hvinfra build`)",
    ),
    Fault(
        r"server gave HTTP response to HTTPS client",
        ImageError,
        "the registry speaks plain HTTP but Docker expects HTTPS",
        "serve the registry over TLS, or list it under `insecure-registries` in"
        " /etc/docker/daemon.json and restart dockerd",
    ),
    Fault(
        r"x509: |certificate signed by unknown authority|tls: failed to verify",
        ImageError,
        "the registry's TLS certificate is not trusted by the Docker daemon",
        "put the registry's CA at /etc/docker/certs.d/{registry}/ca.crt (on the daemon's host)",
    ),
    Fault(
        r"dial tcp|connection refused|no such host|i/o timeout|TLS handshake timeout"
        r"|Client.Timeout|network is unreachable",
        ImageError,
        "the registry {registry} cannot be reached",
        "check the network, the registry address in the image name, and Docker's proxy/mirror"
        " settings (`docker info`); then rerun",
    ),
    Fault(
        r"/v2/[^\s]*\"?: (unexpected )?EOF|connection reset by peer|broken pipe"
        r"|unexpected EOF|request canceled|http2: server sent GOAWAY|server closed idle connection",
        ImageError,
        "the connection to the registry {registry} broke during the pull (the daemon had"
        " already retried)",
        "rerun the same command when the network is stable; dockerd retries each layer"
        " `max-download-attempts` times (default 5, /etc/docker/daemon.json)",
    ),
    Fault(
        r"No such image",
        ImageError,
        "the image is not present locally",
        "pull it (`hvinfra pull` or `--pull missing`), or name a local image with --image",
    ),
    Fault(
        r"Conflict\. The container name .* is already in use",
        ContainerStateError,
        "a container with that name already exists",
        "remove it (`hvinfra down PROFILE` or `docker rm -f NAME`) or choose `--name`",
    ),
)


def classify(text: str, context: str = "", registry: str = "") -> HvinfraError | None:
    """Map an engine message to an HvinfraError, or None when it is not a known fault.

    `registry` fills the `{registry}` placeholders of messages and fixes (REGISTRY if unknown).
    """
    for fault in FAULTS:
        if re.search(fault.pattern, text, re.IGNORECASE | re.DOTALL):
            prefix = f"{context}: " if context else ""
            detail = text.strip().splitlines()[0] if text.strip() else ""
            message = fault.message.replace(" {registry}", f" {registry}" if registry else "")
            fix = fault.fix.replace("{registry}", registry or "REGISTRY")
            return fault.error(f"{prefix}{message}\n  engine said: {detail}", fix)
    return None


def _daemon_url(client: Any) -> str:
    """The daemon address as the user set it: DOCKER_HOST, never docker-py's internal
    `http+docker://localhost` for unix sockets."""
    configured = os.environ.get("DOCKER_HOST")
    base = ""
    with contextlib.suppress(AttributeError):
        base = str(client.api.base_url)
    if configured or not base or base.startswith("http+docker://"):
        return configured or "unix:///var/run/docker.sock"
    return base


def _unreachable(exc: BaseException, host: str) -> HvinfraError:
    text = repr(exc)
    if "PermissionError" in text or "Permission denied" in text:
        return DockerUnreachable(
            f"no permission to use the Docker socket at {host}",
            "add your user to the docker group (`sudo usermod -aG docker $USER`, then log in"
            " again; the group is root-equivalent) or use rootless Docker",
        )
    return DockerUnreachable(
        f"cannot reach the Docker daemon at {host}: is dockerd running?",
        "start it (`sudo systemctl start docker`), or point DOCKER_HOST at the right socket"
        " (e.g. DOCKER_HOST=unix:///run/user/$UID/docker.sock for rootless Docker)",
    )


@contextlib.contextmanager
def translate(context: str, host: str = "", registry: str = "") -> Iterator[None]:
    """Turn docker-py and requests exceptions into HvinfraErrors, once, here."""
    host = host or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        yield
    except HvinfraError:
        raise
    except docker.errors.APIError as exc:
        text = str(exc.explanation or exc)
        known = classify(text, context, registry)
        if known is not None:
            raise known from exc
        if exc.status_code == 404:
            raise ContainerStateError(
                f"{context}: not found\n  engine said: {text}",
                "check the name with `hvinfra status` or `docker ps -a`",
            ) from exc
        raise HvinfraError(
            f"{context}: the Docker engine refused: {text}",
            "see the engine's message above; `--debug` shows the full request",
        ) from exc
    except (
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        docker.errors.DockerException,
    ) as exc:
        raise _unreachable(exc, host) from exc
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
        raise _unreachable(exc, host) from exc


def to_create_kwargs(spec: RunSpec) -> dict[str, Any]:
    """RunSpec -> keyword arguments of docker-py's `containers.create`. Pure."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "command": list(spec.command) if spec.command is not None else None,
        "detach": True,
        "tty": spec.tty,
        "stdin_open": spec.stdin_open,
        "init": spec.init,
        "ulimits": [Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in spec.ulimits],
        # The CLI's `-v SRC:DST[:ro]` form, so Binds read exactly as `docker run -v` writes them.
        "volumes": [f"{m.source}:{m.target}" + (":ro" if m.read_only else "") for m in spec.mounts],
        "environment": [f"{k}={v}" for k, v in spec.environment],
        "labels": spec.label_map,
        "privileged": spec.privileged,
    }
    if spec.network_mode:
        kwargs["network_mode"] = spec.network_mode
    if spec.uts_mode:
        kwargs["uts_mode"] = spec.uts_mode
    if spec.ipc_mode:
        kwargs["ipc_mode"] = spec.ipc_mode
    if spec.gpu_request is not None:
        request = spec.gpu_request
        # No DeviceIDs at all (not an empty list) when the request counts GPUs, as the CLI.
        device = DeviceRequest(
            driver=request.driver,
            count=request.count,
            capabilities=[list(group) for group in request.capabilities],
        )
        if request.device_ids:
            device["DeviceIDs"] = list(request.device_ids)
        kwargs["device_requests"] = [device]
    if spec.devices:
        kwargs["devices"] = [
            f"{d.host_path}:{d.container_path}:{d.permissions}" for d in spec.devices
        ]
    if spec.working_dir:
        kwargs["working_dir"] = spec.working_dir
    if spec.shm_size is not None:
        kwargs["shm_size"] = spec.shm_size
    kwargs["restart_policy"] = {"Name": spec.restart_policy}  # "no" spelled out, as the CLI does
    if spec.security_opt:
        kwargs["security_opt"] = list(spec.security_opt)
    if spec.cap_add:
        kwargs["cap_add"] = list(spec.cap_add)
    return kwargs


def container_info(attrs: Mapping[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    return ContainerInfo(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        image_id=str(attrs.get("Image", "")),
        status=str(state.get("Status", "unknown")),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        labels=dict(config.get("Labels") or {}),
        tty=bool(config.get("Tty")),
        stdin_open=bool(config.get("OpenStdin")),
        started_at=str(state.get("StartedAt", "")),
        created=str(attrs.get("Created", "")),
        health=str((state.get("Health") or {}).get("Status", "")),
    )


_EXITED = re.compile(r"^Exited \((-?\d+)\)")
_HEALTH = re.compile(r"\((?:health: )?(healthy|unhealthy|starting)\)")


def container_summary(row: Mapping[str, Any]) -> ContainerSummary:
    """One row of the engine's container list. Its `Status` is the line `docker ps` prints,
    made by the engine: the exit code and the health are read from it."""
    text = str(row.get("Status") or "")
    exited = _EXITED.match(text)
    health = _HEALTH.search(text)
    names = row.get("Names") or [""]
    return ContainerSummary(
        id=str(row["Id"]),
        name=str(names[0]).lstrip("/"),
        image=str(row.get("Image", "")),
        image_id=str(row.get("ImageID", "")),
        status=str(row.get("State") or "unknown"),
        exit_code=int(exited.group(1)) if exited else 0,
        health=health.group(1) if health else "",
        labels=dict(row.get("Labels") or {}),
    )


def _image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=attrs["Id"],
        tags=tuple(attrs.get("RepoTags") or ()),
        repo_digests=tuple(attrs.get("RepoDigests") or ()),
        size=int(attrs.get("Size") or 0),
        env=tuple(config.get("Env") or ()),
        labels=dict(config.get("Labels") or {}),
    )


class DockerEngine:
    """A thin, typed face of the Engine API. Policy lives in the launcher, not here."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._api = client.api
        self.host = _daemon_url(client)

    @classmethod
    def from_env(cls, timeout: int = LOG_TIMEOUT) -> DockerEngine:
        """Connect as the docker CLI would: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH."""
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        with translate("connecting to Docker", host):
            # no ping: with no version given, docker-py asks the engine's /version here, which
            # fails as a ping would when the engine cannot be reached
            client = docker.from_env(timeout=timeout)
        return cls(client)

    def _translate(self, context: str) -> contextlib.AbstractContextManager[None]:
        return translate(context, self.host)

    # -- engine -----------------------------------------------------------------------------
    def info(self) -> EngineInfo:
        with self._translate("reading Docker's info"):
            info = self._api.info()
            version = self._api.version()
        return EngineInfo(
            host=self.host,
            server_version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            runtimes=tuple(sorted((info.get("Runtimes") or {}).keys())),
            default_runtime=str(info.get("DefaultRuntime", "")),
            security_options=tuple(info.get("SecurityOptions") or ()),
            docker_root_dir=str(info.get("DockerRootDir", "")),
            os_type=str(info.get("OSType", "linux")),
            storage_driver=str(info.get("Driver", "")),
            containerd_store=_uses_containerd_store(info),
            insecure_registries=_insecure_registries(info),
            registry_mirrors=tuple((info.get("RegistryConfig") or {}).get("Mirrors") or ()),
        )

    # -- images -----------------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo | None:
        with self._translate(f"inspecting image {ref}"):
            try:
                return _image_info(self._api.inspect_image(ref))
            except docker.errors.ImageNotFound:
                return None

    def pull_events(self, ref: str) -> Iterator[dict[str, Any]]:
        """The engine's pull progress events; an in-band error becomes an ImageError.

        Credentials are the docker CLI's, as docker-py resolves them for the image's registry
        ($DOCKER_CONFIG or ~/.docker/config.json, credential helpers included); they travel in
        the X-Registry-Auth header and are never logged. Closing the generator (Ctrl-C) closes
        the HTTP stream, which makes the daemon cancel the pull.
        """
        repository, tag = _split_ref(ref)
        context = f"pulling {ref}"
        registry = registry_of(ref)
        with translate(context, self.host, registry):
            stream = self._api.pull(repository, tag=tag, stream=True, decode=True)
            try:
                for event in stream:
                    if "error" in event or "errorDetail" in event:
                        detail = event.get("errorDetail") or {}
                        text = str(event.get("error") or detail.get("message", ""))
                        raise classify(text, context, registry) or ImageError(
                            f"{context}: {text}", "see the registry's message above"
                        )
                    yield event
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

    def registry_credentials(self, ref: str) -> tuple[str, str] | None:
        """(username, password-or-token) the docker CLI would send to ref's registry, or None.

        For hvinfra's own manifest request (the layer sizes of the free-disk check). The secret
        is handed to that request only; it is never printed or stored.
        """

        registry = registry_of(ref)
        try:
            config = docker_auth.load_config(credstore_env=None)
            found = config.resolve_authconfig(registry)
        except Exception:  # an unreadable config or a failing helper: go anonymous
            return None
        if not found:
            return None
        token = found.get("IdentityToken") or found.get("identitytoken")
        user = found.get("Username") or found.get("username") or ""
        secret = token or found.get("Password") or found.get("password")
        return (str(user), str(secret)) if secret else None

    def build_events(
        self,
        context_dir: str,
        *,
        dockerfile: str,
        tag: str,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        pull: bool = False,
        no_cache: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """The engine's build stream (classic builder, as docker-py speaks it): `stream` lines,
        `aux` with the image ID, and in-band errors, which become an ImageError."""
        context = f"building {tag} from {dockerfile}"
        base = (build_args or {}).get("BASE_IMAGE", "")
        base_registry = registry_of(base) if base else ""
        with translate(context, self.host, base_registry):
            stream = self._api.build(
                path=context_dir,
                dockerfile=dockerfile,
                tag=tag,
                buildargs=dict(build_args or {}),
                labels=dict(labels or {}) or None,
                pull=pull,
                nocache=no_cache,
                rm=True,
                forcerm=True,
                decode=True,
            )
            try:
                for event in stream:
                    if "error" in event or "errorDetail" in event:
                        detail = event.get("errorDetail") or {}
                        text = str(event.get("error") or detail.get("message", "")).strip()
                        raise classify(text, context, base_registry) or ImageError(
                            f"{context}: the build failed: {text}",
                            "read the build output above; fix the Dockerfile or the build"
                            " arguments (`--build-arg BASE_IMAGE=…`)",
                        )
                    yield event
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

    # -- containers -------------------------------------------------------------------------
    def container(self, name_or_id: str) -> ContainerInfo | None:
        with self._translate(f"inspecting container {name_or_id}"):
            try:
                return container_info(self._api.inspect_container(name_or_id))
            except docker.errors.NotFound:
                return None

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with self._translate("listing containers"):
            found = self._api.containers(all=True, filters=filters)
            result = []
            for summary in found:
                with contextlib.suppress(docker.errors.NotFound):
                    result.append(container_info(self._api.inspect_container(summary["Id"])))
        return result

    def container_summaries(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        """The containers with these labels, from the list alone (no inspect per container)."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with self._translate("listing containers"):
            rows = self._api.containers(all=True, filters=filters)
        return [container_summary(row) for row in rows]

    def create(self, spec: RunSpec) -> str:
        with self._translate(f"creating container {spec.name}"):
            container = self._client.containers.create(**to_create_kwargs(spec))
            return str(container.id)

    def start(self, container_id: str, name: str = "") -> None:
        with self._translate(f"starting container {name or container_id[:12]}"):
            self._api.start(container_id)

    def stop(self, container_id: str, timeout: int = 10) -> None:
        with self._translate(f"stopping container {container_id[:12]}"):
            self._api.stop(container_id, timeout=timeout)

    def remove(self, container_id: str, force: bool = True) -> None:
        with self._translate(f"removing container {container_id[:12]}"):
            try:
                self._api.remove_container(container_id, force=force, v=True)
            except docker.errors.NotFound:
                return

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: str | None = None,
        timestamps: bool = False,
        tty: bool | None = None,
    ) -> Iterator[bytes]:
        """Log output as bytes; with follow, the stream ends when the container stops.

        Reads the engine's chunked response a chunk at a time (docker-py's own log stream reads a
        TTY container's output one byte per call and a plain one in two reads per line, a third
        of `docker logs`' throughput). `tty` says how the container writes (inspected if None).
        """
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "follow": int(follow),
            "timestamps": int(timestamps),
            "tail": "all" if tail is None else tail,
        }
        if since:
            params["since"] = _unix_time(_since_value(since))
        try:
            yield from self._log_stream(container_id, params, tty)
        except DockerUnreachable as exc:
            if not follow:
                raise
            raise DockerUnreachable(
                f"the Docker daemon at {self.host} went away while following the logs:"
                f" {exc.message}",
                exc.fix,
            ) from None
        if follow:
            self._daemon_still_there(container_id, "following the logs")

    def _log_stream(
        self, container_id: str, params: dict[str, Any], tty: bool | None
    ) -> Iterator[bytes]:
        with self._translate(f"reading logs of {container_id[:12]}"):
            if tty is None:
                tty = bool(self._api.inspect_container(container_id)["Config"].get("Tty"))
            url = self._api._url("/containers/{0}/logs", container_id)
            response = self._api._get(url, params=params, stream=True)
            self._api._raise_for_status(response)
            try:
                chunks = _response_chunks(response)
                yield from chunks if tty else demultiplex(chunks)
            finally:
                with contextlib.suppress(Exception):
                    response.close()

    def _daemon_still_there(self, container_id: str, doing: str, settle: float = 2.0) -> None:
        """A followed stream also ends when the daemon stops (it stops its containers first,
        then goes) or dies: watch it for `settle` seconds and say so, never a silent exit 0."""
        deadline = time.monotonic() + settle
        try:
            with self._translate(doing):
                while True:
                    state = self._api.inspect_container(container_id)["State"]
                    if state.get("Running"):
                        raise DockerUnreachable(
                            f"the stream from the Docker daemon at {self.host} broke while"
                            f" {doing}, with the container still running",
                            "run the command again; check the daemon's log if it repeats",
                        )
                    self._api.ping()
                    if time.monotonic() >= deadline:
                        return
                    time.sleep(0.25)
        except DockerUnreachable as exc:
            raise DockerUnreachable(
                f"the Docker daemon at {self.host} went away while {doing}: {exc.message}",
                exc.fix,
            ) from None
        except ContainerStateError:
            return  # removed: the stream ended with it

    def log_tail(self, container_id: str, lines: int = 50) -> str:
        with self._translate(f"reading logs of {container_id[:12]}"):
            data = self._api.logs(container_id, stream=False, tail=lines)
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)

    # -- exec / attach ----------------------------------------------------------------------
    def exec_create(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        detach_keys: str | None = None,
    ) -> str:
        with self._translate(f"starting a command in {container_id[:12]}"):
            created = self._api.exec_create(
                container_id,
                list(argv),
                stdout=True,
                stderr=True,
                stdin=stdin,
                tty=tty,
                environment=dict(environment) if environment else None,
                workdir=workdir,
                detach_keys=detach_keys,
            )
        return str(created["Id"])

    def exec_stream(self, exec_id: str) -> Iterator[tuple[bytes | None, bytes | None]]:
        """(stdout, stderr) chunks of a non-TTY exec, as they arrive."""
        with self._translate("running a command in the container"):
            yield from self._api.exec_start(exec_id, stream=True, demux=True)

    def exec_socket(self, exec_id: str, tty: bool = True) -> socket.socket:
        with self._translate("running a command in the container"):
            sock = self._api.exec_start(exec_id, tty=tty, socket=True)
        return _raw_socket(sock)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        with self._translate("inspecting a command in the container"):
            result: dict[str, Any] = self._api.exec_inspect(exec_id)
            return result

    def exec_run(self, container_id: str, argv: Sequence[str]) -> ExecResult:
        """Run a short command to completion and return its exit code and merged output."""
        exec_id = self.exec_create(container_id, argv)
        output = b"".join((out or b"") + (err or b"") for out, err in self.exec_stream(exec_id))
        code = self.exec_inspect(exec_id).get("ExitCode")
        return ExecResult(exit_code=int(code if code is not None else -1), output=output)

    def attach_socket(self, container_id: str, detach_keys: str) -> socket.socket:
        params = {
            "stdin": 1,
            "stdout": 1,
            "stderr": 1,
            "stream": 1,
            "logs": 0,
            "detachKeys": detach_keys,
        }
        with self._translate(f"attaching to {container_id[:12]}"):
            sock = self._api.attach_socket(container_id, params=params)
        return _raw_socket(sock)

    def resize(self, container_id: str, height: int, width: int, exec_id: str = "") -> None:
        with contextlib.suppress(Exception):
            if exec_id:
                self._api.exec_resize(exec_id, height=height, width=width)
            else:
                self._api.resize(container_id, height=height, width=width)

    def wait(self, container_id: str, timeout: float | None = None) -> int:
        with self._translate(f"waiting for {container_id[:12]}"):
            result = self._api.wait(container_id, timeout=timeout)
        return int(result.get("StatusCode", -1))

    # -- files ------------------------------------------------------------------------------
    def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        with self._translate(f"copying files into {container_id[:12]}"):
            self._api.put_archive(container_id, path, data)

    def get_archive(self, container_id: str, path: str) -> Iterator[bytes]:
        with self._translate(f"copying {path} out of {container_id[:12]}"):
            stream, _ = self._api.get_archive(container_id, path)
            yield from stream


def _raw_socket(sock: Any) -> socket.socket:
    """docker-py hands back a SocketIO wrapper for unix/tcp sockets; relays need the socket."""
    raw = getattr(sock, "_sock", sock)
    assert isinstance(raw, socket.socket)
    return raw


def _uses_containerd_store(info: Mapping[str, Any]) -> bool:
    status = info.get("DriverStatus") or []
    return any(
        isinstance(item, (list, tuple)) and len(item) == 2 and "containerd.snapshotter" in item[1]
        for item in status
    )


def _insecure_registries(info: Mapping[str, Any]) -> tuple[str, ...]:
    config = info.get("RegistryConfig") or {}
    names = [
        name
        for name, index in (config.get("IndexConfigs") or {}).items()
        if isinstance(index, Mapping) and index.get("Secure") is False
    ]
    return (*tuple(config.get("InsecureRegistryCIDRs") or ()), *names)


def registry_of(ref: str) -> str:
    """The registry host of an image reference, as the docker CLI reads it (docker.io default)."""

    registry, _ = docker_auth.resolve_repository_name(ref.split("@", 1)[0] or "x")
    return "docker.io" if registry in ("", docker_auth.INDEX_NAME) else str(registry)


def _split_ref(ref: str) -> tuple[str, str | None]:
    """'repo:tag' -> ('repo', 'tag'); digests and registry ports are kept intact."""
    if "@" in ref:
        return ref, None
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, "latest"


def _response_chunks(response: Any) -> Iterator[bytes]:
    """The body of a streamed engine response, as large blocks as the socket gives.

    The engine writes a log stream in HTTP chunks of one line each; decoding them one by one in
    urllib3 costs more than the engine takes to send them. So the chunked framing is taken apart
    here, over reads of up to 1 MiB from the connection's buffered socket file.
    """
    raw = response.raw
    socket_file = getattr(getattr(raw, "_fp", None), "fp", None)
    if not raw.chunked:
        yield from response.iter_content(1 << 16)
    elif socket_file is None or not hasattr(socket_file, "read1"):
        yield from raw.read_chunked(decode_content=False)
    else:
        yield from dechunk(iter(lambda: socket_file.read1(1 << 20), b""))


def dechunk(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """HTTP/1.1 chunked transfer coding -> the body's bytes, one piece per block read."""
    pending = b""
    for block in blocks:
        pending += block
        position, pieces = 0, list[bytes]()
        while True:
            line_end = pending.find(b"\r\n", position)
            if line_end < 0:
                break
            size = int(pending[position:line_end].split(b";", 1)[0], 16)
            if size == 0:
                if pieces:
                    yield b"".join(pieces)
                return
            start = line_end + 2
            if start + size + 2 > len(pending):
                break
            pieces.append(pending[start : start + size])
            position = start + size + 2
        pending = pending[position:]
        if pieces:
            yield b"".join(pieces)
    raise urllib3.exceptions.ProtocolError("the engine's stream ended before its last chunk")


def demultiplex(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The payloads of the engine's multiplexed stream (a non-TTY container's output): frames of
    an 8-byte header (stream, 0, 0, 0, big-endian size) and the data, split across chunks anyhow."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        position, payloads = 0, []
        while len(pending) - position >= 8:
            size = int.from_bytes(pending[position + 4 : position + 8], "big")
            end = position + 8 + size
            if end > len(pending):
                break
            payloads.append(pending[position + 8 : end])
            position = end
        pending = pending[position:]
        if payloads:
            yield b"".join(payloads)


def _unix_time(value: Any) -> Any:
    import datetime as dt

    return int(value.timestamp()) if isinstance(value, dt.datetime) else value


def _since_value(since: str) -> Any:
    """Docker's --since: a unix time, an RFC 3339 date, or a duration like 10m / 2h."""
    match = re.fullmatch(r"(\d+)([smhd])", since.strip())
    if match:
        import datetime as dt

        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return dt.datetime.now(tz=dt.timezone.utc) - dt.timedelta(seconds=seconds)
    if since.isdigit():
        return int(since)
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HvinfraError(
            f"--since {since!r} is not a time",
            "use a duration (10m, 2h), a unix time, or a date like 2026-11-28T10:00:00",
            exit_code=ExitCode.USAGE,
        ) from exc
