"""`hvinfra models synth`: the container that writes the tree (argv, mounts, no GPU), the
refusals, and the marker every other command reads."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from hvinfra.checks import WARN
from hvinfra.profiles import load_profile
from hvinfra.synth import SCRIPT_IN_CONTAINER, real_files, refusal, script_path, synth_spec
from hvinfra.synthetic_marker import (
    MARKER_NAME,
    NOTE,
    read_marker,
    remove_synthetic,
    sidecar_field,
    synthetic_checks,
)

REPO = Path(__file__).resolve().parents[2]

# A script run in the container, not a typed module (hvinfra/data has no __init__.py); a plain
# import of it trips mypy's cache on a warm run under --no-namespace-packages.
synth_weights: Any = importlib.import_module("hvinfra.data.synth_weights")


def smoke_profile(tmp_path: Path, kind: str = "t2v") -> object:
    env = {
        "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        f"GEN_CODE_{kind.upper()}": str(tmp_path / "code"),
        f"GEN_WEIGHTS_{kind.upper()}": str(tmp_path / "weights"),
        "GEN_OUT": str(tmp_path / "out"), "GEN_SITE": str(tmp_path / "site"),
    }  # fmt: skip
    path = REPO / "scripts" / f"gpu-generate-smoke-{kind}.yaml"
    return load_profile(str(path), env=env).profile


def test_synth_container_mounts_weights_rw_code_and_script_ro_and_requests_no_gpu(
    tmp_path: Path,
) -> None:
    profile = smoke_profile(tmp_path)
    spec = synth_spec(profile, "t2v", "/pkg/synth_weights.py", "0.1.0")  # type: ignore[arg-type]
    mounts = {m.target: m for m in spec.mounts}
    assert mounts["/workspace/HunyuanVideo/ckpts"].source == str(tmp_path / "weights")
    assert not mounts["/workspace/HunyuanVideo/ckpts"].read_only
    assert mounts["/workspace/HunyuanVideo"].read_only
    assert mounts[SCRIPT_IN_CONTAINER].source == "/pkg/synth_weights.py"
    assert mounts[SCRIPT_IN_CONTAINER].read_only
    assert mounts["/opt"].read_only  # the stand-in image's other mounts are kept
    assert spec.gpu_request is None and spec.devices == ()
    assert spec.working_dir == "/workspace/HunyuanVideo"
    weights = "/workspace/HunyuanVideo/ckpts"
    assert spec.command == (
        "python", SCRIPT_IN_CONTAINER, "t2v", "--weights", weights, "--hvinfra-version", "0.1.0"
    )  # fmt: skip
    assert spec.name == "hvinfra-gen-smoke-t2v-synth"
    assert ("io.hvinfra.job", "synth-t2v") in spec.labels
    assert not spec.tty


def test_the_packaged_script_is_a_file_and_writes_the_marker_name_hvinfra_reads() -> None:
    assert script_path().is_file()
    assert synth_weights.MARKER == MARKER_NAME


def test_synth_refuses_real_weights_even_with_force(tmp_path: Path) -> None:
    dit = "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt"
    (tmp_path / dit).parent.mkdir(parents=True)
    (tmp_path / dit).write_bytes(b"real")
    present = real_files(tmp_path, [dit, "text_encoder_2/*.json"])
    assert present == [dit]
    for force in (False, True):
        why = refusal(tmp_path, present, force)
        assert why is not None and "real weights" in why


def test_synth_over_a_synthetic_tree_needs_force(tmp_path: Path) -> None:
    (tmp_path / MARKER_NAME).write_text("{}")
    assert real_files(tmp_path, ["x.pt"]) == []
    assert refusal(tmp_path, [], force=False) is not None
    assert refusal(tmp_path, [], force=True) is None
    assert refusal(tmp_path / "empty", [], force=False) is None


def test_official_default_paths_land_in_the_weights_folder() -> None:
    weights = Path("/w")
    got = synth_weights.under_weights("ckpts/hunyuan-video-t2v-720p/transformers/m.pt", weights)
    assert got == Path("/w/hunyuan-video-t2v-720p/transformers/m.pt")


@pytest.mark.parametrize(
    ("i2v", "condition", "cfg", "expected"),
    [
        (False, None, 6.0, (16, 16, {})),
        (True, "token_replace", 6.0, (16, 16, {"guidance_embed": True})),
        (True, "latent_concat", None, (33, 16, {})),
    ],
)  # fmt: skip
def test_dit_channels_follow_the_official_rules(
    i2v: bool, condition: str | None, cfg: float | None, expected: tuple[int, int, dict[str, bool]]
) -> None:
    class Args:
        latent_channels = 16
        i2v_mode = i2v
        i2v_condition_type = condition
        embedded_cfg_scale = cfg

    assert synth_weights.dit_channels(Args()) == expected


def test_marker_is_read_and_a_garbled_one_still_marks_the_tree(tmp_path: Path) -> None:
    assert read_marker(tmp_path) is None
    assert sidecar_field(tmp_path, None) == {"synthetic_weights": None}
    (tmp_path / MARKER_NAME).write_text("{not json")
    marker = read_marker(tmp_path)
    assert marker is not None and marker["synthetic"]
    checks = synthetic_checks(tmp_path)
    assert [(c.name, c.status) for c in checks] == [("models.synthetic", WARN)]
    assert NOTE in checks[0].detail
    assert sidecar_field(tmp_path, marker)["synthetic_weights"]["note"] == NOTE


def test_pull_removes_only_what_synth_wrote(tmp_path: Path) -> None:
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "pytorch_model.pt").write_bytes(b"x")
    (tmp_path / "dit.pt").write_bytes(b"x")
    (tmp_path / "mine.txt").write_text("kept")
    outside = tmp_path.parent / "outside.txt"
    outside.write_text("kept")
    marker = {"synthetic": True, "written": ["vae", "dit.pt", "../outside.txt", "gone"]}
    (tmp_path / MARKER_NAME).write_text(json.dumps(marker))
    assert remove_synthetic(tmp_path) == ["vae", "dit.pt", MARKER_NAME]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    assert outside.exists()
    assert remove_synthetic(tmp_path) == []


def test_models_check_says_the_tree_is_synthetic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hvinfra.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / MARKER_NAME).write_text(json.dumps({"synthetic": True, "made_at": "2026-12-03"}))
    code = main(["models", "check", "t2v", "--weights-dir", str(weights), "--code-dir",
                 str(tmp_path / "code"), "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 11  # the rest of the tree is missing
    assert json.loads(captured.out)["synthetic_weights"]["note"] == NOTE
    assert NOTE in captured.err


def test_synth_refuses_a_folder_with_real_weights_before_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hvinfra.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "sample_video.py").write_text("")
    weights = tmp_path / "weights"
    vae = weights / "hunyuan-video-t2v-720p" / "vae" / "pytorch_model.pt"
    vae.parent.mkdir(parents=True)
    vae.write_bytes(b"real")
    code = main(["models", "synth", "t2v", "--weights-dir", str(weights), "--code-dir",
                 str(code_dir), "--force"])  # fmt: skip
    assert code == 1
    assert "holds real weights" in capsys.readouterr().err
    assert vae.read_bytes() == b"real"
