"""The whole `hvinfra models pull t2v` into empty folders: the code cloned from a local git
repository at the pinned commit, every weights piece from the local hub server with the real
`huggingface_hub` client, and the text-encoder preprocessing in the stand-in image through a
real engine (the image and checkout helpers are those of test_models_preprocess.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from test_models_preprocess import IMAGE, _code_checkout, preprocess_image  # noqa: E402, F401

from hubserver import HubServer, standard_repos  # noqa: E402
from hvinfra.cli import main  # noqa: E402

T2V = "hunyuan-video-t2v-720p"


def test_full_t2v_pull_from_the_hub_into_empty_folders(
    preprocess_image: str,  # noqa: F811
    docker_host: str,
    docker_engine: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    commit = _code_checkout(upstream)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    argv = [
        "models", "pull", "t2v", "--json",
        "--code-dir", str(tmp_path / "code"), "--weights-dir", str(tmp_path / "ckpts"),
        "--set", f"image={IMAGE}",
        "--set", "ulimits.memlock=8m",
        "--set", f"gpu.devices={'all' if docker_engine.gpu_hook else 'none'}",
        "--set", f"container_name=hvtest-hubpull-{tmp_path.name[-12:]}",
        "--set", f"models.code.repo={upstream}",
        "--set", f"models.code.commit={commit}",
    ]  # fmt: skip
    with HubServer(standard_repos()) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, captured.err
        report = json.loads(captured.out)
        assert report["code"] == "cloned"
        assert report["downloaded"] == ["model", "vae", "text_encoder", "text_encoder_2"]
        assert report["preprocessed"] == ["text_encoder"]
        assert {row["piece"]: row["state"] for row in report["rows"]} == {
            "code": "ok", "model": "ok", "vae": "ok", "text_encoder": "ok",
            "text_encoder_2": "ok", "model_fp8": "missing",
        }  # fmt: skip
        weights = tmp_path / "ckpts"
        dit = f"{T2V}/transformers/mp_rank_00_model_states.pt"
        assert (weights / dit).read_bytes() == hub.repos["tencent/HunyuanVideo"].files[dit]
        assert (weights / "text_encoder_2/model.safetensors").is_file()
        assert not (weights / "text_encoder_2/pytorch_model.bin").exists()
        assert (weights / "text_encoder/config.json").is_file()

        hub.requests.clear()
        assert main(argv) == 0
        again = json.loads(capsys.readouterr().out)
        assert again["downloaded"] == [] and again["preprocessed"] == []
        assert hub.file_requests() == []
