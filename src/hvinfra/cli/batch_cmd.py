"""`hvinfra batch t2v|i2v FILE`: a prompt list (JSONL, CSV or text), each line validated as
`generate` validates it, run on the profile's container one worker per GPU, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hvinfra.cli.common import JsonOpt, ProfileFileOpt, SetOpt
from hvinfra.cli.generate_cmd import _C

_GENERATE = _C["t2v"]

# Options both modes share; the line defaults are None so that a line's own value wins and the
# request model's default applies where neither gives one.
_SHARED: dict[str, Any] = {
    "file": typer.Argument(
        ..., help="JSONL (one object per line), CSV with a header, or text (one prompt per line)."
    ),
    "out": typer.Option(
        Path("outputs"), "--out", "-o", help="Folder for the videos, batch.json, summary.json."
    ),
    "resolution": typer.Option(None, "--resolution", "-r", help="Default for every line."),
    "frames": typer.Option(None, "--frames", help="Default video length (4k+1 frames)."),
    "steps": typer.Option(None, "--steps", help="Default denoising steps."),
    "seed": typer.Option(
        None, "--seed", help="Default seed (else each line gets one derived from its content)."
    ),
    "flow_shift": typer.Option(None, "--flow-shift", help="Default flow-matching shift."),
    "embedded_cfg_scale": typer.Option(
        None, "--embedded-cfg-scale", help="Default embedded guidance scale."
    ),
    "neg_prompt": typer.Option(None, "--neg-prompt", help="Default negative prompt."),
    "cpu_offload": typer.Option(
        False, "--cpu-offload", help="Official --use-cpu-offload for every line."
    ),
    "gpus": typer.Option(
        None, "--gpus", help="GPUs to spread the lines over: all (default), 0,1 or UUIDs."
    ),
    "gpus_per_job": typer.Option(
        1, "--gpus-per-job", help="GPUs per video: 1 = one worker per GPU; K > 1 = xDiT per job."
    ),
    "reuse": typer.Option(
        None,
        "--reuse/--no-reuse",
        help="Load the model once per worker (default at the pinned code commit), or run one"
        " sample script per line.",
    ),
    "shard": typer.Option(
        None, "--shard", help="I/N: take every N-th line from line I (0-based), for arrays."
    ),
    "skip_invalid": typer.Option(
        False, "--skip-invalid", help="Run the valid lines even if some are invalid."
    ),
    "retry_failed": typer.Option(
        False, "--retry-failed", help="Run again the lines that failed in an earlier run."
    ),
    "dry_run": typer.Option(
        False, "--dry-run", help="Print the plan (lines, sizes, GPUs, skips); start nothing."
    ),
    # the same options as `generate`, one definition
    **{
        key: _GENERATE[key]
        for key in ("no_up", "skip_checks", "stop_timeout", "verbose", "kill_stale")
    },
    "profile_file": ProfileFileOpt,
    "sets": SetOpt,
    "as_json": JsonOpt,
}
S = _SHARED


def register(app: typer.Typer) -> None:
    batch_app = typer.Typer(
        help="Run a list of prompts: one video per line, resumable, spread over the GPUs.",
        no_args_is_help=True,
    )
    app.add_typer(batch_app, name="batch")

    @batch_app.command("t2v")
    def t2v(
        ctx: typer.Context,
        file: Path = S["file"],
        out: Path = S["out"],
        resolution: str | None = S["resolution"],
        aspect: str | None = typer.Option(None, "--aspect", "-a", help="Default width:height."),
        frames: int | None = S["frames"],
        steps: int | None = S["steps"],
        seed: int | None = S["seed"],
        flow_shift: float | None = S["flow_shift"],
        embedded_cfg_scale: float | None = S["embedded_cfg_scale"],
        neg_prompt: str | None = S["neg_prompt"],
        fp8: bool = typer.Option(False, "--fp8", help="FP8 DiT weights for every line."),
        cpu_offload: bool = S["cpu_offload"],
        gpus: str | None = S["gpus"],
        gpus_per_job: int = S["gpus_per_job"],
        reuse: bool | None = S["reuse"],
        shard: str | None = S["shard"],
        skip_invalid: bool = S["skip_invalid"],
        retry_failed: bool = S["retry_failed"],
        no_up: bool = S["no_up"],
        skip_checks: bool = S["skip_checks"],
        dry_run: bool = S["dry_run"],
        stop_timeout: float = S["stop_timeout"],
        verbose: bool = S["verbose"],
        kill_stale: bool = S["kill_stale"],
        profile_file: Path | None = S["profile_file"],
        sets: list[str] = S["sets"],
        as_json: bool = S["as_json"],
    ) -> None:
        """Text to video for every line: `hvinfra batch t2v prompts.jsonl --out runs/`."""
        _batch(ctx, "t2v", dict(locals()))

    @batch_app.command("i2v")
    def i2v(
        ctx: typer.Context,
        file: Path = S["file"],
        out: Path = S["out"],
        image: Path | None = typer.Option(
            None, "--image", "-i", help="Default first frame (a line's `image` wins)."
        ),
        resolution: str | None = S["resolution"],
        stability: bool = typer.Option(False, "--stability", help="Default: stable video."),
        dynamic: bool = typer.Option(False, "--dynamic", help="Default: more motion."),
        lora: Path | None = typer.Option(None, "--lora", help="Default LoRA file."),
        lora_scale: float | None = typer.Option(None, "--lora-scale", help="Default LoRA scale."),
        frames: int | None = S["frames"],
        steps: int | None = S["steps"],
        seed: int | None = S["seed"],
        flow_shift: float | None = S["flow_shift"],
        embedded_cfg_scale: float | None = S["embedded_cfg_scale"],
        neg_prompt: str | None = S["neg_prompt"],
        cpu_offload: bool = S["cpu_offload"],
        gpus: str | None = S["gpus"],
        gpus_per_job: int = S["gpus_per_job"],
        reuse: bool | None = S["reuse"],
        shard: str | None = S["shard"],
        skip_invalid: bool = S["skip_invalid"],
        retry_failed: bool = S["retry_failed"],
        no_up: bool = S["no_up"],
        skip_checks: bool = S["skip_checks"],
        dry_run: bool = S["dry_run"],
        stop_timeout: float = S["stop_timeout"],
        verbose: bool = S["verbose"],
        kill_stale: bool = S["kill_stale"],
        profile_file: Path | None = S["profile_file"],
        sets: list[str] = S["sets"],
        as_json: bool = S["as_json"],
    ) -> None:
        """Image to video for every line (JSONL/CSV with an `image` column, or --image)."""
        _batch(ctx, "i2v", dict(locals()))


LINE_DEFAULTS = (
    "resolution", "aspect", "frames", "steps", "seed", "flow_shift", "embedded_cfg_scale",
    "neg_prompt", "fp8", "cpu_offload", "stability", "dynamic", "lora_scale",
)  # fmt: skip


def _line_defaults(v: dict[str, Any]) -> dict[str, Any]:
    defaults = {
        key.replace("_", "-"): v[key]
        for key in LINE_DEFAULTS
        if v.get(key) is not None and v.get(key) is not False  # a flag not given
    }
    for key in ("image", "lora"):
        if v.get(key) is not None:
            defaults[key] = str(v[key].expanduser().resolve())
    return defaults


def _devices(v: dict[str, Any], profile: Any, system: Any, app: Any) -> list[str] | None:
    """The GPUs to spread the batch over, checked by the same GPU selection as `up`."""
    from hvinfra.checks import select_gpus
    from hvinfra.cli.generate_cmd import host_gpu_count
    from hvinfra.profiles.models import parse_gpu_selection

    try:
        selection = parse_gpu_selection(v["gpus"] if v["gpus"] is not None else profile.gpu.devices)
    except ValueError as exc:
        from hvinfra.errors import ExitCode, HvinfraError

        raise HvinfraError(f"--gpus {v['gpus']}: {exc}", "write all, 0,1 or GPU UUIDs",
                           exit_code=ExitCode.USAGE) from None  # fmt: skip
    if selection == "none":
        from hvinfra.errors import ExitCode, HvinfraError

        raise HvinfraError("a batch needs at least one GPU", "use --gpus all or --gpus 0,1",
                           exit_code=ExitCode.USAGE)  # fmt: skip
    if system is not None:
        chosen = select_gpus(selection, system)
        if selection == "all":
            return [str(gpu.index) for gpu in chosen]
        return list(selection)
    if selection == "all":
        count = host_gpu_count(app)
        return [str(i) for i in range(count)] if count else None
    return list(selection)


def _batch(ctx: typer.Context, kind: str, v: dict[str, Any]) -> None:
    from hvinfra.batch.lines import BatchFileError, read_batch, request_hash, require_valid
    from hvinfra.batch.manifest import Manifest
    from hvinfra.batch.plan import (
        BatchPlan,
        Item,
        apply_shard,
        assign_slots,
        line_stem,
        parse_shard,
        reuse_decision,
    )  # fmt: skip
    from hvinfra.cli.common import app_context, load
    from hvinfra.errors import HvinfraError
    from hvinfra.generate.plan import build_plan

    app = app_context(ctx)
    output = app.output(v["as_json"])
    source: Path = v["file"]
    shard = parse_shard(v["shard"])
    loaded = load(kind, v["profile_file"], v["sets"])
    profile = loaded.profile
    all_lines = apply_shard(read_batch(source, kind, _line_defaults(v)), shard)
    system = None if v["skip_checks"] or v["dry_run"] else app.gpu_system()
    slots, notes = assign_slots(_devices(v, profile, system, app), v["gpus_per_job"])
    # Each line planned as its job will be (xDiT split, code folder): refused lines are invalid.
    checked = []
    for line in all_lines:
        if line.request is not None:
            gpus = list(slots[0].gpus) if slots[0].gpus is not None else None
            try:
                build_plan(line.request.model_copy(update={"gpus": gpus}), profile, job_id="plan")
            except HvinfraError as exc:
                fix = f" ({exc.fix})" if exc.fix else ""
                line = type(line)(line.number, None, exc.message + fix)
        checked.append(line)
    invalid = tuple(line for line in checked if not line.valid)
    valid = require_valid(source, checked, skip_invalid=v["skip_invalid"])
    if not valid:
        raise BatchFileError(f"{source}: no valid line to run", "correct the lines above")
    out_dir: Path = v["out"].expanduser()
    manifest = Manifest.load(out_dir)
    items = []
    for line in valid:
        digest = request_hash(line)
        action = manifest.decide(line.number, digest, out_dir, retry_failed=v["retry_failed"])
        items.append(Item(line, digest, line_stem(line), action))
    code = profile.models.code if profile.models is not None else None
    reuse, reason = reuse_decision(
        v["reuse"], kind, code.commit if code is not None else None, v["gpus_per_job"]
    )
    plan = BatchPlan(source, tuple(items), tuple(slots), invalid, tuple(notes), reuse, reason)
    for note in notes:
        output.warn(note)
    for line in invalid:
        output.warn(f"{source}:{line.number}: skipped (--skip-invalid): {line.error}")
    if v["dry_run"]:
        _print_plan(output, plan, out_dir, shard)
        return
    _run(app, output, kind, v, plan, profile, out_dir, manifest, system)


def _item_row(item: Any) -> dict[str, Any]:
    request = item.line.request
    size = (
        "x".join(str(n) for n in reversed(request.video_size))
        if hasattr(request, "video_size")
        else request.resolution
    )
    return {
        "line": item.line.number, "action": item.action, "output": item.stem,
        "size": size, "frames": request.frames, "steps": request.steps, "seed": request.seed,
        "seed_derived": item.line.seed_derived, "prompt": request.prompt,
    }  # fmt: skip


def _print_plan(output: Any, plan: Any, out_dir: Path, shard: Any) -> None:
    from rich.table import Table

    rows = [_item_row(item) for item in plan.items]
    slots = [{"name": s.name, "gpus": list(s.gpus) if s.gpus else None} for s in plan.slots]
    if output.json_mode:
        output.data(
            {
                "source": str(plan.source), "out": str(out_dir),
                "shard": str(shard) if shard else None, "lines": rows, "workers": slots,
                "reuse": plan.reuse, "reuse_reason": plan.reuse_reason,
                "notes": list(plan.notes),
                "invalid": [{"line": x.number, "error": x.error} for x in plan.invalid],
            }
        )  # fmt: skip
        return
    where = f" (shard {shard})" if shard else ""
    table = Table(title=f"batch plan: {plan.source} -> {out_dir}{where}")
    for column in ("line", "action", "size", "frames", "steps", "seed"):
        table.add_column(column, no_wrap=True)
    table.add_column("output (.mp4/.json/.log)", overflow="fold")
    for row in rows:
        action = {"run": "run", "done": "skip (done)", "failed": "skip (failed)"}[row["action"]]
        table.add_row(
            str(row["line"]), action, row["size"], str(row["frames"]), str(row["steps"]),
            f"{row['seed']}{'*' if row['seed_derived'] else ''}", row["output"],
        )  # fmt: skip
    output.table(table)
    workers = ", ".join(
        f"{s['name']} (GPU {','.join(s['gpus'])})" if s["gpus"] else f"{s['name']} (first GPU)"
        for s in slots
    )
    output.line(f"workers: {workers}")
    output.line(f"model: {plan.reuse_reason}")
    counts = {a: sum(1 for r in rows if r["action"] == a) for a in ("run", "done", "failed")}
    output.line(
        f"{counts['run']} to run, {counts['done']} done before (skipped), {counts['failed']}"
        " failed before (skipped; --retry-failed runs them)"
        + ("; * = seed derived from the line" if any(r["seed_derived"] for r in rows) else "")
    )


def _run(
    app: Any, output: Any, kind: str, v: dict[str, Any], plan: Any, profile: Any, out_dir: Path,
    manifest: Any, system: Any,
) -> None:  # fmt: skip
    from hvinfra.batch.manifest import exclusive
    from hvinfra.batch.runner import summarize
    from hvinfra.errors import ExitCode

    if v["skip_checks"]:
        output.err.print(
            "[bold yellow]WARNING: --skip-checks: no VRAM gate and no model-asset"
            " check.[/bold yellow]"
        )
    elif system is None:
        output.warn("NVML did not answer: the jobs' GPU memory was not checked")
    to_run = plan.to_run
    for warning in _checks(plan, profile, out_dir, system, gates=not v["skip_checks"]):
        output.warn(f"{warning.title}: {warning.detail}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir):
        if to_run:
            summary = _start(app, output, kind, v, plan, profile, out_dir, manifest)
        else:  # everything done (or failed) before: no container needed
            output.info("every line is done or failed in an earlier run (--retry-failed reruns"
                        " failures)")  # fmt: skip
            summary = summarize(plan, manifest, [], out_dir, 0.0, interrupted=False, started_at="")
    _print_summary(output, summary)
    if summary["counts"]["failed"]:
        raise typer.Exit(int(ExitCode.JOB_FAILED))


def _start(
    app: Any, output: Any, kind: str, v: dict[str, Any], plan: Any, profile: Any,
    out_dir: Path, manifest: Any,
) -> dict[str, Any]:  # fmt: skip
    """The container up (as `generate` brings it up), then the batch on it."""
    from hvinfra.batch.runner import run_batch
    from hvinfra.batch_display import BatchDisplay
    from hvinfra.bringup import BringUpOptions, bring_up
    from hvinfra.cli.generate_cmd import gpu_names_for_sidecar
    from hvinfra.generate.plan import build_plan, exec_env
    from hvinfra.launcher import require_container
    from hvinfra.spec import LABEL_GPUS

    engine = app.engine()
    if v["no_up"]:
        container = require_container(engine, profile.container_name, profile.name, running=True)
    else:  # `up`'s plan and pre-flight; a batch never recreates its container
        options = BringUpOptions(no_recreate=True, skip_checks=v["skip_checks"])
        brought = bring_up(app, output, profile, options)
        container = brought.result.container
        if brought.result.action != "kept":
            output.info(f"started {container.name} ({container.short_id})")
    first = plan.to_run[0].line.request
    for slot in plan.slots:  # every worker's GPUs are in the container (else: how to fix it)
        gpus = list(slot.gpus) if slot.gpus else None
        job = build_plan(first.model_copy(update={"gpus": gpus}), profile, job_id="check")
        exec_env(job, container.labels.get(LABEL_GPUS, "all"))
    output.info(f"model: {plan.reuse_reason}")
    skipped = len(plan.items) - len(plan.to_run)
    if skipped:
        output.info(f"{skipped} line(s) skipped: done or failed in an earlier run")
    system = app.gpu_system()
    display = BatchDisplay(output, verbose=v["verbose"])
    return run_batch(
        engine, container, profile, plan, out_dir, manifest, display, kind=kind,
        gpu_names=lambda gpus: gpu_names_for_sidecar(gpus if gpus else ("0",), system),
        stop_timeout=v["stop_timeout"], kill_stale=v["kill_stale"],
        memory_probe=app.probe.probe if system is not None else None,
    )  # fmt: skip


def _checks(plan: Any, profile: Any, out_dir: Path, system: Any, *, gates: bool) -> list[Any]:
    """generate's pre-job checks for every line to run (inputs, file names, output folder),
    then the model assets once and the VRAM gate once per distinct size on each worker's GPUs."""
    from hvinfra.asset_probe import require_assets
    from hvinfra.errors import PreflightFailed
    from hvinfra.generate.plan import build_plan
    from hvinfra.generate.run import _pre_job_checks, vram_gate

    sizes: dict[tuple[Any, ...], Any] = {}
    for item in plan.to_run:
        request = item.line.request
        job_plan = build_plan(request, profile, job_id="check")
        try:
            _pre_job_checks(request, job_plan, profile, out_dir, None, gates=False)
        except PreflightFailed as exc:
            where = f"{plan.source}:{item.line.number}"
            raise PreflightFailed(f"{where}: {exc.message}", exc.fix) from exc
        key = (request.resolution, getattr(request, "fp8", False), request.cpu_offload)
        sizes.setdefault(key, request)
    if not gates or not sizes:
        return []
    require_assets(profile)
    warnings = []
    if system is not None:
        for request in sizes.values():
            for slot in plan.slots:
                gpus = list(slot.gpus) if slot.gpus else None
                job = request.model_copy(update={"gpus": gpus})
                warnings += vram_gate(job, profile, system)
    return warnings


def _print_summary(output: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    if output.json_mode:
        output.data(summary)
        return
    counts = summary["counts"]
    table = Table(title="batch summary")
    for column in ("done", "failed", "skipped", "left", "wall time", "s/video", "workers"):
        table.add_column(column)
    per_video = summary["seconds_per_video"]
    table.add_row(
        str(counts["done"]), str(counts["failed"]),
        str(counts["skipped_done"] + counts["skipped_failed"]), str(counts["pending"]),
        f"{summary['wall_s']:.0f}s", f"{per_video:.1f}" if per_video is not None else "-",
        str(summary["workers"]),
    )  # fmt: skip
    output.table(table)
    for line in summary["lines"]:
        if line["state"] == "failed":
            output.line(f"line {line['line']}: failed: {line['error']}")
    output.line(f"manifest {summary['out']}/batch.json, summary {summary['out']}/summary.json")
