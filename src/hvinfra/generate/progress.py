"""Reading the sample script's output: tqdm step bars, the saved file's path, and a hint from
the last lines of a failed run. Pure."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

# tqdm's default bar: "  4%|▍         | 2/50 [00:41<16:24, 20.51s/it]" (elapsed<remaining, rate).
_TQDM = re.compile(
    r"(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
    r"(?:\s*\[(?P<elapsed>[\d:]+)(?:<(?P<remaining>[\d:?]+))?(?:,\s*(?P<rate>[^\]]*))?\])?"
)
_SAVED = re.compile(r"Sample save to:\s*(?P<path>.+?\.mp4)\s*$")


@dataclass(frozen=True)
class Step:
    n: int
    total: int
    elapsed: str = ""
    remaining: str = ""
    rate: str = ""


def parse_step(line: str) -> Step | None:
    """The last tqdm state in one line (a line may hold several \\r-separated updates)."""
    found = None
    for match in _TQDM.finditer(line):
        found = match
    if found is None:
        return None
    return Step(
        n=int(found["n"]),
        total=int(found["total"]),
        elapsed=found["elapsed"] or "",
        remaining=found["remaining"] or "",
        rate=(found["rate"] or "").strip(),
    )


def saved_path(line: str) -> str | None:
    match = _SAVED.search(line)
    return match["path"] if match else None


class LineSplitter:
    """Bytes in, text lines out; tqdm's carriage returns end a line as a newline does."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""

    def feed(self, data: bytes) -> Iterator[str]:
        self._buffer += self._decoder.decode(data)
        parts = re.split(r"\r\n|\r|\n", self._buffer)
        self._buffer = parts.pop()
        yield from parts

    @property
    def pending(self) -> str:
        """The text after the last line end: tqdm writes `\\r` BEFORE each state, so the newest
        state waits here until the next one arrives; read it now to time the step when it
        happened, not one step late."""
        return self._buffer

    def flush(self) -> Iterator[str]:
        rest = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        if rest:
            yield rest


# Known failure texts in the job's log -> the fix to show.
FAILURE_HINTS: tuple[tuple[str, str], ...] = (
    (
        r"CUDA out of memory|OutOfMemoryError",
        "the GPU ran out of memory: add --cpu-offload and/or --fp8, use --resolution 540p,"
        " fewer --frames, or more GPUs (--gpus)",
    ),
    (
        r"`models_root` not exists|No such file or directory: .*ckpts|Invalid model path",
        "the model weights are missing in the container: download them (`hvinfra models pull`)"
        " into the profile's weights folder",
    ),
    (
        r"No module named|ModuleNotFoundError",
        "the image lacks a Python module the script needs: use the official image for this"
        " profile, or rebuild it",
    ),
    (
        r"can't open file .*sample_(video|image2video)\.py|No such file or directory: .*sample_",
        "the HunyuanVideo code is missing in the container's working folder: put a checkout in"
        " the profile's code folder (`hvinfra models pull` fetches it)",
    ),
    (
        r"floating point exception|Floating point exception",
        "a known CUDA 12 problem on some GPUs: use the cuda_12 image with CUBLAS >= 12.4.5.8,"
        " or the cuda_11 image tag",
    ),
    (
        r"NCCL error|ncclSystemError|ncclInternalError",
        "the GPUs could not talk over NCCL: check --ipc=host / shm size in the profile, or run"
        " on one GPU",
    ),
)


def failure_hint(log_tail: str) -> str | None:
    for pattern, fix in FAILURE_HINTS:
        if re.search(pattern, log_tail):
            return fix
    return None
