"""`hvinfra render slurm` run for real: a one-node Slurm cluster (tests/engine/slurm_cluster.py:
munged, slurmctld, slurmd on 127.0.0.1, two stand-in GPUs as a gres) runs the rendered job
array of a small batch file; every task runs `hvinfra generate` against the test Docker engine
with the generate stand-in image (tests/fixtures/generate-standin) on the GPU Slurm gave it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import test_generate
from conftest import in_ci
from slurm_cluster import SlurmCluster, SlurmError, missing_binaries
from test_generate import Job

from hvinfra.cli import main

pytestmark = pytest.mark.timeout(300)
# generate's fixtures: the stand-in image and a Job with a tiny code checkout and weights.
generate_image = test_generate.generate_image
job = test_generate.job


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = missing_binaries()
    if missing or os.geteuid() != 0:
        why = f"missing {missing}" if missing else "not root (slurmd runs jobs as their user)"
        if in_ci():
            pytest.fail(f"CI=true and no Slurm for the Slurm tests: {why}", pytrace=False)
        pytest.skip(f"no Slurm here: {why} (apt: slurm-wlm munge)")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), gpus=2)
    try:
        cluster.start()
    except SlurmError as exc:
        cluster.stop()
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.stop()


def test_a_batch_runs_as_a_slurm_job_array_one_video_per_line_on_slurm_s_gpus(
    slurm: SlurmCluster, job: Job, docker_client: docker.DockerClient, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    batch = tmp_path / "prompts.jsonl"
    batch.write_text(
        '{"prompt": "a cat walks on grass", "seed": 1, "steps": 3}\n'
        '{"prompt": "a dog runs on the beach", "seed": 2, "steps": 3}\n'
        '{"prompt": "rain on a window", "seed": 3, "steps": 3, "resolution": "540p"}\n'
    )
    generate = job.argv("t2v", "--prompt", "x")
    sets = [arg for i, arg in enumerate(generate) if i and generate[i - 1] == "--set"]
    hvinfra = str(Path(sys.executable).parent / "hvinfra")
    set_args = [a for item in sets for a in ("--set", item)]
    script = tmp_path / "job.sbatch"
    assert (
        main([
            "render", "slurm", "t2v", "--batch", str(batch), "-o", str(script), *set_args,
            "--set", f"slurm.hvinfra={hvinfra}", "--set", "slurm.max_parallel=2",
            "--set", "slurm.time=00:05:00",
        ])
        == 0
    )  # fmt: skip
    capsys.readouterr()
    (tmp_path / "slurm-logs").mkdir()
    # sbatch exports this environment (DOCKER_HOST, PATH, XDG_*, PYTHONPATH) to the tasks.
    submitted = slurm.run("sbatch", "--parsable", f"--chdir={tmp_path}", str(script), env=job.env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    states = slurm.wait_job(job_id, timeout=240)
    logs = {p.name: p.read_text() for p in (tmp_path / "slurm-logs").iterdir()}
    assert states == {"0": "COMPLETED", "1": "COMPLETED", "2": "COMPLETED"}, (states, logs)
    assert sorted(logs) == [f"hv-t2v-{job_id}_{i}.log" for i in range(3)]

    sidecars = {}
    for task in range(3):
        out = tmp_path / "outputs" / job_id / f"task-{task}"
        (video,) = out.glob("*.mp4")
        (sidecar,) = out.glob("*.json")
        data = json.loads(sidecar.read_text())
        assert video.read_text() == f"STANDIN MP4 seed={task + 1}\n"
        sidecars[task] = data
    assert sidecars[2]["effective"]["video_size"] == {"height": 544, "width": 960}
    # Two tasks at once on two GPUs: each ran on the GPU Slurm assigned it, in its own container.
    gpus = {task: tuple(data["gpus"]["requested"]) for task, data in sidecars.items()}
    assert set(gpus.values()) == {("0",), ("1",)}
    assert gpus[0] != gpus[1]  # started together (%2): one GPU each
    assert {data["gpus"]["container"] for data in sidecars.values()} <= {"0", "1"}
    for task, data in sidecars.items():
        assert data["gpus"]["container"] == ",".join(gpus[task])
    assert len({data["container"]["name"] for data in sidecars.values()}) == 3
    # ...and each task removed its container when it ended.
    names = {c.name for c in docker_client.containers.list(all=True)}
    assert not names & {data["container"]["name"] for data in sidecars.values()}


def test_sharded_array_calls_hvinfra_batch_once_per_shard(
    slurm: SlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--shards N`: task I runs `hvinfra batch … --shard I/N` on its GPUs. `hvinfra batch` is
    another command's work; here a stand-in (a TEST FIXTURE script) records how it is called."""
    calls = tmp_path / "calls"
    calls.mkdir()
    standin = tmp_path / "hvinfra-standin"
    standin.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "' + str(calls) + '/$SLURM_ARRAY_TASK_ID-$1"\n'
    )
    standin.chmod(0o755)
    batch = tmp_path / "prompts.txt"
    batch.write_text("".join(f"prompt {i}\n" for i in range(5)))
    script = tmp_path / "job.sbatch"
    args = ["render", "slurm", "t2v", "--batch", str(batch), "--shards", "2", "-o", str(script)]
    assert main([*args, "--set", f"slurm.hvinfra={standin}", "--set", "slurm.time=1"]) == 0
    capsys.readouterr()
    (tmp_path / "slurm-logs").mkdir()
    submitted = slurm.run("sbatch", "--parsable", f"--chdir={tmp_path}", str(script))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    assert slurm.wait_job(job_id, timeout=60) == {"0": "COMPLETED", "1": "COMPLETED"}
    assert sorted(p.name for p in calls.iterdir()) == ["0-batch", "0-down", "1-batch", "1-down"]
    gpus = set()
    for task in (0, 1):
        argv = (calls / f"{task}-batch").read_text().splitlines()
        assert argv[:2] == ["batch", "t2v"]
        assert argv[argv.index(str(batch)) + 1 : argv.index(str(batch)) + 3] == [
            "--shard", f"{task}/2",
        ]  # fmt: skip
        assert argv[argv.index("--out") + 1] == f"outputs/{job_id}/task-{task}"
        gpus.add(argv[argv.index("--gpus") + 1])
        down = (calls / f"{task}-down").read_text().splitlines()
        assert down[:2] == ["down", "t2v"]
        assert "container_name=hunyuanvideo-slurm-" in down[-1]
    assert gpus == {"0", "1"}
