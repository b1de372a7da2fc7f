"""`hvinfra models pull` end to end with the real `huggingface_hub` client (whichever version
this venv has: scripts/test-hub-clients.sh runs these with the lowest supported one too) against
the local hub server of tests/hubserver.py. The CLI runs as a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import huggingface_hub
import pytest
from hub_cli import TOKEN, Run, hub_env, pull_argv, run_cli

from hubserver import HubRepo, HubServer, payload, standard_repos
from hvinfra.errors import ExitCode

I2V_WEIGHTS = {
    "tencent/HunyuanVideo-I2V": [
        "hunyuan-video-i2v-720p/transformers/mp_rank_00_model_states.pt",
        "hunyuan-video-i2v-720p/vae/config.json",
        "hunyuan-video-i2v-720p/vae/pytorch_model.pt",
        "hunyuan-video-i2v-720p/lora/embrace_kohaya_weights.safetensors",
        "hunyuan-video-i2v-720p/lora/hair_growth_kohaya_weights.safetensors",
    ],
}
DIT = "hunyuan-video-i2v-720p/transformers/mp_rank_00_model_states.pt"
BIG = 12_000_000  # the DiT file of the slow hub
CLIENT = tuple(int(p) for p in re.findall(r"\d+", huggingface_hub.__version__)[:2])
# Up to 1.17 a partial file is resumed across processes; since 1.18 each process has its own.
RESUMES_ACROSS_PROCESSES = CLIENT < (1, 18)


def by_repo(hub: HubServer, repo_id: str) -> HubRepo:
    return hub.repos[repo_id]


def expected_files(hub: HubServer) -> dict[str, bytes]:
    """Weights-folder path -> content, for everything `models pull i2v` must bring."""
    files = {p: by_repo(hub, r).files[p] for r, paths in I2V_WEIGHTS.items() for p in paths}
    llava = by_repo(hub, "xtuner/llava-llama-3-8b-v1_1-transformers")
    for path, data in llava.files.items():
        if path.endswith((".json", ".safetensors")):
            files[f"text_encoder_i2v/{path}"] = data
    clip = by_repo(hub, "openai/clip-vit-large-patch14")
    for path, data in clip.files.items():
        if path.endswith((".json", ".txt")) or path == "model.safetensors":
            files[f"text_encoder_2/{path}"] = data
    return files


def user_files(weights: Path) -> dict[str, bytes]:
    """The weights folder as the sample scripts see it (without the hub client's metadata)."""
    return {
        str(p.relative_to(weights)): p.read_bytes()
        for p in weights.rglob("*")
        if p.is_file() and ".cache" not in p.parts and ".huggingface" not in p.parts
    }


def partials(weights: Path) -> list[Path]:
    return [p for p in weights.rglob("*.incomplete")]


def check_rows(tmp_path: Path, weights: Path, endpoint: str) -> dict[str, str]:
    argv = [*pull_argv(weights)[:3], "models", "check", "i2v", "--weights-dir", str(weights),
            "--json"]  # fmt: skip
    done = run_cli(argv, hub_env(tmp_path, endpoint))
    return {row["piece"]: row["state"] for row in json.loads(done.out)["rows"]}


def assert_clean_error(run: Run, code: ExitCode, *phrases: str) -> None:
    assert run.code == code, run.text
    assert "Traceback" not in run.text
    for phrase in phrases:
        assert phrase in run.text, run.text


def test_pull_i2v_into_an_empty_folder_brings_the_layout_check_needs(
    tmp_path: Path, hub: HubServer
) -> None:
    weights = tmp_path / "ckpts"
    run = run_cli(pull_argv(weights), hub_env(tmp_path, hub.url))
    assert run.code == 0, run.text
    assert user_files(weights) == expected_files(hub)  # byte-identical, nothing unselected
    rows = check_rows(tmp_path, weights, hub.url)
    assert {k: v for k, v in rows.items() if k != "code"} == dict.fromkeys(
        ["model", "vae", "lora", "text_encoder_i2v", "text_encoder_2"], "ok"
    )
    # one display for the whole pull: plain lines without a TTY, each byte counted once
    percents = [int(m) for m in re.findall(r"^\s+(\d+)%", run.err, re.M)]
    assert percents and percents[-1] == 100 and max(percents) == 100
    assert percents == sorted(percents)
    total = sum(len(d) for d in expected_files(hub).values())
    assert f"downloading {total / 1000:.1f} kB in all" in run.err


def test_a_second_pull_downloads_nothing(tmp_path: Path, hub: HubServer) -> None:
    weights = tmp_path / "ckpts"
    assert run_cli(pull_argv(weights), hub_env(tmp_path, hub.url)).code == 0
    hub.requests.clear()
    again = run_cli(pull_argv(weights), hub_env(tmp_path, hub.url))
    assert again.code == 0, again.text
    assert hub.file_requests() == []
    assert "downloading" not in again.err
    assert "weights:" not in again.err


def test_unreachable_hub_is_a_clear_error(tmp_path: Path) -> None:
    with HubServer([]) as gone:
        url = gone.url
    run = run_cli(pull_argv(tmp_path / "ckpts"), hub_env(tmp_path, url))
    assert_clean_error(run, ExitCode.HUB, f"cannot reach the hub at {url}", "HF_ENDPOINT")


@pytest.mark.parametrize(
    ("setting", "phrases"),
    [
        ("models.weights.vae.revision=v9", ("no such revision", "models.weights.*.revision")),
        ("models.weights.vae.repo_id=nobody/none", ("nobody/none is not on", "HF_TOKEN")),
    ],
)
def test_unknown_revision_or_repo_is_a_clear_error(
    tmp_path: Path, hub: HubServer, setting: str, phrases: tuple[str, ...]
) -> None:
    run = run_cli(pull_argv(tmp_path / "ckpts", "i2v", "--set", setting),
                  hub_env(tmp_path, hub.url))  # fmt: skip
    assert_clean_error(run, ExitCode.HUB, *phrases)


@pytest.fixture
def gated_hub() -> object:
    repos = standard_repos()
    for repo in repos:
        repo.gated = repo.repo_id == "tencent/HunyuanVideo-I2V"
    with HubServer(repos, token=TOKEN) as server:
        yield server


def test_gated_repo_without_token_says_log_in(tmp_path: Path, gated_hub: HubServer) -> None:
    run = run_cli(pull_argv(tmp_path / "ckpts"), hub_env(tmp_path, gated_hub.url))
    assert_clean_error(
        run, ExitCode.HUB, "tencent/HunyuanVideo-I2V is a gated repository",
        f"accept the model's terms at {gated_hub.url}/tencent/HunyuanVideo-I2V",
        "hf auth login", "HF_TOKEN",
    )  # fmt: skip


def test_wrong_token_on_a_gated_repo_names_the_account(
    tmp_path: Path, gated_hub: HubServer
) -> None:
    env = hub_env(tmp_path, gated_hub.url, token="hf_someoneElsesToken000")
    env["HVINFRA_DEBUG"] = "1"  # the chained cause is shown: it must not carry the token either
    run = run_cli(pull_argv(tmp_path / "ckpts"), env)
    assert_clean_error(run, ExitCode.HUB, "gated repository", "with the account of your token")
    assert "hf_someoneElsesToken000" not in run.text


def test_token_reaches_the_hub_and_no_output(tmp_path: Path, gated_hub: HubServer) -> None:
    weights = tmp_path / "ckpts"
    env = hub_env(tmp_path, gated_hub.url, token=TOKEN)
    env["HVINFRA_DEBUG"] = "1"
    run = run_cli(pull_argv(weights), env)
    assert run.code == 0, run.text
    gated_files = [r for r in gated_hub.file_requests() if "HunyuanVideo-I2V/resolve" in r.path]
    assert gated_files and all(r.authorization == f"Bearer {TOKEN}" for r in gated_files)
    assert TOKEN not in run.text
    for path in tmp_path.rglob("*"):  # weights, hub metadata, sidecars, logs
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_disk_space_is_checked_from_the_sizes_the_hub_reports(tmp_path: Path) -> None:
    repos = standard_repos()
    i2v = next(r for r in repos if r.repo_id == "tencent/HunyuanVideo-I2V")
    i2v.claimed[DIT] = 10**18  # an exabyte: no test machine has that free
    with HubServer(repos) as server:
        run = run_cli(pull_argv(tmp_path / "ckpts"), hub_env(tmp_path, server.url))
        assert server.file_requests() == []
    assert_clean_error(run, ExitCode.PREFLIGHT, "not enough free disk for the weights",
                       "1000000.0 TB needed", "--weights-dir")  # fmt: skip


def test_unwritable_weights_folder_is_about_the_folder(tmp_path: Path, hub: HubServer) -> None:
    weights = tmp_path / "ckpts"
    weights.mkdir()
    try:
        if os.geteuid() == 0:  # root writes through permissions: a read-only bind mount instead
            for argv in (["mount", "--bind", str(weights), str(weights)],
                         ["mount", "-o", "remount,ro,bind", str(weights)]):  # fmt: skip
                done = subprocess.run(argv, capture_output=True, text=True)
                if done.returncode != 0 and os.environ.get("CI") == "true":
                    pytest.fail(f"cannot make a read-only folder: {done.stderr}")
                if done.returncode != 0:
                    pytest.skip(f"cannot make a read-only folder: {done.stderr.strip()}")
        else:
            weights.chmod(0o555)
        run = run_cli(pull_argv(weights), hub_env(tmp_path, hub.url))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(weights)], capture_output=True, check=False)
    assert_clean_error(run, ExitCode.PREFLIGHT, f"cannot write to the weights folder {weights}")
    assert "cannot reach the hub" not in run.text
    assert "rerun" not in run.text


def _start_pull(tmp_path: Path, server: HubServer, weights: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        pull_argv(weights), env=hub_env(tmp_path, server.url), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
def slow_hub() -> object:
    """The DiT file is 12 MB, sent at 4 MB/s: a pull can be cut in the middle of it. (0.x
    clients write in 10 MiB chunks, so only a cut after the first 10 MiB leaves bytes to resume.)
    """
    with HubServer(standard_repos(big=BIG)) as server:
        server.rate = 4_000_000
        yield server


def test_ctrl_c_stops_at_once_and_a_rerun_completes(tmp_path: Path, slow_hub: HubServer) -> None:
    weights = tmp_path / "ckpts"
    proc = _start_pull(tmp_path, slow_hub, weights)
    slow_hub.wait_for_bytes(11_200_000)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == ExitCode.INTERRUPTED, out + err
    assert took < 1.0, f"Ctrl-C took {took:.2f} s"
    assert "Traceback" not in err
    assert re.search(r"interrupted: \d+ of \d+ files are complete and kept in", err), err
    shown = [int(m) for m in re.findall(r"^\s+(\d+)%", err, re.M)]
    assert shown and max(shown) < 100  # partial files counted once, not once per piece
    dit = weights / DIT
    assert not dit.exists() or dit.stat().st_size < BIG
    left = partials(weights)
    if RESUMES_ACROSS_PROCESSES:
        assert len(left) == 1 and left[0].stat().st_size > 0  # resumed by the rerun
    else:
        assert left == []  # no later run can use a per-process partial: removed
    slow_hub.rate = 0
    slow_hub.requests.clear()
    rerun = run_cli(pull_argv(weights), hub_env(tmp_path, slow_hub.url))
    assert rerun.code == 0, rerun.text
    assert user_files(weights) == expected_files(slow_hub)
    assert partials(weights) == []
    dit_gets = [
        r
        for r in slow_hub.file_requests()
        if "/lfs/" in r.path
        and r.path.endswith(by_repo(slow_hub, "tencent/HunyuanVideo-I2V").sha256(DIT))
    ]
    ranges = [r.headers.get("Range") for r in dit_gets]  # fmt: skip
    if RESUMES_ACROSS_PROCESSES:
        assert any(r and r.startswith("bytes=") and r != "bytes=0-" for r in ranges), ranges
    else:
        assert ranges == [None]


def test_hub_stopping_mid_pull_is_a_clear_error_and_a_rerun_completes(
    tmp_path: Path, slow_hub: HubServer
) -> None:
    weights = tmp_path / "ckpts"
    proc = _start_pull(tmp_path, slow_hub, weights)
    slow_hub.wait_for_bytes(1_000_000)
    slow_hub.stop()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.HUB, out + err
    assert "Traceback" not in err
    assert "the connection broke" in err and "rerun the same command" in err
    assert [p for p in partials(weights) if re.search(r"\.[0-9a-f]{8}\.incomplete$", p.name)] == []
    with HubServer(standard_repos(big=BIG)) as again:
        rerun = run_cli(pull_argv(weights), hub_env(tmp_path, again.url))
        assert rerun.code == 0, rerun.text
        assert user_files(weights) == expected_files(again)
    assert partials(weights) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> object:
    """A 1 MB tmpfs (root only; under CI=true a missing privilege fails the test)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a small tmpfs: {done.stderr}")
        pytest.skip(f"cannot mount a small tmpfs: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_filling_up_mid_file_is_a_clear_error(tmp_path: Path, small_disk: Path) -> None:
    repos = standard_repos(big=3_000_000)  # more than the disk holds
    i2v = next(r for r in repos if r.repo_id == "tencent/HunyuanVideo-I2V")
    i2v.claimed[DIT] = 200_000  # ...but announced small, so the pre-check lets it start
    with HubServer(repos) as server:
        run = run_cli(pull_argv(small_disk / "ckpts"), hub_env(tmp_path, server.url))
    assert_clean_error(run, ExitCode.PREFLIGHT, "the disk is full", "--weights-dir")
    assert "cannot reach the hub" not in run.text


def test_a_pull_killed_mid_file_reruns_to_identical_files_and_no_partials(
    tmp_path: Path,
) -> None:
    repos = standard_repos()
    clip = next(r for r in repos if r.repo_id == "openai/clip-vit-large-patch14")
    clip.files["model.safetensors"] = payload("clip", BIG)  # the last piece: the others finish
    weights = tmp_path / "ckpts"
    with HubServer(repos) as server:
        server.rate = 4_000_000
        proc = _start_pull(tmp_path, server, weights)
        server.wait_for_bytes(11_700_000)
        proc.kill()  # SIGKILL: no clean-up of its own
        proc.communicate(timeout=30)
        want = expected_files(server)
        finished = {
            path: ((weights / path).stat().st_ino, (weights / path).stat().st_mtime_ns)
            for path, data in want.items()
            if (weights / path).is_file() and (weights / path).stat().st_size == len(data)
        }
        assert DIT in finished and "text_encoder_2/model.safetensors" not in finished
        assert partials(weights)  # the killed process's partial of the file in flight
        server.rate = 0
        rerun = run_cli(pull_argv(weights), hub_env(tmp_path, server.url))
    assert rerun.code == 0, rerun.text
    assert user_files(weights) == want
    for path, stamp in finished.items():  # kept, not fetched again
        assert ((weights / path).stat().st_ino, (weights / path).stat().st_mtime_ns) == stamp
    assert partials(weights) == []
