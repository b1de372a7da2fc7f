"""Load a profile from its layers, lowest first:

packaged (`configs/NAME.yaml`) < user (`$XDG_CONFIG_HOME/hvinfra/profiles/NAME.yaml`)
< `--profile FILE` < `HVINFRA_*` environment < `--set key.path=value` < explicit flags.

Layers are raw dicts deep-merged, then validated once; each key remembers the layer (and file
line) it came from, for error messages and `hvinfra config show --sources`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hvinfra.errors import ProfileError
from hvinfra.paths import check_no_loop
from hvinfra.profiles.models import Profile
from hvinfra.profiles.yaml_safety import load_bounded

ENV_PREFIX = "HVINFRA_"
ENV_NESTING = "__"
Path_ = tuple[str, ...]


@dataclass(frozen=True)
class Layer:
    """One source of profile values."""

    label: str  # what `config show --sources` prints: "packaged:/…/t2v.yaml", "env:HVINFRA_IMAGE"
    data: dict[str, Any]
    lines: dict[Path_, int] = field(default_factory=dict)  # key path -> 1-based line in file
    file: Path | None = None


@dataclass(frozen=True)
class LoadedProfile:
    profile: Profile
    sources: dict[str, str]  # dotted key -> layer label (leaf keys only)
    layers: tuple[Layer, ...]


def packaged_dir() -> Path:
    return Path(str(resources.files("hvinfra") / "configs"))


def user_profile_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "hvinfra" / "profiles"


def packaged_names() -> list[str]:
    return sorted(p.stem for p in packaged_dir().glob("*.yaml"))


def is_profile_path(target: str) -> bool:
    return target.endswith((".yaml", ".yml")) or os.sep in target


def _yaml_lines(node: yaml.Node, prefix: Path_ = ()) -> Iterator[tuple[Path_, int]]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            yield key, key_node.start_mark.line + 1
            yield from _yaml_lines(value_node, key)


def read_yaml_layer(path: Path, label: str) -> Layer:
    """Parse one YAML file into a Layer; syntax errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(
            f"cannot read profile {path}: {exc.strerror or exc}",
            "check the path; `hvinfra config show t2v` shows the packaged profile to start from",
        ) from exc
    try:
        data, node = load_bounded(text, str(path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ProfileError(
            f"{where}: invalid YAML: {exc.problem}",
            "fix the YAML syntax at that line (indentation, a missing ':' or quote)",
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(
            f"{path}: a profile must be a YAML mapping of keys, not {type(data).__name__}",
            "start from `hvinfra config show t2v` and change the keys you need",
        )
    lines = dict(_yaml_lines(node)) if node is not None else {}
    return Layer(label=f"{label}:{path}", data=data, lines=lines, file=path)


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `top` over `base`: mappings merge key by key, everything else replaces."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def nested(path: Sequence[str], value: Any) -> dict[str, Any]:
    """('gpu', 'mode'), 'devices' -> {'gpu': {'mode': 'devices'}}."""
    result: Any = value
    for key in reversed(path):
        result = {key: result}
    assert isinstance(result, dict)
    return result


def parse_scalar(text: str) -> Any:
    """A value from --set or the environment, read as YAML: true, 3, [0, 1], 64m, …"""
    try:
        return load_bounded(text, f"the value {text[:40]!r}")[0] if text != "" else ""
    except yaml.YAMLError:
        return text


def env_layer(env: Mapping[str, str]) -> Layer | None:
    """HVINFRA_IMAGE=…, HVINFRA_GPU__DEVICES=0,1: only names of profile fields count."""
    fields = set(Profile.model_fields)
    data: dict[str, Any] = {}
    names = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
        if not path[0] or path[0] not in fields:
            continue
        data = deep_merge(data, nested(path, parse_scalar(env[name])))
        names.append(name)
    if not data:
        return None
    return Layer(label="env:" + ",".join(names), data=data)


def set_layer(assignments: Sequence[str]) -> Layer | None:
    data: dict[str, Any] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ProfileError(
                f"--set {item!r} is not of the form key.path=value",
                "write e.g. --set gpu.devices=0,1 or --set ulimits.memlock=8m",
            )
        data = deep_merge(data, nested(key.strip().split("."), parse_scalar(value)))
    return Layer(label="--set", data=data) if data else None


def flags_layer(flags: Mapping[str, Any]) -> Layer | None:
    data: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is not None:
            data = deep_merge(data, nested(dotted.split("."), value))
    return Layer(label="flags", data=data) if data else None


def _leaves(data: Mapping[str, Any], prefix: Path_ = ()) -> Iterator[Path_]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, path)
        else:
            yield path


def _source_of(path: Path_, layers: Sequence[Layer]) -> tuple[Layer, int | None] | None:
    """The topmost layer that sets `path` or one of its parents, and the line there."""
    for layer in reversed(layers):
        node: Any = layer.data
        for depth, key in enumerate(path):
            if not isinstance(node, Mapping) or key not in node:
                if depth:
                    return layer, layer.lines.get(path[:depth])
                break
            node = node[key]
        else:
            return layer, layer.lines.get(path)
    return None


def _validation_error(exc: ValidationError, layers: Sequence[Layer]) -> ProfileError:
    lines = []
    for error in exc.errors():
        path = tuple(str(part) for part in error["loc"] if part != "[key]")
        key = ".".join(path) or "(profile)"
        source = _source_of(path, layers)
        where = ""
        if source is not None:
            layer, line = source
            where = f"{layer.file}:{line}: " if layer.file and line else f"{layer.label}: "
        message = error["msg"]
        if "[key]" in error["loc"]:
            message = f"unknown key: {message}"
        elif error["type"] == "extra_forbidden":
            message = "unknown key (typo? see `hvinfra config show` for the valid keys)"
        lines.append(f"{where}{key}: {message}")
    return ProfileError(
        "invalid profile:\n  " + "\n  ".join(lines),
        "correct the keys named above; `hvinfra config validate FILE` checks a file on its own",
    )


def _extends(layer: Layer) -> str | None:
    base = layer.data.pop("extends", None)
    if base is not None and not isinstance(base, str):
        raise ProfileError(f"{layer.file}: extends must name a profile (t2v, i2v)")
    return base


def base_layers(target: str, env: Mapping[str, str]) -> list[Layer]:
    """The packaged and user layers for a profile name, or a profile file (+ what it extends)."""
    if is_profile_path(target):
        path = Path(target).expanduser()
        top = read_yaml_layer(path, "file")
        parent = _extends(top)
        below = base_layers(parent, env) if parent else []
        return [*below, top]
    layers = []
    packaged = packaged_dir() / f"{target}.yaml"
    user = user_profile_dir(env) / f"{target}.yaml"
    if packaged.is_file():
        layers.append(read_yaml_layer(packaged, "packaged"))
    if user.is_file():
        user_layer = read_yaml_layer(user, "user")
        _extends(user_layer)
        layers.append(user_layer)
    if not layers:
        known = ", ".join(packaged_names())
        raise ProfileError(
            f"no profile named {target!r} (packaged: {known}; user dir: {user.parent})",
            f"use one of {known}, a YAML file path, or create {user}",
        )
    return layers


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def expand_path(text: str, env: Mapping[str, str]) -> str:
    """~, $VAR, ${VAR} and ${VAR:-default} from `env`; unknown variables stay as written."""

    def _value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if env.get(name):
            return env[name]
        default = match.group(2)
        return default if default is not None else match.group(0)

    text = _VAR.sub(_value, text)
    if text == "~" or text.startswith("~/"):
        home = env.get("HOME") or os.path.expanduser("~")
        text = home + text[1:]
    return text


def resolve_paths(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Expand ~ and $VARS in host paths, so the engine and the user see real folders."""
    volumes = data.get("volumes")
    if isinstance(volumes, dict):
        for volume in volumes.values():
            if isinstance(volume, dict) and isinstance(volume.get("host"), str):
                volume["host"] = expand_path(volume["host"], env)
                check_no_loop(volume["host"], "a profile volume's host path")
    return data


def load_profile(
    target: str,
    *,
    profile_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> LoadedProfile:
    env = os.environ if env is None else env
    layers = base_layers(target, env)
    if profile_file is not None:
        file_layer = read_yaml_layer(profile_file.expanduser(), "file")
        _extends(file_layer)
        layers.append(file_layer)
    for extra in (env_layer(env), set_layer(sets), flags_layer(flags or {})):
        if extra is not None:
            layers.append(extra)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.data)
    merged.setdefault("name", Path(target).stem if is_profile_path(target) else target)
    merged = resolve_paths(merged, env)
    try:
        profile = Profile.model_validate(merged)
    except ValidationError as exc:
        raise _validation_error(exc, layers) from exc
    sources = {}
    for path in _leaves(merged):
        source = _source_of(path, layers)
        sources[".".join(path)] = source[0].label if source else "default"
    return LoadedProfile(profile=profile, sources=sources, layers=tuple(layers))


def load_profile_file(path: Path) -> LoadedProfile:
    """Validate one file as a complete profile (what `hvinfra config validate FILE` does)."""
    return load_profile(str(path) if is_profile_path(str(path)) else f"./{path}")
