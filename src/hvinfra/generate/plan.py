"""Request + profile -> the job to run: the sample script's argv (or its torchrun line), the
exec spec (container, workdir, env) and where the output lands. Pure: no I/O."""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from hvinfra.generate.request import I2VRequest, Request, RequestInvalid, T2VRequest
from hvinfra.generate.tables import tables
from hvinfra.profiles.models import Profile

T2V_SCRIPT = "sample_video.py"
I2V_SCRIPT = "sample_image2video.py"
I2V_MODEL = "HYVideo-T/2"  # the I2V README passes the non-distilled name
# The FP8 DiT weights, relative to the weights folder (ckpts/); `_fp8_map.pt` sits beside them.
T2V_FP8_DIT_WEIGHT = "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8.pt"
FALLBACK_JOBS_DIR = "/tmp/hvinfra-jobs"  # when the profile mounts no outputs folder
INPUTS_DIR = "/tmp/hvinfra-inputs"


@dataclass(frozen=True)
class XditPlan:
    nproc: int
    ulysses: int
    ring: int

    @property
    def distributed(self) -> bool:
        return self.nproc > 1


@dataclass(frozen=True)
class CopyIn:
    """A host file the job needs inside the container."""

    host_path: str
    container_path: str


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    kind: str
    container: str
    workdir: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    save_dir: str  # in the container
    save_dir_host: str | None  # the same folder on the host, when it is a bind mount
    output_stem: str  # name of the .mp4/.json/.log in --out, without suffix
    xdit: XditPlan
    copy_in: tuple[CopyIn, ...] = ()
    gpus: tuple[str, ...] | str | None = None  # the job's GPUs: None = one, 'all', or a list
    notes: tuple[str, ...] = field(default=())

    @property
    def env_map(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def line(self) -> str:
        """The command as one shell line (env prefix included), for --dry-run."""
        prefix = [f"{k}={shlex.quote(v)}" for k, v in self.env]
        return " ".join([*prefix, shlex.join(self.argv)])

    def docker_exec_argv(self, env: dict[str, str] | None = None) -> list[str]:
        """The equivalent `docker exec` command (without the pid wrapper hvinfra adds)."""
        argv = ["docker", "exec", "--workdir", self.workdir]
        for key, value in (self.env_map if env is None else env).items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.container, *self.argv]


# -- xDiT ---------------------------------------------------------------------------------------
def _pairs(pairs: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{u}x{r}" for u, r in pairs)


def t2v_xdit_options(video_size: tuple[int, int]) -> dict[int, tuple[tuple[int, int], ...]]:
    return tables().xdit_t2v.get(video_size, {})


def i2v_xdit_options(nproc: int) -> tuple[tuple[int, int], ...]:
    heads = tables().xdit_i2v_heads
    return tuple((u, nproc // u) for u in range(nproc, 0, -1) if nproc % u == 0 and heads % u == 0)


def plan_xdit(request: Request, nproc: int) -> XditPlan:
    """Choose --ulysses-degree x --ring-degree for N GPUs, or refuse with the valid choices."""
    given_u, given_r = request.ulysses_degree, request.ring_degree
    if nproc == 1:
        if (given_u or 1) * (given_r or 1) != 1:
            raise RequestInvalid(
                f"--ulysses-degree {given_u or 1} x --ring-degree {given_r or 1} needs"
                f" {(given_u or 1) * (given_r or 1)} GPUs, but the job runs on one",
                "select that many GPUs with --gpus (e.g. --gpus 0,1), or drop the degrees",
            )
        return XditPlan(1, 1, 1)
    if request.cpu_offload:
        raise RequestInvalid(
            "--cpu-offload cannot be used with several GPUs (the official scripts refuse it"
            " in the distributed run)",
            "drop --cpu-offload, or run on one GPU",
        )
    if isinstance(request, T2VRequest):
        height, width = request.video_size
        by_n = t2v_xdit_options(request.video_size)
        size = f"{height} {width} ({request.resolution} {request.aspect})"
        if nproc not in by_n:
            counts = ", ".join(str(n) for n in sorted(by_n)) or "none"
            example = ",".join(str(i) for i in range(min(by_n))) if by_n else "0"
            raise RequestInvalid(
                f"xDiT has no configuration for {nproc} GPUs at --video-size {size}; the"
                f" official table allows {counts} GPUs for this size",
                f"select one of those GPU counts with --gpus (e.g. --gpus {example}), another"
                " size, or one GPU",
            )
        allowed = by_n[nproc]
    else:
        if nproc > tables().xdit_i2v_max_gpus:
            raise RequestInvalid(
                f"{nproc} GPUs: image-to-video runs on at most {tables().xdit_i2v_max_gpus}"
                " GPUs of one host",
                "select fewer GPUs with --gpus",
            )
        allowed = i2v_xdit_options(nproc)
        size = f"{request.resolution} image-to-video"
    if given_u is None and given_r is None:
        ulysses, ring = allowed[0]
    else:
        ulysses = given_u if given_u is not None else nproc // (given_r or 1)
        ring = given_r if given_r is not None else nproc // (given_u or 1)
        if (ulysses, ring) not in allowed:
            raise RequestInvalid(
                f"--ulysses-degree {ulysses} x --ring-degree {ring} is not a valid xDiT"
                f" configuration for {nproc} GPUs at {size}",
                f"use one of {_pairs(allowed)} (ULYSSESxRING), or leave both out to get"
                f" {allowed[0][0]}x{allowed[0][1]}",
            )
    return XditPlan(nproc, ulysses, ring)


def gpu_count_of(gpus: str | list[str] | None, host_gpu_count: int | None) -> tuple[int, str]:
    """How many processes the job runs, and a note when that had to be guessed."""
    if gpus is None:
        return 1, ""
    if gpus == "all":
        if host_gpu_count:
            return host_gpu_count, ""
        return 1, "--gpus all: the number of GPUs is unknown here, planned for one GPU"
    return len(gpus), ""


# -- names --------------------------------------------------------------------------------------
def slug(text: str, limit: int = 48) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or "video"


def output_stem(request: Request, seed: int) -> str:
    if isinstance(request, T2VRequest):
        height, width = request.video_size
        size = f"{width}x{height}"
    else:
        size = request.resolution
    return (
        f"{request.mode_name}_{slug(request.original_prompt or request.prompt)}_seed{seed}_{size}"
    )


def official_file_name_bytes(prompt: str, seed: int) -> int:
    """Bytes of the name the sample scripts give the .mp4: `{time}_seed{seed}_{prompt[:100]}`."""
    name = f"2025-01-01-00:00:00_seed{seed}_{prompt[:100].replace('/', '')}.mp4"
    return len(name.encode("utf-8"))


# -- the plan -----------------------------------------------------------------------------------
def container_path_of(host_path: str, profile: Profile) -> str | None:
    """The path a host file has inside the container, when a profile volume mounts it."""
    path = PurePosixPath(host_path)
    for volume in profile.volumes.values():
        root = PurePosixPath(volume.host)
        if path == root or root in path.parents:
            return str(PurePosixPath(volume.container) / path.relative_to(root))
    return None


def _suffix(path: str) -> str:
    suffix = PurePosixPath(path).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,16}", suffix) else ""


def build_plan(
    request: Request,
    profile: Profile,
    *,
    job_id: str,
    host_gpu_count: int | None = None,
) -> JobPlan:
    """The job for a validated request with its seed chosen. Pure."""
    if request.seed is None:
        raise ValueError("build_plan needs a request with its seed chosen")
    seed = request.seed
    nproc, note = gpu_count_of(request.gpus, host_gpu_count)
    xdit = plan_xdit(request, nproc)
    volumes = profile.volumes
    workdir = volumes["code"].container if "code" in volumes else profile.working_dir
    if not workdir:
        raise RequestInvalid(
            f"profile {profile.name} names no code folder in the container",
            "add volumes.code (host + container) or working_dir to the profile",
        )
    if "outputs" in volumes:
        save_dir = f"{volumes['outputs'].container.rstrip('/')}/{job_id}"
        save_dir_host: str | None = f"{volumes['outputs'].host.rstrip('/')}/{job_id}"
    else:
        save_dir, save_dir_host = f"{FALLBACK_JOBS_DIR}/{job_id}", None
    weights = volumes["weights"].container if "weights" in volumes else "ckpts"

    args: list[str] = [f"--prompt={request.prompt}"]
    copy_in: list[CopyIn] = []
    env: dict[str, str] = {}
    if isinstance(request, T2VRequest):
        script = T2V_SCRIPT
        height, width = request.video_size
        args += ["--video-size", str(height), str(width)]
    else:
        assert isinstance(request, I2VRequest)
        script = I2V_SCRIPT
        image_in = f"{INPUTS_DIR}/{job_id}/input{_suffix(request.image)}"
        copy_in.append(CopyIn(request.image, image_in))
        args += ["--model", I2V_MODEL, "--i2v-mode", f"--i2v-image-path={image_in}"]
        args += ["--i2v-resolution", request.resolution]
        if request.mode == "stability":
            args.append("--i2v-stability")
    args += ["--video-length", str(request.frames), "--infer-steps", str(request.steps)]
    args += [
        "--seed",
        str(seed),
        "--flow-reverse",
        "--flow-shift",
        f"{request.effective_flow_shift:g}",
    ]
    args += ["--embedded-cfg-scale", f"{request.embedded_cfg_scale:g}"]
    if request.neg_prompt is not None:
        args.append(f"--neg-prompt={request.neg_prompt}")
    if request.cpu_offload:
        args.append("--use-cpu-offload")
    if isinstance(request, T2VRequest) and request.fp8:
        args += ["--use-fp8", f"--dit-weight={weights.rstrip('/')}/{T2V_FP8_DIT_WEIGHT}"]
    if isinstance(request, I2VRequest) and request.lora is not None:
        lora_in = container_path_of(request.lora, profile)
        if lora_in is None:
            lora_in = f"{INPUTS_DIR}/{job_id}/lora{_suffix(request.lora)}"
            copy_in.append(CopyIn(request.lora, lora_in))
        args += ["--use-lora", f"--lora-path={lora_in}", "--lora-scale", f"{request.lora_scale:g}"]
    args.append(f"--save-path={save_dir}")
    if xdit.distributed:
        args += ["--ulysses-degree", str(xdit.ulysses), "--ring-degree", str(xdit.ring)]
        argv = ["torchrun", f"--nproc_per_node={xdit.nproc}", script, *args]
        if isinstance(request, I2VRequest):
            env.update(tables().xdit_i2v_env)
    else:
        argv = ["python3", script, *args]
    gpus: tuple[str, ...] | str | None = (
        tuple(request.gpus) if isinstance(request.gpus, list) else request.gpus
    )
    return JobPlan(
        job_id=job_id,
        kind=request.mode_name,
        container=profile.container_name,
        workdir=workdir,
        argv=tuple(argv),
        env=tuple(sorted(env.items())),
        save_dir=save_dir,
        save_dir_host=save_dir_host,
        output_stem=output_stem(request, seed),
        xdit=xdit,
        copy_in=tuple(copy_in),
        gpus=gpus,
        notes=(note,) if note else (),
    )


def exec_env(plan: JobPlan, container_gpus: str) -> dict[str, str]:
    """The job's environment in a container started with `container_gpus` (its io.hvinfra.gpus
    label): selecting GPUs inside a container that has all of them uses CUDA_VISIBLE_DEVICES."""
    env = plan.env_map
    if plan.gpus is None or plan.gpus == "all":
        return env
    wanted = ",".join(plan.gpus)
    if container_gpus == "all":
        env["CUDA_VISIBLE_DEVICES"] = wanted
        return env
    if container_gpus == wanted:
        return env
    started_with = [part for part in container_gpus.split(",") if part]
    if started_with and set(plan.gpus) <= set(started_with):  # a subset: positions inside
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(started_with.index(g)) for g in plan.gpus)
        return env
    raise RequestInvalid(
        f"the job asks for GPUs {wanted}, but container {plan.container} was started with"
        f" GPUs {container_gpus or 'none'}",
        f"`hvinfra up {plan.kind} --gpus {wanted}` recreates it with those GPUs, or leave out"
        " --gpus",
    )
