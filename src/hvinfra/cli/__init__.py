"""The typer app: the only composition root. Its callback puts one AppContext (engine, GPU
probe, consoles) on `ctx.obj`; commands are thin; each group lives in its own module and
registers itself here."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer
import typer.main
from typer.core import TyperGroup

from hvinfra import __version__

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter

    from hvinfra.context import AppContext

# Each command, the module that registers it and its line in `hvinfra --help`. The modules are
# imported only for the command that runs (or whose help is shown): `hvinfra --help` and shell
# completion list the commands from this table without loading any of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("lifecycle", "Start the profile's container (or keep, start, recreate it)."),
    "down": ("lifecycle", "Stop and remove the profile's container."),
    "status": ("lifecycle", "List the containers hvinfra started."),
    "logs": ("lifecycle", "Print the container's output; -f follows it."),
    "attach": ("lifecycle", "Attach this terminal to the container's shell."),
    "exec": ("lifecycle", "Run a command in the running container."),
    "shell": ("lifecycle", "Open an interactive shell in the running container."),
    "doctor": ("doctor", "Check this host for a profile."),
    "pull": ("images_cmd", "Pull the profile's image with per-layer progress."),
    "lock": ("images_cmd", "Record the digests of the images the profiles use."),
    "build": ("images_cmd", "Build the launcher-ready image on the official one."),
    "config": ("config_cmd", "Show and check profiles."),
    "models": ("models_cmd", "The HunyuanVideo code and weights: check, pull, synth."),
    "generate": ("generate_cmd", "Generate a video in the profile's container."),
    "render": ("render_cmd", "Render the profile for compose, Kubernetes or Slurm."),
    "batch": ("batch_cmd", "Run a prompt list: one video per line, resumable, one worker per GPU."),
    "serve": ("serve_cmd", "Serve jobs over HTTP: a job API and a web page."),
}


class LazyCommands(TyperGroup):
    """The root group: lists COMMANDS, imports a command's module when that command is asked."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in COMMANDS:
            return None
        return registered_group(COMMANDS[cmd_name][0]).commands.get(cmd_name)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


@functools.cache
def registered_group(module_name: str) -> TyperGroup:
    """The commands one `hvinfra.cli.<module>` registers, as a click group."""
    module = importlib.import_module(f"hvinfra.cli.{module_name}")
    holder = typer.Typer(rich_markup_mode=None)
    module.register(holder)
    return typer.main.get_group(holder)


app = typer.Typer(
    name="hvinfra",
    cls=LazyCommands,
    help="Run HunyuanVideo on NVIDIA GPU hosts: check the machine, start the official container,"
    " run generation jobs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich help formatting costs 100 ms of imports
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hvinfra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False, "--debug", help="On errors, also show the chained cause.", envvar="HVINFRA_DEBUG"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """hvinfra: the HunyuanVideo launcher."""
    from hvinfra.context import AppContext

    if not isinstance(ctx.obj, AppContext):
        ctx.obj = AppContext()  # one per command: engine, GPU probe and consoles


def main(argv: Sequence[str] | None = None, *, context: AppContext | None = None) -> int:
    """Run the CLI and return its exit code: HvinfraErrors become one red line plus a fix.

    `context`: the AppContext the commands use (tests pass fakes); by default a fresh one."""
    from hvinfra.errors import ExitCode, HvinfraError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("HVINFRA_DEBUG", "") not in ("", "0", "false")
    try:
        result = app(args=args, prog_name="hvinfra", standalone_mode=False, obj=context)
    except HvinfraError as error:
        from hvinfra.output import render_error

        render_error(error, debug=debug)
        return int(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:
        # Click's own usage errors (typer may vendor click, so match by shape, not by class).
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            return int(exc.exit_code)  # type: ignore[attr-defined]
        raise
    return int(result) if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
