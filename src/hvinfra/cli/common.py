"""Options shared by commands, and the few functions that turn CLI arguments into a profile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from hvinfra.context import AppContext
    from hvinfra.engine import DockerEngine
    from hvinfra.profiles import LoadedProfile

TARGET_HELP = "Profile: t2v, i2v, a user profile name, or a path to a profile YAML file."

ProfileFileOpt = typer.Option(
    None,
    "--profile",
    help="A YAML file layered over the profile (after the user's ~/.config/hvinfra/profiles).",
    exists=True,
    dir_okay=False,
)
SetOpt = typer.Option(
    [], "--set", metavar="KEY.PATH=VALUE", help="Override one profile key (repeatable)."
)
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable JSON result on stdout.")


def parse_env_flags(items: list[str]) -> dict[str, str]:
    from hvinfra.errors import ProfileError

    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise ProfileError(f"-e {item!r} has no variable name", "write -e KEY=VALUE")
        if not sep:
            import os

            if key not in os.environ:
                raise ProfileError(
                    f"-e {key}: not set in this shell", f"write -e {key}=VALUE or export {key}"
                )
            value = os.environ[key]
        env[key] = value
    return env


def parse_volume_flags(items: list[str], existing: dict[str, Any]) -> dict[str, Any]:
    """-v HOST:CTR[:ro|rw] -> volume entries; one that targets a profile's path replaces it."""
    from hvinfra.errors import ExitCode, ProfileError
    from hvinfra.paths import resolved

    by_target = {v.container: name for name, v in existing.items()}
    volumes: dict[str, Any] = {}
    for index, item in enumerate(items):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ProfileError(
                f"-v {item!r} is not HOST:CONTAINER[:ro]", "write e.g. -v /data/ckpts:/ckpts:ro"
            )
        if len(parts) == 3 and parts[2] not in ("ro", "rw"):
            raise ProfileError(f"-v {item!r}: mode must be ro or rw", "write HOST:CONTAINER:ro")
        host = str(resolved(Path(parts[0]), "-v", exit_code=ExitCode.PROFILE))
        name = by_target.get(parts[1], f"extra{index}")
        volumes[name] = {
            "host": host,
            "container": parts[1],
            "read_only": len(parts) == 3 and parts[2] == "ro",
        }
    return volumes


def load(
    target: str,
    profile_file: Path | None = None,
    sets: list[str] | None = None,
    *,
    image: str | None = None,
    name: str | None = None,
    gpus: str | None = None,
    env: list[str] | None = None,
    volumes: list[str] | None = None,
    privileged: bool | None = None,
    extra_flags: dict[str, Any] | None = None,
) -> LoadedProfile:
    """Resolve a profile from all layers; explicit flags are the top layer."""
    from hvinfra.profiles import load_profile

    base = load_profile(target, profile_file=profile_file, sets=sets or [])
    flags: dict[str, Any] = dict(extra_flags or {})
    flags.update({"image": image, "container_name": name, "gpu.devices": gpus})
    if privileged:
        flags["privileged"] = True
    if env:
        flags["environment"] = parse_env_flags(env)
    if volumes:
        flags["volumes"] = parse_volume_flags(volumes, base.profile.volumes)
    if not any(value is not None for value in flags.values()):
        return base
    return load_profile(target, profile_file=profile_file, sets=sets or [], flags=flags)


def connect() -> DockerEngine:
    from hvinfra.engine import DockerEngine

    return DockerEngine.from_env()


def app_context(ctx: typer.Context) -> AppContext:
    """The command's AppContext, built by the app's callback (or passed to `main`)."""
    from hvinfra.context import AppContext

    found = ctx.find_object(AppContext)
    if found is None:  # a command invoked without the app's callback (never from `main`)
        found = AppContext()
        ctx.obj = found
    return found


# Options several command modules share (defined here so that one module's commands do not
# import another's).
LockOpt = typer.Option(
    None,
    "--lock",
    help="Lock file to compare with (default: $HVINFRA_LOCK, else ./hvinfra.lock if present).",
    dir_okay=False,
)
SkipDiskOpt = typer.Option(
    False, "--skip-disk-check", help="Pull even when the free-disk check says it will not fit."
)
Fp8Opt = typer.Option(
    False,
    "--fp8",
    "--use-fp8",
    help="Size the VRAM check for FP8 DiT weights (generate with --fp8).",
)
OffloadOpt = typer.Option(
    False,
    "--cpu-offload",
    "--use-cpu-offload",
    help="Size the VRAM check for CPU offload (generate with --cpu-offload).",
)
