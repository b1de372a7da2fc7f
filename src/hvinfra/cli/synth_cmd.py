"""`hvinfra models synth t2v|i2v`: synthetic weights (real shapes, random values) for proving
the whole path against the official code without the ~60 GB download. The video is noise."""

from __future__ import annotations

from pathlib import Path

import typer

from hvinfra.cli.common import TARGET_HELP, JsonOpt, ProfileFileOpt, SetOpt
from hvinfra.cli.models_common import CodeDirOpt, WeightsDirOpt


def register(models_app: typer.Typer) -> None:
    """Adds `synth` to the `models` group (models_cmd calls this)."""
    models_app.command("synth")(synth)


def synth(
    target: str = typer.Argument(..., help=TARGET_HELP),
    force: bool = typer.Option(
        False, "--force", help="Write again over a synthetic tree (never over real weights)."
    ),
    code_dir: Path | None = CodeDirOpt,
    weights_dir: Path | None = WeightsDirOpt,
    profile_file: Path | None = ProfileFileOpt,
    sets: list[str] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write SYNTHETIC weights into the weights folder: the file layout and tensor shapes the
    pinned official code loads (taken from that code, in the profile's container), random
    values, the 13B DiT stored compactly (MBs, not 26 GB). For testing the launcher, measuring
    memory and speed: the video such weights make is noise, and every command says so.
    Refuses a folder that holds real weights. Needs the code (`models pull TARGET --only code`)."""
    import json

    from hvinfra import __version__
    from hvinfra.assets import CODE_VOLUME, WEIGHTS_VOLUME
    from hvinfra.cli.common import connect
    from hvinfra.cli.models_common import image_observer, relay_output, resolve
    from hvinfra.errors import AssetsMissing, HvinfraError
    from hvinfra.output import Output
    from hvinfra.preprocess import run_preprocess
    from hvinfra.synth import real_files, refusal, script_path, synth_spec
    from hvinfra.synthetic_marker import NOTE, read_marker

    output = Output(json_mode=as_json)
    profile, _fix = resolve(target, profile_file, sets, code_dir, weights_dir)
    kind = profile.workload
    code = Path(profile.volumes[CODE_VOLUME].host)
    weights = Path(profile.volumes[WEIGHTS_VOLUME].host)
    sample = profile.models.code.sample_script if profile.models else ""
    if not (code / sample).is_file():
        raise AssetsMissing(
            f"the official code is not in {code} (no {sample}): synth takes the shapes from it",
            f"hvinfra models pull {target} --only code",
        )
    required = [
        entry
        for piece in (profile.models.weights.values() if profile.models else [])
        for entry in piece.required
    ]
    why = refusal(weights, real_files(weights, required), force)
    if why is not None:
        raise HvinfraError(why, "choose an empty folder with --weights-dir" + (
            "" if "real" in why else ", or pass --force to write it again"
        ))  # fmt: skip
    weights.mkdir(parents=True, exist_ok=True)
    spec = synth_spec(profile, kind, str(script_path()), __version__)
    output.warn(f"writing SYNTHETIC weights into {weights}: {NOTE}")
    engine = connect()
    run_preprocess(
        engine, spec, on_output=relay_output(),
        observe_pull=image_observer(output, profile.image),
        what="models synth", rerun=f"rerun `hvinfra models synth {target} --force`",
    )  # fmt: skip
    marker = read_marker(weights) or {}
    if as_json:
        output.data({"profile": profile.name, "weights": str(weights), "marker": marker})
        return
    output.info(f"synthetic {kind} weights in {weights} ({json.dumps(marker.get('seconds'))} s)")
