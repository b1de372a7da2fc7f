"""Profile -> RunSpec -> docker-py kwargs and `docker run` argv: the two renderings agree."""

from __future__ import annotations

import shlex

from docker.types import DeviceRequest, Ulimit

from hvinfra.argv import docker_run_argv, gpus_flag_value, shell_line
from hvinfra.engine import to_create_kwargs
from hvinfra.profiles import load_profile
from hvinfra.spec import LABEL_MANAGED, LABEL_PROFILE, LABEL_SPEC_HASH, build_run_spec

ENV = {"HOME": "/home/tester"}


def _spec(*sets: str) -> object:
    return build_run_spec(load_profile("t2v", env=ENV, sets=list(sets)).profile)


def test_default_spec_is_least_privilege() -> None:
    spec = build_run_spec(load_profile("t2v", env=ENV).profile)
    assert spec.privileged is False
    assert "seccomp=unconfined" not in spec.security_opt
    assert "no-new-privileges:true" in spec.security_opt


def test_privileged_turns_on_exactly_the_official_pair() -> None:
    spec = build_run_spec(load_profile("t2v", env=ENV, sets=["privileged=true"]).profile)
    assert spec.privileged is True
    assert spec.security_opt == ("seccomp=unconfined",)


def test_create_kwargs_use_docker_types() -> None:
    spec = build_run_spec(load_profile("t2v", env=ENV).profile)
    kwargs = to_create_kwargs(spec)
    assert kwargs["network_mode"] == kwargs["uts_mode"] == kwargs["ipc_mode"] == "host"
    assert kwargs["init"] is True and kwargs["tty"] is True and kwargs["stdin_open"] is True
    assert kwargs["detach"] is True
    ulimits = {u.name: u for u in kwargs["ulimits"]}
    assert isinstance(ulimits["stack"], Ulimit)
    assert (ulimits["stack"].soft, ulimits["stack"].hard) == (67108864, 67108864)
    assert (ulimits["memlock"].soft, ulimits["memlock"].hard) == (-1, -1)
    (request,) = kwargs["device_requests"]
    assert isinstance(request, DeviceRequest)
    assert request.count == -1 and request.capabilities == [["gpu"]]
    assert kwargs["labels"][LABEL_MANAGED] == "true"
    assert kwargs["labels"][LABEL_PROFILE] == "t2v"
    assert (
        "/home/tester/.local/share/hvinfra/t2v/ckpts:/workspace/HunyuanVideo/ckpts:ro"
        in (kwargs["volumes"])
    )


def test_selected_gpus_become_device_ids() -> None:
    spec = build_run_spec(load_profile("t2v", env=ENV, sets=["gpu.devices=1,3"]).profile)
    (request,) = to_create_kwargs(spec)["device_requests"]
    assert request.device_ids == ["1", "3"] and request.count == 0
    assert gpus_flag_value(spec) == '"device=1,3"'


def test_no_gpus_means_no_device_request() -> None:
    spec = build_run_spec(load_profile("t2v", env=ENV, sets=["gpu.devices=none"]).profile)
    assert "device_requests" not in to_create_kwargs(spec)
    assert "--gpus" not in docker_run_argv(spec)


def test_argv_carries_every_setting_of_the_official_line() -> None:
    argv = docker_run_argv(build_run_spec(load_profile("t2v", env=ENV).profile))
    line = " ".join(argv)
    for flag in ("--detach", "--interactive", "--tty", "--init", "--network host", "--uts host",
                 "--ipc host", "--ulimit stack=67108864:67108864", "--ulimit memlock=-1:-1",
                 "--gpus all", "--name hunyuanvideo"):  # fmt: skip
        assert flag in line
    assert argv[-1] == "hunyuanvideo/hunyuanvideo:cuda_12"


def test_shell_line_round_trips_through_shlex() -> None:
    spec = build_run_spec(
        load_profile("t2v", env=ENV, sets=["gpu.devices=0,1", "environment.NOTE=a b 'c'"]).profile
    )
    argv = docker_run_argv(spec)
    assert shlex.split(shell_line(argv)) == argv


def test_secrets_are_redacted_in_the_printed_line() -> None:
    spec = build_run_spec(
        load_profile("t2v", env=ENV, sets=["environment.HF_TOKEN=hf_secret"]).profile
    )
    assert "hf_secret" not in shell_line(docker_run_argv(spec))
    assert "HF_TOKEN=hf_secret" in to_create_kwargs(spec)["environment"]


def test_spec_hash_changes_with_the_profile() -> None:
    one = build_run_spec(load_profile("t2v", env=ENV).profile).label_map[LABEL_SPEC_HASH]
    same = build_run_spec(load_profile("t2v", env=ENV).profile).label_map[LABEL_SPEC_HASH]
    other = build_run_spec(load_profile("t2v", env=ENV, sets=["shm_size=1g"]).profile)
    assert one == same != other.label_map[LABEL_SPEC_HASH]
