"""`hvinfra render compose|k8s|slurm`: what a user gets is valid for the engine's own schema
(the Compose Specification's JSON schema, the Kubernetes OpenAPI schemas through
kubernetes-validate, strict) and carries the profile's spec: GPUs, IPC, limits, security."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from hvinfra import __version__
from hvinfra.cli import main
from hvinfra.errors import ExitCode

SCHEMA = Path(__file__).parents[1] / "fixtures" / "compose-spec" / "compose-spec.json"
K8S_VERSION = kubernetes_validate.latest_version()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # no engine needed
    for name in ("HVINFRA_IMAGE", "HVINFRA_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def render(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["render", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def assert_valid_compose(document: dict[str, Any]) -> None:
    """The schema says draft-07 by a URL jsonschema does not know; validate as draft-07."""
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(document)


def k8s_objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def assert_valid_k8s(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = obj["spec"]["template"]["spec"]
    return pod


@pytest.fixture
def batch_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "a cat walks on grass\n"
        '{"prompt": "a dog runs", "seed": 7, "frames": 33}\n'
        "# a comment, skipped\n\n"
        '{"prompt": "sunset over the sea", "resolution": "540p"}\n'
        '{"prompt": "rain on a window", "steps": 30}\n'
    )
    return path


# -- compose ------------------------------------------------------------------------------------
def test_compose_file_follows_the_compose_specification_and_up_s_spec(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = render(capsys, "compose", "t2v")
    assert text.startswith(f"# Rendered by hvinfra {__version__} from profile 't2v' (compose).")
    document = yaml.safe_load(text)
    assert_valid_compose(document)
    service = document["services"]["t2v"]
    assert service["image"] == "hunyuanvideo/hunyuanvideo:cuda_12"
    assert (service["network_mode"], service["uts"], service["ipc"]) == ("host", "host", "host")
    assert service["init"] is True and service["tty"] is True and service["stdin_open"] is True
    assert service["ulimits"] == {"memlock": -1, "stack": 67108864}
    gpu = service["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"capabilities": ["gpu"], "count": "all"}]
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert "privileged" not in service
    assert service["labels"]["io.hvinfra.profile"] == "t2v"
    assert any(v.endswith(":/workspace/HunyuanVideo/ckpts:ro") for v in service["volumes"])


def test_compose_json_is_the_same_document_and_valid(capsys: pytest.CaptureFixture[str]) -> None:
    as_yaml = yaml.safe_load(render(capsys, "compose", "i2v", "--set", "gpu.devices=0,1"))
    as_json = json.loads(render(capsys, "compose", "i2v", "--set", "gpu.devices=0,1", "--json"))
    assert as_json == as_yaml
    assert_valid_compose(as_json)
    (device,) = as_json["services"]["i2v"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"capabilities": ["gpu"], "device_ids": ["0", "1"]}
    assert as_json["x-hvinfra"] == {"version": __version__, "profile": "i2v"}


def test_compose_privileged_and_pinned_digest(capsys: pytest.CaptureFixture[str]) -> None:
    digest = "sha256:" + "a" * 64
    sets = ["--set", "privileged=true", "--set", f"image_digest={digest}"]
    service = yaml.safe_load(render(capsys, "compose", "t2v", *sets))["services"]["t2v"]
    assert service["image"] == f"hunyuanvideo/hunyuanvideo@{digest}"
    assert service["privileged"] is True
    assert service["security_opt"] == ["seccomp=unconfined"]


def test_compose_secret_variables_come_from_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = render(capsys, "compose", "t2v", "--set", "environment.HF_TOKEN=hf_secret")
    assert "hf_secret" not in text
    assert yaml.safe_load(text)["services"]["t2v"]["environment"]["HF_TOKEN"] == "${HF_TOKEN}"


def test_the_old_compose_copy_lacks_only_uts() -> None:
    from hvinfra.profiles import load_profile
    from hvinfra.render.compose import compose_document, v1_compatible
    from hvinfra.spec import build_run_spec

    document = compose_document(build_run_spec(load_profile("t2v").profile), "t2v")
    assert "uts" not in v1_compatible(document)["services"]["t2v"]
    assert v1_compatible(document)["services"]["t2v"]["ipc"] == "host"


# -- Kubernetes ---------------------------------------------------------------------------------
def test_k8s_deployment_is_strictly_valid_and_hardened(capsys: pytest.CaptureFixture[str]) -> None:
    text = render(capsys, "k8s", "t2v")
    assert text.startswith(f"# Rendered by hvinfra {__version__} from profile 't2v' (k8s).")
    assert "LimitMEMLOCK=infinity" in text  # the ulimits note, in a comment
    (deployment,) = k8s_objects(text)
    assert_valid_k8s([deployment])
    assert deployment["kind"] == "Deployment"
    pod = pod_of(deployment)
    (container,) = pod["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert container["tty"] is True and container["stdin"] is True
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostIPC" not in pod and "hostNetwork" not in pod
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    weights = next(m for m in container["volumeMounts"] if m["name"] == "hv-weights")
    assert weights["readOnly"] is True
    assert "memlock/stack" in deployment["metadata"]["annotations"]["hvinfra.io/ulimits"]


def test_k8s_host_ipc_pvc_and_scheduling_from_options_and_profile(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sets = [
        "--set", "kubernetes.node_selector.gpu-type=h200",
        "--set", "kubernetes.runtime_class=nvidia",
    ]  # fmt: skip
    args = ["k8s", "t2v", "--host-ipc", "--storage", "pvc", "--claim", "hv-data", "--gpus", "2"]
    text = render(capsys, *args, *sets)
    (deployment,) = k8s_objects(text)
    assert_valid_k8s([deployment])
    pod = pod_of(deployment)
    assert pod["hostIPC"] is True
    assert all(v["name"] != "dshm" for v in pod["volumes"])
    assert {"name": "hv-data", "persistentVolumeClaim": {"claimName": "hv-data"}} in pod["volumes"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/workspace/HunyuanVideo/ckpts"]["subPath"] == "weights"
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 2}
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"gpu-type": "h200"}


def test_k8s_tolerations_from_a_profile_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    layer = tmp_path / "cluster.yaml"
    layer.write_text(
        "kubernetes:\n  namespace: video\n  tolerations:\n"
        "    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n"
    )
    (deployment,) = k8s_objects(render(capsys, "k8s", "t2v", "--profile", str(layer)))
    assert_valid_k8s([deployment])
    assert deployment["metadata"]["namespace"] == "video"
    assert pod_of(deployment)["tolerations"] == [
        {"operator": "Exists", "key": "nvidia.com/gpu", "effect": "NoSchedule"}
    ]


def test_k8s_job_runs_one_generation_as_an_argv_list(capsys: pytest.CaptureFixture[str]) -> None:
    text = render(capsys, "k8s", "t2v", "--prompt", "a cat's walk", "--seed", "42", "--gpus", "2")
    (job,) = k8s_objects(text)
    assert_valid_k8s([job])
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0
    pod = pod_of(job)
    assert pod["restartPolicy"] == "Never"
    command = pod["containers"][0]["command"]
    assert command[:3] == ["torchrun", "--nproc_per_node=2", "sample_video.py"]
    assert "--prompt=a cat's walk" in command
    assert command[command.index("--seed") + 1] == "42"
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 2}


def test_k8s_indexed_job_splits_a_batch_file_across_pods(
    capsys: pytest.CaptureFixture[str], batch_file: Path
) -> None:
    text = render(capsys, "k8s", "t2v", "--batch", str(batch_file), "--shards", "2")
    config_map, job = k8s_objects(text)
    assert_valid_k8s([config_map, job])
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == 2
    command = pod_of(job)["containers"][0]["command"]
    assert "$JOB_COMPLETION_INDEX" in command[-1]
    scripts = config_map["data"]
    assert sorted(scripts) == ["shard-0.sh", "shard-1.sh"]
    # Shard I takes every 2nd line from I: lines 1 and 5 / 2 and 6 of the file.
    assert "a cat walks" in scripts["shard-0.sh"] and "sunset" in scripts["shard-0.sh"]
    assert "a dog runs" in scripts["shard-1.sh"] and "rain on" in scripts["shard-1.sh"]
    for script in scripts.values():
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    second = [shlex.split(line) for line in scripts["shard-1.sh"].splitlines() if "python3" in line]
    assert "--seed" in second[0] and second[0][second[0].index("--seed") + 1] == "7"
    assert second[0][second[0].index("--video-length") + 1] == "33"


def test_k8s_batch_without_shards_is_one_pod_per_line_and_json_is_a_list(
    capsys: pytest.CaptureFixture[str], batch_file: Path
) -> None:
    payload = json.loads(render(capsys, "k8s", "t2v", "--batch", str(batch_file), "--json"))
    assert payload["kind"] == "List"
    config_map, job = payload["items"]
    assert_valid_k8s([config_map, job])
    assert job["spec"]["completions"] == 4 and len(config_map["data"]) == 4


def test_k8s_check_runs_kubernetes_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "k8s", "t2v", "--check"]) == 0
    assert f"pass the Kubernetes {K8S_VERSION} schemas (strict, offline)" in capsys.readouterr().err


# -- Slurm --------------------------------------------------------------------------------------
def test_slurm_array_runs_hvinfra_generate_per_line_with_slurm_s_gpus(
    capsys: pytest.CaptureFixture[str], batch_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "job.sbatch"
    sets = ["--set", "slurm.max_parallel=2", "--set", "slurm.partition=gpu"]
    assert main(["render", "slurm", "t2v", "--batch", str(batch_file), "-o", str(out), *sets]) == 0
    script = out.read_text()
    assert script.startswith("#!/bin/bash\n# Rendered by hvinfra")
    assert out.stat().st_mode & 0o111
    directives = [x.split(" ", 1)[1] for x in script.splitlines() if x.startswith("#SBATCH")]
    assert "--array=0-3%2" in directives and "--gres=gpu:1" in directives
    assert "--partition=gpu" in directives
    assert "--output=slurm-logs/%x-%A_%a.log" in directives
    assert 'GPUS="${SLURM_JOB_GPUS:-' in script
    generate = [line for line in script.splitlines() if '" generate t2v ' in line]
    assert len(generate) == 4
    assert all('--gpus "$GPUS" --out "$OUT"' in line for line in generate)
    assert "--prompt 'a dog runs' --frames 33 --seed 7" in generate[1]
    subprocess.run(["bash", "-n", str(out)], check=True)


def test_slurm_shards_call_hvinfra_batch_with_shard(
    capsys: pytest.CaptureFixture[str], batch_file: Path
) -> None:
    script = render(capsys, "slurm", "t2v", "--batch", str(batch_file), "--shards", "3")
    assert "#SBATCH --array=0-2" in script
    assert f'batch t2v "${{PROFILE_ARGS[@]}}" {batch_file} --shard "$TASK/3"' in script


def test_slurm_pyxis_runs_the_sample_script_in_srun_container_image(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = render(
        capsys, "slurm", "t2v", "--prompt", "a cat", "--runtime", "pyxis", "--gpus", "2",
        "--set", "slurm.gpu_flag=gpus",
    )  # fmt: skip
    assert "#SBATCH --gpus=2" in script and "--array" not in script
    srun = shlex.split(next(line for line in script.splitlines() if "srun " in line))
    assert srun[0] == "srun"
    assert srun[1] == "--container-image=hunyuanvideo/hunyuanvideo:cuda_12"
    assert any(a.startswith("--container-mounts=") and ":ro" in a for a in srun)
    assert "torchrun" in srun and "--nproc_per_node=2" in srun
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_pyxis_image_names_the_registry_with_a_hash() -> None:
    from hvinfra.render.slurm import pyxis_image

    assert pyxis_image("nvcr.io/nvidia/pytorch:24.01") == "nvcr.io#nvidia/pytorch:24.01"
    assert pyxis_image("hunyuanvideo/hunyuanvideo:cuda_12") == "hunyuanvideo/hunyuanvideo:cuda_12"


# -- errors -------------------------------------------------------------------------------------
def test_a_bad_batch_line_is_named_and_nothing_renders(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('a cat\n{"prompt": "x", "frames": 30}\n')
    assert main(["render", "slurm", "t2v", "--batch", str(path)]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}:2" in captured.err and "--frames" in captured.err
    assert "nearest valid: 29" in captured.err


def test_an_unknown_line_option_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "x", "gpus": "all"}\n')
    assert main(["render", "k8s", "t2v", "--batch", str(path)]) == ExitCode.USAGE
    assert f"{path}:1: unknown field 'gpus' (a line takes:" in capsys.readouterr().err


def test_a_csv_batch_file_is_read_as_hvinfra_batch_reads_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The header is not a job, and CSV values reach the per-line commands."""
    path = tmp_path / "shots.csv"
    path.write_text('prompt,frames,cpu-offload\na cat,33,true\n"a dog, running",65,\n')
    out = tmp_path / "job.sbatch"
    assert main(["render", "slurm", "t2v", "--batch", str(path), "-o", str(out)]) == 0
    generate = [line for line in out.read_text().splitlines() if '" generate t2v ' in line]
    assert len(generate) == 2
    assert "--prompt 'a cat' --frames 33" in generate[0] and "--cpu-offload" in generate[0]
    assert "--prompt 'a dog, running' --frames 65" in generate[1]
    assert "--cpu-offload" not in generate[1]


def test_slurm_needs_a_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "slurm", "t2v"]) == ExitCode.USAGE
    assert "give --prompt or --batch" in capsys.readouterr().err


def test_k8s_i2v_reads_the_image_from_a_mounted_folder_or_says_where_to_put_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outputs = tmp_path / "outs"
    (outputs / "in").mkdir(parents=True)
    image = outputs / "in" / "cat.png"
    image.write_bytes(b"png")
    base = ["k8s", "i2v", "--set", f"volumes.outputs.host={outputs}"]
    path = tmp_path / "lines.jsonl"
    path.write_text(json.dumps({"prompt": "the cat moves", "image": str(image)}) + "\n")
    config_map, job = k8s_objects(render(capsys, *base, "--batch", str(path)))
    assert_valid_k8s([config_map, job])
    assert "--i2v-image-path=/workspace/outputs/in/cat.png" in config_map["data"]["shard-0.sh"]

    elsewhere = tmp_path / "dog.png"
    elsewhere.write_bytes(b"png")
    path.write_text(json.dumps({"prompt": "the dog moves", "image": str(elsewhere)}) + "\n")
    assert main(["render", *base, "--batch", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"line 1: {elsewhere} is not in a folder the profile mounts" in err


def test_shards_need_a_batch_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "k8s", "t2v", "--prompt", "x", "--shards", "2"]) == ExitCode.USAGE
    assert "--shards splits a --batch file" in capsys.readouterr().err
