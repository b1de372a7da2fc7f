"""`hvinfra models check`: rows, fix commands and exit codes over trees the tests build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from assets_fixtures import build_weights, clone_at, make_upstream, profile_for

from hvinfra.asset_probe import assets_report, require_assets
from hvinfra.assets import AssetState
from hvinfra.cli import main
from hvinfra.errors import AssetsMissing, ExitCode
from hvinfra.profiles import load_profile

T2V_REQUIRED = ("model", "vae", "text_encoder", "text_encoder_2")
I2V_REQUIRED = ("model", "vae", "lora", "text_encoder_i2v", "text_encoder_2")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "upstream"
    first, second = make_upstream(path)
    return path, first, second


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(["models", "check", *args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def _rows(payload: dict) -> dict[str, dict]:
    return {row["piece"]: row for row in payload["rows"]}


def _pinned(upstream: tuple[Path, str, str], target: str = "t2v") -> list[str]:
    path, first, _ = upstream
    script = "sample_video.py"
    return [
        "--set", f"models.code.repo={path}", "--set", f"models.code.commit={first}",
        "--set", f"models.code.sample_script={script}",
    ]  # fmt: skip


def test_fresh_host_lists_every_missing_piece_with_its_fix_and_exits_11(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "EMPTY"
    empty.mkdir()
    code = main(["models", "check", "t2v", "--weights-dir", str(empty)])
    captured = capsys.readouterr()
    assert code == ExitCode.ASSETS
    for piece in ("code", *T2V_REQUIRED):
        assert f"  {piece + ':':<17} hvinfra models pull t2v --only " in captured.out
    assert f"hvinfra models pull t2v --only weights --weights-dir {empty}" in captured.out
    assert "model_fp8:" in captured.out and "--fp8" in captured.out
    assert "error: 5 required pieces not ready" in captured.err
    assert "Traceback" not in captured.err


def test_complete_t2v_tree_at_the_pinned_commit_is_ok(
    tmp_path: Path, upstream: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code_dir, weights = tmp_path / "code", tmp_path / "ckpts"
    clone_at(upstream[0], code_dir, upstream[1])
    build_weights(weights, profile_for("t2v", code_dir, weights))
    code, payload, _ = _check(
        capsys, "t2v", "--code-dir", str(code_dir), "--weights-dir", str(weights),
        *_pinned(upstream),
    )  # fmt: skip
    assert code == 0
    assert payload["ok"] is True
    rows = _rows(payload)
    assert {name: row["state"] for name, row in rows.items()} == {
        "code": "ok", "model": "ok", "model_fp8": "ok", "vae": "ok", "text_encoder": "ok",
        "text_encoder_2": "ok",
    }  # fmt: skip
    assert rows["vae"]["size"] == 2048
    assert rows["text_encoder"]["path"] == f"{weights}/text_encoder"
    assert all(row["fix"] == "" for row in rows.values())


@pytest.mark.parametrize("piece", T2V_REQUIRED)
def test_each_missing_t2v_piece_fails_with_its_own_fix(
    piece: str, tmp_path: Path, upstream: tuple[Path, str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code_dir, weights = tmp_path / "code", tmp_path / "ckpts"
    clone_at(upstream[0], code_dir, upstream[1])
    build_weights(weights, profile_for("t2v", code_dir, weights), skip=(piece,))
    code, payload, err = _check(
        capsys, "t2v", "--code-dir", str(code_dir), "--weights-dir", str(weights),
        *_pinned(upstream),
    )  # fmt: skip
    rows = _rows(payload)
    assert code == ExitCode.ASSETS
    assert rows[piece]["state"] == "missing"
    assert rows[piece]["fix"] == f"hvinfra models pull t2v --only weights --weights-dir {weights}"
    assert [name for name, row in rows.items() if row["state"] != "ok"] == [piece]
    assert f"error: 1 required piece not ready: {piece} (missing)" in err
    assert f"fix: hvinfra models pull t2v --only weights --weights-dir {weights}" in err


@pytest.mark.parametrize("piece", I2V_REQUIRED)
def test_each_missing_i2v_piece_fails(piece: str, tmp_path: Path) -> None:
    weights = tmp_path / "ckpts"
    profile = profile_for("i2v", tmp_path / "code", weights)
    build_weights(weights, profile, skip=(piece,))
    rows = {row.piece: row for row in assets_report(profile)}
    assert rows[piece].state is AssetState.MISSING
    assert rows[piece].failed
    assert [n for n, r in rows.items() if r.kind == "weights" and r.failed] == [piece]


def test_an_empty_file_makes_the_piece_incomplete(tmp_path: Path) -> None:
    weights = tmp_path / "ckpts"
    profile = profile_for("t2v", tmp_path / "code", weights)
    build_weights(weights, profile)
    (weights / "hunyuan-video-t2v-720p/vae/pytorch_model.pt").write_bytes(b"")
    vae = next(row for row in assets_report(profile) if row.piece == "vae")
    assert vae.state is AssetState.INCOMPLETE
    assert vae.detail == "empty hunyuan-video-t2v-720p/vae/pytorch_model.pt"
    assert vae.fix == "hvinfra models pull t2v --only weights"


def test_a_shard_named_by_the_index_but_absent_makes_the_piece_incomplete(
    tmp_path: Path,
) -> None:
    weights = tmp_path / "ckpts"
    profile = profile_for("i2v", tmp_path / "code", weights)
    build_weights(weights, profile)
    (weights / "text_encoder_i2v/model-00002-of-00002.safetensors").unlink()
    row = next(r for r in assets_report(profile) if r.piece == "text_encoder_i2v")
    assert row.state is AssetState.INCOMPLETE
    assert "missing text_encoder_i2v/model-00002-of-00002.safetensors" in row.detail


def test_downloaded_but_not_preprocessed_text_encoder_says_so(tmp_path: Path) -> None:
    weights = tmp_path / "ckpts"
    profile = profile_for("t2v", tmp_path / "code", weights)
    build_weights(weights, profile, preprocessed=False)
    row = next(r for r in assets_report(profile) if r.piece == "text_encoder")
    assert row.state is AssetState.INCOMPLETE
    assert row.detail == "downloaded; preprocessing not run yet"
    assert row.needs == ("preprocess",)


def test_code_at_another_commit_is_wrong_commit_with_the_code_pull_as_fix(
    tmp_path: Path, upstream: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code_dir, weights = tmp_path / "code", tmp_path / "ckpts"
    clone_at(upstream[0], code_dir, upstream[2])  # the second commit, not the pinned first
    build_weights(weights, profile_for("t2v", code_dir, weights))
    code, payload, _ = _check(
        capsys, "t2v", "--code-dir", str(code_dir), "--weights-dir", str(weights),
        *_pinned(upstream),
    )  # fmt: skip
    row = _rows(payload)["code"]
    assert code == ExitCode.ASSETS
    assert row["state"] == "wrong commit"
    assert row["detail"] == f"at {upstream[2][:7]}, pinned {upstream[1][:7]}"
    assert row["fix"] == f"hvinfra models pull t2v --only code --code-dir {code_dir}"


def test_wrong_commit_with_local_changes_fix_stashes_first(
    tmp_path: Path, upstream: tuple[Path, str, str]
) -> None:
    code_dir = tmp_path / "code"
    clone_at(upstream[0], code_dir, upstream[2])
    (code_dir / "sample_video.py").write_text("print('mine')\n")
    profile = profile_for("t2v", code_dir, tmp_path / "ckpts", tuple(_pinned(upstream)[1::2]))
    row = assets_report(profile)[0]
    assert row.state is AssetState.WRONG_COMMIT
    assert "local changes: sample_video.py" in row.detail
    assert row.fix == f"git -C {code_dir} stash && hvinfra models pull t2v --only code"


def test_a_folder_that_is_not_a_checkout_is_reported_with_a_move_aside_fix(
    tmp_path: Path,
) -> None:
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "notes.txt").write_text("mine")
    row = assets_report(profile_for("t2v", code_dir, tmp_path / "ckpts"))[0]
    assert row.state is AssetState.INCOMPLETE
    assert row.fix.startswith(f"mv {code_dir} {code_dir}.old && hvinfra models pull t2v")


def test_missing_fp8_weights_are_listed_but_do_not_fail(
    tmp_path: Path, upstream: tuple[Path, str, str]
) -> None:
    code_dir, weights = tmp_path / "code", tmp_path / "ckpts"
    clone_at(upstream[0], code_dir, upstream[1])
    profile = profile_for("t2v", code_dir, weights, tuple(_pinned(upstream)[1::2]))
    build_weights(weights, profile, fp8=False)
    rows = {r.piece: r for r in require_assets(profile)}
    assert rows["model_fp8"].state is AssetState.MISSING
    assert not rows["model_fp8"].failed
    assert rows["model_fp8"].fix == "hvinfra models pull t2v --only weights --fp8"


def test_require_assets_raises_assets_missing_with_one_fix(tmp_path: Path) -> None:
    profile = profile_for("i2v", tmp_path / "code", tmp_path / "ckpts")
    with pytest.raises(AssetsMissing) as raised:
        require_assets(profile)
    assert raised.value.exit_code == ExitCode.ASSETS
    assert "model assets for i2v are not ready: code (missing), model (missing)" in str(
        raised.value
    )
    assert raised.value.fix == "hvinfra models pull i2v"


def test_a_profile_without_models_has_no_rows(tmp_path: Path) -> None:
    fixture = Path(__file__).parent.parent / "fixtures" / "profiles" / "standalone.yaml"
    assert assets_report(load_profile(str(fixture)).profile) == []


def test_up_warns_about_missing_assets_before_touching_docker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code = main(["up", "t2v", "--set", f"volumes.weights.host={tmp_path / 'none'}"])
    err = capsys.readouterr().err
    assert code == ExitCode.DOCKER_UNREACHABLE
    assert "warning: model assets not ready: code (missing), model (missing)" in err
    assert "`hvinfra models pull t2v`" in err


def test_up_dry_run_does_not_check_assets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "t2v", "--dry-run"]) == 0
    assert "model assets" not in capsys.readouterr().err
