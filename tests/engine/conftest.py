"""Fixtures for tests that drive a real Docker engine (tests/engine).

Which engine
    ``HVINFRA_TEST_DOCKER_HOST`` if set (it must answer, or the tests cannot
    run); else ``DOCKER_HOST`` if set and answering; else a private dockerd
    started for the session (tests/engine/dockerd.py) with the stand-in NVIDIA
    hook, so GPU device requests start on a machine without GPUs.
    An engine that cannot be had skips the tests, except under ``CI=true``,
    where it fails them: CI never passes by skipping.

Fixtures (all session-scoped unless noted)
    docker_engine            Engine: host, the PrivateDockerd (or None if
                             reused), whether GPU requests start (gpu_hook).
    docker_host              str, e.g. "unix:///tmp/hvd-xxxx/docker.sock";
                             also put in os.environ["DOCKER_HOST"] for the
                             session (restored afterwards).
    docker_client            docker.DockerClient for docker_host.
    standin_image            str tag of the stand-in image on docker_host.
    docker_host_no_gpu_hook  str, a second private dockerd without any NVIDIA
                             hook (GPU requests fail there); it has the
                             stand-in image too.
    docker_client_no_gpu_hook  docker.DockerClient for it.
    hv_env (function)        dict of environment variables for running the
                             ``hvinfra`` CLI as a subprocess against docker_host.
    test_labels (function)   labels to put on containers a test makes itself,
                             so the per-test clean-up removes them.
    container_reaper         callable() -> names removed; the clean-up that
                             runs after every test, for tests of the harness.

Clean-up (autouse, after every test under tests/engine)
    On every engine started or used so far this session, removes containers
    labelled ``io.hvinfra.test-session=<this session's id>``; also those
    labelled ``io.hvinfra.managed=true`` (made by the product): all of them on
    a private daemon, only those that appeared during this session on a reused
    engine. Containers labelled ``io.hvinfra.test-keep=true`` are left (for
    session-wide helpers such as a registry). When the test failed, the state
    and last log lines of each removed container are printed first.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import docker
import docker.errors
import pytest

# dockerd.py sits beside this file; tests/ is not a package.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from dockerd import (
    KEEP_LABEL,
    MANAGED_LABEL,
    SESSION_ID,
    TEST_SESSION_LABEL,
    DockerdError,
    PrivateDockerd,
    build_standin_image,
    remove_stale_roots,
)

_HERE = Path(__file__).resolve().parent
# Variables that would send docker clients somewhere other than DOCKER_HOST.
_DOCKER_REDIRECT_VARS = ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")


# --------------------------------------------------------------------------- #
# Markers
# --------------------------------------------------------------------------- #


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml registers these too; repeating them is harmless.
    config.addinivalue_line("markers", "engine: needs a real Docker engine")
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU visible through NVML")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.engine)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # Keep each phase's report on the item so the clean-up knows if it failed.
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


# --------------------------------------------------------------------------- #
# Engines
# --------------------------------------------------------------------------- #


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def engine_unavailable(reason: str) -> NoReturn:
    """Skip, or under CI=true fail: CI must never pass by skipping engine tests."""
    if in_ci():
        pytest.fail(f"CI=true and no Docker engine for the engine tests: {reason}", pytrace=False)
    pytest.skip(f"no Docker engine for the engine tests: {reason}")


@dataclass
class Engine:
    host: str
    daemon: PrivateDockerd | None
    gpu_hook: bool
    client: docker.DockerClient
    # Managed containers present before the session, on a reused engine.
    preexisting: set[str] = field(default_factory=set)

    @property
    def private(self) -> bool:
        return self.daemon is not None


@dataclass
class _Engines:
    engines: list[Engine] = field(default_factory=list)


_ENGINES = _Engines()


def _client_for(host: str, private: bool, timeout: int = 60) -> docker.DockerClient:
    if private:
        return docker.DockerClient(base_url=host, timeout=timeout)
    # A reused engine may need TLS settings from the environment.
    environment = dict(os.environ)
    environment["DOCKER_HOST"] = host
    return docker.from_env(environment=environment, timeout=timeout)


def _reachable(host: str) -> str | None:
    """None when the engine at ``host`` answers a ping, else why not."""
    try:
        client = _client_for(host, private=False, timeout=10)
    except docker.errors.DockerException as exc:
        return str(exc)
    try:
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        return str(exc)
    finally:
        client.close()
    return None


def _start_private(gpu_hook: bool) -> PrivateDockerd:
    daemon = PrivateDockerd.in_tempdir(gpu_hook=gpu_hook)
    try:
        daemon.start(timeout=60)
    except (DockerdError, OSError) as exc:
        daemon.stop()
        engine_unavailable(f"cannot start a private dockerd (gpu_hook={gpu_hook}): {exc}")
    atexit.register(daemon.stop)  # idempotent; covers an interrupted session
    return daemon


def _register(engine: Engine) -> Engine:
    _ENGINES.engines.append(engine)
    return engine


def _unregister(engine: Engine) -> None:
    with contextlib.suppress(ValueError):
        _ENGINES.engines.remove(engine)
    engine.client.close()
    if engine.daemon is not None:
        engine.daemon.stop()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """The session's engine (see the module docstring for which one)."""
    remove_stale_roots()
    explicit = os.environ.get("HVINFRA_TEST_DOCKER_HOST", "").strip()
    ambient = os.environ.get("DOCKER_HOST", "").strip()
    engine: Engine | None = None
    if explicit:
        why = _reachable(explicit)
        if why is not None:
            engine_unavailable(f"HVINFRA_TEST_DOCKER_HOST={explicit} does not answer: {why}")
        client = _client_for(explicit, private=False)
        engine = Engine(explicit, None, gpu_hook=False, client=client)
    elif ambient and _reachable(ambient) is None:
        client = _client_for(ambient, private=False)
        engine = Engine(ambient, None, gpu_hook=False, client=client)
    if engine is not None:
        # gpu_hook=False: we cannot know whether a reused engine starts GPU
        # requests; tests that need that use docker_engine.gpu_hook to decide.
        engine.preexisting = {
            c.id for c in engine.client.containers.list(all=True, filters={"label": MANAGED_LABEL})
        }
    else:
        daemon = _start_private(gpu_hook=True)
        assert daemon.host is not None
        engine = Engine(daemon.host, daemon, gpu_hook=True, client=_client_for(daemon.host, True))
    _register(engine)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_HOST", engine.host)
        if engine.private:
            for var in _DOCKER_REDIRECT_VARS:
                mp.delenv(var, raising=False)
        try:
            yield engine
        finally:
            _cleanup_engine(engine, failed_test=None)
            _unregister(engine)


@pytest.fixture(scope="session")
def docker_host(docker_engine: Engine) -> str:
    """DOCKER_HOST of the session's engine; os.environ carries it for the session."""
    return docker_engine.host


@pytest.fixture(scope="session")
def docker_client(docker_engine: Engine) -> docker.DockerClient:
    return docker_engine.client


@pytest.fixture(scope="session")
def standin_image(docker_host: str) -> str:
    """Tag of the stand-in image (busybox, see tests/fixtures/standin) on docker_host."""
    try:
        return build_standin_image(docker_host)
    except (DockerdError, OSError) as exc:
        engine_unavailable(f"cannot build the stand-in image on {docker_host}: {exc}")


@pytest.fixture(scope="session")
def _engine_no_gpu_hook() -> Iterator[Engine]:
    daemon = _start_private(gpu_hook=False)
    assert daemon.host is not None
    engine = _register(
        Engine(daemon.host, daemon, gpu_hook=False, client=_client_for(daemon.host, True))
    )
    try:
        try:
            build_standin_image(daemon.host)
        except (DockerdError, OSError) as exc:
            engine_unavailable(f"cannot build the stand-in image on {daemon.host}: {exc}")
        yield engine
    finally:
        _cleanup_engine(engine, failed_test=None)
        _unregister(engine)


@pytest.fixture(scope="session")
def docker_host_no_gpu_hook(_engine_no_gpu_hook: Engine) -> str:
    """A second private dockerd with no NVIDIA hook at all; has the stand-in image."""
    return _engine_no_gpu_hook.host


@pytest.fixture(scope="session")
def docker_client_no_gpu_hook(_engine_no_gpu_hook: Engine) -> docker.DockerClient:
    return _engine_no_gpu_hook.client


# --------------------------------------------------------------------------- #
# Per-test helpers
# --------------------------------------------------------------------------- #


@pytest.fixture
def name() -> str:
    """A fresh container name for this test."""
    return f"hvtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def runnable(standin_image: str, tmp_path: Path, name: str) -> list[str]:
    """--set flags that make the t2v profile start here: the stand-in image, memlock within the
    daemon's 8 MiB hard limit, host folders in tmp."""
    return [
        "--set", f"image={standin_image}",
        "--set", f"container_name={name}",
        "--set", "ulimits.memlock=8m",
        "--set", f"volumes.code.host={tmp_path}/code",
        "--set", f"volumes.weights.host={tmp_path}/ckpts",
        "--set", f"volumes.outputs.host={tmp_path}/outputs",
    ]  # fmt: skip


@pytest.fixture
def test_labels() -> dict[str, str]:
    """Labels for containers a test makes itself (removed after the test)."""
    return {TEST_SESSION_LABEL: SESSION_ID}


@pytest.fixture(autouse=True)
def _no_preflight_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has no GPU or NVML, so `up`'s pre-flight checks would refuse every start:
    lifecycle tests run without them (`--skip-checks`); tests of the checks delenv it."""
    monkeypatch.setenv("HVINFRA_SKIP_CHECKS", "1")


@pytest.fixture
def hv_env(docker_engine: Engine, tmp_path: Path) -> dict[str, str]:
    """Environment for ``subprocess.run(["hvinfra", ...], env=hv_env)``.

    DOCKER_HOST points at the session's engine; the docker config (registry
    credentials) and XDG directories are empty per-test directories so the
    user's own never leak in; output is plain (NO_COLOR, wide COLUMNS); the
    venv's bin directory is first on PATH so ``hvinfra`` resolves.
    """
    env = dict(os.environ)
    if docker_engine.private:
        for var in _DOCKER_REDIRECT_VARS:
            env.pop(var, None)
    home = tmp_path / "hv-home"
    for sub in ("docker-config", "config", "cache", "data", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    venv_bin = str(Path(sys.executable).parent)
    env.update(
        {
            "DOCKER_HOST": docker_engine.host,
            "DOCKER_CONFIG": str(home / "docker-config"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
            "HVINFRA_TEST_SESSION": SESSION_ID,
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
            "PATH": os.pathsep.join([venv_bin, env.get("PATH", "")]),
        }
    )
    return env


def _doomed(engine: Engine) -> list[Any]:
    """Containers on ``engine`` that the clean-up removes."""
    client = engine.client
    found: dict[str, Any] = {}
    for label in (f"{TEST_SESSION_LABEL}={SESSION_ID}", f"{MANAGED_LABEL}=true"):
        for container in client.containers.list(all=True, filters={"label": label}):
            found[container.id] = container
    doomed = []
    for cid, container in found.items():
        labels = container.labels or {}
        if labels.get(KEEP_LABEL) == "true":
            continue
        is_ours = labels.get(TEST_SESSION_LABEL) == SESSION_ID
        if not engine.private and not is_ours and cid in engine.preexisting:
            continue  # the user's own hvinfra containers on a reused engine
        doomed.append(container)
    return doomed


def _cleanup_engine(engine: Engine, failed_test: str | None) -> list[str]:
    removed: list[str] = []
    try:
        doomed = _doomed(engine)
    except (docker.errors.DockerException, OSError) as exc:
        print(f"[engine clean-up] cannot list containers on {engine.host}: {exc}")
        return removed
    for container in doomed:
        if failed_test is not None:
            _dump(container, failed_test)
        try:
            container.remove(force=True, v=True)
            removed.append(container.name)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, OSError) as exc:
            print(f"[engine clean-up] cannot remove {container.name} on {engine.host}: {exc}")
    return removed


def _dump(container: Any, test: str) -> None:
    try:
        container.reload()
        state = container.attrs.get("State", {})
        logs = container.logs(tail=50).decode(errors="replace")
    except (docker.errors.DockerException, OSError) as exc:
        print(f"[engine clean-up] {test}: {container.name}: cannot read state/logs: {exc}")
        return
    print(
        f"[engine clean-up] {test}: container {container.name} "
        f"status={state.get('Status')} exit={state.get('ExitCode')} "
        f"oom={state.get('OOMKilled')} error={state.get('Error')!r}\n"
        f"--- last 50 log lines ---\n{logs}"
    )


def reap_all(failed_test: str | None = None) -> list[str]:
    removed: list[str] = []
    for engine in list(_ENGINES.engines):
        removed += _cleanup_engine(engine, failed_test)
    return removed


@pytest.fixture(scope="session")
def container_reaper() -> Callable[[], list[str]]:
    """The per-test clean-up as a callable (returns the names it removed)."""
    return reap_all


@pytest.fixture(autouse=True)
def _remove_test_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    reap_all(failed_test=request.node.nodeid if failed else None)
