"""Profile -> an sbatch script: one generation, or a job array over a batch file (one task per
line, or per shard with --shards). Pure.

Two ways to run the image on a node:
- docker (default): each task runs `hvinfra generate` against the node's Docker engine, in a
  container of its own named after the Slurm job id, with the GPUs Slurm assigned
  (SLURM_JOB_GPUS: global indices, what Docker's device request takes); the container is
  removed when the task ends. With --shards, each task runs `hvinfra batch … --shard I/N`.
- pyxis: `srun --container-image` (pyxis + enroot, no Docker engine), each task running the
  sample script directly with the profile's folders mounted.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from hvinfra.generate.plan import JobPlan
from hvinfra.profiles.models import Profile
from hvinfra.render import RenderError, Source, comment_block

GPUS_FROM_SLURM = (
    'GPUS="${SLURM_JOB_GPUS:-${SLURM_STEP_GPUS:-${CUDA_VISIBLE_DEVICES:-}}}"\n'
    'if [ -z "$GPUS" ]; then echo "hvinfra: Slurm assigned no GPUs to this task" >&2; exit 1; fi\n'
)


@dataclass(frozen=True)
class TaskCommands:
    """What one array task (or the one job) runs: a comment and shell lines."""

    comment: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class SlurmJob:
    profile: Profile
    kind: str  # t2v / i2v: the hvinfra target on the nodes
    name: str
    tasks: tuple[TaskCommands, ...]
    array: bool  # a job array (a batch), else one job


def _directives(job: SlurmJob) -> list[str]:
    settings = job.profile.slurm
    out = [f"--job-name={job.name}"]
    if settings.gpu_flag == "gres":
        out.append(f"--gres={settings.gres_name}:{settings.gpus}")
    else:
        out.append(f"--gpus={settings.gpus}")
    out += ["--nodes=1", "--ntasks=1", f"--time={settings.time}"]
    for flag, value in (
        ("partition", settings.partition), ("account", settings.account),
        ("cpus-per-task", settings.cpus_per_task), ("mem", settings.mem),
    ):  # fmt: skip
        if value is not None:
            out.append(f"--{flag}={value}")
    log_dir = settings.log_dir.rstrip("/")
    if job.array:
        last = len(job.tasks) - 1
        throttle = f"%{settings.max_parallel}" if settings.max_parallel else ""
        out.append(f"--array=0-{last}{throttle}")
        out.append(f"--output={log_dir}/%x-%A_%a.log")
    else:
        out.append(f"--output={log_dir}/%x-%j.log")
    return out + list(settings.directives)


def docker_task_prelude(kind: str, profile_args: list[str], hvinfra: str, out_dir: str) -> str:
    """Per task: the GPUs Slurm assigned, an output folder and a container of the task's own,
    removed at exit."""
    args = " ".join(shlex.quote(a) for a in profile_args)
    out = shlex.quote(out_dir.rstrip("/"))
    return (
        f'OUT={out}/"${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}/task-$TASK"\n'
        'mkdir -p "$OUT"\n'
        + GPUS_FROM_SLURM
        + f"HVINFRA={shlex.quote(hvinfra)}\n"
        + 'NAME="hunyuanvideo-slurm-${SLURM_JOB_ID}"\n'
        + f'PROFILE_ARGS=({args} --set "container_name=$NAME")\n'
        + f'trap \'"$HVINFRA" down {kind} "${{PROFILE_ARGS[@]}}" >/dev/null 2>&1 || true\' EXIT\n'
    )


def generate_command(kind: str, flags: list[str]) -> str:
    """`hvinfra generate` for one line, in the task's container with Slurm's GPUs."""
    quoted = " ".join(shlex.quote(f) for f in flags)
    return f'"$HVINFRA" generate {kind} "${{PROFILE_ARGS[@]}}" {quoted} --gpus "$GPUS" --out "$OUT"'


def batch_shard_command(kind: str, batch_file: str, shards: int) -> str:
    """`hvinfra batch` for this task's shard of the file (every N-th line from the task id)."""
    return (
        f'"$HVINFRA" batch {kind} "${{PROFILE_ARGS[@]}}" {shlex.quote(batch_file)}'
        f' --shard "$TASK/{shards}" --gpus "$GPUS" --out "$OUT"'
    )


def pyxis_image(image: str) -> str:
    """enroot's image form: REGISTRY#REPO[:TAG] when the image names a registry host."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


def pyxis_command(profile: Profile, plan: JobPlan) -> str:
    mounts = ",".join(
        f"{v.host}:{v.container}" + (":ro" if v.read_only else "") for v in profile.volumes.values()
    )
    srun = ["srun", f"--container-image={pyxis_image(profile.image_ref)}"]
    if mounts:
        srun.append(f"--container-mounts={mounts}")
    srun.append(f"--container-workdir={plan.workdir}")
    env = [f"{k}={shlex.quote(v)}" for k, v in plan.env]
    prefix = f"env {' '.join(env)} " if env else ""
    return prefix + shlex.join([*srun, *plan.argv])


def pyxis_prelude(profile: Profile) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in profile.environment.items())
    return exports


def render_sbatch(job: SlurmJob, prelude: str) -> str:
    settings = job.profile.slurm
    if not job.tasks:
        raise RenderError("nothing to run", "give --prompt or --batch")
    header = Source(job.profile.name, "slurm").header(
        f"Submit with `sbatch FILE` from a folder shared with the nodes; logs in"
        f" {settings.log_dir}/ (create it first).",
        f"runtime: {settings.runtime}"
        + (" (hvinfra and Docker on every node)" if settings.runtime == "docker" else
           " (pyxis + enroot; memlock/stack come from slurmd's limits)"),
    )  # fmt: skip
    lines = ["#!/bin/bash", comment_block(header).rstrip("\n")]
    lines += [f"#SBATCH {d}" for d in _directives(job)]
    lines += ["set -uo pipefail", 'TASK="${SLURM_ARRAY_TASK_ID:-0}"']
    lines.append(prelude.rstrip("\n"))
    lines.append("status=0")
    lines.append('case "$TASK" in')
    for index, task in enumerate(job.tasks):
        lines.append(f"  {index})  # {task.comment}")
        lines += [f"    {command} || status=1" for command in task.commands]
        lines.append("    ;;")
    lines.append('  *) echo "hvinfra: no work for task $TASK" >&2; exit 2 ;;')
    lines.append("esac")
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"
