"""The T2V text-encoder preprocessing through a real engine: `hvinfra models pull t2v` runs the
repo's script in a short-lived container of the profile's image, with the code folder mounted
read-only and the weights folder read-write, then checks what it wrote.

The image is the stand-in plus a shell-script `python` that records its argv and working
directory, probes whether the code mount is writable, and writes the folder the real script
writes (config, sharded safetensors with their index, tokenizer files).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest
from dockerd import build_image_from_files

from hvinfra.cli import main
from hvinfra.errors import ExitCode

IMAGE = "hvinfra-test/hunyuanvideo-preprocess-standin:latest"
SCRIPT = "hyvideo/utils/preprocess_text_encoder_tokenizer_utils.py"

STANDIN_PYTHON = r"""#!/bin/sh
# hvinfra test stand-in for `python SCRIPT --input_dir IN --output_dir OUT`
out=""
input=""
prev=""
for arg in "$@"; do
  [ "$prev" = "--output_dir" ] && out="$arg"
  [ "$prev" = "--input_dir" ] && input="$arg"
  prev="$arg"
done
[ -n "$out" ] || { echo "stand-in: no --output_dir" >&2; exit 2; }
[ -f "$input/config.json" ] || { echo "stand-in: no input at $input" >&2; exit 3; }
mkdir -p "$out"
printf '%s\n' "$@" > "$out/argv.txt"
pwd > "$out/cwd.txt"
mode=ro
touch /workspace/HunyuanVideo/.probe 2>/dev/null && mode=rw
echo "$mode" > "$out/code-mount.txt"
echo '{"architectures": ["LlamaForCausalLM"]}' > "$out/config.json"
s1=model-00001-of-00002.safetensors
s2=model-00002-of-00002.safetensors
echo "{\"weight_map\": {\"a\": \"$s1\", \"b\": \"$s2\"}}" > "$out/model.safetensors.index.json"
echo shard1 > "$out/model-00001-of-00002.safetensors"
echo shard2 > "$out/model-00002-of-00002.safetensors"
echo '{}' > "$out/tokenizer.json"
echo '{}' > "$out/tokenizer_config.json"
echo "stand-in preprocessing wrote $out"
"""


@pytest.fixture(scope="module")
def preprocess_image(standin_image: str, docker_client: docker.DockerClient) -> str:
    dockerfile = f"FROM {standin_image}\nCOPY python /usr/local/bin/python\n".encode()
    files = {"Dockerfile": (dockerfile, 0o644), "python": (STANDIN_PYTHON.encode(), 0o755)}
    return build_image_from_files(docker_client, files, IMAGE)


def _git(*args: str, cwd: Path) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin:/usr/local/bin",
    }  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def _code_checkout(path: Path) -> str:
    """A stand-in for the HunyuanVideo repo at one commit: sample script, preprocess script,
    and the tracked ckpts/ folder the weights mount lands on."""
    (path / "hyvideo/utils").mkdir(parents=True)
    (path / "ckpts").mkdir()
    (path / "sample_video.py").write_text("print('sample')\n")
    (path / SCRIPT).write_text("raise SystemExit('the stand-in python never reads this')\n")
    (path / "ckpts/README.md").write_text("weights\n")
    _git("init", "--quiet", cwd=path)
    _git("add", "-A", cwd=path)
    _git("commit", "--quiet", "-m", "stand-in", cwd=path)
    return _git("rev-parse", "HEAD", cwd=path)


def _downloaded_llava(weights: Path) -> None:
    folder = weights / "llava-llama-3-8b-v1_1-transformers"
    folder.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json",
                 "tokenizer_config.json", "model-00001-of-00001.safetensors"):  # fmt: skip
        (folder / name).write_text("x")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}})
    )


def _pull_argv(tmp_path: Path, commit: str, gpu_hook: bool, *extra: str) -> list[str]:
    return [
        "models", "pull", "t2v", "--only", "weights", "--json",
        "--code-dir", str(tmp_path / "code"), "--weights-dir", str(tmp_path / "ckpts"),
        "--set", f"image={IMAGE}",
        "--set", "ulimits.memlock=8m",
        "--set", f"gpu.devices={'all' if gpu_hook else 'none'}",
        "--set", f"container_name=hvtest-models-{tmp_path.name[-12:]}",
        "--set", f"models.code.repo={tmp_path / 'code'}",
        "--set", f"models.code.commit={commit}",
        "--set", "models.weights.model.optional=fp8",  # the DiT and VAE pieces are not under
        "--set", "models.weights.vae.optional=fp8",  # test here: no hub is reachable
        "--set", "models.weights.text_encoder_2.optional=fp8",
        *extra,
    ]  # fmt: skip


def test_preprocessing_runs_the_repo_script_in_the_image_and_its_output_is_checked(
    preprocess_image: str,
    docker_host: str,
    docker_engine: Any,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "code").mkdir()
    commit = _code_checkout(tmp_path / "code")
    weights = tmp_path / "ckpts"
    _downloaded_llava(weights)

    code = main(_pull_argv(tmp_path, commit, docker_engine.gpu_hook))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["preprocessed"] == ["text_encoder"]
    assert payload["downloaded"] == []
    rows = {row["piece"]: row for row in payload["rows"]}
    assert rows["text_encoder"]["state"] == "ok"
    out = weights / "text_encoder"
    assert (out / "argv.txt").read_text().splitlines() == [
        SCRIPT,
        "--input_dir", "/workspace/HunyuanVideo/ckpts/llava-llama-3-8b-v1_1-transformers",
        "--output_dir", "/workspace/HunyuanVideo/ckpts/text_encoder",
    ]  # fmt: skip
    assert (out / "cwd.txt").read_text().strip() == "/workspace/HunyuanVideo"
    assert (out / "code-mount.txt").read_text().strip() == "ro"
    assert "stand-in preprocessing wrote" in captured.err
    leftover = docker_client.containers.list(
        all=True, filters={"label": "io.hvinfra.job=preprocess-text_encoder"}
    )
    assert leftover == []

    again = main(_pull_argv(tmp_path, commit, docker_engine.gpu_hook))
    payload = json.loads(capsys.readouterr().out)
    assert again == 0 and payload["preprocessed"] == []


def test_a_failing_script_is_a_job_failure_and_leaves_nothing_half_checked(
    preprocess_image: str,
    docker_host: str,
    docker_engine: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "code").mkdir()
    commit = _code_checkout(tmp_path / "code")
    _downloaded_llava(tmp_path / "ckpts")
    code = main(
        _pull_argv(
            tmp_path, commit, docker_engine.gpu_hook,
            "--set",
            'models.weights.text_encoder.preprocess.args=[--input_dir, /nonexistent,'
            ' --output_dir, "{output}"]',
        )
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == ExitCode.JOB_FAILED, err
    assert "stand-in: no input at /nonexistent" in err
    assert "exited with 3" in err
    assert not (tmp_path / "ckpts/text_encoder").exists()
