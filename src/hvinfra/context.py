"""One AppContext per command: the engine (one client, made on first use), the GPU probe (asked
once, its answer or its error kept) and the consoles. The Typer callback builds it on `ctx.obj`;
`hvinfra.cli.main(argv, context=…)` passes another (tests pass fakes this way).

Cheap to import: `hvinfra --help` builds no client and asks no GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hvinfra.engine import DockerEngine
    from hvinfra.errors import HvinfraError
    from hvinfra.gpu import GpuProbe
    from hvinfra.output import Output
    from hvinfra.records import GpuSystem


def _docker_from_env() -> DockerEngine:
    from hvinfra.engine import DockerEngine

    return DockerEngine.from_env()


class _HostProbeOnFirstUse:
    """The host's GPU probe, imported when asked: the probe module pulls in the profile models
    (pydantic), which `status`, `logs` and friends never need."""

    def probe(self) -> GpuSystem:
        from hvinfra.host_gpu import HostProbe

        return HostProbe().probe()


@dataclass
class AppContext:
    """What every command shares. `engine_factory` returns the engine adapter (DockerEngine or
    a stand-in with its methods); `probe` answers with the host's GPUs or raises."""

    engine_factory: Callable[[], Any] = _docker_from_env
    probe: GpuProbe = field(default_factory=_HostProbeOnFirstUse)
    output_factory: Callable[[bool], Output] | None = None
    _engine: Any = field(default=None, init=False, repr=False)
    _gpus: tuple[GpuSystem | None, HvinfraError | None] | None = field(
        default=None, init=False, repr=False
    )

    def engine(self) -> Any:
        """The one engine client of this command (a failure to connect is raised, not kept)."""
        if self._engine is None:
            self._engine = self.engine_factory()
        return self._engine

    def gpus(self) -> tuple[GpuSystem | None, HvinfraError | None]:
        """The GPU probe's answer, asked once: (system, None) or (None, the error)."""
        if self._gpus is None:
            from hvinfra.preflight import probe_gpus

            self._gpus = probe_gpus(self.probe)
        return self._gpus

    def gpu_system(self) -> GpuSystem | None:
        return self.gpus()[0]

    def output(self, json_mode: bool = False) -> Output:
        if self.output_factory is not None:
            return self.output_factory(json_mode)
        from hvinfra.output import Output

        return Output(json_mode=json_mode)
