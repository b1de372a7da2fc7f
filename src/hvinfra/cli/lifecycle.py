"""`hvinfra up|down|status|logs|attach|exec|shell`: the container lifecycle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hvinfra.cli.common import (
    TARGET_HELP,
    Fp8Opt,
    JsonOpt,
    LockOpt,
    OffloadOpt,
    ProfileFileOpt,
    SetOpt,
    SkipDiskOpt,
)

if TYPE_CHECKING:
    from hvinfra.bringup import BringUpOptions
    from hvinfra.context import AppContext
    from hvinfra.convergence import Plan
    from hvinfra.output import Output
    from hvinfra.records import ContainerInfo, ContainerSummary
    from hvinfra.spec import RunSpec

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def _container_row(info: ContainerInfo, image_digest: str = "") -> dict[str, Any]:
    from hvinfra.launcher import gpus_of

    return {
        "id": info.short_id,
        "name": info.name,
        "profile": info.labels.get("io.hvinfra.profile", ""),
        "status": info.status,
        "exit_code": info.exit_code,
        "image": info.image,
        "image_id": info.image_id,
        "image_digest": image_digest,
        "health": info.health,
        "gpus": gpus_of(info),
        "version": info.labels.get("io.hvinfra.version", ""),
        "started_at": info.started_at,
    }


def _image_digest(engine: Any, info: ContainerInfo | ContainerSummary) -> str:
    """The registry digest (`repo@sha256:…`) of the image the container runs, '' if none."""
    from hvinfra.images import repo_digest_of

    image = engine.image(info.image_id) if info.image_id else None
    return repo_digest_of(image, info.image) if image is not None else ""


def _created_from(item: ContainerSummary) -> str:
    """The image reference the container was created from. Once that reference names another
    image (a newer pull) or none, the engine's list gives the image's ID instead, as `docker ps`
    does; the spec label hvinfra wrote at create time still has the reference."""
    import json

    from hvinfra.labels import LABEL_SPEC

    if not item.image.startswith("sha256:"):
        return item.image
    try:
        written = json.loads(item.labels.get(LABEL_SPEC, "")).get("image")
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        written = None
    return written if isinstance(written, str) and written else item.image[7:19]


def _warn_about_assets(output: Any, profile: Any, target: str) -> None:
    """`up` starts the container anyway (it is a shell); it says what the scripts will miss."""
    from hvinfra.asset_probe import assets_report
    from hvinfra.assets import failed
    from hvinfra.errors import HvinfraError

    try:
        bad = failed(assets_report(profile))
    except HvinfraError:
        return
    if bad:
        listed = ", ".join(f"{row.piece} ({row.state.value})" for row in bad)
        output.warn(
            f"model assets not ready: {listed}; the sample scripts will fail until"
            f" `hvinfra models pull {target}` (`hvinfra models check {target}` lists each fix)"
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        image: str | None = typer.Option(None, "--image", help="Image to run instead."),
        name: str | None = typer.Option(None, "--name", help="Container name instead."),
        gpus: str | None = typer.Option(
            None, "--gpus", help="GPUs: all, none, 0,1 or GPU UUIDs (default: the profile's)."
        ),
        env: list[str] = typer.Option([], "-e", "--env", help="KEY=VALUE (repeatable)."),
        volume: list[str] = typer.Option(
            [], "-v", "--volume", help="HOST:CONTAINER[:ro] (repeatable)."
        ),
        privileged: bool = typer.Option(
            False,
            "--privileged",
            help="Add the official line's --privileged --security-opt seccomp=unconfined"
            " (off by default: see README, Security).",
        ),
        pull: str = typer.Option(
            "missing", "--pull", help="Pull the image: missing, always or never."
        ),
        force_recreate: bool = typer.Option(
            False,
            "--force-recreate",
            "--replace",
            help="Recreate the container even when it matches the profile.",
        ),
        no_recreate: bool = typer.Option(
            False,
            "--no-recreate",
            help="Keep an existing container even when it differs from the profile (says how).",
        ),
        dry_run: bool = typer.Option(
            False,
            "--dry-run",
            help="Print the plan (create, start, keep, recreate) and the equivalent"
            " `docker run` line; change nothing.",
        ),
        wait_timeout: float = typer.Option(
            60.0, "--wait-timeout", help="Seconds to wait for the container to run."
        ),
        lock: Path | None = LockOpt,
        skip_disk_check: bool = SkipDiskOpt,
        settle: float = typer.Option(
            0.25,
            "--settle",
            min=0.0,
            help="Seconds the container must keep running before `up` reports it started; an"
            " exit within them is shown with its log (exit 9). 0: report as soon as it runs.",
        ),
        skip_checks: bool = typer.Option(
            False,
            "--skip-checks",
            help="Start without the pre-flight checks of `hvinfra doctor` (printed loudly).",
            envvar="HVINFRA_SKIP_CHECKS",
        ),
        use_fp8: bool = Fp8Opt,
        use_cpu_offload: bool = OffloadOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Start the profile's container (detached, like the official `docker run -itd`).

        Plans like docker compose: create it, start a stopped one, keep a running one that
        matches the profile, recreate one that differs (and say how). Runs the checks of
        `hvinfra doctor` first and refuses to start when one fails.
        """
        from hvinfra.bringup import BringUpOptions, bring_up, dry_run_spec
        from hvinfra.cli.common import app_context, load
        from hvinfra.errors import ExitCode, HvinfraError, ProfileError
        from hvinfra.launcher import PullPolicy

        app = app_context(ctx)
        output = app.output(as_json)
        if force_recreate and no_recreate:
            raise HvinfraError(
                "--force-recreate and --no-recreate exclude each other", "choose one",
                exit_code=ExitCode.USAGE,
            )  # fmt: skip
        try:
            policy = PullPolicy(pull)
        except ValueError:
            raise ProfileError(
                f"--pull {pull!r} is not a pull policy", "use missing, always or never"
            ) from None
        loaded = load(
            target, profile_file, sets, image=image, name=name, gpus=gpus, env=env,
            volumes=volume, privileged=privileged,
        )  # fmt: skip
        profile = loaded.profile
        options = BringUpOptions(
            pull=policy, force_recreate=force_recreate, no_recreate=no_recreate,
            skip_checks=skip_checks, fp8=use_fp8, cpu_offload=use_cpu_offload, lock=lock,
            skip_disk_check=skip_disk_check, wait_timeout=wait_timeout, settle=settle,
        )  # fmt: skip
        if dry_run:
            from hvinfra.argv import docker_run_argv, shell_line

            profile, spec = dry_run_spec(app, output, profile)
            argv = docker_run_argv(spec)
            plan = _dry_run_plan(app, output, spec, options)
            if as_json:
                output.data(
                    {"argv": argv, "line": shell_line(argv), "profile": profile.name}
                    | _plan_row(plan)
                )
            else:
                if plan is not None:
                    output.line(f"# plan: {plan.describe()}")
                output.line(shell_line(argv))
            return
        _warn_about_assets(output, profile, target)
        from hvinfra.exposure import exposures

        for warning in exposures(profile, loaded.sources):
            output.warn(f"SECURITY: {warning}")
        brought = bring_up(app, output, profile, options)
        result, profile, mismatch = brought.result, brought.profile, brought.lock_mismatch
        engine = app.engine()
        if mismatch:
            output.warn(
                f"the image differs from the lock file: {mismatch} (pin it with"
                " `--set image_digest=…`, or `hvinfra lock` to record the new one)"
            )
        row = _container_row(result.container, _image_digest(engine, result.container)) | {
            "action": result.action,
            "pulled": result.pulled,
            "lock_mismatch": mismatch,
        }
        row |= _plan_row(result.plan)
        if as_json:
            output.data(row)
            return
        if result.plan is not None and result.plan.differs and result.action == "kept":
            output.warn(
                f"{row['name']} differs from the profile: {', '.join(result.plan.differences)};"
                f" kept as it is (--no-recreate). `hvinfra up {profile.name}` recreates it"
            )
        verb = {
            "kept": "already running, unchanged",
            "recreated": "recreated and started",
        }.get(result.action, "started")
        why = f"  [dim]({result.plan.reason})[/dim]" if result.plan and result.plan.reason else ""
        output.out.print(
            f"[green]{verb}[/green] {row['name']} ({row['id']}){why}\n"
            f"  image  {row['image']}  [dim]{row['image_id'][:19]}[/dim]\n"
            f"  digest {row['image_digest'] or '(none: built or loaded here)'}\n"
            f"  gpus   {row['gpus'] or 'none'}\n"
            f"  next   hvinfra logs {profile.name} -f | hvinfra attach {profile.name}"
            f" | hvinfra exec {profile.name} -- CMD | hvinfra down {profile.name}"
        )

    @app.command()
    def down(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        name: str | None = typer.Option(None, "--name", help="Container name instead."),
        keep: bool = typer.Option(False, "--keep", help="Only stop; keep the container."),
        timeout: int = typer.Option(10, "--timeout", help="Seconds to wait before killing."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Stop and remove the profile's container."""
        from hvinfra.cli.common import app_context, load
        from hvinfra.launcher import down as stop

        app = app_context(ctx)
        output = app.output(as_json)
        profile = load(target, profile_file, sets, name=name).profile
        result = stop(app.engine(), profile.container_name, keep=keep, timeout=timeout)
        if as_json:
            output.data({"name": result.name, "found": result.found, "removed": result.removed})
        elif not result.found:
            output.out.print(f"no container named {result.name}: nothing to do")
        else:
            output.out.print(
                f"[green]{'removed' if result.removed else 'stopped'}[/green] {result.name}"
            )

    @app.command()
    def status(
        ctx: typer.Context,
        target: str | None = typer.Argument(None, help="Only this profile's containers."),
        as_json: bool = JsonOpt,
    ) -> None:
        """List the containers hvinfra started (found by their labels)."""
        from hvinfra.cli.common import app_context
        from hvinfra.launcher import gpus_of, managed_containers, managed_summaries

        app = app_context(ctx)
        output = app.output(as_json)
        engine = app.engine()
        if as_json:  # every field: one inspect per container
            containers = managed_containers(engine, target)
            digests = {c.image_id: _image_digest(engine, c) for c in containers}  # one per image
            output.data([_container_row(c, digests[c.image_id]) for c in containers])
            return
        listed = managed_summaries(engine, target)  # the table: the engine's list is enough
        if not listed:
            output.line("no hvinfra containers (start one with `hvinfra up t2v`)")
            return
        digests = {c.image_id: _image_digest(engine, c) for c in listed}
        cells = []
        for item in listed:
            state = item.status + (f" ({item.exit_code})" if item.status == "exited" else "")
            if item.health:
                state += f", {item.health}"
            digest = digests[item.image_id].partition("@")[2]
            cells.append([
                item.name, item.labels.get("io.hvinfra.profile", ""), state, _created_from(item),
                item.image_id[7:19], digest[7:19] or "-", gpus_of(item) or "-", item.id[:12],
            ])  # fmt: skip
        # plain columns, as `docker ps`: greppable, and no rich import for the most run command
        headers = ("NAME", "PROFILE", "STATUS", "IMAGE", "IMAGE ID", "DIGEST", "GPUS", "ID")
        output.columns(headers, cells)

    @app.command()
    def logs(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        name: str | None = typer.Option(None, "--name", help="Container name instead."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output."),
        tail: int | None = typer.Option(None, "--tail", "-n", help="Only the last N lines."),
        since: str | None = typer.Option(
            None, "--since", help="Only output since: 10m, 2h, a unix time or a date."
        ),
        timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Prefix timestamps."),
    ) -> None:
        """Print the container's output; with -f, follow until it exits or Ctrl-C."""
        from hvinfra.cli.common import app_context, load
        from hvinfra.launcher import require_container

        profile = load(target, profile_file, sets, name=name).profile
        engine = app_context(ctx).engine()
        info = require_container(engine, profile.container_name, profile.name, running=False)
        sink = sys.stdout.buffer
        try:
            for chunk in engine.logs(
                info.id, follow=follow, tail=tail, since=since, timestamps=timestamps, tty=info.tty
            ):
                sink.write(chunk)
                if follow:
                    sink.flush()
            sink.flush()
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    @app.command()
    def attach(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        name: str | None = typer.Option(None, "--name", help="Container name instead."),
        detach_keys: str = typer.Option(
            DEFAULT_DETACH_KEYS, "--detach-keys", help="Key sequence that detaches."
        ),
    ) -> None:
        """Attach this terminal to the container's shell; detach with Ctrl-P Ctrl-Q."""
        from hvinfra.cli.common import app_context, load
        from hvinfra.errors import ContainerStateError
        from hvinfra.launcher import require_container
        from hvinfra.terminal import relay

        app = app_context(ctx)
        output = app.output()
        profile = load(target, profile_file, sets, name=name).profile
        engine = app.engine()
        info = require_container(engine, profile.container_name, profile.name, running=True)
        if not (info.tty and info.stdin_open):
            raise ContainerStateError(
                f"container {info.name} has no TTY and open stdin, so there is nothing to attach",
                f"use `hvinfra logs {profile.name} -f` or `hvinfra exec {profile.name} -- CMD`",
            )
        sock = engine.attach_socket(info.id, detach_keys)
        output.note(f"attached to {info.name}; detach with {detach_keys} (the shell keeps running)")
        relay(sock, on_resize=lambda h, w: engine.resize(info.id, h, w))
        after = engine.container(info.id)
        if after is not None and after.running:
            output.note(f"\r\ndetached from {info.name}; `hvinfra attach {profile.name}` returns")
        elif after is not None:
            output.note(f"\r\n{info.name} exited ({after.exit_code})")
            raise typer.Exit(after.exit_code)

    @app.command(
        "exec",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def exec_(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=TARGET_HELP),
        command: list[str] = typer.Argument(None, help="The command, after --."),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        name: str | None = typer.Option(None, "--name", help="Container name instead."),
        interactive: bool = typer.Option(
            False, "--interactive", "-i", help="Keep stdin open and allocate a TTY."
        ),
        env: list[str] = typer.Option([], "-e", "--env", help="KEY=VALUE (repeatable)."),
        workdir: str | None = typer.Option(None, "--workdir", "-w", help="Working directory."),
    ) -> None:
        """Run a command in the running container: `hvinfra exec t2v -- nvidia-smi`.

        The exit code is the command's own.
        """
        from hvinfra.cli.common import parse_env_flags
        from hvinfra.launcher import join_argv

        code = _run_exec(
            ctx, target, profile_file, sets, name, join_argv(command or []),
            interactive=interactive, env=parse_env_flags(env), workdir=workdir,
        )  # fmt: skip
        raise typer.Exit(code)

    @app.command()
    def shell(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        name: str | None = typer.Option(None, "--name", help="Container name instead."),
    ) -> None:
        """Open an interactive shell in the running container (bash if present, else sh)."""
        argv = ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash; else exec sh; fi"]
        code = _run_exec(ctx, target, profile_file, sets, name, argv, interactive=True)
        raise typer.Exit(code)


def _plan_row(plan: Plan | None) -> dict[str, Any]:
    if plan is None:
        return {"plan": None}
    return {
        "plan": {
            "kind": plan.kind.value,
            "reason": plan.reason,
            "differences": list(plan.differences),
        }
    }


def _dry_run_plan(
    app: AppContext, output: Output, spec: RunSpec, options: BringUpOptions
) -> Plan | None:
    """The plan `up` would carry out; None (with a note) when the engine does not answer."""
    from hvinfra.bringup import plan_for
    from hvinfra.errors import HvinfraError

    try:
        return plan_for(app, spec, options)
    except HvinfraError as error:
        output.note(f"note: no plan: {error.message.splitlines()[0]}")
        return None


def _run_exec(
    ctx: typer.Context,
    target: str,
    profile_file: Path | None,
    sets: list[str],
    name: str | None,
    argv: list[str],
    *,
    interactive: bool,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
) -> int:
    import os

    from hvinfra.cli.common import app_context, load
    from hvinfra.launcher import require_container
    from hvinfra.terminal import relay

    profile = load(target, profile_file, sets, name=name).profile
    engine = app_context(ctx).engine()
    info = require_container(engine, profile.container_name, profile.name, running=True)
    use_tty = interactive and os.isatty(sys.stdin.fileno())
    exec_id = engine.exec_create(
        info.id, argv, tty=use_tty, stdin=interactive, environment=env, workdir=workdir
    )
    if interactive:
        sock = engine.exec_socket(exec_id, tty=use_tty)
        relay(sock, on_resize=lambda h, w: engine.resize(info.id, h, w, exec_id=exec_id))
    else:
        for out, err in engine.exec_stream(exec_id):
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.buffer.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.buffer.flush()
    code = engine.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 1
