"""The marker of a synthetic weights tree (`hvinfra models synth`): SYNTHETIC.json at the top
of the weights folder. Whatever reads a weights folder asks here, so that synthetic weights can
never pass for real ones: `models check`, `doctor`, `generate` (a warning line and the sidecar)
and `models pull` (which replaces a synthetic tree instead of mixing with it: remove_synthetic)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hvinfra.checks import CheckResult

MARKER_NAME = "SYNTHETIC.json"  # the name synth_weights.py writes (kept in step by a test)
NOTE = "synthetic weights: the video is noise"


def marker_path(weights_dir: Path) -> Path:
    return weights_dir / MARKER_NAME


def read_marker(weights_dir: Path) -> dict[str, Any] | None:
    """The marker's content when the folder is marked synthetic, else None. An unreadable or
    garbled marker still marks the tree: better a false alarm than noise passing for video."""
    path = marker_path(weights_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"synthetic": True, "note": NOTE, "complete": False, "garbled": True}
    return data if isinstance(data, dict) else {"synthetic": True, "note": NOTE}


def warning_text(weights_dir: Path, marker: dict[str, Any]) -> str:
    made = marker.get("made_at")
    when = f", made {made}" if made else ""
    return f"{NOTE} ({weights_dir} was written by `hvinfra models synth`{when})"


def sidecar_field(weights_dir: Path, marker: dict[str, Any] | None) -> dict[str, Any]:
    if marker is None:
        return {"synthetic_weights": None}
    return {
        "synthetic_weights": {
            "note": NOTE,
            "weights_dir": str(weights_dir),
            "made_at": marker.get("made_at"),
            "made_by": marker.get("made_by"),
        }
    }


def remove_synthetic(weights_dir: Path) -> list[str]:
    """Delete what `models synth` wrote (the marker's `written` list, then the marker), so that
    a pull downloads real weights into a clean folder. Returns the removed paths. Only paths
    inside the folder are touched."""
    marker = read_marker(weights_dir)
    if marker is None:
        return []
    root = weights_dir.resolve()
    removed = []
    for entry in marker.get("written") or []:
        path = (weights_dir / str(entry)).resolve()
        if root not in path.parents or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(str(entry))
    marker_path(weights_dir).unlink(missing_ok=True)
    return [*removed, MARKER_NAME]


def synthetic_checks(weights_dir: Path | None) -> list[CheckResult]:
    """A doctor row (warn) when the weights folder is a synthetic tree; none otherwise."""
    from hvinfra.checks import WARN, CheckResult

    marker = read_marker(weights_dir) if weights_dir is not None else None
    if weights_dir is None or marker is None:
        return []
    return [
        CheckResult(
            "models.synthetic", WARN, warning_text(weights_dir, marker),
            "for real videos: `hvinfra models pull` (it replaces the synthetic tree)",
        )
    ]  # fmt: skip
