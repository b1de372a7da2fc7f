"""`hvinfra pull|lock|build`: images with live progress, digest pinning, and the two Dockerfiles.

The pull observer (`bringup.prepared_pull`) is the one `up` uses, so both show the same progress
and run the same free-disk check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hvinfra.cli.common import JsonOpt, LockOpt, ProfileFileOpt, SetOpt, SkipDiskOpt

PULL_TARGET_HELP = "t2v, i2v, all (both packaged profiles), a user profile name or a YAML path."


def __getattr__(name: str) -> Any:
    """The pull observer and lock lookup moved to `hvinfra.bringup`; still importable here."""
    if name in {"PreparedPull", "lock_entry_for", "prepared_pull"}:
        from hvinfra import bringup

        return getattr(bringup, name)
    raise AttributeError(name)


def _targets(target: str) -> list[str]:
    return ["t2v", "i2v"] if target == "all" else [target]


def _check_single(target: str, image: str | None) -> None:
    from hvinfra.errors import ExitCode, HvinfraError

    if target == "all" and image:
        raise HvinfraError(
            "--image names one image, but `all` means two profiles",
            "name one profile: `hvinfra pull t2v --image REPO:TAG`",
            exit_code=ExitCode.USAGE,
        )


def _parse_build_args(items: list[str]) -> dict[str, str]:
    from hvinfra.errors import ExitCode, HvinfraError

    args: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise HvinfraError(
                f"--build-arg {item!r} is not KEY=VALUE",
                "write e.g. --build-arg BASE_IMAGE=hunyuanvideo/hunyuanvideo:cuda_12",
                exit_code=ExitCode.USAGE,
            )
        args[key] = value
    return args


def build_context_dir() -> Path:
    """Where Dockerfile.t2v/.i2v and image-scripts/ live: the source checkout's root, or the copy
    shipped inside the wheel (hvinfra/buildctx)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "buildctx", here.parent.parent):
        if (candidate / "Dockerfile.t2v").is_file() and (candidate / "image-scripts").is_dir():
            return candidate
    from hvinfra.errors import ImageError

    raise ImageError(
        "cannot find Dockerfile.t2v/Dockerfile.i2v (neither in the package nor in a checkout)",
        "pass --context DIR (a folder with Dockerfile.t2v, Dockerfile.i2v and image-scripts/)",
    )


def _git_revision(directory: Path) -> str:
    import subprocess

    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def register(app: typer.Typer) -> None:
    @app.command()
    def pull(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=PULL_TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        image: str | None = typer.Option(None, "--image", help="Pull this image instead."),
        lock: Path | None = LockOpt,
        skip_disk_check: bool = SkipDiskOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Pull the profile's image with per-layer progress (`all`: t2v and i2v).

        Checks free disk at Docker's data root against the registry's image size first.
        Interrupt with Ctrl-C at any time; rerunning finishes the pull.
        """
        from hvinfra.bringup import lock_entry_for, prepared_pull
        from hvinfra.cli.common import app_context, load
        from hvinfra.images import lock_mismatch, repo_digest_of
        from hvinfra.launcher import PullPolicy, ensure_image

        _check_single(target, image)
        app = app_context(ctx)
        output = app.output(as_json)
        engine = app.engine()
        results: list[dict[str, Any]] = []
        for name in _targets(target):
            profile = load(name, profile_file, sets, image=image).profile
            ref = profile.image_ref
            entry = lock_entry_for(profile.name, lock)
            observer = prepared_pull(
                engine, output, ref, entry=entry, skip_disk_check=skip_disk_check
            )
            ensure_image(engine, ref, PullPolicy.ALWAYS, observer)
            info = engine.image(ref)
            assert info is not None  # ensure_image raised otherwise
            state = observer.display.state if observer.display else None
            mismatch = lock_mismatch(entry, ref, info) if entry else None
            if mismatch:
                output.warn(f"{profile.name}: differs from the lock file: {mismatch}")
            results.append(
                {
                    "profile": profile.name,
                    "image": ref,
                    "id": info.id,
                    "repo_digest": repo_digest_of(info, ref),
                    "size": info.size,
                    "up_to_date": bool(state and state.outcome.startswith("Image is up to date")),
                    "layers_fetched": len(state.to_fetch) if state else 0,
                    "layers_present": len(state.existing) if state else 0,
                    "bytes_fetched": state.fetched_bytes if state else 0,
                    "lock_mismatch": mismatch,
                }
            )
        if as_json:
            output.data(results if target == "all" else results[0])
            return
        for row in results:
            output.out.print(
                f"[green]ready[/green] {row['profile']}: {row['image']}\n"
                f"  id      {row['id'][:19]}\n  digest  {row['repo_digest'] or '(none)'}",
                markup=True,
            )

    @app.command("lock")
    def lock_(
        target: str = typer.Argument("all", help=PULL_TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        image: str | None = typer.Option(None, "--image", help="Lock this image instead."),
        file: Path | None = typer.Option(
            None,
            "--file",
            help="Lock file to write (default: $HVINFRA_LOCK, else ./hvinfra.lock).",
            dir_okay=False,
        ),
        as_json: bool = JsonOpt,
    ) -> None:
        """Record the digests of the images the profiles use (present locally) in a lock file.

        `up` and `pull` then warn when the local image differs; pin a profile to the recorded
        digest with `image_digest:` (or `--set image_digest=sha256:…`).
        """
        from hvinfra.cli.common import connect, load
        from hvinfra.errors import ImageError
        from hvinfra.images import LOCK_NAME, find_lock, lock_entry, read_lock, write_lock
        from hvinfra.output import Output

        _check_single(target, image)
        output = Output(json_mode=as_json)
        path = file or find_lock(None) or Path(LOCK_NAME)
        entries = read_lock(path)
        engine = connect()
        locked, absent = {}, []
        for name in _targets(target):
            profile = load(name, profile_file, sets, image=image).profile
            info = engine.image(profile.image_ref)
            if info is None:
                absent.append((profile.name, profile.image_ref))
                continue
            entry = lock_entry(profile.image_ref, info)
            if not entry.repo_digest:
                output.warn(
                    f"{profile.name}: {profile.image_ref} has no registry digest (built here,"
                    " never pushed or pulled): only its image ID is recorded"
                )
            locked[profile.name] = entry
        if absent and (target != "all" or not locked):
            names = " ".join(name for name, _ in absent)
            raise ImageError(
                "not present locally, so there is no digest to record: "
                + ", ".join(f"{name} ({ref})" for name, ref in absent),
                f"pull first: `hvinfra pull {names}`",
            )
        for name, ref in absent:
            output.warn(f"{name}: {ref} is not present locally; not locked")
        entries.update(locked)
        write_lock(path, entries)
        if as_json:
            from hvinfra.images import as_json as entry_json

            output.data(
                {"file": str(path), "locked": {k: entry_json(v) for k, v in locked.items()}}
            )
            return
        for name, entry in locked.items():
            output.out.print(f"locked {name}: {entry.repo_digest or entry.id}")
        output.out.print(f"wrote {path}")

    @app.command()
    def build(
        target: str = typer.Argument(..., help="t2v or i2v: builds Dockerfile.t2v / .i2v."),
        tag: str | None = typer.Option(
            None, "--tag", "-t", help="Image tag (default hvinfra/hunyuanvideo-TARGET:VERSION)."
        ),
        build_arg: list[str] = typer.Option(
            [], "--build-arg", help="KEY=VALUE (repeatable), e.g. BASE_IMAGE=repo@sha256:…"
        ),
        context: Path | None = typer.Option(
            None,
            "--context",
            help="Folder with Dockerfile.TARGET and image-scripts/ (default: the shipped one).",
            file_okay=False,
        ),
        pull_base: bool = typer.Option(
            False, "--pull", help="Always pull a newer base image first."
        ),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the build cache."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Build the launcher-ready image on the official one (healthcheck, entrypoint, labels).

        Point a profile at the result with `--image TAG` or `image: TAG` in a profile file.
        """
        from hvinfra import __version__
        from hvinfra.build_display import BuildDisplay
        from hvinfra.cli.common import connect
        from hvinfra.errors import ExitCode, HvinfraError
        from hvinfra.output import Output

        if target not in ("t2v", "i2v"):
            raise HvinfraError(
                f"no Dockerfile for {target!r}", "use t2v or i2v", exit_code=ExitCode.USAGE
            )
        output = Output(json_mode=as_json)
        directory = (context or build_context_dir()).resolve()
        dockerfile = f"Dockerfile.{target}"
        if not (directory / dockerfile).is_file():
            raise HvinfraError(
                f"{directory / dockerfile} does not exist",
                "pass --context DIR with Dockerfile.t2v/.i2v and image-scripts/ in it",
                exit_code=ExitCode.USAGE,
            )
        args = {
            "HVINFRA_VERSION": __version__,
            "HVINFRA_REVISION": _git_revision(directory),
            **_parse_build_args(build_arg),
        }
        image_tag = tag or f"hvinfra/hunyuanvideo-{target}:{__version__}"
        engine = connect()
        display = BuildDisplay(output)
        display(
            engine.build_events(
                str(directory),
                dockerfile=dockerfile,
                tag=image_tag,
                build_args=args,
                pull=pull_base,
                no_cache=no_cache,
            )
        )
        info = engine.image(image_tag)
        if info is None:
            raise HvinfraError(f"the build ended but {image_tag} is not listed", "build again")
        if as_json:
            output.data(
                {"tag": image_tag, "id": info.id, "dockerfile": dockerfile, "build_args": args}
            )
            return
        output.out.print(
            f"[green]built[/green] {image_tag} ({info.id[:19]})\n"
            f"  run it  hvinfra up {target} --image {image_tag}"
        )
