"""The fakes the unit tests use, and the real adapters, against the Protocols they stand for.

Statically: the `as_*` functions below only type-check (scripts/typecheck.sh runs mypy over the
tests) when the fake or adapter fits its Protocol. At run time: every Protocol member exists on
each of them, with the Protocol's parameter names, so a fake cannot drift from the interface
without a test failing even where mypy is not run."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from gpu_fakes import FakeEngine as DoctorEngine
from gpu_fakes import FakeProbe
from test_launcher import FakeEngine as LauncherEngine
from test_models_pull_weights import FakeEngine as PreprocessFake
from test_models_pull_weights import FakeHub

from hvinfra.engine import DockerEngine
from hvinfra.generate.run import JobEngine
from hvinfra.gpu import GpuProbe, NvmlProbe
from hvinfra.host_gpu import HostProbe
from hvinfra.hub import HfHub
from hvinfra.launcher import Engine
from hvinfra.model_pull import Hub
from hvinfra.preflight import EngineFacts
from hvinfra.preprocess import PreprocessEngine


# -- static: mypy checks each return against the Protocol ----------------------------------------
def as_probe(fake: FakeProbe, nvml: NvmlProbe, host: HostProbe) -> list[GpuProbe]:
    return [fake, nvml, host]


def as_engine(fake: LauncherEngine, doctor: DoctorEngine, real: DockerEngine) -> list[Engine]:
    return [fake, doctor, real]


def as_engine_facts(fake: DoctorEngine, real: DockerEngine) -> list[EngineFacts]:
    return [fake, real]


def as_job_engine(real: DockerEngine) -> JobEngine:
    return real


def as_preprocess_engine(fake: PreprocessFake, real: DockerEngine) -> list[PreprocessEngine]:
    return [fake, real]


def as_hub(fake: FakeHub, real: HfHub) -> list[Hub]:
    return [fake, real]


# -- run time: the members and their parameter names ---------------------------------------------
def protocol_members(protocol: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for base in reversed(protocol.__mro__):
        if base is object or not getattr(base, "_is_protocol", False):
            continue
        for name, value in vars(base).items():
            if not name.startswith("_"):
                members[name] = value
        for name in getattr(base, "__annotations__", {}):
            members.setdefault(name, None)
    return members


def parameter_names(function: Any) -> list[str]:
    names = list(inspect.signature(function).parameters)
    return names[1:] if names and names[0] == "self" else names


PAIRS = [
    (GpuProbe, FakeProbe), (GpuProbe, NvmlProbe), (GpuProbe, HostProbe),
    (Engine, LauncherEngine), (Engine, DoctorEngine), (Engine, DockerEngine),
    (EngineFacts, DoctorEngine), (EngineFacts, DockerEngine),
    (JobEngine, DockerEngine),
    (PreprocessEngine, PreprocessFake), (PreprocessEngine, DockerEngine),
    (Hub, FakeHub), (Hub, HfHub),
]  # fmt: skip


@pytest.mark.parametrize(
    ("protocol", "implementation"), PAIRS, ids=[f"{p.__name__}-{i.__qualname__}" for p, i in PAIRS]
)
def test_implementation_has_every_protocol_member_with_its_parameters(
    protocol: type, implementation: type
) -> None:
    for name, member in protocol_members(protocol).items():
        if member is None:  # an attribute such as `host` or `endpoint`: set in __init__ on some
            continue
        assert hasattr(implementation, name), f"{implementation.__qualname__} lacks {name}"
        wanted = parameter_names(member)
        have = parameter_names(getattr(implementation, name))
        assert have[: len(wanted)] == wanted, f"{implementation.__qualname__}.{name}{have}"
