"""`hvinfra generate` at the CLI edge: --dry-run output, exit codes, checks before the engine."""

from __future__ import annotations

import io
import json
import shlex
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_generate_plan import official_parser

from hvinfra.cli import main
from hvinfra.errors import ExitCode
from hvinfra.generate.plan import JobPlan, XditPlan
from hvinfra.generate.run import copy_out


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def test_done_when_dry_run_line_parses_with_video_size_1280_720(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["generate", "t2v", "--prompt", "a cat walks on the grass", "--resolution",
                 "720p", "--aspect", "9:16", "--dry-run"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    commands = [line for line in lines if not line.startswith("#")]
    argv = shlex.split(commands[0])
    assert argv[:2] == ["python3", "sample_video.py"]
    args = official_parser().parse_args(argv[2:])
    assert args.video_size == [1280, 720]
    assert args.prompt == "a cat walks on the grass"
    assert args.flow_reverse
    docker_exec = shlex.split(commands[1])
    assert docker_exec[:5] == ["docker", "exec", "--workdir", "/workspace/HunyuanVideo",
                               "hunyuanvideo"]  # fmt: skip
    assert docker_exec[5:] == argv
    assert any(line.startswith("# exec in container hunyuanvideo") for line in lines)


def test_dry_run_json_has_argv_exec_spec_and_output_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["generate", "i2v", "-i", "cat.png", "-p", "x", "--gpus", "0,1", "--seed", "4",
                 "--dry-run", "--json", "--out", "/videos"])  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["argv"][:2] == ["torchrun", "--nproc_per_node=2"]
    assert payload["exec"]["env"] == {"ALLOW_RESIZE_FOR_SP": "1"}
    assert payload["exec"]["container"] == "hunyuanvideo-i2v"
    assert payload["exec"]["workdir"] == "/workspace/HunyuanVideo-I2V"
    assert payload["xdit"] == {"nproc_per_node": 2, "ulysses_degree": 2, "ring_degree": 1}
    assert payload["output"]["video"] == "/videos/i2v_x_seed4_720p.mp4"
    assert payload["request"]["mode"] == "stability"


def test_invalid_frames_is_a_usage_error_naming_the_nearest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["generate", "t2v", "-p", "x", "--frames", "128", "--dry-run"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--frames: 128 frames" in err and "nearest valid: 129" in err
    assert "Traceback" not in err


def test_invalid_xdit_request_lists_the_valid_gpu_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["generate", "t2v", "-p", "x", "--resolution", "540p", "--aspect", "1:1",
                 "--gpus", "0,1", "--dry-run"])  # fmt: skip
    assert code == ExitCode.USAGE
    assert "allows 3, 5 GPUs" in capsys.readouterr().err


def test_stability_and_dynamic_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "i2v", "-i", "a.png", "-p", "x", "--stability", "--dynamic",
                 "--dry-run"])  # fmt: skip
    assert code == ExitCode.USAGE


def test_a_prompt_whose_official_file_name_is_too_long_is_refused_before_docker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["generate", "t2v", "-p", "猫" * 120, "--out", str(tmp_path / "o")])
    assert code == ExitCode.PREFLIGHT
    err = capsys.readouterr().err
    assert "255-byte" in err and "cannot reach" not in err


def test_a_missing_i2v_image_is_refused_before_docker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["generate", "i2v", "-i", str(tmp_path / "nope.png"), "-p", "x"])
    assert code == ExitCode.PREFLIGHT
    assert "no such file" in capsys.readouterr().err


class ArchiveOnlyEngine:
    """Serves get_archive only: the outputs folder is not visible on this host."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.asked: list[str] = []

    def get_archive(self, container_id: str, path: str) -> Iterator[bytes]:
        self.asked.append(path)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in self.files.items():
                if name.startswith(path):
                    info = tarfile.TarInfo("../../evil/" + Path(name).name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        yield from (buffer.getvalue()[i : i + 100] for i in range(0, len(buffer.getvalue()), 100))


def test_copy_out_falls_back_to_get_archive_and_writes_only_the_chosen_path(
    tmp_path: Path,
) -> None:
    plan = JobPlan(
        job_id="j", kind="t2v", container="c", workdir="/w", argv=("python3",), env=(),
        save_dir="/out/j", save_dir_host=str(tmp_path / "missing"), output_stem="s",
        xdit=XditPlan(1, 1, 1),
    )  # fmt: skip
    engine = ArchiveOnlyEngine({"/out/j/x.mp4": b"VIDEO"})
    dest = tmp_path / "s.mp4"
    assert copy_out(engine, "cid", plan, ["/out/j/x.mp4"], dest) == "/out/j/x.mp4"  # type: ignore[arg-type]
    assert dest.read_bytes() == b"VIDEO"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]
