"""The profile model: one YAML file per workload (t2v, i2v), validated with extra keys forbidden."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from hvinfra.profiles.sizes import parse_size

ByteSize = Annotated[int, BeforeValidator(parse_size)]

UNLIMITED = -1
_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]+$")
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _limit(value: object) -> int:
    if isinstance(value, str) and value.strip().lower() in {"unlimited", "-1"}:
        return UNLIMITED
    limit = parse_size(value)
    if limit < UNLIMITED:
        raise ValueError("a limit is -1 (unlimited) or a non-negative number")
    return limit


Limit = Annotated[int, BeforeValidator(_limit)]


class Ulimit(_Strict):
    """One ulimit; a bare number or size sets soft = hard, -1 / 'unlimited' means no limit."""

    soft: Limit
    hard: Limit

    @model_validator(mode="before")
    @classmethod
    def _scalar_means_soft_equals_hard(cls, value: Any) -> Any:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return {"soft": value, "hard": value}
        return value

    @model_validator(mode="after")
    def _soft_within_hard(self) -> Ulimit:
        if self.hard != UNLIMITED and (self.soft == UNLIMITED or self.soft > self.hard):
            raise ValueError(f"soft limit {self.soft} exceeds hard limit {self.hard}")
        return self


class Volume(_Strict):
    """A bind mount: a host folder (created if missing) mounted at a container path."""

    host: str
    container: str
    read_only: bool = False

    @field_validator("container")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"container path {value!r} must be absolute")
        return value


UlimitName = Literal[
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
]  # fmt: skip

GpuDevices = Literal["all", "none"] | list[str]


class GpuConfig(_Strict):
    """Which GPUs the container gets and how.

    mode `toolkit` asks the NVIDIA Container Toolkit through a device request (like `--gpus`);
    `devices` passes the device nodes and the host driver's files directly, for hosts without it.
    """

    mode: Literal["toolkit", "devices"] = "toolkit"
    devices: GpuDevices = "all"
    capabilities: list[str] = Field(default_factory=lambda: ["gpu"])
    # mode `devices` only: where the host driver's libraries and tools are; None = found from
    # where NVML's libnvidia-ml.so.1 was loaded.
    driver_lib_dir: str | None = None
    driver_bin_dir: str | None = None

    @field_validator("devices", mode="before")
    @classmethod
    def _parse_devices(cls, value: Any) -> Any:
        return parse_gpu_selection(value)


def parse_gpu_selection(value: Any) -> Any:
    """`all`, `none`, `0,1`, `GPU-uuid`, 3 or [0, 'GPU-…'] -> 'all' | 'none' | ['0', 'GPU-…']."""
    if isinstance(value, bool):
        raise ValueError("GPUs are 'all', 'none', or a list of indices/UUIDs")
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        text = value.strip().strip("\"'")
        if text.startswith("device="):
            text = text[len("device=") :].strip("\"'")
        if text.lower() in {"all", "none"}:
            return text.lower()
        value = [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        items = [str(item).strip() for item in value]
        if not items:
            raise ValueError("an empty GPU list: use 'none' for no GPUs")
        for item in items:
            if not (item.isdigit() or _GPU_UUID.match(item)):
                raise ValueError(f"{item!r} is neither a GPU index (0, 1, …) nor a GPU/MIG UUID")
        if len(set(items)) != len(items):
            raise ValueError(f"GPU list {items} names a device twice")
        return items
    return value


_SHA = re.compile(r"^[0-9a-f]{40}$")


def _relative(value: str) -> str:
    parts = value.split("/")
    if value.startswith("/") or ".." in parts:
        raise ValueError(f"{value!r} must be a path inside the folder (relative, no '..')")
    return value


RelPath = Annotated[str, AfterValidator(_relative)]


class CodeSource(_Strict):
    """The HunyuanVideo code: a git repository checked out at one pinned commit."""

    repo: str  # a git URL or path; a mirror or a fork works the same way
    commit: str  # the full 40-hex commit id (a tag or branch could move)
    sample_script: RelPath  # must exist in the checkout: sample_video.py / sample_image2video.py

    @field_validator("commit")
    @classmethod
    def _full_sha(cls, value: str) -> str:
        if not _SHA.match(value):
            raise ValueError(f"{value!r} is not a full 40-hex commit id (`git rev-parse COMMIT`)")
        return value


class Preprocess(_Strict):
    """A script of the code repo that turns a downloaded piece into what the sample scripts read.

    Runs as `python SCRIPT ARGS...` in the profile's image, from the code folder; `{input}` and
    `{output}` in args become the container paths of the download and of `output`.
    """

    script: RelPath
    args: list[str]
    output: RelPath  # folder under the weights folder
    required: list[RelPath]  # files that must exist afterwards, relative to the weights folder
    output_size: ByteSize = 0  # about how much the output takes, for the free-disk check


class WeightPiece(_Strict):
    """One piece of the weights: a hub repo (or part of it) downloaded under the weights folder.

    `required` names the files that must exist and be non-empty afterwards, relative to the
    weights folder; `*` globs match at least one file, and a `*.index.json` also requires every
    shard it lists.
    """

    description: str = ""
    repo_id: str
    revision: str = "main"
    subfolder: RelPath = ""  # where the repo's files land under the weights folder
    allow_patterns: list[str]
    required: list[RelPath]
    optional: Literal["fp8"] | None = None  # None: required; fp8: only with `models pull --fp8`
    preprocess: Preprocess | None = None


class ModelsConfig(_Strict):
    """What `hvinfra models pull|check` fetch and verify. The folders are `volumes.code.host`
    and `volumes.weights.host`."""

    code: CodeSource
    weights: dict[str, WeightPiece]


class RewriteSettings(_Strict):
    """Prompt rewrite (`hvinfra generate --rewrite`): an OpenAI-compatible chat endpoint.

    The API key is never a profile value: it comes from HVINFRA_REWRITE_API_KEY or a key file.
    """

    endpoint: str | None = None  # e.g. http://127.0.0.1:8000/v1
    model: str = "hunyuan-large"
    api_key_file: str | None = None
    timeout: float = 120.0


class Toleration(_Strict):
    """A Kubernetes toleration, as the pod spec writes it (snake_case here)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class KubernetesSettings(_Strict):
    """What `hvinfra render k8s` needs beyond the container: storage, scheduling, limits."""

    namespace: str | None = None
    storage: Literal["hostpath", "pvc"] = "hostpath"
    claim: str = "hunyuanvideo"  # storage pvc: one claim, each volume at a subPath of its name
    gpus: int | None = None  # per pod; None: the profile's GPU list length, else 1
    gpu_resource: str = "nvidia.com/gpu"
    shm_size: ByteSize = 64 * 1024**3  # the memory-backed /dev/shm in place of host IPC
    host_ipc: bool = False  # the official --ipc=host, as hostIPC (shares the node's IPC)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    runtime_class: str | None = None  # e.g. nvidia, where the GPU operator asks for it
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    parallelism: int | None = Field(default=None, ge=1)  # indexed Job: pods at once
    backoff_limit: int = Field(default=0, ge=0)


class SlurmSettings(_Strict):
    """What `hvinfra render slurm` puts in the sbatch script."""

    partition: str | None = None
    account: str | None = None
    time: Annotated[str, BeforeValidator(str)] = "02:00:00"  # sbatch --time: minutes or D-HH:MM:SS
    gpus: int = Field(default=1, ge=1)  # GPUs per task
    gpu_flag: Literal["gres", "gpus"] = "gres"  # --gres=gpu:K or --gpus=K
    gres_name: str = "gpu"  # e.g. gpu:h200 where the cluster types its GPUs
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: str | None = None
    max_parallel: int | None = Field(default=None, ge=1)  # array throttle: --array=0-N%M
    runtime: Literal["docker", "pyxis"] = "docker"
    hvinfra: str = "hvinfra"  # the command on the nodes (docker runtime)
    log_dir: str = "slurm-logs"
    out_dir: str = "outputs"
    directives: list[str] = Field(default_factory=list)  # extra #SBATCH lines, verbatim


class Profile(_Strict):
    """A resolved profile: everything needed to start one HunyuanVideo container."""

    name: str
    description: str = ""
    # What the container is for, so pre-flight knows what to require (data/requirements.yaml).
    workload: Literal["t2v", "i2v"] = "t2v"
    resolution: Literal["720p", "540p", "360p"] = "720p"
    image: str
    # Pins the image: pulled and run as `repo@image_digest` (`hvinfra lock` records digests).
    image_digest: str | None = None
    container_name: str
    network_mode: str = "host"
    uts_mode: str | None = "host"
    ipc_mode: str | None = "host"
    init: bool = True
    tty: bool = True
    stdin_open: bool = True
    ulimits: dict[UlimitName, Ulimit] = Field(default_factory=dict)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    shm_size: ByteSize | None = None
    volumes: dict[str, Volume] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    command: list[str] | None = None
    restart_policy: Literal["no", "always", "unless-stopped", "on-failure"] = "no"
    privileged: bool = False
    security_opt: list[str] = Field(default_factory=list)
    cap_add: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    models: ModelsConfig | None = None
    rewrite: RewriteSettings = Field(default_factory=RewriteSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)

    @field_validator("container_name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _CONTAINER_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
            )
        return value

    @field_validator("image_digest")
    @classmethod
    def _digest_form(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.match(value):
            raise ValueError(f"{value!r} is not a digest (sha256: and 64 lowercase hex digits)")
        return value

    @model_validator(mode="after")
    def _one_digest(self) -> Profile:
        _, sep, own = self.image.partition("@")
        if sep and not _DIGEST.match(own):
            raise ValueError(f"image {self.image!r}: the part after @ is not a sha256 digest")
        if sep and self.image_digest and own != self.image_digest:
            raise ValueError(
                f"image {self.image!r} and image_digest {self.image_digest!r} name different"
                " digests; keep one"
            )
        return self

    @property
    def image_ref(self) -> str:
        """The reference to pull and run: `repo@digest` when pinned, else `image`."""
        from hvinfra.images import pinned_ref

        return pinned_ref(self.image, self.image_digest)

    @field_validator("environment", mode="before")
    @classmethod
    def _env_values_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _command_as_argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("command must be a list of arguments (argv), not a shell string")
        return value
