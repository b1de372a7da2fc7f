"""What the user asked `hvinfra generate` for, as one typed value (the CLI fills it from its
flags; everything below reads fields, not a dict of locals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GenerateOptions:
    kind: str  # "t2v" or "i2v"
    prompt: str
    resolution: str
    frames: int
    steps: int
    embedded_cfg_scale: float
    out: Path
    seed: int | None = None
    neg_prompt: str | None = None
    flow_shift: float | None = None
    cpu_offload: bool = False
    gpus: str | None = None
    ulysses_degree: int | None = None
    ring_degree: int | None = None
    # text to video
    aspect: str | None = None
    fp8: bool = False
    # image to video
    image: Path | None = None
    stability: bool = False
    dynamic: bool = False
    lora: Path | None = None
    lora_scale: float = 1.0
    # prompt rewrite
    rewrite: str | None = None
    rewrite_endpoint: str | None = None
    rewrite_model: str | None = None
    rewrite_key_file: Path | None = None
    # running it
    no_up: bool = False
    skip_checks: bool = False
    dry_run: bool = False
    stop_timeout: float = 20.0
    verbose: bool = False
    kill_stale: bool = False  # first kill a job an hvinfra that died left running
    as_json: bool = False
    # profile layers
    profile_file: Path | None = None
    sets: list[str] = field(default_factory=list)
