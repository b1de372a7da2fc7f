"""Profiles: packaged files, validation with file/line errors, and the layering order."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvinfra.errors import ExitCode, ProfileError
from hvinfra.profiles import load_profile
from hvinfra.profiles.models import UNLIMITED, Profile
from hvinfra.profiles.sizes import format_size, parse_size

FIXTURES = Path(__file__).parent.parent / "fixtures" / "profiles"
NO_ENV: dict[str, str] = {"HOME": "/home/tester"}


def test_packaged_t2v_matches_the_official_run_line() -> None:
    profile = load_profile("t2v", env=NO_ENV).profile
    assert profile.image == "hunyuanvideo/hunyuanvideo:cuda_12"
    assert profile.container_name == "hunyuanvideo"
    assert (profile.network_mode, profile.uts_mode, profile.ipc_mode) == ("host", "host", "host")
    assert profile.init and profile.tty and profile.stdin_open
    assert profile.ulimits["stack"].soft == profile.ulimits["stack"].hard == 67108864
    assert profile.ulimits["memlock"].soft == profile.ulimits["memlock"].hard == UNLIMITED
    assert profile.gpu.devices == "all"
    assert profile.privileged is False
    assert "seccomp=unconfined" not in profile.security_opt


def test_packaged_i2v_names_its_own_image_and_container() -> None:
    profile = load_profile("i2v", env=NO_ENV).profile
    assert profile.image == "hunyuanvideo/hunyuanvideo-i2v:cuda12"
    assert profile.container_name == "hunyuanvideo-i2v"


def test_host_paths_expand_home() -> None:
    profile = load_profile("t2v", env=NO_ENV).profile
    assert all(not v.host.startswith("~") for v in profile.volumes.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64m", 67108864), ("16g", 16 * 1024**3), ("512k", 524288), (1024, 1024), ("1.5g", 1610612736),
     ("8MiB", 8 * 1024**2)],
)  # fmt: skip
def test_sizes_accept_docker_units(text: object, expected: int) -> None:
    assert parse_size(text) == expected


def test_format_size_is_the_inverse_for_round_units() -> None:
    assert format_size(67108864) == "64m"
    assert format_size(-1) == "-1"


def test_unknown_key_error_names_file_line_and_key() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(str(FIXTURES / "bad-key.yaml"), env=NO_ENV)
    message = caught.value.message
    assert f"{FIXTURES / 'bad-key.yaml'}:5:" in message
    assert "ulimits.memlok" in message
    assert "unknown key" in message
    assert caught.value.exit_code == ExitCode.PROFILE


def test_bad_value_error_names_file_line_and_key() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(str(FIXTURES / "bad-type.yaml"), env=NO_ENV)
    assert f"{FIXTURES / 'bad-type.yaml'}:5:" in caught.value.message
    assert "gpu.devices" in caught.value.message
    assert "banana" in caught.value.message


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(str(FIXTURES / "bad-yaml.yaml"), env=NO_ENV)
    assert f"{FIXTURES / 'bad-yaml.yaml'}:4:" in caught.value.message
    assert "invalid YAML" in caught.value.message


def test_standalone_file_needs_no_base() -> None:
    profile = load_profile(str(FIXTURES / "standalone.yaml"), env=NO_ENV).profile
    assert profile.name == "standalone"
    assert profile.ulimits["nofile"].soft == 1024
    assert profile.ulimits["nofile"].hard == 4096
    assert profile.gpu.devices == "none"
    assert profile.command == ["sleep", "3600"]


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile("t3v", env=NO_ENV)
    assert "t2v" in caught.value.message and "i2v" in caught.value.message


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_layers_apply_lowest_first(tmp_path: Path) -> None:
    """packaged < user dir < --profile < HVINFRA_* < --set < flags, each visible in sources."""
    config_home = tmp_path / "config"
    _write(config_home / "hvinfra/profiles/t2v.yaml", "image: user/image:1\nshm_size: 1g\n")
    extra = _write(tmp_path / "extra.yaml", "image: file/image:2\ncontainer_name: from-file\n")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(config_home),
           "HVINFRA_IMAGE": "env/image:3", "HVINFRA_GPU__DEVICES": "0,1"}  # fmt: skip
    loaded = load_profile(
        "t2v", profile_file=extra, env=env, sets=["image=set/image:4", "gpu.devices=2"],
        flags={"image": "flag/image:5"},
    )  # fmt: skip
    profile = loaded.profile
    assert profile.image == "flag/image:5"
    assert profile.shm_size == 1024**3  # from the user layer, untouched above it
    assert profile.container_name == "from-file"
    assert profile.gpu.devices == ["2"]  # --set beats HVINFRA_GPU__DEVICES
    assert loaded.sources["image"] == "flags"
    assert loaded.sources["gpu.devices"] == "--set"
    assert loaded.sources["shm_size"].startswith("user:")
    assert loaded.sources["container_name"].startswith("file:")
    assert loaded.sources["init"].startswith("packaged:")


def test_env_layer_beats_profile_file(tmp_path: Path) -> None:
    extra = _write(tmp_path / "extra.yaml", "image: file/image:2\n")
    env = {"HOME": str(tmp_path), "HVINFRA_IMAGE": "env/image:3", "HVINFRA_DEBUG": "1"}
    loaded = load_profile("t2v", profile_file=extra, env=env)
    assert loaded.profile.image == "env/image:3"
    assert loaded.sources["image"] == "env:HVINFRA_IMAGE"  # HVINFRA_DEBUG is not a profile key


def test_set_parses_values_as_yaml() -> None:
    profile = load_profile(
        "t2v", env=NO_ENV, sets=["privileged=true", "ulimits.memlock=8m", "gpu.devices=[0, 3]"]
    ).profile
    assert profile.privileged is True
    assert profile.ulimits["memlock"].hard == 8 * 1024**2
    assert profile.gpu.devices == ["0", "3"]


def test_set_without_equals_is_a_profile_error() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile("t2v", env=NO_ENV, sets=["image"])
    assert "key.path=value" in caught.value.message


def test_set_error_points_at_the_set_layer() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile("t2v", env=NO_ENV, sets=["ulimits.stack=lots"])
    assert "--set: ulimits.stack" in caught.value.message


@pytest.mark.parametrize(
    ("devices", "expected"),
    [("all", "all"), ("none", "none"), ("0,1", ["0", "1"]), (3, ["3"]),
     ("GPU-8f0c5d2a-1111-2222-3333-444455556666", ["GPU-8f0c5d2a-1111-2222-3333-444455556666"]),
     ('"device=0,2"', ["0", "2"])],
)  # fmt: skip
def test_gpu_selection_forms(devices: object, expected: object) -> None:
    profile = Profile.model_validate(
        {"name": "x", "image": "i", "container_name": "c", "gpu": {"devices": devices}}
    )
    assert profile.gpu.devices == expected


@pytest.mark.parametrize("devices", ["0,0", "", "gpu0", [], True])
def test_gpu_selection_rejects_nonsense(devices: object) -> None:
    with pytest.raises(ValueError):
        Profile.model_validate(
            {"name": "x", "image": "i", "container_name": "c", "gpu": {"devices": devices}}
        )


def test_soft_limit_above_hard_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds hard"):
        Profile.model_validate(
            {"name": "x", "image": "i", "container_name": "c",
             "ulimits": {"stack": {"soft": "128m", "hard": "64m"}}}
        )  # fmt: skip


def test_command_must_be_argv_not_a_shell_string() -> None:
    with pytest.raises(ValueError, match="list of arguments"):
        Profile.model_validate(
            {"name": "x", "image": "i", "container_name": "c", "command": "sleep 1"}
        )


def test_host_paths_follow_xdg_data_home() -> None:
    env = {"HOME": "/home/tester", "XDG_DATA_HOME": "/data/xdg"}
    profile = load_profile("t2v", env=env).profile
    assert profile.volumes["weights"].host == "/data/xdg/hvinfra/t2v/ckpts"
    fallback = load_profile("t2v", env={"HOME": "/home/tester"}).profile
    assert fallback.volumes["weights"].host == "/home/tester/.local/share/hvinfra/t2v/ckpts"
