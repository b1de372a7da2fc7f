"""The one exception hierarchy. Every user-facing failure is an HvinfraError with a fix.

This module imports nothing from hvinfra so that every layer may raise these.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, one per failure class. Documented in the README; stable for scripts."""

    OK = 0
    FAILURE = 1  # a command's own result was negative (e.g. a check failed)
    USAGE = 2  # bad command-line usage (typer/click)
    PROFILE = 3  # invalid profile, YAML or --set value
    DOCKER_UNREACHABLE = 4  # daemon down, wrong DOCKER_HOST, socket permission
    IMAGE = 5  # image missing, pull denied, registry unreachable, build failed
    CONTAINER_STATE = 6  # name conflict, container missing or not running
    GPU_RUNTIME = 7  # NVIDIA Container Toolkit missing, NVML/driver problems, bad GPU selection
    ENGINE_REFUSED = 8  # the engine refused a setting: memlock rlimit, privileged caps
    CONTAINER_EXITED = 9  # the container stopped right after start
    PREFLIGHT = 10  # a pre-flight check failed (VRAM, driver, disk...)
    ASSETS = 11  # model code or weights missing
    JOB_FAILED = 12  # a generation/exec job exited non-zero
    OUTPUT = 14  # --out is full, or a name there is taken / unsafe (container output refused)
    CODE_SOURCE = (
        20  # fetching the model code failed: git missing, clone/fetch failed, local changes
    )
    HUB = 21  # the model hub: unreachable, gated repo, token, huggingface_hub not installed
    REWRITE = 25  # prompt rewrite: no endpoint configured, endpoint unreachable or refused
    SERVE = 26  # serve: data dir in use by another server, token missing off-loopback, port busy
    INTERRUPTED = 130  # Ctrl-C


class HvinfraError(Exception):
    """A failure the user can act on: what went wrong, and the fix."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, fix: str = "", *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ProfileError(HvinfraError):
    exit_code = ExitCode.PROFILE


class DockerUnreachable(HvinfraError):
    exit_code = ExitCode.DOCKER_UNREACHABLE


class ImageError(HvinfraError):
    exit_code = ExitCode.IMAGE


class ContainerStateError(HvinfraError):
    exit_code = ExitCode.CONTAINER_STATE


class GpuRuntimeError(HvinfraError):
    exit_code = ExitCode.GPU_RUNTIME


class NvmlError(GpuRuntimeError):
    """NVML (the driver's management library) failed; `code` is NVML's error code, if any."""

    def __init__(self, message: str, fix: str = "", *, code: int | None = None) -> None:
        super().__init__(message, fix)
        self.code = code


class EngineRefused(HvinfraError):
    exit_code = ExitCode.ENGINE_REFUSED


class ContainerExited(HvinfraError):
    exit_code = ExitCode.CONTAINER_EXITED

    def __init__(self, message: str, fix: str = "", *, status: int, log_tail: str = "") -> None:
        super().__init__(message, fix)
        self.status = status
        self.log_tail = log_tail


class PreflightFailed(HvinfraError):
    exit_code = ExitCode.PREFLIGHT


class AssetsMissing(HvinfraError):
    exit_code = ExitCode.ASSETS


class CodeSourceError(HvinfraError):
    exit_code = ExitCode.CODE_SOURCE


class HubError(HvinfraError):
    exit_code = ExitCode.HUB


class JobFailed(HvinfraError):
    exit_code = ExitCode.JOB_FAILED


class OutputError(HvinfraError):
    """Writing the job's files to --out failed: disk full, a planted name, an unsafe output."""

    exit_code = ExitCode.OUTPUT


class RewriteFailed(HvinfraError):
    exit_code = ExitCode.REWRITE


class ServeError(HvinfraError):
    exit_code = ExitCode.SERVE


class Interrupted(HvinfraError):
    exit_code = ExitCode.INTERRUPTED
