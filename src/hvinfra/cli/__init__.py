"""The typer app: the only composition root. Commands are thin; each group lives in its own
module and registers itself here."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from hvinfra import __version__

app = typer.Typer(
    name="hvinfra",
    help="Run HunyuanVideo on NVIDIA GPU hosts: check the machine, start the official container,"
    " run generation jobs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hvinfra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="On errors, also show the chained cause.", envvar="HVINFRA_DEBUG"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """hvinfra: the HunyuanVideo launcher."""


def _register() -> None:
    from hvinfra.cli import config_cmd, doctor, generate_cmd, images_cmd, lifecycle, models_cmd

    lifecycle.register(app)
    config_cmd.register(app)
    doctor.register(app)
    models_cmd.register(app)
    generate_cmd.register(app)
    images_cmd.register(app)
    from hvinfra.cli import render_cmd

    render_cmd.register(app)
    __import__("hvinfra.cli.batch_cmd", fromlist=["register"]).register(app)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: HvinfraErrors become one red line plus a fix."""
    from hvinfra.errors import ExitCode, HvinfraError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("HVINFRA_DEBUG", "") not in ("", "0", "false")
    try:
        result = app(args=args, prog_name="hvinfra", standalone_mode=False)
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
