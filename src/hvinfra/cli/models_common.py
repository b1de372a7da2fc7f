"""What `models check|pull` (models_cmd) and `models synth` (synth_cmd) share: the folder
options, resolving the profile with them, and relaying a container's output and image pull."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from hvinfra.assets import FixContext
    from hvinfra.output import Output
    from hvinfra.profiles import Profile

CodeDirOpt = typer.Option(
    None, "--code-dir", help="Code folder instead of the profile's volumes.code.host."
)
WeightsDirOpt = typer.Option(
    None, "--weights-dir", help="Weights folder instead of the profile's volumes.weights.host."
)


def resolve(
    target: str,
    profile_file: Path | None,
    sets: list[str],
    code_dir: Path | None,
    weights_dir: Path | None,
) -> tuple[Profile, FixContext]:
    from hvinfra.assets import FixContext, host_dirs, models_of
    from hvinfra.cli.common import load
    from hvinfra.paths import resolved

    flags: dict[str, Any] = {}
    if code_dir is not None:
        flags["volumes.code.host"] = str(resolved(code_dir, "--code-dir"))
    if weights_dir is not None:
        flags["volumes.weights.host"] = str(resolved(weights_dir, "--weights-dir"))
    profile = load(target, profile_file, sets, extra_flags=flags).profile
    models_of(profile)
    host_dirs(profile)
    fix = FixContext(
        target,
        code_dir=flags.get("volumes.code.host"),
        weights_dir=flags.get("volumes.weights.host"),
    )
    return profile, fix


def relay_output() -> Any:
    import sys

    def relay(chunk: bytes) -> None:
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()

    return relay


def image_observer(output: Output, image: str) -> Any:
    from hvinfra.pull_display import pull_observer

    return pull_observer(output, image)
