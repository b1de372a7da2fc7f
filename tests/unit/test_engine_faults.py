"""The engine's messages map to one error class each, with a fix (docker-free at run time)."""

from __future__ import annotations

import pytest

from hvinfra.engine import _split_ref, classify
from hvinfra.errors import (
    ContainerStateError,
    ExitCode,
    GpuRuntimeError,
    HvinfraError,
    ImageError,
)

CASES = [
    ('could not select device driver "" with capabilities: [[gpu]]', GpuRuntimeError,
     "nvidia-ctk runtime configure"),
    ("OCI runtime create failed: runc create failed: unable to start container process: error "
     "during container init: error setting rlimits for ready process: error setting rlimit type "
     "8: operation not permitted", HvinfraError, "LimitMEMLOCK=infinity"),
    ("OCI runtime create failed: unable to apply caps: operation not permitted", HvinfraError,
     "drop --privileged"),
    ('Conflict. The container name "/hunyuanvideo" is already in use by container "9370".',
     ContainerStateError, "hvinfra down"),
    ("pull access denied for hv/missing, repository does not exist or may require 'docker login'",
     ImageError, "docker login"),
    ("toomanyrequests: You have reached your pull rate limit.", ImageError, "mirror"),
    ("failed to register layer: write /x: no space left on device", ImageError, "prune"),
    ("manifest for 127.0.0.1:5000/x:nope not found: manifest unknown", ImageError, "tag"),
    ('Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
     ImageError, "network"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "kind", "fix_part"), CASES)
def test_known_engine_messages_become_errors_with_a_fix(
    text: str, kind: type[HvinfraError], fix_part: str
) -> None:
    error = classify(text, "starting container hv")
    assert isinstance(error, kind)
    assert fix_part in error.fix
    assert error.message.startswith("starting container hv: ")
    assert "engine said:" in error.message


def test_memlock_and_caps_refusals_share_the_engine_refused_code() -> None:
    memlock = classify("error setting rlimit type 8: operation not permitted")
    caps = classify("unable to apply caps: operation not permitted")
    assert memlock is not None and caps is not None
    assert memlock.exit_code == caps.exit_code == ExitCode.ENGINE_REFUSED
    assert "memlock" in memlock.message and "privileged" in caps.message


def test_unknown_messages_are_not_guessed() -> None:
    assert classify("something entirely new") is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("hunyuanvideo/hunyuanvideo:cuda_12", ("hunyuanvideo/hunyuanvideo", "cuda_12")),
     ("127.0.0.1:5000/x", ("127.0.0.1:5000/x", "latest")),
     ("127.0.0.1:5000/x:2", ("127.0.0.1:5000/x", "2")),
     ("x@sha256:abc", ("x@sha256:abc", None))],
)  # fmt: skip
def test_refs_split_into_repository_and_tag(ref: str, expected: tuple[str, str | None]) -> None:
    assert _split_ref(ref) == expected
