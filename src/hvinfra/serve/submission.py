"""A submitted job -> generate's request model. The same validation and messages as the CLI;
only the options that make sense per job over HTTP are accepted, and nothing in a submission
names a host path. Pure, except `sniff_image` which only reads bytes it is given."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hvinfra.generate.request import FLAG_OF, Request, RequestInvalid, make_request

MAX_PROMPT_CHARS = 4000
MAX_JSON_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_BODY_BYTES = MAX_IMAGE_BYTES + MAX_JSON_BYTES  # multipart: the image plus the fields

COMMON_FIELDS = (
    "prompt", "neg_prompt", "resolution", "frames", "steps", "seed", "flow_shift",
    "embedded_cfg_scale", "cpu_offload",
)  # fmt: skip
FIELDS = {
    "t2v": (*COMMON_FIELDS, "aspect", "fp8"),
    "i2v": (*COMMON_FIELDS, "mode", "stability", "dynamic", "lora_scale"),
}
# What the CLI calls a field that is not a request field (i2v's two switches).
_EXTRA_FLAGS = {"stability": "--stability", "dynamic": "--dynamic", "image": "--image"}

# Image formats by their first bytes; the suffix of the file hvinfra writes comes from here,
# never from the uploaded file's name.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"RIFF", ".webp"))


class SubmissionInvalid(RequestInvalid):
    """A 422: `problems` are the CLI's `--flag: message` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "invalid generation request:\n  " + "\n  ".join(problems),
            "correct the field(s) above; GET /openapi.json lists them",
        )
        self.problems = problems


@dataclass(frozen=True)
class Submission:
    request: Request
    image: bytes | None = None
    image_suffix: str = ""


def sniff_image(data: bytes) -> str | None:
    """The suffix for an image's bytes (.png, .jpg, .webp), or None if it is none of those."""
    for magic, suffix in _MAGIC:
        if data.startswith(magic) and (suffix != ".webp" or data[8:12] == b"WEBP"):
            return suffix
    return None


def _flag(field: str) -> str:
    return FLAG_OF.get(field) or _EXTRA_FLAGS.get(field) or field


def parse_submission(
    kind: str, fields: Mapping[str, Any], image: bytes | None = None
) -> Submission:
    """Validate a submission. `image` is the i2v image's bytes (multipart or decoded base64).
    Raises SubmissionInvalid with every problem found."""
    allowed = FIELDS[kind]
    problems = [
        f"{name}: not a field of a {kind} job; accepted: {', '.join(allowed)}"
        for name in fields
        if name not in allowed and not (kind == "i2v" and name == "image")
    ]
    for name in ("prompt", "neg_prompt"):
        value = fields.get(name)
        if isinstance(value, str) and len(value) > MAX_PROMPT_CHARS:
            problems.append(f"{_flag(name)}: longer than {MAX_PROMPT_CHARS} characters")
    values = {k: v for k, v in fields.items() if k in allowed and v not in (None, "")}
    suffix = ""
    if kind == "i2v":
        stability, dynamic = (
            _truthy(values.pop("stability", None)),
            _truthy(values.pop("dynamic", None)),
        )
        if stability and dynamic:
            problems.append("--stability and --dynamic exclude each other")
        elif dynamic or stability:
            values.setdefault("mode", "dynamic" if dynamic else "stability")
        if image is None:
            problems.append("--image: an i2v job needs an image (multipart file or base64)")
        elif len(image) > MAX_IMAGE_BYTES:
            problems.append(f"--image: larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
        else:
            suffix = sniff_image(image) or ""
            if not suffix:
                problems.append("--image: not a PNG, JPEG or WebP image")
        # The model checks the path's existence only at run time; this stands in until then.
        values["image"] = "uploaded" + suffix
    if "seed" not in values:
        values["seed"] = secrets.randbelow(2**31)
    try:
        request = make_request(kind, **values)
    except RequestInvalid as exc:
        problems += exc.message.splitlines()[1:]
    if problems:
        raise SubmissionInvalid([p.strip() for p in problems])
    return Submission(request=request, image=image, image_suffix=suffix)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def stored_request(kind: str, data: Mapping[str, Any], input_path: str | None) -> Request:
    """A queued job's request as it was stored, with the uploaded image's own path."""
    values = dict(data)
    values.pop("kind", None)
    if input_path is not None:
        values["image"] = input_path
    return make_request(kind, **values)
