"""The weights pull: the download plan at the hub boundary (a fake hub), disk check, Ctrl-C,
preprocessing through a fake engine, and the CLI end to end with those fakes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from assets_fixtures import SHARDS, clone_at, make_upstream, profile_for, write_required

from hvinfra.assets import AssetState
from hvinfra.cli import main, models_cmd
from hvinfra.download_display import NoDisplay, PlainDownload
from hvinfra.errors import AssetsMissing, ExitCode, Interrupted, JobFailed, PreflightFailed
from hvinfra.hub import RemoteFile, RemoteListing
from hvinfra.model_pull import PullTools, run_pull
from hvinfra.preprocess import preprocess_spec
from hvinfra.profiles.models import Profile
from hvinfra.records import ContainerInfo, ImageInfo
from hvinfra.spec import RunSpec

SECRET = "hf_secretTOKENvalue123"

# What the fake hub holds: repo id -> {path: size}.
REPOS: dict[str, dict[str, int]] = {
    "tencent/HunyuanVideo": {
        "README.md": 100,
        "config.json": 39,
        "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt": 4000,
        "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8.pt": 2000,
        "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8_map.pt": 10,
        "hunyuan-video-t2v-720p/vae/config.json": 755,
        "hunyuan-video-t2v-720p/vae/pytorch_model.pt": 3000,
    },
    "tencent/HunyuanVideo-I2V": {
        "hunyuan-video-i2v-720p/transformers/mp_rank_00_model_states.pt": 4000,
        "hunyuan-video-i2v-720p/vae/config.json": 755,
        "hunyuan-video-i2v-720p/vae/pytorch_model.pt": 3000,
        "hunyuan-video-i2v-720p/lora/embrace_kohaya_weights.safetensors": 600,
    },
    "xtuner/llava-llama-3-8b-v1_1-transformers": {
        "README.md": 50,
        "config.json": 1070,
        "generation_config.json": 121,
        "model.safetensors.index.json": 0,  # written with a weight_map by the fake
        "preprocessor_config.json": 819,
        "tokenizer.json": 900,
        "tokenizer_config.json": 500,
        SHARDS[0]: 5000,
        SHARDS[1]: 4900,
    },
    "openai/clip-vit-large-patch14": {
        "config.json": 4500,
        "merges.txt": 525,
        "vocab.json": 961,
        "tokenizer.json": 2200,
        "tokenizer_config.json": 900,
        "model.safetensors": 1700,
        "pytorch_model.bin": 1700,
        "tf_model.h5": 1700,
    },
}


class FakeHub:
    """The hub boundary: listings with sizes, and downloads that write the matching files."""

    endpoint = "https://hub.example"

    def __init__(self, fail_after: int | None = None) -> None:
        self.listed: list[tuple[str, str]] = []
        self.downloads: list[dict[str, Any]] = []
        self.fail_after = fail_after

    def has_token(self) -> bool:
        return True

    def listing(self, repo_id: str, revision: str) -> RemoteListing:
        self.listed.append((repo_id, revision))
        files = tuple(RemoteFile(p, s or 64) for p, s in REPOS[repo_id].items())
        return RemoteListing(repo_id, revision, f"sha-of-{repo_id}", files)

    def download(
        self, repo_id: str, sha: str, local_dir: Path, allow_patterns: Sequence[str]
    ) -> None:
        from hvinfra.assets import matches_patterns

        self.downloads.append(
            {"repo_id": repo_id, "sha": sha, "local_dir": local_dir,
             "patterns": list(allow_patterns)}
        )  # fmt: skip
        written = 0
        for path, size in REPOS[repo_id].items():
            if not matches_patterns(path, allow_patterns):
                continue
            if self.fail_after is not None and written >= self.fail_after:
                raise KeyboardInterrupt
            target = local_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.endswith(".index.json"):
                weight_map = {"a": SHARDS[0], "b": SHARDS[1]}
                target.write_text(json.dumps({"weight_map": weight_map}))
            else:
                target.write_bytes(b"w" * size)
            written += 1


class FakeEngine:
    """Runs the preprocessing 'container' by writing what the real script writes."""

    def __init__(self, status: int = 0, write_output: bool = True) -> None:
        self.specs: list[RunSpec] = []
        self.removed: list[str] = []
        self.status, self.write_output = status, write_output
        self.weights_host: Path | None = None

    def image(self, ref: str) -> ImageInfo | None:
        return ImageInfo(id="sha256:img", tags=(ref,))

    def pull_events(self, ref: str) -> Iterator[dict[str, Any]]:
        return iter(())

    def container(self, name_or_id: str) -> ContainerInfo | None:
        return None

    def create(self, spec: RunSpec) -> str:
        self.specs.append(spec)
        return "c1"

    def start(self, container_id: str, name: str = "") -> None:
        spec = self.specs[-1]
        weights = next(m for m in spec.mounts if not m.read_only)
        if self.write_output:
            for entry in ("config.json", "model.safetensors.index.json", "tokenizer.json",
                          "tokenizer_config.json"):  # fmt: skip
                write_required(Path(weights.source), f"text_encoder/{entry}")

    def logs(self, container_id: str, *, follow: bool = False) -> Iterator[bytes]:
        yield b"saving language model\n"

    def wait(self, container_id: str, timeout: float | None = None) -> int:
        return self.status

    def remove(self, container_id: str, force: bool = True) -> None:
        self.removed.append(container_id)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HF_TOKEN", SECRET)


@pytest.fixture
def code_at_pin(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    upstream = tmp_path / "upstream"
    first, _ = make_upstream(upstream)
    code = tmp_path / "code"
    clone_at(upstream, code, first)
    return code, (f"models.code.repo={upstream}", f"models.code.commit={first}")


def _tools(hub: FakeHub, engine: FakeEngine | None = None, free: int = 10**12) -> PullTools:
    engine = engine or FakeEngine()
    return PullTools(
        hub=lambda: hub, engine=lambda: engine, progress=NoDisplay(), disk_free=lambda _p: free
    )


def _profile(tmp_path: Path, name: str, pin: tuple[Path, tuple[str, ...]]) -> Profile:
    return profile_for(name, pin[0], tmp_path / "ckpts", pin[1])


def test_t2v_plan_at_the_hub_boundary(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    hub, engine = FakeHub(), FakeEngine()
    profile = _profile(tmp_path, "t2v", code_at_pin)
    report = run_pull(profile, _tools(hub, engine), only="weights")
    weights = tmp_path / "ckpts"
    assert [(d["repo_id"], d["sha"], d["local_dir"], d["patterns"]) for d in hub.downloads] == [
        ("tencent/HunyuanVideo", "sha-of-tencent/HunyuanVideo", weights,
         ["hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt"]),
        ("tencent/HunyuanVideo", "sha-of-tencent/HunyuanVideo", weights,
         ["hunyuan-video-t2v-720p/vae/*"]),
        ("xtuner/llava-llama-3-8b-v1_1-transformers",
         "sha-of-xtuner/llava-llama-3-8b-v1_1-transformers",
         weights / "llava-llama-3-8b-v1_1-transformers", ["*.json", "*.safetensors"]),
        ("openai/clip-vit-large-patch14", "sha-of-openai/clip-vit-large-patch14",
         weights / "text_encoder_2", ["*.json", "*.txt", "model.safetensors"]),
    ]  # fmt: skip
    assert {rev for _repo, rev in hub.listed} == {"main"}
    assert report.downloaded == ["model", "vae", "text_encoder", "text_encoder_2"]
    assert report.preprocessed == ["text_encoder"]
    assert all(row.state is AssetState.OK for row in report.rows if row.required)
    assert not (weights / "text_encoder_2" / "tf_model.h5").exists()


def test_fp8_only_with_the_flag_and_a_second_run_downloads_nothing(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    profile = _profile(tmp_path, "t2v", code_at_pin)
    run_pull(profile, _tools(FakeHub()))
    hub = FakeHub()
    report = run_pull(profile, _tools(hub), fp8=True)
    assert [d["patterns"] for d in hub.downloads] == [[
        "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8.pt",
        "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8_map.pt",
    ]]  # fmt: skip
    assert report.code_action == "unchanged"
    again = FakeHub()
    engine = FakeEngine()
    report = run_pull(profile, _tools(again, engine), fp8=True)
    assert again.listed == [] and again.downloads == [] and engine.specs == []
    assert report.downloaded == [] and report.preprocessed == []


def test_preprocessing_runs_the_repo_script_with_weights_writable_and_code_read_only(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    engine = FakeEngine()
    profile = _profile(tmp_path, "t2v", code_at_pin)
    run_pull(profile, _tools(FakeHub(), engine))
    (spec,) = engine.specs
    assert spec.command == (
        "python", "hyvideo/utils/preprocess_text_encoder_tokenizer_utils.py",
        "--input_dir", "/workspace/HunyuanVideo/ckpts/llava-llama-3-8b-v1_1-transformers",
        "--output_dir", "/workspace/HunyuanVideo/ckpts/text_encoder",
    )  # fmt: skip
    assert spec.image == "hunyuanvideo/hunyuanvideo:cuda_12"
    assert spec.working_dir == "/workspace/HunyuanVideo"
    mounts = {m.target: (m.source, m.read_only) for m in spec.mounts}
    assert mounts == {
        "/workspace/HunyuanVideo": (str(code_at_pin[0]), True),
        "/workspace/HunyuanVideo/ckpts": (str(tmp_path / "ckpts"), False),
    }
    assert spec.name == "hunyuanvideo-preprocess" and not spec.tty
    assert ("io.hvinfra.job", "preprocess-text_encoder") in spec.labels
    assert not any(key.startswith("HF_") for key, _ in spec.environment)
    assert engine.removed == ["c1"]


def test_i2v_pulls_llava_whole_and_never_preprocesses(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    hub, engine = FakeHub(), FakeEngine()
    sets = (*code_at_pin[1], "models.code.sample_script=sample_video.py")
    profile = profile_for("i2v", code_at_pin[0], tmp_path / "ckpts", sets)
    report = run_pull(profile, _tools(hub, engine))
    assert engine.specs == []
    assert [d["local_dir"].name for d in hub.downloads] == [
        "ckpts", "ckpts", "ckpts", "text_encoder_i2v", "text_encoder_2",
    ]  # fmt: skip
    assert report.preprocessed == []
    assert not [row for row in report.rows if row.failed]


def test_not_enough_disk_is_refused_before_any_download_and_names_the_sizes(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    hub = FakeHub()
    profile = _profile(tmp_path, "t2v", code_at_pin)
    with pytest.raises(PreflightFailed) as raised:
        run_pull(profile, _tools(hub, free=1000), only="weights")
    needed = 4000 + 755 + 3000 + (1070 + 121 + 64 + 819 + 900 + 500 + 5000 + 4900)
    needed += 4500 + 525 + 961 + 2200 + 900 + 1700 + 16 * 1024**3  # + text_encoder output
    assert raised.value.message == (
        f"not enough free disk for the weights: {_hs(needed)} needed, 1.0 kB free at "
        f"{tmp_path / 'ckpts'}"
    )
    assert "--weights-dir" in raised.value.fix
    assert hub.downloads == []


def _hs(n: int) -> str:
    from hvinfra.assets import human_size

    return human_size(n)


def test_ctrl_c_keeps_downloaded_files_and_a_rerun_resumes(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    profile = _profile(tmp_path, "t2v", code_at_pin)
    with pytest.raises(Interrupted) as raised:
        run_pull(profile, _tools(FakeHub(fail_after=1)), only="weights")
    assert "rerun `hvinfra models pull t2v --only weights` to fetch the rest" in raised.value.fix
    model = tmp_path / "ckpts/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt"
    assert model.stat().st_size == 4000
    hub = FakeHub()
    run_pull(profile, _tools(hub), only="weights")
    assert hub.downloads[0]["patterns"] == ["hunyuan-video-t2v-720p/vae/*"]


def test_failed_preprocessing_is_a_job_failure_and_keeps_the_download(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    engine = FakeEngine(status=1, write_output=False)
    profile = _profile(tmp_path, "t2v", code_at_pin)
    with pytest.raises(JobFailed) as raised:
        run_pull(profile, _tools(FakeHub(), engine))
    assert raised.value.exit_code == ExitCode.JOB_FAILED
    assert "docker logs hunyuanvideo-preprocess" in raised.value.fix
    assert (tmp_path / "ckpts/llava-llama-3-8b-v1_1-transformers/config.json").is_file()


def test_preprocessing_that_writes_nothing_is_caught_by_the_output_check(
    tmp_path: Path, code_at_pin: tuple[Path, tuple[str, ...]]
) -> None:
    profile = _profile(tmp_path, "t2v", code_at_pin)
    with pytest.raises(Exception, match="preprocessing finished but text_encoder is incomplete"):
        run_pull(profile, _tools(FakeHub(), FakeEngine(write_output=False)))


def test_weights_only_preprocessing_without_code_is_refused_up_front(tmp_path: Path) -> None:
    hub = FakeHub()
    profile = profile_for("t2v", tmp_path / "no-code", tmp_path / "ckpts")
    with pytest.raises(AssetsMissing) as raised:
        run_pull(profile, _tools(hub), only="weights")
    assert raised.value.fix == "hvinfra models pull t2v --only code"
    assert hub.downloads == []


def test_preprocess_spec_keeps_the_profiles_memlock_override(tmp_path: Path) -> None:
    profile = profile_for(
        "t2v", tmp_path / "c", tmp_path / "w", ("ulimits.memlock=8m", "gpu.devices=none")
    )
    assert profile.models is not None
    spec = preprocess_spec(profile, "text_encoder", profile.models.weights["text_encoder"])
    assert {u.name: u.soft for u in spec.ulimits}["memlock"] == 8 * 1024**2
    assert spec.gpu_request is None


def test_plain_progress_prints_steps_not_every_tick() -> None:
    lines: list[str] = []
    clock = iter(range(0, 1000)).__next__
    display = PlainDownload(lines.append, clock=lambda: float(clock()))
    display.start(1000, "model")
    for done in range(0, 1001, 10):
        display.update(done, "model")
    assert lines[0] == "downloading 1.0 kB in all"
    assert len(lines) == 22
    assert lines[-1] == "  100%  1.0 kB / 1.0 kB  model"


def test_cli_pull_never_shows_the_token_and_ends_with_a_clean_check(
    tmp_path: Path,
    code_at_pin: tuple[Path, tuple[str, ...]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub, engine = FakeHub(), FakeEngine()
    monkeypatch.setattr(models_cmd, "_hub", lambda: hub)
    monkeypatch.setattr(models_cmd, "_engine", lambda: engine)
    monkeypatch.setattr("hvinfra.model_pull.free_bytes", lambda _p: 10**12)
    argv = ["models", "pull", "t2v", "--code-dir", str(code_at_pin[0]),
            "--weights-dir", str(tmp_path / "ckpts")]  # fmt: skip
    for item in code_at_pin[1]:
        argv += ["--set", item]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "downloaded model, vae, text_encoder, text_encoder_2" in captured.err
    assert "preprocessing text_encoder: python hyvideo/utils/" in captured.err
    assert SECRET not in captured.out + captured.err
    assert SECRET not in " ".join(" ".join(s.command or ()) for s in engine.specs)
    assert all(SECRET not in value for s in engine.specs for _k, value in s.environment)
    assert main(["models", "check", *argv[2:]]) == 0
    assert os.environ["HF_TOKEN"] == SECRET
