"""The generation request: one pydantic model per mode, the single source of truth for
validation, the sample script's argv and the JSON sidecar. Pure: no I/O."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hvinfra.errors import ExitCode, HvinfraError
from hvinfra.generate.tables import tables
from hvinfra.profiles.models import parse_gpu_selection

# The official defaults (hyvideo/config.py); the I2V parser leaves --embedded-cfg-scale unset but
# every I2V README example passes 6.0, so both modes pass 6.0.
DEFAULT_STEPS = 50
DEFAULT_EMBEDDED_CFG_SCALE = 6.0
T2V_DEFAULT_FLOW_SHIFT = 7.0
I2V_FLOW_SHIFT = {"stability": 7.0, "dynamic": 17.0}  # the I2V README's two recommendations
DEFAULT_LORA_SCALE = 1.0

# Request field -> the CLI option that sets it, for error messages.
FLAG_OF = {
    "prompt": "--prompt",
    "neg_prompt": "--neg-prompt",
    "resolution": "--resolution",
    "aspect": "--aspect",
    "frames": "--frames",
    "steps": "--steps",
    "seed": "--seed",
    "flow_shift": "--flow-shift",
    "embedded_cfg_scale": "--embedded-cfg-scale",
    "gpus": "--gpus",
    "ulysses_degree": "--ulysses-degree",
    "ring_degree": "--ring-degree",
    "image": "--image",
    "lora": "--lora",
    "lora_scale": "--lora-scale",
    "mode": "--stability/--dynamic",
}

Gpus = Literal["all"] | list[str] | None


def _text(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"the {what} contains a NUL character, which no program argument can hold")
    return value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Annotated[str, Field(min_length=1)]
    neg_prompt: str | None = None
    frames: int = Field(default_factory=lambda: tables().frames.default)
    steps: Annotated[int, Field(ge=1, le=1000)] = DEFAULT_STEPS
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    flow_shift: Annotated[float, Field(gt=0)] | None = None
    embedded_cfg_scale: Annotated[float, Field(ge=0)] = DEFAULT_EMBEDDED_CFG_SCALE
    cpu_offload: bool = False
    gpus: Gpus = None  # None: one GPU, the container's first
    ulysses_degree: Annotated[int, Field(ge=1)] | None = None
    ring_degree: Annotated[int, Field(ge=1)] | None = None
    rewrite: Literal["normal", "master"] | None = None
    original_prompt: str | None = None  # the user's words, when --rewrite replaced them

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return _text(value, "prompt")

    @field_validator("neg_prompt")
    @classmethod
    def _neg_prompt(cls, value: str | None) -> str | None:
        return None if value is None else _text(value, "negative prompt")

    @field_validator("frames")
    @classmethod
    def _frames(cls, value: int) -> int:
        rule = tables().frames
        if not rule.valid(value):
            nearest = " or ".join(str(v) for v in rule.nearest(value))
            raise ValueError(
                f"{value} frames cannot be generated: the VAE compresses time {rule.step}x, so"
                f" lengths are {rule.step}k+1 between {rule.minimum} and {rule.maximum};"
                f" nearest valid: {nearest}"
            )
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if value is None:
            return None
        parsed = parse_gpu_selection(value)
        if parsed == "none":
            raise ValueError("a generation job needs at least one GPU ('none' is not allowed)")
        return parsed

    @property
    def mode_name(self) -> str:
        raise NotImplementedError

    @property
    def effective_flow_shift(self) -> float:
        raise NotImplementedError


class T2VRequest(_Request):
    kind: Literal["t2v"] = "t2v"
    resolution: str = Field(default_factory=lambda: tables().t2v_default_resolution)
    aspect: str = Field(default_factory=lambda: tables().t2v_default_aspect)
    fp8: bool = False

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value: str) -> str:
        value = value.lower()
        known = tables().resolutions
        if value not in known:
            raise ValueError(f"{value!r} is not a text-to-video resolution; use one of {known}")
        return value

    @field_validator("aspect")
    @classmethod
    def _aspect(cls, value: str) -> str:
        value = value.replace("/", ":").replace("x", ":").strip()
        known = tables().aspects
        if value not in known:
            raise ValueError(
                f"{value!r} is not a supported aspect (width:height); use one of {known}"
            )
        return value

    @property
    def video_size(self) -> tuple[int, int]:
        """(height, width), as `--video-size` takes it."""
        return tables().t2v_sizes[self.resolution][self.aspect]

    @property
    def mode_name(self) -> str:
        return "t2v"

    @property
    def effective_flow_shift(self) -> float:
        return T2V_DEFAULT_FLOW_SHIFT if self.flow_shift is None else self.flow_shift


class I2VRequest(_Request):
    kind: Literal["i2v"] = "i2v"
    image: Annotated[str, Field(min_length=1)]  # a path on the host
    resolution: str = Field(default_factory=lambda: tables().i2v_default_resolution)
    mode: Literal["stability", "dynamic"] = "stability"
    lora: str | None = None  # a path on the host
    lora_scale: float = DEFAULT_LORA_SCALE

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value: str) -> str:
        value = value.lower()
        known = tables().i2v_resolutions
        if value not in known:
            raise ValueError(f"{value!r} is not an image-to-video resolution; use one of {known}")
        return value

    @property
    def mode_name(self) -> str:
        return "i2v"

    @property
    def effective_flow_shift(self) -> float:
        return I2V_FLOW_SHIFT[self.mode] if self.flow_shift is None else self.flow_shift


Request = T2VRequest | I2VRequest


class RequestInvalid(HvinfraError):
    exit_code = ExitCode.USAGE


def describe_errors(exc: ValidationError) -> list[str]:
    """One `--flag: message` line per problem, as the CLI and the serve API show them."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        flag = FLAG_OF.get(field, field)
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{flag}: {message}" if flag else message)
    return lines


def make_request(kind: str, **values: Any) -> Request:
    """Validate CLI values into a request; problems become one RequestInvalid naming the flags."""
    model: type[T2VRequest] | type[I2VRequest] = T2VRequest if kind == "t2v" else I2VRequest
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        lines = describe_errors(exc)
        raise RequestInvalid(
            "invalid generation request:\n  " + "\n  ".join(lines),
            f"correct the option(s) above; `hvinfra generate {kind} --help` lists the valid values",
        ) from exc
