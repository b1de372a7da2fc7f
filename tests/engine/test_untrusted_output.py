"""What comes out of a container is untrusted: `hvinfra generate` on a real engine with the
hostile stand-in image (tests/fixtures/hostile-standin), whose fake sample script plants links,
reports `..` and foreign paths, floods its log, ignores SIGINT and hides children.

Each test checks that nothing outside --out changed (hashes of victim files) and that no
process of the job is left in the container."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from dockerd import PrivateDockerd, build_fixture_image, build_standin_image
from test_generate import (  # noqa: F401  (the generate_image fixture is reused)
    REPO,
    Job,
    generate_image,
    start_job,
)

FIXTURE = REPO / "tests" / "fixtures" / "hostile-standin"
GENERATE_FIXTURE = REPO / "tests" / "fixtures" / "generate-standin"
TAG = "hvinfra-test/hostile-standin:latest"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="session")
def hostile_image(docker_client: docker.DockerClient, generate_image: str) -> str:  # noqa: F811
    return build_fixture_image(docker_client, FIXTURE, ("Dockerfile", "python3"), TAG)


@pytest.fixture
def hjob(tmp_path: Path, hv_env: dict[str, str], hostile_image: str) -> Job:
    return Job(tmp_path, hv_env, hostile_image)


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A host-only file the container must never make hvinfra read or write."""
    path = tmp_path / "host-only" / "victim.mp4"
    path.parent.mkdir()
    path.write_text("host secret\n")
    before = _hashes(path)
    yield path
    assert _hashes(path) == before, "a host file outside --out changed"


def _hashes(*paths: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _job_processes(client: docker.DockerClient, job: Job) -> list[str]:
    """Processes in the container that carry a job marker (HVINFRA_JOB_ID) or are its sleeps."""
    script = (
        "for d in /proc/[0-9]*; do p=${d#/proc/}; [ $p = $$ ] && continue;"
        " if tr '\\0' '\\n' < $d/environ 2>/dev/null | grep -q ^HVINFRA_JOB_ID=; then"
        " echo $p; fi; done; ps -o pid,args | grep -E 'sleep 100[01]' | grep -v grep; true"
    )
    return job.exec(client, "sh", "-c", script).split("\n")[:-1]


def _out_files(job: Job) -> list[str]:
    return sorted(p.name for p in job.out.iterdir()) if job.out.exists() else []


PASSWD = Path("/etc/passwd")


@pytest.mark.parametrize(
    "deed",
    ["LINK:/etc/passwd", "LINK:{victim}", "DIRLINK:{victim}", "DOTDOT:victim.mp4",
     "ABSOLUTE:{victim}", "FIFO"],
)  # fmt: skip
def test_copy_out_never_follows_links_or_leaves_the_save_folder(
    hjob: Job, victim: Path, docker_client: docker.DockerClient, deed: str
) -> None:
    passwd = _hashes(PASSWD)
    result = hjob.run("t2v", "-p", "HOSTILE_" + deed.format(victim=victim), "--seed", "1")
    assert result.returncode == 14, result.stderr
    assert "refused" in result.stderr or "never followed" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not [n for n in _out_files(hjob) if not n.endswith(".log")]
    assert _hashes(PASSWD) == passwd
    assert _job_processes(docker_client, hjob) == []


def test_links_planted_at_the_names_hvinfra_writes_are_refused_not_followed(
    hjob: Job, victim: Path, docker_client: docker.DockerClient
) -> None:
    hjob.out = hjob.outputs  # --out is the container's outputs folder
    result = hjob.run("t2v", "-p", f"HOSTILE_PLANT:{victim}", "--seed", "1")
    assert result.returncode == 14, result.stderr
    assert "already taken by a symbolic link" in result.stderr
    planted = [p for p in hjob.out.iterdir() if p.is_symlink()]
    assert planted and all(os.readlink(p) == str(victim) for p in planted)
    assert not list(hjob.out.glob(".*.partial"))
    assert _job_processes(docker_client, hjob) == []


def test_generate_warns_about_settings_that_open_the_host_when_it_creates_the_container(
    hjob: Job,
) -> None:
    job = hjob
    job.env["HVINFRA_SECURITY_OPT"] = "[seccomp=unconfined]"
    first = job.run("t2v", "-p", "a cat", "--steps", "1", "--seed", "1", "--set", "cap_add=[CHOWN]")
    assert first.returncode == 0, first.stderr
    assert "SECURITY: cap_add CHOWN (from --set)" in first.stderr
    assert "SECURITY: security_opt seccomp=unconfined (from env:HVINFRA_SECURITY_OPT)" in (
        first.stderr
    )
    again = job.run("t2v", "-p", "a cat", "--steps", "1", "--seed", "2", "--set", "cap_add=[CHOWN]")
    assert again.returncode == 0, again.stderr
    assert "SECURITY:" not in again.stderr  # the container existed: nothing was created


@contextlib.contextmanager
def _tiny_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the full-disk case: {mounted.stderr!r}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize(
    ("deed", "size", "said"),
    [("FLOOD", "256k", "the job was killed"),  # while the log streams
     ("BIG:2048", "512k", "it needs 2.0 MiB")],  # while the video is copied
)  # fmt: skip
def test_a_full_out_names_the_folder_stops_the_job_and_keeps_no_file(
    hjob: Job, tmp_path: Path, docker_client: docker.DockerClient, deed: str, size: str, said: str
) -> None:
    with _tiny_disk(tmp_path / "tiny", size) as tiny:
        hjob.out = tiny
        result = hjob.run("t2v", "-p", f"HOSTILE_{deed}", "--seed", "1")
        assert result.returncode == 14, result.stderr
        assert f"the output folder {tiny} is full" in result.stderr
        assert said in result.stderr
        assert list(tiny.iterdir()) == []
        assert _job_processes(docker_client, hjob) == []


def _start(job: Job, prompt: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    return start_job(job, prompt, *extra, steps=999)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_one_signal_ends_every_job_process_even_those_that_ignore_it(
    hjob: Job, docker_client: docker.DockerClient, sig: signal.Signals
) -> None:
    proc, seen = _start(hjob, "HOSTILE_CHILDREN", "--stop-timeout", "2")
    assert len(_job_processes(docker_client, hjob)) >= 3  # the script, its child, the escapee
    proc.send_signal(sig)
    assert proc.stderr is not None
    stderr = seen + proc.stderr.read()
    assert proc.wait(timeout=60) == 130, stderr
    assert "killed with SIGKILL" in stderr
    assert _job_processes(docker_client, hjob) == []


def test_second_ctrl_c_kills_at_once(hjob: Job, docker_client: docker.DockerClient) -> None:
    proc, seen = _start(hjob, "HOSTILE_CHILDREN", "--stop-timeout", "60")
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    stderr = seen + proc.stderr.read()
    assert proc.wait(timeout=60) == 130, stderr
    assert time.monotonic() - started < 20
    assert "killed with SIGKILL" in stderr
    assert _job_processes(docker_client, hjob) == []


def test_an_orphaned_job_is_refused_then_killed_with_kill_stale(
    hjob: Job, docker_client: docker.DockerClient
) -> None:
    proc, _ = _start(hjob, "HOSTILE_CHILDREN")
    proc.kill()  # hvinfra itself dies: kill -9
    proc.wait(timeout=30)
    assert _job_processes(docker_client, hjob)
    refused = hjob.run("t2v", "-p", "a cat", "--steps", "1", "--seed", "2", "--no-up")
    assert refused.returncode == 6, refused.stderr
    assert "left behind by an hvinfra that is gone" in refused.stderr
    assert "--kill-stale" in refused.stderr
    result = hjob.run("t2v", "-p", "a cat", "--steps", "1", "--seed", "2", "--kill-stale")
    assert result.returncode == 0, result.stderr
    assert "orphaned job" in result.stderr
    assert _job_processes(docker_client, hjob) == []


@pytest.mark.parametrize("how", ["remove", "stop"])
def test_container_gone_under_the_job_is_reported_as_that(
    hjob: Job, docker_client: docker.DockerClient, how: str
) -> None:
    proc, seen = _start(hjob, "STANDIN_SLOW a cat")
    container = docker_client.containers.get(hjob.name)
    if how == "remove":
        container.remove(force=True)
    else:
        container.stop(timeout=1)
    assert proc.stderr is not None
    stderr = seen + proc.stderr.read()
    assert proc.wait(timeout=60) == 6, stderr
    word = "removed" if how == "remove" else "stopped"
    assert f"the container {hjob.name} was {word} while the job ran" in stderr or (
        f"the container {hjob.name} {word} while the job ran" in stderr
    ), stderr
    assert "often the out-of-memory" not in stderr


class OwnDaemon:
    """A daemon of the test's own (stopping the session's would end every other test), with
    the stand-in image; `end()` stops it gracefully or kills dockerd, per the test's param."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.daemon = PrivateDockerd.in_tempdir(gpu_hook=False)
        self.host = self.daemon.start(timeout=60)
        build_standin_image(self.host)
        self.client = docker.DockerClient(base_url=self.host)

    def end(self) -> None:
        self.client.close()
        if self.how == "stop":
            self.daemon.stop()
        else:
            os.kill(int(self.daemon.pid_file.read_text()), signal.SIGKILL)  # dockerd itself


@pytest.fixture(params=["stop", "kill"])
def own_daemon(request: pytest.FixtureRequest) -> Iterator[OwnDaemon]:
    made = OwnDaemon(request.param)
    try:
        yield made
    finally:
        made.daemon.stop()


def test_generate_reports_a_daemon_that_stops_or_dies_under_the_job(
    own_daemon: OwnDaemon, hv_env: dict[str, str], tmp_path: Path
) -> None:
    image = build_fixture_image(
        own_daemon.client, GENERATE_FIXTURE, ("Dockerfile", "python3", "torchrun"),
        "hvinfra-test/generate-standin:latest",
    )  # fmt: skip
    job = Job(tmp_path, dict(hv_env, DOCKER_HOST=own_daemon.host), image)
    job.env["HVINFRA_SKIP_CHECKS"] = "1"  # no NVIDIA hook on this daemon: no GPU request
    proc, seen = start_job(job, "STANDIN_SLOW a cat", "--set", "gpu.devices=none")
    own_daemon.end()
    assert proc.stderr is not None
    stderr = seen + proc.stderr.read()
    code = proc.wait(timeout=90)
    assert "Traceback" not in stderr and "http+docker" not in stderr
    if code == 4:
        assert "lost the Docker daemon while job" in stderr and own_daemon.host in stderr, stderr
    else:  # a graceful stop stops the container first, and may still answer
        assert code == 6 and f"the container {job.name} stopped while the job ran" in stderr


def test_logs_follow_reports_a_daemon_that_stops_or_dies(
    own_daemon: OwnDaemon, hv_env: dict[str, str], tmp_path: Path
) -> None:
    host = own_daemon.host
    own_daemon.client.containers.run(
        "hvinfra-test/hunyuanvideo-standin:latest",
        ["sh", "-c", "while :; do echo tick; sleep 0.2; done"],
        name="hv-ticker", detach=True,
    )  # fmt: skip
    env = dict(hv_env, DOCKER_HOST=host, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [*Job(tmp_path, env, "").argv("t2v")[:3], "logs", "t2v", "--name", "hv-ticker", "-f"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "tick\n"
    own_daemon.end()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert f"the Docker daemon at {host} went away while following the logs" in err
    assert "http+docker" not in err and "Traceback" not in err
