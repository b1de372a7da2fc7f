"""`hvinfra models synth t2v` through a real engine: the synth script runs in a short-lived
container of the profile's image, in the code folder (mounted read-only), with the weights
folder read-write and hvinfra's script mounted read-only; the tree it leaves is marked synthetic
and every later command says so.

The image is the stand-in plus a shell-script `python` that records its argv, working directory
and what it can see, and writes the files the real script writes (empty) plus the marker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest
from dockerd import build_image_from_files
from test_models_preprocess import _code_checkout

from hvinfra.cli import main
from hvinfra.synth import SCRIPT_IN_CONTAINER
from hvinfra.synthetic_marker import MARKER_NAME, NOTE

IMAGE = "hvinfra-test/hunyuanvideo-synth-standin:latest"

STANDIN_PYTHON = r"""#!/bin/sh
# hvinfra test stand-in for `python /hvinfra-synth/synth_weights.py KIND --weights DIR ...`
script="$1"; kind="$2"; weights="$4"
[ -r "$script" ] || { echo "stand-in: cannot read $script" >&2; exit 3; }
[ "$3" = "--weights" ] || { echo "stand-in: no --weights" >&2; exit 2; }
mkdir -p "$weights/hunyuan-video-t2v-720p/transformers" "$weights/hunyuan-video-t2v-720p/vae" \
  "$weights/text_encoder" "$weights/text_encoder_2"
printf '%s\n' "$@" > "$weights/argv.txt"
pwd > "$weights/cwd.txt"
mode=ro
touch /workspace/HunyuanVideo/.probe 2>/dev/null && mode=rw
echo "$mode" > "$weights/code-mount.txt"
for f in hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt \
  hunyuan-video-t2v-720p/vae/config.json hunyuan-video-t2v-720p/vae/pytorch_model.pt \
  text_encoder/config.json text_encoder/model.safetensors.index.json text_encoder/tokenizer.json \
  text_encoder/tokenizer_config.json text_encoder_2/config.json text_encoder_2/model.safetensors \
  text_encoder_2/tokenizer_config.json text_encoder_2/vocab.json text_encoder_2/merges.txt; do
  echo x > "$weights/$f"
done
echo x > "$weights/text_encoder/model.safetensors"
index='{"weight_map": {"a": "model.safetensors"}}'
echo "$index" > "$weights/text_encoder/model.safetensors.index.json"
marker='{"synthetic": true, "kind": "KIND", "complete": true, "made_at": "2026-12-03"}'
echo "$marker" | sed "s/KIND/$kind/" > "$weights/SYNTHETIC.json"
echo "stand-in synth wrote $weights"
"""


@pytest.fixture(scope="module")
def synth_image(standin_image: str, docker_client: docker.DockerClient) -> str:
    dockerfile = f"FROM {standin_image}\nCOPY python /usr/local/bin/python\n".encode()
    files = {"Dockerfile": (dockerfile, 0o644), "python": (STANDIN_PYTHON.encode(), 0o755)}
    return build_image_from_files(docker_client, files, IMAGE)


def _argv(tmp_path: Path, commit: str, command: str, *extra: str) -> list[str]:
    return [
        "models", command, "t2v", "--code-dir", str(tmp_path / "code"),
        "--weights-dir", str(tmp_path / "ckpts"),
        "--set", f"image={IMAGE}", "--set", "ulimits.memlock=8m",
        "--set", f"container_name=hvtest-synth-{tmp_path.name[-12:]}",
        "--set", f"models.code.commit={commit}", *extra,
    ]  # fmt: skip


def test_synth_runs_in_the_image_with_the_mounts_and_marks_the_tree(
    synth_image: str,
    docker_host: str,
    docker_engine: Any,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "code").mkdir()
    commit = _code_checkout(tmp_path / "code")

    code = main(_argv(tmp_path, commit, "synth"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    weights = tmp_path / "ckpts"
    assert (weights / "argv.txt").read_text().splitlines() == [
        SCRIPT_IN_CONTAINER, "t2v", "--weights", "/workspace/HunyuanVideo/ckpts",
        "--hvinfra-version", "0.1.0",
    ]  # fmt: skip
    assert (weights / "cwd.txt").read_text().strip() == "/workspace/HunyuanVideo"
    assert (weights / "code-mount.txt").read_text().strip() == "ro"
    assert NOTE in captured.err and "stand-in synth wrote" in captured.err
    assert docker_client.containers.list(
        all=True, filters={"label": "io.hvinfra.job=synth-t2v"}
    ) == []  # fmt: skip

    check = main(_argv(tmp_path, commit, "check", "--json"))
    captured = capsys.readouterr()
    assert check == 0, captured.err
    assert json.loads(captured.out)["synthetic_weights"]["note"] == NOTE
    assert NOTE in captured.err

    again = main(_argv(tmp_path, commit, "synth"))
    assert again == 1
    assert "already a synthetic tree" in capsys.readouterr().err
    assert main(_argv(tmp_path, commit, "synth", "--force")) == 0
    assert (weights / MARKER_NAME).is_file()
