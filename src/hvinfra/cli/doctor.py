"""`hvinfra doctor`: the pre-flight checks as one table (or JSON), and the helpers `up` shares."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hvinfra.cli.common import Fp8Opt, JsonOpt, OffloadOpt, ProfileFileOpt, SetOpt

if TYPE_CHECKING:
    from hvinfra.checks import CheckResult, Facts
    from hvinfra.profiles import Profile

JSON_SCHEMA = 1

GpusOpt = typer.Option(
    None, "--gpus", help="GPUs to check: all, none, 0,1 or GPU UUIDs (default: the profile's)."
)
ResolutionOpt = typer.Option(
    None, "--resolution", help="Check VRAM for 720p, 540p or 360p (default: the profile's)."
)


def payload(profile: Profile, facts: Facts, results: list[CheckResult]) -> dict[str, Any]:
    """doctor --json: documented in docs/gpu-checks.md; bump JSON_SCHEMA on a change."""
    from hvinfra.checks import summary
    from hvinfra.records import gpu_system_as_dict

    counts = summary(results)
    return {
        "schema": JSON_SCHEMA,
        "ok": counts["fail"] == 0,
        "profile": profile.name,
        "workload": facts.workload,
        "resolution": facts.resolution,
        "fp8": facts.fp8,
        "cpu_offload": facts.cpu_offload,
        "image": facts.image_ref,
        "summary": counts,
        "checks": [r.as_dict() for r in results],
        "gpus": gpu_system_as_dict(facts.gpus) if facts.gpus else None,
        "docker": asdict(facts.engine) if facts.engine else None,
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        ctx: typer.Context,
        target: str = typer.Argument("t2v", help="Profile to check for: t2v, i2v, or a file."),
        profile_file: Path | None = ProfileFileOpt,
        sets: list[str] = SetOpt,
        gpus: str | None = GpusOpt,
        resolution: str | None = ResolutionOpt,
        use_fp8: bool = Fp8Opt,
        use_cpu_offload: bool = OffloadOpt,
        image: str | None = typer.Option(None, "--image", help="Check for this image instead."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Check this host for a profile: Docker, NVIDIA runtime, NVML, GPUs and their free
        memory, driver vs image CUDA, MIG, other processes, disk, memlock, model code and weights.

        Exits 10 when any check fails.
        """
        from hvinfra import requirements
        from hvinfra.asset_probe import assets_report
        from hvinfra.assets import FixContext
        from hvinfra.checks import asset_checks, failed, run_checks
        from hvinfra.checks_display import show_checks
        from hvinfra.cli.common import app_context, load
        from hvinfra.errors import ExitCode
        from hvinfra.preflight import Options, gather
        from hvinfra.synthetic_marker import synthetic_checks

        app = app_context(ctx)
        output = app.output(as_json)
        extra = {"resolution": resolution} if resolution else None
        profile = load(
            target, profile_file, sets, image=image, gpus=gpus, extra_flags=extra
        ).profile
        facts = gather(
            profile,
            connect=app.engine,
            probe=app.probe,
            options=Options(fp8=use_fp8, cpu_offload=use_cpu_offload),
            gpus=app.gpus(),
        )
        results = run_checks(facts, requirements.load())
        results += asset_checks(assets_report(profile, FixContext(target)))
        weights = profile.volumes.get("weights")
        results += synthetic_checks(Path(weights.host) if weights is not None else None)
        bad = failed(results)
        if as_json:
            output.data(payload(profile, facts, results))
        else:
            show_checks(output, results, stderr=False)
            if bad:
                output.err.print(
                    f"[bold red]{len(bad)} check(s) failed:[/bold red] "
                    + ", ".join(r.title for r in bad)
                )
            else:
                output.err.print(f"[green]ready for {profile.name}[/green]")
        if bad:
            raise typer.Exit(int(ExitCode.PREFLIGHT))
