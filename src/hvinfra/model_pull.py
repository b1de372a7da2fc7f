"""`hvinfra models pull`: code, then weights, then preprocessing, each only where the check says
it is needed. Plan-then-execute over a Hub protocol and callbacks: no rich, typer or docker here.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hvinfra.asset_probe import assets_report
from hvinfra.assets import (
    AssetRow,
    AssetState,
    FixContext,
    failed,
    host_dirs,
    human_size,
    matches_patterns,
    models_of,
)
from hvinfra.errors import AssetsMissing, HvinfraError, Interrupted, PreflightFailed
from hvinfra.hub import RemoteListing
from hvinfra.launcher import PullObserver, consume
from hvinfra.preprocess import PreprocessEngine, preprocess_spec, run_preprocess
from hvinfra.profiles.models import ModelsConfig, Profile, WeightPiece

# Where huggingface_hub keeps a local_dir download's partial files: `.cache/huggingface/download`
# since 0.25, `.huggingface/download` before. Up to 1.17 a partial is `<path>.<etag>.incomplete`,
# resumed by the next run with a Range request; since 1.18 each process writes its own
# `<hash>.<etag>.<8 hex>.incomplete`, which no later run reuses.
HUB_PARTIALS = (Path(".cache") / "huggingface" / "download", Path(".huggingface") / "download")
_PER_PROCESS_PARTIAL = re.compile(r"\.[0-9a-f]{8}\.incomplete$")
# One hvinfra pull writes into a weights folder at a time; the lock sits beside the hub
# client's own metadata.
PULL_LOCK = Path(".cache") / "hvinfra-pull.lock"


class Hub(Protocol):
    endpoint: str

    def has_token(self) -> bool: ...
    def listing(self, repo_id: str, revision: str) -> RemoteListing: ...
    def download(
        self, repo_id: str, sha: str, local_dir: Path, allow_patterns: Sequence[str]
    ) -> None: ...


class Progress(Protocol):
    """One display for the whole pull (the CLI picks rich or plain lines)."""

    def start(self, total: int, label: str) -> None: ...
    def update(self, done: int, label: str) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class Download:
    piece: str
    repo_id: str
    revision: str
    local_dir: Path  # weights folder / subfolder: the hub's files land here at their repo paths
    allow_patterns: tuple[str, ...]


@dataclass(frozen=True)
class PullPlan:
    code: bool
    downloads: tuple[Download, ...]
    preprocess: tuple[str, ...]  # piece names


def plan_pull(
    models: ModelsConfig,
    rows: Sequence[AssetRow],
    weights_dir: Path,
    *,
    only: str | None = None,
    fp8: bool = False,
) -> PullPlan:
    """What to do, from the check's rows: nothing for pieces already ok. Pure."""
    by_piece = {row.piece: row for row in rows}
    code = only in (None, "code") and "clone" in by_piece["code"].needs
    downloads: list[Download] = []
    preprocess: list[str] = []
    if only in (None, "weights"):
        for name, piece in models.weights.items():
            if piece.optional is not None and not (fp8 and piece.optional == "fp8"):
                continue
            needs = by_piece[name].needs
            if "download" in needs:
                downloads.append(_download(name, piece, weights_dir))
            if "preprocess" in needs:
                preprocess.append(name)
    return PullPlan(code, tuple(downloads), tuple(preprocess))


def _download(name: str, piece: WeightPiece, weights_dir: Path) -> Download:
    local = weights_dir / piece.subfolder if piece.subfolder else weights_dir
    return Download(name, piece.repo_id, piece.revision, local, tuple(piece.allow_patterns))


@dataclass(frozen=True)
class SizedDownload:
    download: Download
    listing: RemoteListing
    files: tuple[tuple[str, int], ...]  # (repo path, size) of the files the patterns select
    missing_bytes: int  # what is not on disk yet at its full size


def size_download(download: Download, listing: RemoteListing) -> SizedDownload:
    files = tuple(
        (f.path, f.size) for f in listing.files if matches_patterns(f.path, download.allow_patterns)
    )
    missing = 0
    for path, size in files:
        local = download.local_dir / path
        if not (local.is_file() and local.stat().st_size == size):
            missing += size
    return SizedDownload(download, listing, files, missing)


def partial_files(local_dirs: Sequence[Path]) -> list[Path]:
    """The hub client's partial files under these download folders (each folder once)."""
    found: list[Path] = []
    for local_dir in dict.fromkeys(local_dirs):
        for partials in HUB_PARTIALS:
            root = local_dir / partials
            if not root.is_dir():
                continue
            for folder, _dirs, names in os.walk(root):
                found.extend(Path(folder) / n for n in names if n.endswith(".incomplete"))
    return found


def is_per_process_partial(path: Path) -> bool:
    """A partial file that only the process that wrote it can finish (clients >= 1.18)."""
    return bool(_PER_PROCESS_PARTIAL.search(path.name))


def remove_partials(paths: Sequence[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def stale_partials(local_dirs: Sequence[Path]) -> list[Path]:
    """Per-process partials left by an earlier run that was killed: nothing will finish them.
    Only meaningful while this process holds the pull lock (no other pull is writing)."""
    return [p for p in partial_files(local_dirs) if is_per_process_partial(p)]


@contextlib.contextmanager
def pull_lock(weights_dir: Path) -> Iterator[None]:
    """One `models pull` at a time per weights folder; the kernel drops the lock when the
    process ends, however it ends."""
    lock = weights_dir / PULL_LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PreflightFailed(
                f"another `hvinfra models pull` is downloading into {weights_dir}",
                "wait for it to finish, or stop it (Ctrl-C) and rerun",
            ) from None
        yield


def finished_files(sized: Sequence[SizedDownload]) -> tuple[int, int]:
    """(files on disk at their full size, files in all)."""
    done = total = 0
    for item in sized:
        for path, size in item.files:
            local = item.download.local_dir / path
            total += 1
            done += local.is_file() and local.stat().st_size == size
    return done, total


def bytes_on_disk(sized: Sequence[SizedDownload]) -> int:
    """Finished files plus the hub's partial files: what the progress display counts.

    Pieces often share a download folder (model, vae and lora all land in the weights folder),
    so the partial files are counted per folder, once, and never beyond the total.
    """
    total = 0
    expected = 0
    for item in sized:
        local_dir = item.download.local_dir
        for path, size in item.files:
            expected += size
            local = local_dir / path
            if local.is_file():
                total += min(local.stat().st_size, size)
    for partial in partial_files([item.download.local_dir for item in sized]):
        try:
            total += partial.stat().st_size
        except OSError:
            continue
    return min(total, expected)


def free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk(needed: int, free: int, weights_dir: Path) -> None:
    if needed > free:
        raise PreflightFailed(
            f"not enough free disk for the weights: {human_size(needed)} needed, "
            f"{human_size(free)} free at {weights_dir}",
            f"free {human_size(needed - free)} or more, or choose a larger disk with"
            " --weights-dir DIR (or volumes.weights.host in your profile)",
        )


@dataclass
class PullReport:
    code_action: str = "skipped"  # cloned, updated, unchanged, skipped
    downloaded: list[str] = field(default_factory=list)
    bytes_needed: int = 0
    preprocessed: list[str] = field(default_factory=list)
    rows: list[AssetRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code_action,
            "downloaded": self.downloaded,
            "bytes_needed": self.bytes_needed,
            "preprocessed": self.preprocessed,
            "rows": [row.as_dict() for row in self.rows],
            "ok": not failed(self.rows),
        }


@dataclass
class PullTools:
    """The pull's collaborators: the CLI passes real ones, tests pass fakes."""

    hub: Callable[[], Hub]
    engine: Callable[[], PreprocessEngine]
    progress: Progress
    say: Callable[[str], None] = lambda _text: None
    on_output: Callable[[bytes], None] = lambda _chunk: None
    observe_image_pull: PullObserver = consume
    disk_free: Callable[[Path], int] = lambda path: free_bytes(path)


class _Poller:
    """Measures the bytes on disk twice a second and feeds the display."""

    def __init__(self, sized: Sequence[SizedDownload], progress: Progress) -> None:
        self._sized, self._progress = sized, progress
        self.label = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="hvinfra-progress")

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.tick()

    def tick(self) -> None:
        self._progress.update(bytes_on_disk(self._sized), self.label)

    def __enter__(self) -> _Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def writable_dir(path: Path) -> None:
    """Create the folder, or say plainly that the local folder is the problem."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".hvinfra-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise PreflightFailed(
            f"cannot write to the weights folder {path}: {exc.strerror or exc}",
            "make it writable for your user (e.g. `sudo chown -R $USER "
            f"{path}`) or choose another folder with --weights-dir DIR",
        ) from exc


def run_interruptibly(work: Callable[[], None], poll: float = 0.05) -> None:
    """Run `work` in a daemon thread and wait for it in short steps, so that Ctrl-C (which
    only the main thread receives) takes effect at once instead of after the file in flight."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the main thread below
            failure.append(exc)

    worker = threading.Thread(target=target, daemon=True, name="hvinfra-download")
    worker.start()
    while worker.is_alive():
        worker.join(poll)
    if failure:
        raise failure[0]


def pull_weights(
    hub: Hub,
    plan: PullPlan,
    weights_dir: Path,
    progress: Progress,
    *,
    resume_hint: str,
    disk_free: Callable[[Path], int] = free_bytes,
    extra_bytes: int = 0,
) -> int:
    """Size every download at the hub, check the disk, then download with one display.

    Returns the bytes that were missing. On Ctrl-C or a failure the finished files stay; the
    partial files that no later run can resume (clients >= 1.18) are removed.
    """
    if not plan.downloads:
        return 0
    sized = [size_download(d, hub.listing(d.repo_id, d.revision)) for d in plan.downloads]
    needed = sum(s.missing_bytes for s in sized)
    check_disk(needed + extra_bytes, disk_free(weights_dir), weights_dir)
    local_dirs = [item.download.local_dir for item in sized]
    for folder in [weights_dir, *local_dirs]:
        writable_dir(folder)
    with pull_lock(weights_dir):
        remove_partials(stale_partials(local_dirs))
        _download_all(hub, sized, weights_dir, local_dirs, progress, resume_hint)
    return needed


def _download_all(
    hub: Hub,
    sized: Sequence[SizedDownload],
    weights_dir: Path,
    local_dirs: Sequence[Path],
    progress: Progress,
    resume_hint: str,
) -> None:
    total = sum(size for item in sized for _path, size in item.files)
    progress.start(total, sized[0].download.piece)
    poller = _Poller(sized, progress)

    def ours() -> list[Path]:
        """This run's partials that only this process could have finished (the lock is held
        and older ones were removed, so every per-process partial is this run's)."""
        return stale_partials(local_dirs)

    try:
        with poller:
            for item in sized:
                poller.label = item.download.piece
                run_interruptibly(
                    functools.partial(
                        hub.download,
                        item.download.repo_id,
                        item.listing.sha,
                        item.download.local_dir,
                        item.download.allow_patterns,
                    )
                )
        poller.tick()
    except KeyboardInterrupt as exc:
        remove_partials(ours())
        done, count = finished_files(sized)
        resumable = [p for p in partial_files(local_dirs) if not is_per_process_partial(p)]
        kept = (
            " and the partial files (this hub client resumes them)" if resumable else
            "; a file cut off mid-way starts again"
        )  # fmt: skip
        raise Interrupted(
            f"interrupted: {done} of {count} files are complete and kept in {weights_dir}{kept}",
            f"rerun `{resume_hint}` to fetch the rest",
        ) from exc
    except BaseException:
        remove_partials(ours())
        raise
    finally:
        progress.finish()


def require_piece_ok(rows: Sequence[AssetRow], name: str, what: str) -> None:
    row = next(r for r in rows if r.piece == name)
    if row.state is not AssetState.OK:
        raise HvinfraError(
            f"{what} finished but {name} is {row.state.value}: {row.detail}",
            "read the output above; rerun the pull after fixing the cause",
        )


def run_pull(
    profile: Profile,
    tools: PullTools,
    *,
    fix: FixContext | None = None,
    only: str | None = None,
    fp8: bool = False,
) -> PullReport:
    """Bring the profile's code and weights to the state `models check` calls ok."""
    models = models_of(profile)
    code_dir, weights_dir = host_dirs(profile)
    fix = fix or FixContext(profile.name)
    rows = assets_report(profile, fix)
    plan = plan_pull(models, rows, weights_dir, only=only, fp8=fp8)
    report = PullReport()
    code_row = next(r for r in rows if r.piece == "code")
    if plan.preprocess and only == "weights" and code_row.state is not AssetState.OK:
        raise AssetsMissing(
            f"preprocessing {', '.join(plan.preprocess)} needs the code at the pinned commit,"
            f" and the code is {code_row.state.value}",
            fix.pull("code"),
        )
    if only in (None, "code"):
        report.code_action = "unchanged"
        if plan.code:
            from hvinfra.git_source import ensure_code

            tools.say(f"code: {models.code.repo} at {models.code.commit[:7]} -> {code_dir}")
            report.code_action = ensure_code(code_dir, models.code).action
    extra = 0
    for name in plan.preprocess:
        step = models.weights[name].preprocess
        extra += step.output_size if step is not None else 0
    if plan.downloads:
        hub = tools.hub()
        names = ", ".join(d.piece for d in plan.downloads)
        tools.say(f"weights: {names} from {hub.endpoint} -> {weights_dir}")
        report.bytes_needed = pull_weights(
            hub, plan, weights_dir, tools.progress, resume_hint=fix.pull("weights", fp8=fp8),
            disk_free=tools.disk_free, extra_bytes=extra,
        )  # fmt: skip
        report.downloaded = [d.piece for d in plan.downloads]
    elif extra:
        check_disk(extra, tools.disk_free(weights_dir), weights_dir)
    for name in plan.preprocess:
        spec = preprocess_spec(profile, name, models.weights[name])
        tools.say(f"preprocessing {name}: {' '.join(spec.command or ())} (in {spec.image})")
        run_preprocess(
            tools.engine(), spec, on_output=tools.on_output,
            observe_pull=tools.observe_image_pull,
        )  # fmt: skip
        require_piece_ok(assets_report(profile, fix), name, "preprocessing")
        report.preprocessed.append(name)
    report.rows = assets_report(profile, fix)
    return report
