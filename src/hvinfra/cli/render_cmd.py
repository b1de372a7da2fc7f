"""`hvinfra render compose|k8s|slurm`: the resolved profile as a compose file, Kubernetes
manifests or an sbatch script, for running past one host. No engine needed; `--check` runs the
validator this machine has."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hvinfra.cli.common import TARGET_HELP, JsonOpt, ProfileFileOpt, SetOpt

if TYPE_CHECKING:
    from hvinfra.generate.plan import JobPlan
    from hvinfra.output import Output
    from hvinfra.profiles import LoadedProfile
    from hvinfra.render.jobs import Line

OutOpt = typer.Option(None, "--output", "-o", help="Write to FILE instead of stdout.")
CheckOpt = typer.Option(False, "--check", help="Validate the result with the available validator.")
PromptOpt = typer.Option(None, "--prompt", "-p", help="Render one generation of this prompt.")
BatchOpt = typer.Option(
    None, "--batch", help="A batch file: one prompt or JSON object of generate options a line."
)
ShardsOpt = typer.Option(
    None, "--shards", help="Split the batch into N shards (every N-th line), one pod/task each."
)
GpusOpt = typer.Option(None, "--gpus", help="GPUs per pod / task (a count).")
SeedOpt = typer.Option(None, "--seed", help="Seed for --prompt (default: a random one).")
FramesOpt = typer.Option(None, "--frames", help="Frames, 4k+1 (generate's default).")
StepsOpt = typer.Option(None, "--steps", help="Denoising steps (generate's default).")
ResolutionOpt = typer.Option(None, "--resolution", "-r", help="As `generate --resolution`.")
RUNTIME_HELP = "docker (hvinfra on the nodes, default) or pyxis (srun --container-image)."
AspectOpt = typer.Option(None, "--aspect", "-a", help="As `generate --aspect` (t2v).")


def register(app: typer.Typer) -> None:
    render_app = typer.Typer(
        help="Render the profile for compose, Kubernetes or Slurm (no engine needed).",
        no_args_is_help=True,
    )
    app.add_typer(render_app, name="render")

    @render_app.command("compose")
    def compose(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=TARGET_HELP),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        output_file: Path | None = OutOpt,
        check: bool = CheckOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """A compose file whose service creates the container `hvinfra up` creates."""
        from hvinfra.bringup import gpu_access_for
        from hvinfra.cli.common import app_context, load
        from hvinfra.render.compose import render_compose
        from hvinfra.spec import build_run_spec

        app = app_context(ctx)
        output = app.output()
        profile = load(target, profile_file, sets).profile
        spec = build_run_spec(profile, gpu_access=gpu_access_for(app, profile, output))
        text = render_compose(spec, profile.name, as_json=as_json)
        _emit(output, text, output_file, "compose" if check else None)

    @render_app.command("k8s")
    def k8s(
        target: str = typer.Argument(..., help=TARGET_HELP),
        prompt: str | None = PromptOpt,
        batch: Path | None = BatchOpt,
        shards: int | None = ShardsOpt,
        gpus: int | None = GpusOpt,
        storage: str | None = typer.Option(
            None, "--storage", help="hostpath (default) or pvc: where the folders come from."
        ),
        claim: str | None = typer.Option(None, "--claim", help="The PVC for --storage pvc."),
        host_ipc: bool = typer.Option(
            False, "--host-ipc", help="hostIPC: the official --ipc=host (default: /dev/shm)."
        ),
        seed: int | None = SeedOpt,
        frames: int | None = FramesOpt,
        steps: int | None = StepsOpt,
        resolution: str | None = ResolutionOpt,
        aspect: str | None = AspectOpt,
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        output_file: Path | None = OutOpt,
        check: bool = CheckOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Kubernetes: a Deployment (like `up`), a Job (--prompt) or an indexed Job (--batch)."""
        from hvinfra.output import Output
        from hvinfra.render import k8s as k8s_render

        flags: dict[str, Any] = {
            "kubernetes.gpus": gpus, "kubernetes.storage": storage, "kubernetes.claim": claim,
            "kubernetes.host_ipc": True if host_ipc else None,
        }  # fmt: skip
        loaded = _load(target, profile_file, sets, flags)
        profile = loaded.profile
        defaults = _defaults(seed, frames, steps, resolution, aspect)
        lines = _lines(profile.workload, prompt, batch, shards, defaults, seeded=True)
        count = k8s_render.gpu_count(profile)
        if lines is None:
            objects = [k8s_render.deployment(profile)]
        elif batch is None:
            plan = _in_image_plan(lines[0], profile, count, "job")
            objects = [k8s_render.job(profile, plan, count)]
        else:
            objects = k8s_render.indexed_job(
                profile, _shard_plans(lines, profile, count, shards), count, "batch"
            )
        text = k8s_render.render_manifests(profile, objects, as_json=as_json)
        _emit(Output(), text, output_file, "k8s" if check else None)

    @render_app.command("slurm")
    def slurm(
        target: str = typer.Argument(..., help=TARGET_HELP),
        prompt: str | None = PromptOpt,
        batch: Path | None = BatchOpt,
        shards: int | None = ShardsOpt,
        gpus: int | None = GpusOpt,
        runtime: str | None = typer.Option(None, "--runtime", help=RUNTIME_HELP),
        seed: int | None = SeedOpt,
        frames: int | None = FramesOpt,
        steps: int | None = StepsOpt,
        resolution: str | None = ResolutionOpt,
        aspect: str | None = AspectOpt,
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        output_file: Path | None = OutOpt,
        check: bool = CheckOpt,
    ) -> None:
        """An sbatch script: one generation (--prompt) or a job array over a batch file."""
        from hvinfra.output import Output

        loaded = _load(target, profile_file, sets, {"slurm.gpus": gpus, "slurm.runtime": runtime})
        profile = loaded.profile
        defaults = _defaults(seed, frames, steps, resolution, aspect)
        pyxis = profile.slurm.runtime == "pyxis"
        lines = _lines(profile.workload, prompt, batch, shards, defaults, seeded=pyxis)
        if lines is None:
            from hvinfra.render import RenderError

            raise RenderError("nothing to render: Slurm runs jobs", "give --prompt or --batch")
        text = _sbatch(profile, target, profile_file, sets, lines, batch, shards)
        _emit(Output(), text, output_file, "slurm" if check else None)


# -- helpers -------------------------------------------------------------------------------------
def _load(
    target: str, profile_file: Path | None, sets: list[str], flags: dict[str, Any]
) -> LoadedProfile:
    from hvinfra.cli.common import load

    return load(target, profile_file, sets, extra_flags=flags)


def _defaults(
    seed: int | None, frames: int | None, steps: int | None, res: str | None, aspect: str | None
) -> dict[str, Any]:
    return {"seed": seed, "frames": frames, "steps": steps, "resolution": res, "aspect": aspect}


def _lines(
    kind: str,
    prompt: str | None,
    batch: Path | None,
    shards: int | None,
    defaults: dict[str, Any],
    *,
    seeded: bool,
) -> list[Line] | None:
    """The jobs: one for --prompt, one per batch line; None for neither. `seeded`: every job
    gets a seed now (in-image commands have no hvinfra to choose one)."""
    import secrets

    from hvinfra.errors import ExitCode, HvinfraError
    from hvinfra.render.jobs import make_lines, parse_batch

    if prompt is not None and batch is not None:
        raise HvinfraError(
            "--prompt and --batch exclude each other", "choose one", exit_code=ExitCode.USAGE
        )
    rows: list[tuple[int, dict[str, Any]]]
    if shards is not None and batch is None:
        raise HvinfraError(
            "--shards splits a --batch file", "add --batch FILE", exit_code=ExitCode.USAGE
        )
    if prompt is not None:
        rows, source = [(0, {"prompt": prompt})], "--prompt"
    elif batch is not None:
        try:
            text = batch.read_text(encoding="utf-8")
        except OSError as exc:
            raise HvinfraError(
                f"cannot read {batch}: {exc.strerror or exc}", "check the --batch path",
                exit_code=ExitCode.USAGE,
            ) from exc  # fmt: skip
        rows, source = parse_batch(text, batch, kind), str(batch)
    else:
        return None
    if seeded:
        for _, options in rows:
            if options.get("seed") is None and defaults.get("seed") is None:
                options["seed"] = secrets.randbelow(2**31)
    if kind == "i2v":
        defaults = {k: v for k, v in defaults.items() if k != "aspect"}
    return make_lines(kind, rows, defaults, source)


def _in_image_plan(line: Line, profile: Any, gpus: int, job_id: str) -> JobPlan:
    from hvinfra.render.jobs import in_image_plan

    return in_image_plan(line, profile, max(gpus, 1), job_id)


def _job_id(line: Line) -> str:
    return f"line-{line.number:04d}"


def _shard_plans(
    lines: list[Line], profile: Any, gpus: int, shards: int | None
) -> list[list[tuple[str, JobPlan]]]:
    from hvinfra.render.jobs import shards as split

    return [
        [(_comment(line), _in_image_plan(line, profile, gpus, _job_id(line))) for line in part]
        for part in split(lines, shards)
    ]


def _comment(line: Line) -> str:
    prompt = " ".join(line.request.prompt.split())
    prompt = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    return f"{line.label}: {prompt}"


def _sbatch(
    profile: Any,
    target: str,
    profile_file: Path | None,
    sets: list[str],
    lines: list[Line],
    batch: Path | None,
    shards: int | None,
) -> str:
    from hvinfra.render import slurm as s
    from hvinfra.render.jobs import generate_flags
    from hvinfra.render.jobs import shards as split

    kind = profile.workload
    settings = profile.slurm
    parts = split(lines, shards)
    tasks: list[s.TaskCommands] = []
    if settings.runtime == "pyxis":
        prelude = s.pyxis_prelude(profile)
        for part in parts:
            commands = tuple(
                s.pyxis_command(profile, _in_image_plan(line, profile, settings.gpus,
                                                        _job_id(line)))
                for line in part
            )  # fmt: skip
            tasks.append(s.TaskCommands(_comment(part[0]), commands))
    else:
        prelude = s.docker_task_prelude(
            kind,
            _node_profile_args(target, kind, profile_file, sets),
            settings.hvinfra,
            settings.out_dir,
        )
        if shards is not None and batch is not None:
            command = s.batch_shard_command(kind, str(batch.resolve()), shards)
            tasks = [s.TaskCommands(f"shard {i}/{shards}", (command,)) for i in range(len(parts))]
        else:
            for part in parts:
                commands = tuple(
                    s.generate_command(kind, generate_flags(line.options)) for line in part
                )
                tasks.append(s.TaskCommands(_comment(part[0]), commands))
    job = s.SlurmJob(profile, kind, f"hv-{kind}", tuple(tasks), array=batch is not None)
    return s.render_sbatch(job, prelude)


def _node_profile_args(
    target: str, kind: str, profile_file: Path | None, sets: list[str]
) -> list[str]:
    """What `hvinfra generate KIND` on a node needs to resolve the same profile: the layers
    given here (files as absolute paths) and the --set values."""
    from hvinfra.render import RenderError

    args: list[str] = []
    if target != kind:
        path = Path(target)
        if not path.is_file() or profile_file is not None:
            raise RenderError(
                f"profile {target!r}: the nodes run `hvinfra generate {kind}`, which takes a"
                " single profile file, not a user profile name",
                f"render with `{kind} --profile FILE`, or use a profile file as the target",
            )
        args += ["--profile", str(path.resolve())]
    if profile_file is not None:
        args += ["--profile", str(profile_file.resolve())]
    for item in sets:
        args += ["--set", item]
    return args


# -- output and --check --------------------------------------------------------------------------
def _emit(output: Output, text: str, path: Path | None, check: str | None) -> None:
    import tempfile

    from hvinfra.render.validate import check_file

    if path is not None:
        path.write_text(text, encoding="utf-8")
        if text.startswith("#!"):
            path.chmod(0o755)
        output.info(f"wrote {path}")
    if check is not None:
        if path is not None:
            notes = check_file(check, path)
        else:
            suffix = ".sh" if check == "slurm" else ".yaml"
            with tempfile.TemporaryDirectory() as tmp:
                probe = Path(tmp) / f"rendered{suffix}"
                probe.write_text(text, encoding="utf-8")
                notes = check_file(check, probe)
        for note in notes:
            output.note(note)
    if path is None:
        output.line(text.rstrip("\n"))
