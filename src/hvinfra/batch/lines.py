"""A batch file -> validated generation requests, one per line. Pure apart from reading the file
(and, for image-to-video, hashing the input images).

Three formats: JSONL (one object per line, keys are `generate`'s long option names; a line that
is not an object is a bare prompt, as `hvinfra render` reads the same files), CSV with a header
of the same names, and plain text (one prompt per line). Every line goes through the
same request model as `hvinfra generate`; errors name the file and the line.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvinfra.errors import HvinfraError
from hvinfra.generate.request import I2VRequest, Request, RequestInvalid, make_request

# Line keys (generate's long option names, without `--`) -> request field. Batch-wide choices
# (--gpus, xDiT degrees, --out) are options of `hvinfra batch`, not of a line.
COMMON_KEYS = {
    "prompt": "prompt",
    "neg-prompt": "neg_prompt",
    "resolution": "resolution",
    "frames": "frames",
    "steps": "steps",
    "seed": "seed",
    "flow-shift": "flow_shift",
    "embedded-cfg-scale": "embedded_cfg_scale",
    "cpu-offload": "cpu_offload",
}
T2V_KEYS = {**COMMON_KEYS, "aspect": "aspect", "fp8": "fp8"}
I2V_KEYS = {
    **COMMON_KEYS,
    "image": "image",
    "stability": "stability",
    "dynamic": "dynamic",
    "lora": "lora",
    "lora-scale": "lora_scale",
    "mode": "mode",  # stability | dynamic, as `hvinfra render` lines spell it
}
FORMATS = ("jsonl", "csv", "text")
SEED_RANGE = 2**31


class BatchFileError(HvinfraError):
    """A batch file that cannot be used: the lines at fault, each with its file:line."""

    exit_code = RequestInvalid.exit_code


@dataclass(frozen=True)
class BatchLine:
    """One line of the batch file: its request, or why it is invalid."""

    number: int  # 1-based line number in the file
    request: Request | None
    error: str = ""
    seed_derived: bool = False  # the seed came from the line's content (none was given)
    input_digest: str = ""  # sha256 of the i2v input image (an edited image runs again)

    @property
    def valid(self) -> bool:
        return self.request is not None


def keys_for(kind: str) -> dict[str, str]:
    return T2V_KEYS if kind == "t2v" else I2V_KEYS


def detect_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return "jsonl" if first.startswith("{") else "text"


def raw_rows(path: Path, text: str, fmt: str) -> list[tuple[int, dict[str, Any] | str]]:
    """(line number, the row's values) per non-blank, non-comment row; a string is an error."""
    rows: list[tuple[int, dict[str, Any] | str]] = []
    if fmt == "csv":
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.reader(io.StringIO(text), dialect=dialect)
        header: list[str] | None = None
        for record in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                continue
            if len(record) > len(header):
                rows.append((number, f"{len(record)} cells but the header has {len(header)}"))
                continue
            rows.append((number, {k: v for k, v in zip(header, record, strict=False) if v.strip()}))
        return rows
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if fmt == "text" or not stripped.startswith("{"):  # a bare prompt (as render reads it)
            rows.append((number, {"prompt": stripped}))
            continue
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            rows.append((number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            rows.append((number, f"a JSON {type(value).__name__}, not an object with a prompt"))
            continue
        rows.append((number, value))
    return rows


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def row_fields(
    row: Mapping[str, Any], kind: str, defaults: Mapping[str, Any], base: Path
) -> dict[str, Any]:
    """A row's keys -> request fields over the command line's defaults; unknown keys raise."""
    known = keys_for(kind)
    fields: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
    for raw_key, value in row.items():
        key = str(raw_key).strip().lstrip("-").replace("_", "-").lower()
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown field {raw_key!r}{hint} (a line takes: {', '.join(known)})")
        if value is None:
            continue
        fields[known[key]] = value
    if kind == "i2v":
        stability = _truthy(fields.pop("stability", False))
        dynamic = _truthy(fields.pop("dynamic", False))
        if stability and dynamic:
            raise ValueError("stability and dynamic exclude each other")
        if dynamic or stability:
            fields["mode"] = "dynamic" if dynamic else "stability"
        for name in ("image", "lora"):
            if isinstance(fields.get(name), str) and fields[name]:
                fields[name] = str((base / Path(fields[name]).expanduser()).resolve())
    for flag in ("fp8", "cpu_offload"):
        if flag in fields:
            fields[flag] = _truthy(fields[flag])
    return fields


def derived_seed(number: int, fields: Mapping[str, Any]) -> int:
    """A seed for a line that names none: the same line gives the same seed on every rerun, so
    a rerun finds its finished video; the sidecar records it."""
    text = json.dumps({"line": number, **fields}, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % SEED_RANGE


def file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def _invalid_message(exc: RequestInvalid) -> str:
    lines = [line.strip() for line in exc.message.splitlines()[1:] if line.strip()]
    return "; ".join(lines) or exc.message


def parse_text(
    text: str, path: Path, kind: str, defaults: Mapping[str, Any], fmt: str | None = None
) -> list[BatchLine]:
    """Every row of the file as a BatchLine (valid or not)."""
    fmt = fmt or detect_format(path, text)
    base = path.parent
    result: list[BatchLine] = []
    for number, row in raw_rows(path, text, fmt):
        if isinstance(row, str):
            result.append(BatchLine(number, None, row))
            continue
        try:
            fields = row_fields(row, kind, defaults, base)
        except ValueError as exc:
            result.append(BatchLine(number, None, str(exc)))
            continue
        derived = fields.get("seed") is None
        if derived:
            fields["seed"] = derived_seed(number, fields)
        try:
            request = make_request(kind, **fields)
        except RequestInvalid as exc:
            result.append(BatchLine(number, None, _invalid_message(exc)))
            continue
        digest = ""
        if isinstance(request, I2VRequest):
            missing = [
                f"{name} {path}: no such file"
                for name, path in (("image", request.image), ("lora", request.lora))
                if path is not None and not Path(path).is_file()
            ]
            if missing:
                result.append(BatchLine(number, None, "; ".join(missing)))
                continue
            digest = file_digest(request.image)
        result.append(BatchLine(number, request, seed_derived=derived, input_digest=digest))
    return result


def read_batch(path: Path, kind: str, defaults: Mapping[str, Any]) -> list[BatchLine]:
    try:
        text = path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise BatchFileError(f"{path}: no such file", "check the batch file's path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchFileError(f"{path}: cannot be read: {exc}", "give a UTF-8 text file") from exc
    lines = parse_text(text, path, kind, defaults)
    if not lines:
        raise BatchFileError(
            f"{path}: no lines to run (blank lines and # comments are skipped)",
            "write one JSON object, CSV row or prompt per line",
        )
    return lines


def require_valid(path: Path, lines: list[BatchLine], *, skip_invalid: bool) -> list[BatchLine]:
    """All lines valid, or a BatchFileError naming every bad line (unless --skip-invalid)."""
    bad = [line for line in lines if not line.valid]
    if bad and not skip_invalid:
        shown = "\n  ".join(f"{path}:{line.number}: {line.error}" for line in bad[:20])
        more = f"\n  … and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise BatchFileError(
            f"{len(bad)} of {len(lines)} lines are invalid; nothing was started:\n  {shown}{more}",
            "correct those lines, or pass --skip-invalid to run the valid ones",
        )
    return [line for line in lines if line.valid]


def request_hash(line: BatchLine) -> str:
    """What identifies a line's result: the resolved request (and the input image's content)."""
    assert line.request is not None
    data = {"request": line.request.model_dump(mode="json"), "input": line.input_digest}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
