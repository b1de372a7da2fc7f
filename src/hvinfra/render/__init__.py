"""Rendering the resolved profile for the engines people already run past one host: a compose
file, Kubernetes manifests, a Slurm batch script. Pure: profile (+ request or batch lines) ->
text; no engine, no I/O. `cli/render_cmd.py` reads files and runs validators."""

from __future__ import annotations

from dataclasses import dataclass

from hvinfra import __version__
from hvinfra.errors import ExitCode, HvinfraError


class RenderError(HvinfraError):
    """A profile or request that the target engine cannot express."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Source:
    """Where a rendering came from, for the header every rendered file carries."""

    profile: str
    target: str  # compose, k8s, slurm

    def header(self, *notes: str) -> list[str]:
        lines = [
            f"Rendered by hvinfra {__version__} from profile {self.profile!r} ({self.target}).",
            f"Re-render rather than edit: hvinfra render {self.target} {self.profile} …",
        ]
        return [*lines, *notes]


def comment_block(lines: list[str]) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def dump_yaml(document: object) -> str:
    """Block-style YAML in the order built, with no anchors/aliases for repeated dicts."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:
            return True

    def _text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        style = "|" if "\n" in data else None  # scripts stay readable
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _Dumper.add_representer(str, _text)

    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000
    )
