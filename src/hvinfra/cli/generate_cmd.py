"""`hvinfra generate t2v|i2v`: a validated request -> the official sample script in the
profile's container -> the .mp4, its JSON sidecar and log in --out."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hvinfra.cli.common import JsonOpt, ProfileFileOpt, SetOpt
from hvinfra.generate.tables import tables

if TYPE_CHECKING:
    from hvinfra.context import AppContext
    from hvinfra.generate.options import GenerateOptions
    from hvinfra.records import GpuSystem

_T = tables()


def _common(kind: str) -> dict[str, Any]:
    """The options both modes share, as typer parameter defaults."""
    frames = _T.frames
    return {
        "prompt": typer.Option(..., "--prompt", "-p", help="What the video shows."),
        "neg_prompt": typer.Option(
            None, "--neg-prompt", help="Negative prompt (official default: none)."
        ),
        "frames": typer.Option(
            frames.default,
            "--frames",
            help=f"Video length in frames: {frames.step}k+1, {frames.minimum}..{frames.maximum}"
            f" ({frames.fps} fps).",
        ),
        "steps": typer.Option(50, "--steps", help="Denoising steps (--infer-steps)."),
        "seed": typer.Option(
            None, "--seed", help="Random seed (default: a random one, recorded in the sidecar)."
        ),
        "embedded_cfg_scale": typer.Option(
            6.0, "--embedded-cfg-scale", help="Embedded guidance scale."
        ),
        "cpu_offload": typer.Option(
            False,
            "--cpu-offload",
            "--use-cpu-offload",
            help="Official --use-cpu-offload: less GPU memory, slower (1 GPU only).",
        ),
        "gpus": typer.Option(
            None,
            "--gpus",
            help="GPUs for the job: all, 0,1 or GPU UUIDs (default: one GPU). Several GPUs run"
            " torchrun with xDiT.",
        ),
        "ulysses_degree": typer.Option(
            None, "--ulysses-degree", help="xDiT ulysses degree (default: chosen from the table)."
        ),
        "ring_degree": typer.Option(
            None, "--ring-degree", help="xDiT ring degree (default: chosen from the table)."
        ),
        "out": typer.Option(
            Path("outputs"), "--out", "-o", help="Folder for the .mp4, its .json and .log."
        ),
        "rewrite": typer.Option(
            None, "--rewrite", help="Rewrite the prompt first with an LLM: normal or master."
        ),
        "rewrite_endpoint": typer.Option(
            None,
            "--rewrite-endpoint",
            help="OpenAI-compatible endpoint (…/v1); else HVINFRA_REWRITE_ENDPOINT, else the"
            " profile's rewrite.endpoint.",
        ),
        "rewrite_model": typer.Option(None, "--rewrite-model", help="Model name for the rewrite."),
        "rewrite_key_file": typer.Option(
            None,
            "--rewrite-key-file",
            help="File holding the API key (else HVINFRA_REWRITE_API_KEY).",
        ),
        "no_up": typer.Option(
            False, "--no-up", help="Refuse to start the container; it must be running."
        ),
        "skip_checks": typer.Option(
            False,
            "--skip-checks",
            help="Run without the VRAM gate and the model-asset check (printed loudly).",
            envvar="HVINFRA_SKIP_CHECKS",
        ),
        "dry_run": typer.Option(
            False, "--dry-run", help="Print the command and the exec spec; run nothing."
        ),
        "stop_timeout": typer.Option(
            20.0, "--stop-timeout", help="Seconds after Ctrl-C before the job is killed."
        ),
        "verbose": typer.Option(False, "--verbose", "-V", help="Also print the script's output."),
        "kill_stale": typer.Option(
            False, "--kill-stale", help="First kill a job left running by an hvinfra that died."
        ),
        "profile_file": ProfileFileOpt,
        "sets": SetOpt,
        "as_json": JsonOpt,
    }


_C = {"t2v": _common("t2v"), "i2v": _common("i2v")}


def register(app: typer.Typer) -> None:
    gen_app = typer.Typer(
        help="Generate a video in the profile's container (started if needed).",
        no_args_is_help=True,
    )
    app.add_typer(gen_app, name="generate")
    c = _C["t2v"]

    @gen_app.command("t2v")
    def t2v(
        ctx: typer.Context,
        prompt: str = c["prompt"],
        resolution: str = typer.Option(
            _T.t2v_default_resolution,
            "--resolution",
            "-r",
            help=f"One of {', '.join(_T.resolutions)}.",
        ),
        aspect: str = typer.Option(
            _T.t2v_default_aspect,
            "--aspect",
            "-a",
            help=f"width:height, one of {', '.join(_T.aspects)} (16:9 is landscape).",
        ),
        frames: int = c["frames"],
        steps: int = c["steps"],
        seed: int | None = c["seed"],
        flow_shift: float = typer.Option(7.0, "--flow-shift", help="Flow-matching shift."),
        embedded_cfg_scale: float = c["embedded_cfg_scale"],
        neg_prompt: str | None = c["neg_prompt"],
        fp8: bool = typer.Option(
            False,
            "--fp8",
            "--use-fp8",
            help="FP8 DiT weights (official --use-fp8 with the _fp8.pt weights; ~10 GB less).",
        ),
        cpu_offload: bool = c["cpu_offload"],
        gpus: str | None = c["gpus"],
        ulysses_degree: int | None = c["ulysses_degree"],
        ring_degree: int | None = c["ring_degree"],
        out: Path = c["out"],
        rewrite: str | None = c["rewrite"],
        rewrite_endpoint: str | None = c["rewrite_endpoint"],
        rewrite_model: str | None = c["rewrite_model"],
        rewrite_key_file: Path | None = c["rewrite_key_file"],
        no_up: bool = c["no_up"],
        skip_checks: bool = c["skip_checks"],
        dry_run: bool = c["dry_run"],
        stop_timeout: float = c["stop_timeout"],
        verbose: bool = c["verbose"],
        kill_stale: bool = c["kill_stale"],
        profile_file: Path | None = c["profile_file"],
        sets: list[str] = c["sets"],
        as_json: bool = c["as_json"],
    ) -> None:
        """Text to video with sample_video.py: `hvinfra generate t2v -p "a cat walks"`."""
        _generate(ctx, _options("t2v", locals()))

    c = _C["i2v"]

    @gen_app.command("i2v")
    def i2v(
        ctx: typer.Context,
        image: Path = typer.Option(..., "--image", "-i", help="The first frame (copied in)."),
        prompt: str = c["prompt"],
        resolution: str = typer.Option(
            _T.i2v_default_resolution,
            "--resolution",
            "-r",
            help=f"One of {', '.join(_T.i2v_resolutions)} (the size follows the image).",
        ),
        stability: bool = typer.Option(
            False, "--stability", help="Stable video: --i2v-stability, flow shift 7 (default)."
        ),
        dynamic: bool = typer.Option(
            False, "--dynamic", help="More motion: no --i2v-stability, flow shift 17."
        ),
        flow_shift: float | None = typer.Option(
            None, "--flow-shift", help="Flow-matching shift (default 7 stability, 17 dynamic)."
        ),
        lora: Path | None = typer.Option(None, "--lora", help="A LoRA .safetensors file."),
        lora_scale: float = typer.Option(1.0, "--lora-scale", help="LoRA fusion scale."),
        frames: int = c["frames"],
        steps: int = c["steps"],
        seed: int | None = c["seed"],
        embedded_cfg_scale: float = c["embedded_cfg_scale"],
        neg_prompt: str | None = c["neg_prompt"],
        cpu_offload: bool = c["cpu_offload"],
        gpus: str | None = c["gpus"],
        ulysses_degree: int | None = c["ulysses_degree"],
        ring_degree: int | None = c["ring_degree"],
        out: Path = c["out"],
        rewrite: str | None = c["rewrite"],
        rewrite_endpoint: str | None = c["rewrite_endpoint"],
        rewrite_model: str | None = c["rewrite_model"],
        rewrite_key_file: Path | None = c["rewrite_key_file"],
        no_up: bool = c["no_up"],
        skip_checks: bool = c["skip_checks"],
        dry_run: bool = c["dry_run"],
        stop_timeout: float = c["stop_timeout"],
        verbose: bool = c["verbose"],
        kill_stale: bool = c["kill_stale"],
        profile_file: Path | None = c["profile_file"],
        sets: list[str] = c["sets"],
        as_json: bool = c["as_json"],
    ) -> None:
        """Image to video with sample_image2video.py: `hvinfra generate i2v -i cat.png -p "…"`."""
        _generate(ctx, _options("i2v", locals()))


def _options(kind: str, values: dict[str, Any]) -> GenerateOptions:
    """The command's parameters as one typed value (every name is a GenerateOptions field)."""
    from hvinfra.generate.options import GenerateOptions

    return GenerateOptions(kind=kind, **{k: v for k, v in values.items() if k != "ctx"})


# -- GPU facts, from NVML when it answers -------------------------------------------------------
def host_gpu_count(app: AppContext | None = None) -> int | None:
    """How many GPUs `--gpus all` means: NVML's count, else the /dev/nvidiaN device nodes."""
    from hvinfra.context import AppContext

    system = (app or AppContext()).gpu_system()
    if system is not None:
        return len(system.gpus)
    try:
        return sum(1 for name in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", name)) or None
    except OSError:
        return None


def gpu_names_for_sidecar(
    selection: str | tuple[str, ...], system: GpuSystem | None
) -> list[str] | None:
    """The selected GPUs' names for the sidecar; None when NVML cannot tell."""
    from hvinfra.checks import select_gpus
    from hvinfra.errors import GpuRuntimeError

    if system is None:
        return None
    try:
        return [gpu.name for gpu in select_gpus(selection, system)]
    except GpuRuntimeError:
        return None


# -- the command --------------------------------------------------------------------------------
def _new_job_id() -> str:
    import secrets
    import time

    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _generate(ctx: typer.Context, o: GenerateOptions) -> None:
    import secrets

    from hvinfra.cli.common import app_context, load
    from hvinfra.errors import ExitCode, HvinfraError
    from hvinfra.generate.plan import build_plan
    from hvinfra.generate.request import make_request
    from hvinfra.paths import resolved

    app = app_context(ctx)
    kind = o.kind
    output = app.output(o.as_json)
    if kind == "i2v" and o.stability and o.dynamic:
        raise HvinfraError(
            "--stability and --dynamic exclude each other", "choose one",
            exit_code=ExitCode.USAGE,
        )  # fmt: skip
    if o.rewrite is not None and o.rewrite not in ("normal", "master"):
        raise HvinfraError(
            f"--rewrite {o.rewrite!r} is not a rewrite mode", "use normal or master",
            exit_code=ExitCode.USAGE,
        )  # fmt: skip
    loaded = load(kind, o.profile_file, o.sets, gpus=o.gpus)
    profile = loaded.profile
    fields: dict[str, Any] = {
        "prompt": o.prompt, "neg_prompt": o.neg_prompt, "resolution": o.resolution,
        "frames": o.frames, "steps": o.steps, "flow_shift": o.flow_shift,
        "embedded_cfg_scale": o.embedded_cfg_scale, "cpu_offload": o.cpu_offload,
        "gpus": o.gpus, "ulysses_degree": o.ulysses_degree, "ring_degree": o.ring_degree,
    }  # fmt: skip
    fields["seed"] = o.seed if o.seed is not None else secrets.randbelow(2**31)
    if kind == "t2v":
        fields.update(aspect=o.aspect, fp8=o.fp8)
    else:
        assert o.image is not None  # a required option of `generate i2v`
        fields.update(
            image=str(resolved(o.image, "--image")),
            mode="dynamic" if o.dynamic else "stability",
            lora=str(resolved(o.lora, "--lora")) if o.lora else None,
            lora_scale=o.lora_scale,
        )
    request = make_request(kind, **fields)  # validate before any network call
    rewrite_info: dict[str, Any] | None = None
    if o.rewrite:
        from hvinfra.generate.rewrite import resolve_config, rewrite_prompt

        config = resolve_config(
            endpoint=o.rewrite_endpoint,
            model=o.rewrite_model,
            key_file=str(o.rewrite_key_file) if o.rewrite_key_file else None,
            profile_endpoint=profile.rewrite.endpoint,
            profile_model=profile.rewrite.model,
            profile_key_file=profile.rewrite.api_key_file,
            timeout=profile.rewrite.timeout,
            env=os.environ,
        )
        output.info(f"rewriting the prompt ({o.rewrite}) with {config.model} at {config.url} …")
        rewritten = rewrite_prompt(o.prompt, o.rewrite, config)
        output.note(f"rewritten prompt: {rewritten}")
        fields.update(prompt=rewritten, original_prompt=o.prompt, rewrite=o.rewrite)
        request = make_request(kind, **fields)
        rewrite_info = {
            "mode": o.rewrite, "endpoint": config.url, "model": config.model,
            "original_prompt": o.prompt,
        }  # fmt: skip
    count = None
    if request.gpus == "all":
        from hvinfra.gpu_selection import GpuSelection

        devices = GpuSelection.of(profile.gpu.devices)
        count = len(devices.listed) if devices.listed else host_gpu_count(app)
    plan = build_plan(request, profile, job_id=_new_job_id(), host_gpu_count=count)
    for note in plan.notes:
        output.warn(note)
    out_dir: Path = o.out.expanduser()
    if o.dry_run:
        _print_dry_run(output, plan, profile, out_dir, request.model_dump(mode="json"))
        return
    from hvinfra.exposure import exposures

    warnings = exposures(profile, loaded.sources)
    _run(app, output, o, request, plan, profile, out_dir, rewrite_info, warnings)


def _print_dry_run(
    output: Any, plan: Any, profile: Any, out_dir: Path, request: dict[str, Any]
) -> None:
    import shlex

    from hvinfra.generate.plan import exec_env
    from hvinfra.spec import gpus_label

    env = exec_env(plan, gpus_label(profile))  # as in a container started from this profile
    image = profile.image
    docker_exec = plan.docker_exec_argv(env)
    stem = out_dir / plan.output_stem
    if output.json_mode:
        output.data(
            {
                "argv": list(plan.argv),
                "line": plan.line,
                "exec": {
                    "container": plan.container, "image": image, "workdir": plan.workdir,
                    "env": env, "docker_exec": docker_exec,
                },
                "xdit": {
                    "nproc_per_node": plan.xdit.nproc, "ulysses_degree": plan.xdit.ulysses,
                    "ring_degree": plan.xdit.ring,
                },
                "save_path": plan.save_dir,
                "save_path_host": plan.save_dir_host,
                "output": {"video": f"{stem}.mp4", "sidecar": f"{stem}.json", "log": f"{stem}.log"},
                "copy_in": [
                    {"host": c.host_path, "container": c.container_path} for c in plan.copy_in
                ],
                "request": request,
                "job_id": plan.job_id,
            }
        )  # fmt: skip
        return
    env_text = " ".join(f"{k}={shlex.quote(val)}" for k, val in env.items()) or "(none added)"
    output.line(f"# exec in container {plan.container} (image {image}), workdir {plan.workdir}")
    output.line(f"# env: {env_text}")
    if plan.xdit.distributed:
        output.line(
            f"# xDiT: {plan.xdit.nproc} processes, ulysses {plan.xdit.ulysses} x ring"
            f" {plan.xdit.ring}"
        )
    for copy in plan.copy_in:
        output.line(f"# copy in: {copy.host_path} -> {copy.container_path}")
    output.line(f"# output: {plan.save_dir}/*.mp4 -> {stem}.mp4 (+ .json sidecar, .log)")
    output.line(plan.line)
    output.line(shlex.join(docker_exec))


def _warn_if_differs(output: Any, plan: Any, profile_name: str) -> None:
    if plan is not None and plan.differs:
        output.warn(
            f"container {plan.name} differs from the profile ({', '.join(plan.differences)});"
            f" the job runs in it as it is (`hvinfra up {profile_name}` recreates it)"
        )


def container_for_jobs(
    app: AppContext,
    output: Any,
    profile: Any,
    *,
    no_up: bool,
    skip_checks: bool,
    exposures: list[str] | None = None,
) -> tuple[Any, Any]:
    """The engine and the profile's running container for jobs: `up`'s plan and pre-flight
    (never recreating it), or, with no_up, the running one as it is."""
    from hvinfra.bringup import BringUpOptions, bring_up
    from hvinfra.launcher import require_container

    engine = app.engine()
    if no_up:
        container = require_container(engine, profile.container_name, profile.name, running=True)
        started = False
    else:  # `up`'s plan and pre-flight; a job never recreates its container
        brought = bring_up(
            app, output, profile, BringUpOptions(no_recreate=True, skip_checks=skip_checks)
        )
        _warn_if_differs(output, brought.result.plan, profile.name)
        container, started = brought.result.container, brought.result.action != "kept"
    if started:
        output.info(f"started {container.name} ({container.short_id})")
        for exposure in exposures or []:
            output.warn(f"SECURITY: {exposure}")
    return engine, container


def _run(
    app: AppContext,
    output: Any,
    o: GenerateOptions,
    request: Any,
    plan: Any,
    profile: Any,
    out_dir: Path,
    rewrite_info: dict[str, Any] | None,
    exposures: list[str] = [],  # noqa: B006  (read only)
) -> None:
    from hvinfra.generate.measure import gpu_indices
    from hvinfra.generate.run import (
        _pre_job_checks,
        job_selection,
        reserve_output_files,
        run_job,
    )
    from hvinfra.generate_display import JobDisplay

    system = None
    if o.skip_checks:
        output.err.print(
            "[bold yellow]WARNING: --skip-checks: no VRAM gate and no model-asset check; a"
            " missing piece or too little memory shows up inside the job instead.[/bold yellow]"
        )
    else:
        system = app.gpu_system()
    checks = _pre_job_checks(request, plan, profile, out_dir, system, gates=not o.skip_checks)
    if system is None and not o.skip_checks:
        output.warn("NVML did not answer: the job's GPU memory was not checked")
    for warning in checks:
        output.warn(f"{warning.title}: {warning.detail}")
    engine, container = container_for_jobs(
        app, output, profile, no_up=o.no_up, skip_checks=o.skip_checks, exposures=exposures
    )
    files = reserve_output_files(out_dir, plan.output_stem)
    synthetic = _synthetic_warning(output, profile)
    selection = job_selection(request, profile)
    result = run_job(
        engine, request, plan, container, files,
        observer=JobDisplay(output, verbose=o.verbose),
        gpu_names=gpu_names_for_sidecar(selection, app.gpu_system()),
        stop_timeout=o.stop_timeout,
        rewrite=rewrite_info, kill_stale=o.kill_stale,
        memory_probe=app.probe.probe if app.gpu_system() is not None else None,
        measure_gpus=gpu_indices(selection),
        extra=synthetic,
    )  # fmt: skip
    if output.json_mode:
        output.data(
            {
                "video": str(result.files.video), "sidecar": str(result.files.sidecar),
                "log": str(result.files.log), "duration_s": round(result.duration_s, 1),
                "seed": request.seed, "job_id": plan.job_id, "container": result.container,
            }
        )  # fmt: skip
        return
    from hvinfra.generate.measure import summary_line

    measured = summary_line(result.sidecar.get("measurements") or {})
    if measured:
        output.info(f"measured: {measured}")
    if result.sidecar.get("synthetic_weights"):
        output.warn(result.sidecar["synthetic_weights"]["note"])
    output.out.print(
        f"[green]done[/green] in {result.duration_s:.0f}s: {result.files.video}\n"
        f"  sidecar {result.files.sidecar}\n  log     {result.files.log}\n"
        f"  seed    {request.seed}",
        highlight=False,
    )


def _synthetic_warning(output: Any, profile: Any) -> dict[str, Any]:
    """Warn when the weights folder is a synthetic tree; the sidecar field either way."""
    from hvinfra.synthetic_marker import read_marker, sidecar_field, warning_text

    weights = profile.volumes.get("weights")
    if weights is None:
        return {}
    folder = Path(weights.host)
    marker = read_marker(folder)
    if marker is not None:
        output.warn(warning_text(folder, marker))
    return sidecar_field(folder, marker)
