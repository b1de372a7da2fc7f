"""`hvinfra models check|pull`: the HunyuanVideo code at its pinned commit and the weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hvinfra.cli.common import TARGET_HELP, JsonOpt, ProfileFileOpt, SetOpt

if TYPE_CHECKING:
    from hvinfra.assets import AssetRow, FixContext
    from hvinfra.output import Output
    from hvinfra.profiles import Profile

CodeDirOpt = typer.Option(
    None, "--code-dir", help="Code folder instead of the profile's volumes.code.host."
)
WeightsDirOpt = typer.Option(
    None, "--weights-dir", help="Weights folder instead of the profile's volumes.weights.host."
)

models_app = typer.Typer(
    name="models",
    help="The HunyuanVideo code (a git checkout at a pinned commit) and the weights:"
    " check what is there, pull what is missing.",
    no_args_is_help=True,
)


def _resolve(
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


def _render_rows(output: Output, rows: list[AssetRow]) -> None:
    from rich.table import Table

    from hvinfra.assets import AssetState, human_size

    colour = {AssetState.OK: "green", AssetState.WRONG_COMMIT: "yellow"}
    for kind in ("code", "weights"):
        folder = next((r.path for r in rows if r.kind == kind and r.piece in ("code", "model")), "")
        if folder:
            output.out.print(f"{kind + ' folder:':<15} {folder}", markup=False)
    table = Table("PIECE", "STATE", "SIZE", "DETAIL")
    for row in rows:
        style = colour.get(row.state, "red" if row.required else "yellow")
        state = f"[{style}]{row.state.value}[/{style}]" + ("" if row.required else " (optional)")
        size = human_size(row.size) if row.size else ""
        table.add_row(row.piece, state, size, row.detail)
    output.table(table)
    fixes = [row for row in rows if row.state is not AssetState.OK and row.fix]
    if fixes:
        output.out.print("fix:")
        for row in fixes:
            output.out.print(f"  {row.piece + ':':<17} {row.fix}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.command("check")
def check(
    target: str = typer.Argument(..., help=TARGET_HELP),
    code_dir: Path | None = CodeDirOpt,
    weights_dir: Path | None = WeightsDirOpt,
    profile_file: Path | None = ProfileFileOpt,
    sets: list[str] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One row per piece (code, model, vae, text encoders…): ok, missing, incomplete or wrong
    commit, with sizes and the command that fixes it. Exit code 11 when a required piece is not
    ok; reads the disk only (no network, no Docker)."""
    from hvinfra.asset_probe import assets_report
    from hvinfra.assets import failed, overall_fix
    from hvinfra.errors import AssetsMissing
    from hvinfra.output import Output

    output = Output(json_mode=as_json)
    profile, fix = _resolve(target, profile_file, sets, code_dir, weights_dir)
    rows = assets_report(profile, fix)
    bad = failed(rows)
    if as_json:
        output.data({"profile": profile.name, "ok": not bad, "rows": [r.as_dict() for r in rows]})
    else:
        _render_rows(output, rows)
    if bad:
        raise AssetsMissing(
            f"{len(bad)} required piece{'s' if len(bad) > 1 else ''} not ready: "
            + ", ".join(f"{r.piece} ({r.state.value})" for r in bad),
            overall_fix(rows, fix),
        )


@models_app.command("pull")
def pull(
    target: str = typer.Argument(..., help=TARGET_HELP),
    fp8: bool = typer.Option(
        False, "--fp8", help="Also download the FP8 DiT weights (for --use-fp8; T2V only)."
    ),
    only: str | None = typer.Option(
        None, "--only", metavar="code|weights", help="Only the code, or only the weights."
    ),
    code_dir: Path | None = CodeDirOpt,
    weights_dir: Path | None = WeightsDirOpt,
    profile_file: Path | None = ProfileFileOpt,
    sets: list[str] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fetch what `models check` reports missing: `git` checkout of the pinned commit, hub
    downloads (resumable; HF_ENDPOINT selects a mirror; the token comes from HF_TOKEN or your
    saved hub login), and for T2V the text-encoder preprocessing in the profile's image."""
    import sys

    from hvinfra.errors import AssetsMissing, ExitCode, HvinfraError, Interrupted
    from hvinfra.model_pull import PullTools, run_pull
    from hvinfra.output import Output

    if only not in (None, "code", "weights"):
        raise HvinfraError(
            f"--only {only!r}: use code or weights",
            "write --only code or --only weights",
            exit_code=ExitCode.USAGE,
        )
    output = Output(json_mode=as_json)
    profile, fix = _resolve(target, profile_file, sets, code_dir, weights_dir)
    pieces = profile.models.weights.values() if profile.models else []
    if fp8 and not any(p.optional == "fp8" for p in pieces):
        output.warn(f"profile {profile.name} has no FP8 weights: --fp8 changes nothing")
    tools = PullTools(
        hub=_hub,
        engine=_engine,
        progress=_display(output),
        say=output.info,
        on_output=_relay_output(),
        observe_image_pull=_image_observer(output, profile.image),
    )
    try:
        report = run_pull(profile, tools, fix=fix, only=only, fp8=fp8)
    except Interrupted as error:
        _exit_now_if_downloading(error)
        raise
    if as_json:
        output.data({"profile": profile.name, **report.as_dict()})
    else:
        summary = [f"code {report.code_action}"]
        if report.downloaded:
            summary.append("downloaded " + ", ".join(report.downloaded))
        if report.preprocessed:
            summary.append("preprocessed " + ", ".join(report.preprocessed))
        output.info("; ".join(summary))
        _render_rows(output, report.rows)
    sys.stdout.flush()
    pending = [
        r for r in report.rows
        if r.failed and (only is None or r.kind == only)
    ]  # fmt: skip
    if pending:
        raise AssetsMissing(
            "still not ready: " + ", ".join(f"{r.piece} ({r.state.value})" for r in pending),
            pending[0].fix,
        )


def _exit_now_if_downloading(error: Exception) -> None:
    """After Ctrl-C the hub's download threads would finish their files before Python exits;
    the partial files are resumable, so leave at once instead."""
    import os
    import sys
    import threading

    from hvinfra.errors import HvinfraError
    from hvinfra.output import render_error

    if threading.active_count() > 1 and isinstance(error, HvinfraError):
        render_error(error)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(int(error.exit_code))


def _hub() -> Any:
    from hvinfra.hub import HfHub

    return HfHub()


def _engine() -> Any:
    from hvinfra.cli.common import connect

    return connect()


def _display(output: Output) -> Any:
    import sys

    from hvinfra.download_display import NoDisplay, PlainDownload, RichDownload

    if output.json_mode:
        return NoDisplay()
    if sys.stderr.isatty():
        return RichDownload(output.err)
    return PlainDownload(lambda text: output.err.print(text, markup=False, highlight=False))


def _relay_output() -> Any:
    import sys

    def relay(chunk: bytes) -> None:
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()

    return relay


def _image_observer(output: Output, image: str) -> Any:
    from hvinfra.pull_display import pull_observer

    return pull_observer(output, image)
