"""Generation jobs for the rendered targets: a batch file's lines (or one --prompt) validated
with generate's own request model, split into shards, and turned into the sample script's
command line for engines that run the image directly (Kubernetes, Slurm with pyxis). Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hvinfra.generate.plan import JobPlan, build_plan, container_path_of
from hvinfra.generate.request import Request, RequestInvalid, make_request
from hvinfra.profiles.models import Profile
from hvinfra.render import RenderError

# Generate options a line (or the render command) may set, by their long name. The GPUs are
# the engine's choice (a pod's limit, a Slurm allocation), never a line's.
LINE_OPTIONS = (
    "prompt", "neg_prompt", "resolution", "aspect", "frames", "steps", "seed", "flow_shift",
    "embedded_cfg_scale", "fp8", "cpu_offload", "image", "mode", "lora", "lora_scale",
)  # fmt: skip
_BOOL_FLAGS = {"fp8": "--fp8", "cpu_offload": "--cpu-offload"}


@dataclass(frozen=True)
class Line:
    """One job: its number in the batch file (1-based; 0 for a single --prompt), the options
    it sets and the request they validate to."""

    number: int
    options: dict[str, Any]
    request: Request

    @property
    def label(self) -> str:
        return f"line {self.number}" if self.number else "the job"


def parse_batch(text: str, path: Path, kind: str) -> list[tuple[int, dict[str, Any]]]:
    """A batch file as `hvinfra batch` reads it (JSONL, CSV with a header, or one prompt a
    line; blank lines and # comments skipped): each row's options by request field name."""
    from hvinfra.batch.lines import detect_format, raw_rows, row_fields

    rows: list[tuple[int, dict[str, Any]]] = []
    for number, row in raw_rows(path, text, detect_format(path, text)):
        fix = "write one JSON object, CSV row or prompt per line"
        if isinstance(row, str):
            raise RenderError(f"{path}:{number}: {row}", fix)
        try:
            rows.append((number, row_fields(row, kind, {}, path.parent)))
        except ValueError as exc:
            raise RenderError(f"{path}:{number}: {exc}", fix) from exc
    if not rows:
        raise RenderError(f"{path}: no jobs in the file", "write one prompt per line")
    return rows


def make_lines(
    kind: str,
    rows: list[tuple[int, dict[str, Any]]],
    defaults: dict[str, Any],
    source: str,
) -> list[Line]:
    """Validate every line (defaults under each line's own options) before anything renders."""
    lines = []
    for number, options in rows:
        unknown = sorted(set(options) - set(LINE_OPTIONS))
        where = f"{source}:{number}" if number else source
        if unknown:
            raise RenderError(
                f"{where}: unknown option(s) {', '.join(unknown)}",
                f"a line sets only: {', '.join(LINE_OPTIONS)}",
            )
        merged = {**{k: v for k, v in defaults.items() if v is not None}, **options}
        try:
            request = make_request(kind, **merged)
        except RequestInvalid as exc:
            raise RenderError(f"{where}: {exc.message}", exc.fix) from exc
        lines.append(Line(number, merged, request))
    return lines


def shards(lines: list[Line], count: int | None) -> list[list[Line]]:
    """Shard I of N takes every N-th line from I (as `hvinfra batch --shard I/N` does); without
    a count, one shard per line."""
    if count is None:
        return [[line] for line in lines]
    if count < 1:
        raise RenderError(f"--shards {count}: need at least 1", "use --shards N with N >= 1")
    return [part for part in (lines[i::count] for i in range(count)) if part]


def generate_flags(options: dict[str, Any]) -> list[str]:
    """The `hvinfra generate` options that reproduce a line's options."""
    argv: list[str] = []
    for key in LINE_OPTIONS:
        if key not in options or options[key] is None:
            continue
        value = options[key]
        if key in _BOOL_FLAGS:
            argv += [_BOOL_FLAGS[key]] if value else []
        elif key == "mode":
            argv.append(f"--{value}")
        else:
            argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


def in_image_plan(line: Line, profile: Profile, gpus: int, job_id: str) -> JobPlan:
    """The sample script's command for a pod or a pyxis task that has `gpus` GPUs (seen as
    0..gpus-1) and the profile's volumes mounted; inputs must sit in a mounted folder."""
    if line.request.seed is None:
        raise RenderError(f"{line.label}: no seed chosen", "give the job a seed")
    selection = [str(i) for i in range(gpus)] if gpus > 1 else None
    request = line.request.model_copy(update={"gpus": selection})
    try:
        plan = build_plan(request, profile, job_id=job_id, host_gpu_count=gpus)
    except RequestInvalid as exc:
        raise RenderError(f"{line.label}: {exc.message}", exc.fix) from exc
    argv = list(plan.argv)
    for copy in plan.copy_in:
        inside = container_path_of(copy.host_path, profile)
        if inside is None:
            raise RenderError(
                f"{line.label}: {copy.host_path} is not in a folder the profile mounts, and a"
                " pod or pyxis task cannot have it copied in",
                "put the file under one of the profile's volumes (e.g. the outputs folder)",
            )
        argv = [part.replace(copy.container_path, inside) for part in argv]
    return replace(plan, argv=tuple(argv), copy_in=())
