"""Model assets (the HunyuanVideo code at a pinned commit and the weights): what is there, what
is missing, and the one command that fixes each piece.

The check is a pure function over records (`CodeState`, `TreeSnapshot`) that `asset_probe`
gathers from the disk and git; `asset_probe.assets_report(profile)` (rows, for `doctor` and the
`up` warning) and `asset_probe.require_assets(profile)` (raises AssetsMissing, for `generate`)
put the two together.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from hvinfra.errors import ProfileError
from hvinfra.profiles.models import ModelsConfig, Profile, WeightPiece

CODE_VOLUME = "code"
WEIGHTS_VOLUME = "weights"
_GLOB = set("*?[")


class AssetState(str, Enum):
    OK = "ok"
    MISSING = "missing"
    INCOMPLETE = "incomplete"
    WRONG_COMMIT = "wrong commit"
    UNKNOWN = "unknown"  # could not be checked (git not installed, folder unreadable)


@dataclass(frozen=True)
class CodeState:
    """The code folder as git sees it."""

    path: str
    exists: bool
    empty: bool = True
    is_repo: bool = False
    head: str | None = None
    dirty: tuple[str, ...] = ()  # tracked files with local changes
    script_present: bool = False
    error: str = ""  # why it could not be read (git missing, …)


@dataclass(frozen=True)
class TreeSnapshot:
    """The files under the weights folder: posix path relative to it -> size in bytes."""

    root: str
    files: Mapping[str, int] = field(default_factory=dict)
    # `*.index.json` files -> the shard files they list (None: unreadable or not JSON)
    index_refs: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class AssetRow:
    piece: str  # "code", or a weights piece name: model, vae, text_encoder, …
    kind: str  # "code" or "weights"
    state: AssetState
    required: bool
    path: str
    detail: str
    size: int | None = None
    fix: str = ""
    needs: tuple[str, ...] = ()  # what a pull must do: "clone", "download", "preprocess"

    @property
    def failed(self) -> bool:
        return self.required and self.state is not AssetState.OK

    def as_dict(self) -> dict[str, object]:
        return {
            "piece": self.piece,
            "kind": self.kind,
            "state": self.state.value,
            "required": self.required,
            "path": self.path,
            "detail": self.detail,
            "size": self.size,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class FixContext:
    """How to write fix commands: the profile as the user named it and any folder overrides."""

    target: str
    code_dir: str | None = None
    weights_dir: str | None = None

    def pull(self, only: str | None = None, fp8: bool = False) -> str:
        argv = ["hvinfra", "models", "pull", self.target]
        if only:
            argv += ["--only", only]
        if fp8:
            argv.append("--fp8")
        if self.code_dir and only != "weights":
            argv += ["--code-dir", self.code_dir]
        if self.weights_dir and only != "code":
            argv += ["--weights-dir", self.weights_dir]
        return shlex.join(argv)


def is_glob(entry: str) -> bool:
    return any(ch in _GLOB for ch in entry)


def matches_patterns(path: str, patterns: Sequence[str]) -> bool:
    """The hub's allow_patterns rule: fnmatch, and a pattern ending in / means the folder."""
    return any(
        fnmatch.fnmatch(path, pattern + "*" if pattern.endswith("/") else pattern)
        for pattern in patterns
    )


@dataclass(frozen=True)
class _Expectation:
    found: dict[str, int]
    missing: list[str]
    empty: list[str]

    @property
    def state(self) -> AssetState:
        if not self.found and not self.empty:
            return AssetState.MISSING
        if self.missing or self.empty:
            return AssetState.INCOMPLETE
        return AssetState.OK

    @property
    def size(self) -> int:
        return sum(self.found.values())

    def describe(self) -> str:
        if self.state is AssetState.OK:
            count = len(self.found)
            return f"{count} file{'s' if count != 1 else ''}, {human_size(self.size)}"
        if self.state is AssetState.MISSING:
            return "not downloaded"
        parts = []
        if self.missing:
            parts.append("missing " + _some(self.missing))
        if self.empty:
            parts.append("empty " + _some(self.empty))
        return "; ".join(parts)


def _some(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _expect(entries: Sequence[str], snapshot: TreeSnapshot) -> _Expectation:
    found: dict[str, int] = {}
    missing: list[str] = []
    empty: list[str] = []

    def one(path: str) -> None:
        size = snapshot.files.get(path)
        if size is None:
            missing.append(path)
        elif size == 0:
            empty.append(path)
        else:
            found[path] = size

    for entry in entries:
        if is_glob(entry):
            hits = sorted(p for p in snapshot.files if fnmatch.fnmatch(p, entry))
            if not hits:
                missing.append(entry)
            for hit in hits:
                one(hit)
        else:
            one(entry)
    for index in [p for p in list(found) if p.endswith(".index.json")]:
        refs = snapshot.index_refs.get(index)
        if refs is None:
            del found[index]
            empty.append(f"{index} (unreadable)")
            continue
        folder = posixpath.dirname(index)
        for ref in refs:
            path = posixpath.join(folder, ref) if folder else ref
            if path not in found:
                one(path)
    return _Expectation(found, missing, empty)


def human_size(num_bytes: int) -> str:
    """Decimal units, as the hub shows them: 25.6 GB."""
    size = float(num_bytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{num_bytes} B"


def check_code(models: ModelsConfig, state: CodeState, fix: FixContext) -> AssetRow:
    source = models.code
    pinned = source.commit[:7]
    pull = fix.pull("code")

    def row(
        status: AssetState, detail: str, command: str = "", needs: tuple[str, ...] = ()
    ) -> AssetRow:
        return AssetRow(
            piece="code", kind="code", state=status, required=True, path=state.path,
            detail=detail, fix=command, needs=needs,
        )  # fmt: skip

    if state.error:
        return row(AssetState.UNKNOWN, state.error, "install git (e.g. `sudo apt-get install git`)")
    if not state.exists or (state.empty and not state.is_repo):
        return row(AssetState.MISSING, f"no checkout (pinned {pinned})", pull, ("clone",))
    if not state.is_repo:
        moved = shlex.quote(state.path.rstrip("/") + ".old")
        return row(
            AssetState.INCOMPLETE,
            "the folder is not a git checkout",
            f"mv {shlex.quote(state.path)} {moved} && {pull}",
            ("clone",),
        )
    changes = f"; local changes: {_some(list(state.dirty))}" if state.dirty else ""
    if state.head != source.commit:
        head = (state.head or "no commit")[:7]
        command = pull
        if state.dirty:
            command = f"git -C {shlex.quote(state.path)} stash && {pull}"
        return row(
            AssetState.WRONG_COMMIT, f"at {head}, pinned {pinned}{changes}", command, ("clone",)
        )
    if not state.script_present:
        script = source.sample_script
        return row(
            AssetState.INCOMPLETE,
            f"at {pinned} but {script} is missing",
            f"git -C {shlex.quote(state.path)} checkout -- {shlex.quote(script)}",
        )
    return row(AssetState.OK, f"at {pinned}, {source.sample_script} present{changes}")


def check_piece(name: str, piece: WeightPiece, snapshot: TreeSnapshot, fix: FixContext) -> AssetRow:
    required = piece.optional is None
    command = fix.pull("weights", fp8=piece.optional == "fp8")
    download = _expect(piece.required, snapshot)
    path = posixpath.join(snapshot.root, piece.subfolder) if piece.subfolder else snapshot.root

    def row(status: AssetState, detail: str, size: int, needs: tuple[str, ...]) -> AssetRow:
        return AssetRow(
            piece=name, kind="weights", state=status, required=required, path=path,
            detail=detail, size=size or None,
            fix="" if status is AssetState.OK else command, needs=needs,
        )  # fmt: skip

    if piece.preprocess is None:
        needs = () if download.state is AssetState.OK else ("download",)
        return row(download.state, download.describe(), download.size, needs)
    output = _expect(piece.preprocess.required, snapshot)
    path = posixpath.join(snapshot.root, piece.preprocess.output)
    if output.state is AssetState.OK:
        return row(AssetState.OK, output.describe(), output.size, ())
    if download.state is AssetState.OK:
        detail = (
            "downloaded; preprocessing not run yet"
            if output.state is AssetState.MISSING
            else f"preprocessing output incomplete: {output.describe()}"
        )
        return row(AssetState.INCOMPLETE, detail, output.size, ("preprocess",))
    if download.state is AssetState.MISSING and output.state is AssetState.MISSING:
        return row(AssetState.MISSING, "not downloaded", 0, ("download", "preprocess"))
    detail = f"download {download.describe()}"
    return row(AssetState.INCOMPLETE, detail, download.size, ("download", "preprocess"))


def check_assets(
    models: ModelsConfig, code: CodeState, weights: TreeSnapshot, fix: FixContext
) -> list[AssetRow]:
    """One row for the code, then one per weights piece in profile order."""
    rows = [check_code(models, code, fix)]
    rows += [check_piece(name, p, weights, fix) for name, p in models.weights.items()]
    return rows


def failed(rows: Sequence[AssetRow]) -> list[AssetRow]:
    return [row for row in rows if row.failed]


def overall_fix(rows: Sequence[AssetRow], fix: FixContext) -> str:
    """One command for everything that failed: the rows' own when they agree."""
    commands = {row.fix for row in failed(rows)}
    if len(commands) == 1:
        return commands.pop()
    return fix.pull()


# -- folders and entry points for other commands ---------------------------------------------


def models_of(profile: Profile) -> ModelsConfig:
    if profile.models is None:
        raise ProfileError(
            f"profile {profile.name} has no `models` section: nothing to check or pull",
            "extend a packaged profile (`extends: t2v`) or add a models section"
            " (`hvinfra config show t2v` shows one)",
        )
    return profile.models


def host_dirs(profile: Profile) -> tuple[Path, Path]:
    """The code and weights folders: `volumes.code.host` and `volumes.weights.host`."""
    missing = [n for n in (CODE_VOLUME, WEIGHTS_VOLUME) if n not in profile.volumes]
    if missing:
        raise ProfileError(
            f"profile {profile.name} has no volumes.{missing[0]}: hvinfra cannot tell where the"
            " model code and weights live",
            f"add volumes.{missing[0]}.host and .container (see `hvinfra config show t2v`)",
        )
    return (
        Path(profile.volumes[CODE_VOLUME].host),
        Path(profile.volumes[WEIGHTS_VOLUME].host),
    )


def format_rows_plain(rows: Sequence[AssetRow]) -> list[str]:
    """The rows as lines (for logs and messages); the CLI renders a table instead."""
    lines = []
    for row in rows:
        size = f" {human_size(row.size)}" if row.size else ""
        optional = "" if row.required else " (optional)"
        lines.append(f"{row.piece}: {row.state.value}{optional}{size} {row.detail}".rstrip())
    return lines
