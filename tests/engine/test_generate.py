"""`hvinfra generate` end to end on a real Docker engine, with the generate-standin image
(tests/fixtures/generate-standin): python3/torchrun stand-ins that record their argv, print
tqdm-like progress and write an .mp4-named file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker
import pytest
from dockerd import build_fixture_image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))  # the model-asset tree builders
from assets_fixtures import build_weights, clone_at, make_upstream, profile_for  # noqa: E402
from gpu_fakes import copies, recorded  # noqa: E402

from hvinfra.records import gpu_system_as_dict  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "generate-standin"
TAG = "hvinfra-test/generate-standin:latest"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="session")
def generate_image(docker_client: docker.DockerClient, standin_image: str) -> str:
    """The stand-in image plus the python3/torchrun stand-ins (built from FIXTURE)."""
    return build_fixture_image(docker_client, FIXTURE, ("Dockerfile", "python3", "torchrun"), TAG)


@pytest.fixture
def job(tmp_path: Path, hv_env: dict[str, str], generate_image: str) -> Job:
    return Job(tmp_path, hv_env, generate_image)


class Job:
    """Runs `hvinfra generate …` as a subprocess against a fresh container and host folders."""

    def __init__(self, root: Path, env: dict[str, str], image: str) -> None:
        self.root = root
        self.out = root / "out"
        self.outputs = root / "outputs"
        self.name = f"hv-gen-{uuid.uuid4().hex[:8]}"
        self.env = dict(env, PYTHONPATH=str(REPO / "src"))
        # generate's gates (assets, VRAM) and up's pre-flight run in these tests, over recorded
        # GPU records of an 8-GPU host (a test fixture standing in for NVML).
        self.env.pop("HVINFRA_SKIP_CHECKS", None)
        records = root / "gpu-records.json"
        records.write_text(json.dumps(gpu_system_as_dict(copies(recorded(), 8))))
        self.env["HVINFRA_GPU_RECORDS"] = str(records)
        self.image = image

    def assets(self, kind: str) -> tuple[Path, Path, str]:
        """A complete (tiny) code checkout and weights tree for `kind`, made once."""
        code, weights = self.root / f"{kind}-code", self.root / f"{kind}-ckpts"
        if not code.exists():
            script = "sample_video.py" if kind == "t2v" else "sample_image2video.py"
            _, commit = make_upstream(self.root / f"{kind}-upstream", script)
            clone_at(self.root / f"{kind}-upstream", code, commit)
            build_weights(weights, profile_for(kind, code, weights))
        commit = (code / ".git" / "HEAD").read_text().strip()
        return code, weights, commit

    def argv(self, kind: str, *args: str, assets: bool = True) -> list[str]:
        code, weights, commit = self.assets(kind)
        sets = {
            "image": self.image,
            "container_name": self.name,
            "ulimits.memlock": "8m",
            "volumes.code.host": str(code),
            "volumes.weights.host": str(weights if assets else self.root / "empty-ckpts"),
            "volumes.outputs.host": str(self.outputs),
            "models.code.commit": commit,
        }
        argv = [sys.executable, "-m", "hvinfra", "generate", kind, *args, "--out", str(self.out)]
        for key, value in sets.items():
            argv += ["--set", f"{key}={value}"]
        return argv

    def run(self, kind: str, *args: str, assets: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(kind, *args, assets=assets),
            env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def save_dir(self) -> Path:
        """The newest job folder (job ids sort by time)."""
        return sorted(p for p in self.outputs.iterdir() if p.is_dir())[-1]

    def recorded_argv(self, program: str = "python3") -> list[str]:
        data = (self.save_dir() / f"{program}.argv").read_bytes()
        assert data.endswith(b"\0")
        return [arg.decode() for arg in data[:-1].split(b"\0")]

    def exec(self, client: docker.DockerClient, *cmd: str) -> str:
        result = client.containers.get(self.name).exec_run(list(cmd))
        assert isinstance(result.output, bytes)
        return result.output.decode()


def value_of(argv: list[str], flag: str) -> str:
    for index, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
        if arg == flag:
            return argv[index + 1]
    raise AssertionError(f"{flag} not in {argv}")


HOSTILE = 'it\'s "quoted" $(touch /tmp/pwned) `id` ; rm -rf / \\ \nnew line ünïcödé 猫 \t tab'


def test_t2v_hostile_prompt_arrives_verbatim_and_the_video_and_sidecar_come_out(
    job: Job, docker_client: docker.DockerClient
) -> None:
    prompt = "-" + HOSTILE
    result = job.run(
        "t2v", "--prompt", prompt, "--neg-prompt", "--help $(x)", "--resolution", "540p",
        "--aspect", "9:16", "--steps", "6", "--seed", "42",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = job.recorded_argv()
    assert argv[0] == "sample_video.py"
    assert value_of(argv, "--prompt") == prompt
    assert value_of(argv, "--neg-prompt") == "--help $(x)"
    assert argv[argv.index("--video-size") + 1 : argv.index("--video-size") + 3] == ["960", "544"]
    assert "--flow-reverse" in argv
    assert (job.save_dir() / "python3.pwd").read_text().strip() == "/workspace/HunyuanVideo"
    assert "pwned" not in job.exec(docker_client, "ls", "/tmp")
    # progress: plain step lines on a non-TTY stderr, up to the last step
    assert "step 6/6" in result.stderr
    stem = "t2v_it-s-quoted-touch-tmp-pwned-id-rm-rf-new-line_seed42_544x960"
    video = job.out / f"{stem}.mp4"
    assert video.read_text() == "STANDIN MP4 seed=42\n"
    sidecar = json.loads((job.out / f"{stem}.json").read_text())
    assert sidecar["request"]["prompt"] == prompt
    assert sidecar["effective"]["video_size"] == {"height": 960, "width": 544}
    assert sidecar["command"]["argv"][0] == "python3"
    assert sidecar["image"]["ref"] == job.image
    assert sidecar["image"]["id"].startswith("sha256:")
    assert sidecar["container"]["name"] == job.name
    assert sidecar["output"]["video"] == video.name
    phases = sidecar["measurements"]["phases"]  # timed from the stand-in's tqdm lines
    assert phases["steps_seen"] >= 1 and phases["tqdm_rate"] == "1.00s/it"
    assert sidecar["synthetic_weights"] is None
    assert "Sample save to:" in (job.out / f"{stem}.log").read_text()
    assert not list(job.out.glob("*.partial"))


def test_multi_gpu_runs_torchrun_with_the_chosen_xdit_split_and_json_result(
    job: Job, docker_client: docker.DockerClient
) -> None:
    result = job.run(
        "t2v", "-p", "a cat", "--gpus", "0,1,2,3", "--steps", "3", "--seed", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert Path(payload["video"]).is_file() and payload["seed"] == 1
    torchrun = job.recorded_argv("torchrun")
    assert torchrun[:2] == ["--nproc_per_node=4", "sample_video.py"]
    python = job.recorded_argv()
    assert value_of(python, "--ulysses-degree") == "4"
    assert value_of(python, "--ring-degree") == "1"
    # the container was started for the job with exactly those GPUs: nothing to narrow inside
    assert docker_client.containers.get(job.name).labels["io.hvinfra.gpus"] == "0,1,2,3"
    assert "CUDA_VISIBLE_DEVICES" not in (job.save_dir() / "python3.env").read_text()


def test_gpu_subset_in_a_container_with_all_gpus_uses_cuda_visible_devices(job: Job) -> None:
    first = job.run("t2v", "-p", "warm up", "--steps", "1", "--seed", "1")  # starts it, all GPUs
    assert first.returncode == 0, first.stderr
    result = job.run("t2v", "-p", "a cat", "--gpus", "2,3", "--steps", "1", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert "CUDA_VISIBLE_DEVICES=2,3" in (job.save_dir() / "python3.env").read_text()
    assert job.recorded_argv("torchrun")[0] == "--nproc_per_node=2"


def test_i2v_copies_the_image_in_and_maps_dynamic_mode(job: Job, tmp_path: Path) -> None:
    image = tmp_path / "first frame.png"
    image.write_bytes(b"\x89PNG fake")
    result = job.run(
        "i2v", "--image", str(image), "-p", "she smiles", "--dynamic", "--gpus", "0,1",
        "--steps", "2", "--seed", "5", "--resolution", "540p",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = job.recorded_argv()
    assert argv[0] == "sample_image2video.py"
    assert "--i2v-mode" in argv and "--i2v-stability" not in argv
    assert value_of(argv, "--flow-shift") == "17"
    assert value_of(argv, "--i2v-resolution") == "540p"
    assert value_of(argv, "--model") == "HYVideo-T/2"
    assert value_of(argv, "--i2v-image-path").startswith("/tmp/hvinfra-inputs/")
    assert "ALLOW_RESIZE_FOR_SP=1" in (job.save_dir() / "python3.env").read_text()
    sidecar = json.loads(next(job.out.glob("*.json")).read_text())
    assert sidecar["request"]["mode"] == "dynamic"


def test_i2v_image_arrives_byte_for_byte_and_is_removed_afterwards(
    job: Job, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    image = tmp_path / "in.jpg"
    image.write_bytes(bytes(range(256)) * 4)
    result = job.run("i2v", "--image", str(image), "-p", "x", "--steps", "1", "--seed", "3")
    assert result.returncode == 0, result.stderr
    # the stand-in copied what it found at --i2v-image-path next to its argv
    assert (job.save_dir() / "input.copy").read_bytes() == image.read_bytes()
    path = value_of(job.recorded_argv(), "--i2v-image-path")
    assert path.endswith("/input.jpg")
    # the inputs are removed after the job: nothing is left behind in the container
    assert "No such file" in job.exec(docker_client, "ls", path)


def test_nonzero_exit_is_job_failed_with_last_lines_and_a_hint(job: Job) -> None:
    result = job.run("t2v", "-p", "STANDIN_FAIL", "--steps", "2", "--seed", "9")
    assert result.returncode == 12, result.stderr
    assert "exit code 3" in result.stderr
    assert "CUDA out of memory" in result.stderr
    assert "--cpu-offload" in result.stderr  # the hint for out-of-memory
    assert not list(job.out.glob("*.mp4")) and not list(job.out.glob("*.json"))
    (log,) = job.out.glob("*.log")
    assert "Traceback" in log.read_text()


def test_exit_zero_without_a_video_is_job_failed(job: Job) -> None:
    result = job.run("t2v", "-p", "STANDIN_NOFILE", "--steps", "1", "--seed", "9")
    assert result.returncode == 12, result.stderr
    assert "no .mp4" in result.stderr


def test_missing_weights_are_refused_before_any_container_work(
    job: Job, docker_client: docker.DockerClient
) -> None:
    result = job.run("t2v", "-p", "a cat", "--steps", "1", assets=False)
    assert result.returncode == 11, result.stderr
    assert "model assets for t2v are not ready" in result.stderr
    assert "fix: hvinfra models pull t2v" in result.stderr
    assert docker_client.containers.list(all=True, filters={"name": job.name}) == []
    started = job.run("t2v", "-p", "a cat", "--steps", "1", "--seed", "5")
    assert started.returncode == 0, started.stderr


def test_no_up_refuses_when_the_container_is_not_running(job: Job) -> None:
    result = job.run("t2v", "-p", "x", "--no-up")
    assert result.returncode == 6, result.stderr
    assert "hvinfra up t2v" in result.stderr


def start_job(
    job: Job, prompt: str, *extra: str, steps: int = 60
) -> tuple[subprocess.Popen[str], str]:
    """`generate t2v` in the background, once it has reported step 2; (process, stderr so far)."""
    proc = subprocess.Popen(
        job.argv("t2v", "-p", prompt, "--steps", str(steps), "--seed", "1", *extra),
        env=job.env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 60
    while f"step 2/{steps}" not in seen:
        line = proc.stderr.readline()
        assert line and time.monotonic() < deadline, seen
        seen += line
    return proc, seen


def _interrupt(
    job: Job, prompt: str, *extra: str, sig: signal.Signals = signal.SIGINT
) -> tuple[int, str]:
    proc, seen = start_job(job, prompt, *extra)
    proc.send_signal(sig)
    assert proc.stderr is not None
    rest = proc.stderr.read()
    return proc.wait(timeout=60), seen + rest


def _job_processes(job: Job, client: docker.DockerClient) -> list[str]:
    pids: list[str] = []
    for name in ("python3.pids", "torchrun.pids"):
        path = job.save_dir() / name
        if path.exists():
            pids += path.read_text().split()
    alive = job.exec(client, "sh", "-c", "ls /proc | grep -E '^[0-9]+$'").split()
    return [pid for pid in pids if pid in alive]


def test_ctrl_c_stops_the_whole_job_tree_inside_the_container(
    job: Job, docker_client: docker.DockerClient
) -> None:
    code, stderr = _interrupt(job, "STANDIN_SLOW", "--gpus", "0,1")
    assert code == 130, stderr
    assert "stopped with SIGINT" in stderr
    assert _job_processes(job, docker_client) == []
    assert "sleep" not in job.exec(docker_client, "ps", "-o", "pid,args")
    assert not list(job.out.glob("*.mp4"))


def test_sigterm_stops_the_job_as_ctrl_c_does(job: Job, docker_client: docker.DockerClient) -> None:
    """`kill hvinfra` (a scheduler ending the step): the job inside is stopped, exit 130."""
    code, stderr = _interrupt(job, "STANDIN_SLOW", sig=signal.SIGTERM)
    assert code == 130, stderr
    assert "stopped with SIGINT" in stderr
    assert _job_processes(job, docker_client) == []


def test_ctrl_c_kills_a_job_that_ignores_sigint_after_the_stop_timeout(
    job: Job, docker_client: docker.DockerClient
) -> None:
    code, stderr = _interrupt(job, "STANDIN_STUBBORN", "--stop-timeout", "2")
    assert code == 130, stderr
    assert "killed with SIGKILL" in stderr
    assert _job_processes(job, docker_client) == []
    assert not list(job.out.glob("*.mp4"))
