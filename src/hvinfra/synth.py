"""`hvinfra models synth t2v|i2v`: a weights tree of the real layout and shapes with random
values, written by hvinfra's own `data/synth_weights.py` running in a short-lived container of
the profile's image (which has torch; the host needs none), with the official code mounted as
the working folder and the weights folder read-write. The shapes come from the official code
itself (its model config dict on the meta device), never from numbers kept in hvinfra.

`synth_spec` and `refusal` are pure; the run reuses the preprocessing runner.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from hvinfra.assets import CODE_VOLUME, WEIGHTS_VOLUME
from hvinfra.errors import ProfileError
from hvinfra.labels import LABEL_JOB
from hvinfra.preprocess import PYTHON
from hvinfra.profiles.models import Profile
from hvinfra.spec import Mount, RunSpec, build_run_spec, with_identity
from hvinfra.synthetic_marker import MARKER_NAME

SCRIPT_IN_CONTAINER = "/hvinfra-synth/synth_weights.py"
KINDS = ("t2v", "i2v")


def script_path() -> Path:
    """The synth script inside the installed package (a plain file: package data)."""
    return Path(str(resources.files("hvinfra") / "data" / "synth_weights.py"))


def synth_argv(profile: Profile, kind: str, version: str = "") -> list[str]:
    weights = profile.volumes[WEIGHTS_VOLUME].container
    argv = [PYTHON, SCRIPT_IN_CONTAINER, kind, "--weights", weights]
    return [*argv, "--hvinfra-version", version] if version else argv


def synth_spec(profile: Profile, kind: str, script: str, version: str = "") -> RunSpec:
    """The profile's own container (image, environment, its other mounts: a stand-in image
    may need them), minus ports and TTY, with the weights mounted read-write and the script
    read-only; it runs the script and exits. No GPU is requested: the writing happens on the CPU."""
    for volume in (CODE_VOLUME, WEIGHTS_VOLUME):
        if volume not in profile.volumes:
            raise ProfileError(
                f"profile {profile.name} has no volumes.{volume}",
                f"add volumes.{volume}.host and .container (see `hvinfra config show {kind}`)",
            )
    base = build_run_spec(profile, extra_labels={LABEL_JOB: f"synth-{kind}"})
    code, weights = profile.volumes[CODE_VOLUME], profile.volumes[WEIGHTS_VOLUME]
    kept = tuple(m for m in base.mounts if m.target not in (code.container, weights.container))
    mounts = (
        *kept,
        Mount(code.host, code.container, read_only=True),
        Mount(weights.host, weights.container, read_only=False),
        Mount(script, SCRIPT_IN_CONTAINER, read_only=True),
    )
    spec = replace(
        base,
        name=f"{profile.container_name}-synth",
        command=tuple(synth_argv(profile, kind, version)),
        tty=False,
        stdin_open=False,
        mounts=mounts,
        gpu_request=None,  # the writing needs no GPU
        devices=(),
        working_dir=code.container,
        restart_policy="no",
    )
    return with_identity(spec)


def real_files(weights_dir: Path, required: list[str]) -> list[str]:
    """The required weight files already present (globs left out) when no marker says the
    tree is synthetic: real weights that `synth` must never overwrite."""
    if (weights_dir / MARKER_NAME).exists():
        return []
    return [entry for entry in required if "*" not in entry and (weights_dir / entry).exists()]


def refusal(weights_dir: Path, present: list[str], force: bool) -> str | None:
    """Why synth must not write here, or None. --force never overwrites real weights."""
    if present:
        shown = ", ".join(present[:3]) + (" …" if len(present) > 3 else "")
        return (
            f"{weights_dir} holds real weights ({shown}): models synth never writes over"
            " them (--force does not change that)"
        )
    if (weights_dir / MARKER_NAME).exists() and not force:
        return f"{weights_dir} is already a synthetic tree"
    return None
