"""The T2V text-encoder preprocessing: the repo's own script, run in a short-lived container of
the profile's image with the code and weights folders mounted (weights read-write, unlike the
`up` container, whose weights mount is read-only on purpose).

`preprocess_spec` is pure; `run_preprocess` drives any engine with the few calls it needs.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from hvinfra.assets import CODE_VOLUME, WEIGHTS_VOLUME
from hvinfra.errors import Interrupted, JobFailed, ProfileError
from hvinfra.labels import LABEL_JOB
from hvinfra.launcher import PullPolicy, consume, ensure_image
from hvinfra.profiles.models import Profile, WeightPiece
from hvinfra.records import ContainerInfo, ImageInfo
from hvinfra.spec import Mount, RunSpec, build_run_spec, with_identity

PYTHON = "python"  # the official README runs the script as `python …` inside the image


class PreprocessEngine(Protocol):
    def image(self, ref: str) -> ImageInfo | None: ...
    def pull_events(self, ref: str) -> Iterator[dict[str, Any]]: ...
    def container(self, name_or_id: str) -> ContainerInfo | None: ...
    def create(self, spec: RunSpec) -> str: ...
    def start(self, container_id: str, name: str = "") -> None: ...
    def logs(self, container_id: str, *, follow: bool = False) -> Iterator[bytes]: ...
    def wait(self, container_id: str, timeout: float | None = None) -> int: ...
    def remove(self, container_id: str, force: bool = True) -> None: ...


def preprocess_argv(profile: Profile, piece: WeightPiece) -> list[str]:
    if piece.preprocess is None:
        raise ValueError("piece has no preprocess step")
    weights = profile.volumes[WEIGHTS_VOLUME].container
    values = {
        "input": posixpath.join(weights, piece.subfolder) if piece.subfolder else weights,
        "output": posixpath.join(weights, piece.preprocess.output),
    }
    args = [arg.format(**values) for arg in piece.preprocess.args]
    return [PYTHON, piece.preprocess.script, *args]


def preprocess_spec(profile: Profile, name: str, piece: WeightPiece) -> RunSpec:
    """The container that runs one piece's preprocessing, derived from the profile's own."""
    for volume in (CODE_VOLUME, WEIGHTS_VOLUME):
        if volume not in profile.volumes:
            raise ProfileError(f"profile {profile.name} has no volumes.{volume}")
    base = build_run_spec(profile, extra_labels={LABEL_JOB: f"preprocess-{name}"})
    code, weights = profile.volumes[CODE_VOLUME], profile.volumes[WEIGHTS_VOLUME]
    mounts = (
        Mount(code.host, code.container, read_only=True),
        Mount(weights.host, weights.container, read_only=False),
    )
    spec = replace(
        base,
        name=f"{profile.container_name}-preprocess",
        command=tuple(preprocess_argv(profile, piece)),
        tty=False,
        stdin_open=False,
        mounts=mounts,
        working_dir=code.container,
        restart_policy="no",
    )
    return with_identity(spec)


def run_preprocess(
    engine: PreprocessEngine,
    spec: RunSpec,
    *,
    on_output: Callable[[bytes], None],
    observe_pull: Callable[[Iterator[dict[str, Any]]], None] = consume,
) -> None:
    """Run the container to completion, streaming its output; remove it afterwards."""
    ensure_image(engine, spec.image, PullPolicy.MISSING, observe_pull)  # type: ignore[arg-type]
    stale = engine.container(spec.name)
    if stale is not None:
        if not stale.managed or stale.running:
            raise JobFailed(
                f"a container named {spec.name} already exists ({stale.status})",
                f"wait for it or remove it: `docker rm -f {spec.name}`",
            )
        engine.remove(stale.id, force=True)
    container_id = engine.create(spec)
    try:
        engine.start(container_id, spec.name)
        for chunk in engine.logs(container_id, follow=True):
            on_output(chunk)
        status = engine.wait(container_id)
    except KeyboardInterrupt as exc:
        engine.remove(container_id, force=True)
        raise Interrupted(
            "interrupted: the preprocessing container was removed; the downloads are kept",
            "rerun `hvinfra models pull` to preprocess again",
        ) from exc
    except BaseException:
        engine.remove(container_id, force=True)
        raise
    if status != 0:
        raise JobFailed(
            f"preprocessing ({' '.join(spec.command or ())}) exited with {status}; its"
            f" container {spec.name} is kept for its logs",
            f"read them with `docker logs {spec.name}`; remove it with `docker rm {spec.name}`;"
            " then rerun the pull",
        )
    engine.remove(container_id, force=True)
