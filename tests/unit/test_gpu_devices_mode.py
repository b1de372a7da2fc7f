"""gpu.mode `devices`: device nodes by NVML minor number, the host driver mounted read-only,
PATH/LD_LIBRARY_PATH, and how `up --dry-run` shows it. Records: tests/fixtures/gpu/*.json
(hand-written, labelled so, until captured ones replace them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hvinfra.argv import docker_run_argv
from hvinfra.cli import main
from hvinfra.engine import to_create_kwargs
from hvinfra.errors import ExitCode, GpuRuntimeError
from hvinfra.gpu_access import (
    CONTAINER_DRIVER_BIN,
    CONTAINER_DRIVER_LIB,
    DOCKER_DEFAULT_PATH,
    HostDriver,
    HostGpuFiles,
    describe_gpu_access,
    devices_access,
)
from hvinfra.host_gpu import (
    find_driver,
    load_records,
    nvml_from_ldconfig,
    nvml_from_maps,
)
from hvinfra.profiles import load_profile
from hvinfra.profiles.models import Profile
from hvinfra.records import GpuSystem, gpu_system_as_dict, gpu_system_from_dict
from hvinfra.spec import DeviceNode, Mount, build_run_spec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gpu"
H100X2 = FIXTURES / "h100x2-handwritten.json"
H200 = FIXTURES / "h200-captured.json"
H200X2 = FIXTURES / "h200x2-captured.json"
ALL_NODES = ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")
RUNNER_DRIVER = HostDriver(
    lib_dir="/usr/local/nvidia/lib64",
    lib_files=("libcuda.so.1", "libnvidia-ml.so.1"),
    bin_dir="/usr/local/nvidia/bin",
    bin_files=("nvidia-smi",),
    found_by="nvml",
)


def profile(*sets: str, env: dict[str, str] | None = None) -> Profile:
    return load_profile("t2v", env=env or {}, sets=["gpu.mode=devices", *sets]).profile


def host(*names: str, driver: HostDriver | None = RUNNER_DRIVER) -> HostGpuFiles:
    return HostGpuFiles(frozenset(f"/dev/{n}" for n in names), driver)


def h100x2() -> GpuSystem:
    return load_records(str(H100X2))


def test_device_nodes_follow_the_nvml_minor_number_not_the_index() -> None:
    access = devices_access(profile("gpu.devices=0"), h100x2(), host(*ALL_NODES))
    assert access.devices[0] == DeviceNode("/dev/nvidia1", "/dev/nvidia1")
    assert [d.container_path for d in access.devices] == [
        "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
    ]  # fmt: skip


def test_all_gpus_pass_every_gpu_node_once_then_the_control_nodes() -> None:
    access = devices_access(profile(), h100x2(), host(*ALL_NODES, "nvidia-modeset"))
    paths = [d.host_path for d in access.devices]
    assert paths == [
        "/dev/nvidia1", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
    ]  # fmt: skip
    assert all(d.permissions == "rwm" for d in access.devices)


def test_on_the_captured_two_gpu_runner_gpu_1_gets_only_its_own_node() -> None:
    """As on the real 2 x H200 runner: `--gpus 1` passed /dev/nvidia1 and no other GPU node."""
    system = load_records(str(H200X2))
    access = devices_access(profile("gpu.devices=1"), system, host(*ALL_NODES))
    gpu_nodes = [d.host_path for d in access.devices if d.host_path[-1].isdigit()]
    assert gpu_nodes == [f"/dev/nvidia{system.gpus[1].minor_number}"]
    assert [g.uuid for g in access.gpus] == [system.gpus[1].uuid]


def test_a_gpu_chosen_by_uuid_gets_its_own_node() -> None:
    uuid = h100x2().gpus[1].uuid
    access = devices_access(profile(f"gpu.devices={uuid}"), h100x2(), host(*ALL_NODES))
    assert access.devices[0].host_path == "/dev/nvidia0"
    assert [g.index for g in access.gpus] == [1]


def test_optional_control_nodes_are_left_out_when_absent() -> None:
    access = devices_access(
        profile(), h100x2(), host("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm")
    )
    assert "/dev/nvidia-uvm-tools" not in [d.host_path for d in access.devices]


@pytest.mark.parametrize("missing", ["nvidiactl", "nvidia-uvm", "nvidia1"])
def test_a_missing_required_node_is_a_gpu_runtime_error_naming_it(missing: str) -> None:
    names = [n for n in ALL_NODES if n != missing]
    with pytest.raises(GpuRuntimeError) as caught:
        devices_access(profile(), h100x2(), host(*names))
    assert f"/dev/{missing}" in caught.value.message
    assert caught.value.exit_code == ExitCode.GPU_RUNTIME
    assert "nvidia-modprobe" in caught.value.fix


def test_an_unknown_gpu_index_lists_what_nvml_sees() -> None:
    with pytest.raises(GpuRuntimeError) as caught:
        devices_access(profile("gpu.devices=5"), h100x2(), host(*ALL_NODES))
    assert "no GPU 5 on this host" in caught.value.message
    assert "GPU-3b1f2a8c-0000-4000-8000-000000000002" in caught.value.message


def test_mig_instances_are_refused_in_devices_mode() -> None:
    mig = "MIG-7a9c2e1f-0000-4000-8000-000000000000"
    with pytest.raises(GpuRuntimeError, match="MIG"):
        devices_access(profile(f"gpu.devices={mig}"), h100x2(), host(*ALL_NODES))


def test_no_gpus_selected_adds_nothing() -> None:
    access = devices_access(profile("gpu.devices=none"), h100x2(), host(driver=None))
    assert (access.devices, access.mounts, access.environment) == ((), (), ())


def test_no_driver_found_is_an_error_with_the_override_key() -> None:
    with pytest.raises(GpuRuntimeError) as caught:
        devices_access(profile(), h100x2(), host(*ALL_NODES, driver=None))
    assert "gpu.driver_lib_dir" in caught.value.fix


def test_a_dedicated_driver_folder_is_mounted_whole_and_read_only() -> None:
    access = devices_access(profile(), load_records(str(H200)), host(*ALL_NODES))
    assert access.mounts == (
        Mount("/usr/local/nvidia/lib64", CONTAINER_DRIVER_LIB, read_only=True),
        Mount("/usr/local/nvidia/bin", CONTAINER_DRIVER_BIN, read_only=True),
    )


def test_a_shared_system_folder_is_mounted_file_by_file_never_whole() -> None:
    driver = HostDriver(
        lib_dir="/usr/lib/x86_64-linux-gnu",
        lib_files=("libcuda.so.1", "libnvidia-ml.so.1"),
        lib_dir_shared=True,
        bin_dir="/usr/bin",
        bin_files=("nvidia-smi",),
        bin_dir_shared=True,
    )
    access = devices_access(profile(), h100x2(), host(*ALL_NODES, driver=driver))
    assert access.mounts == (
        Mount(
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1", f"{CONTAINER_DRIVER_LIB}/libcuda.so.1", True
        ),
        Mount(
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            f"{CONTAINER_DRIVER_LIB}/libnvidia-ml.so.1",
            True,
        ),
        Mount("/usr/bin/nvidia-smi", f"{CONTAINER_DRIVER_BIN}/nvidia-smi", True),
    )


def test_environment_puts_the_driver_first_on_dockers_default_path() -> None:
    access = devices_access(profile(), h100x2(), host(*ALL_NODES))
    assert dict(access.environment) == {
        "LD_LIBRARY_PATH": CONTAINER_DRIVER_LIB,
        "PATH": f"{CONTAINER_DRIVER_BIN}:{DOCKER_DEFAULT_PATH}",
    }


def test_environment_keeps_the_images_path_after_the_driver() -> None:
    image_env = {"PATH": "/opt/conda/bin:/usr/bin", "LD_LIBRARY_PATH": "/usr/local/cuda/lib64"}
    access = devices_access(profile(), h100x2(), host(*ALL_NODES), image_env)
    assert dict(access.environment) == {
        "LD_LIBRARY_PATH": f"{CONTAINER_DRIVER_LIB}:/usr/local/cuda/lib64",
        "PATH": f"{CONTAINER_DRIVER_BIN}:/opt/conda/bin:/usr/bin",
    }


def test_the_profiles_own_path_wins_over_the_images_and_is_not_doubled() -> None:
    prof = profile(f"environment.PATH={CONTAINER_DRIVER_BIN}:/custom/bin")
    access = devices_access(prof, h100x2(), host(*ALL_NODES), {"PATH": "/opt/conda/bin"})
    assert dict(access.environment)["PATH"] == f"{CONTAINER_DRIVER_BIN}:/custom/bin"


def test_the_run_spec_carries_devices_mounts_and_env_and_no_device_request() -> None:
    prof = profile()
    spec = build_run_spec(prof, gpu_access=devices_access(prof, h100x2(), host(*ALL_NODES)))
    assert spec.gpu_request is None
    assert [d.host_path for d in spec.devices][:2] == ["/dev/nvidia1", "/dev/nvidia0"]
    assert Mount("/usr/local/nvidia/lib64", CONTAINER_DRIVER_LIB, True) in spec.mounts
    assert spec.env_map["MODEL_BASE"] == "/workspace/HunyuanVideo/ckpts"  # profile env kept
    assert spec.env_map["LD_LIBRARY_PATH"] == CONTAINER_DRIVER_LIB
    assert spec.label_map["io.hvinfra.gpus"] == "all"


def test_the_spec_hash_changes_when_the_device_list_does() -> None:
    prof = profile()
    one = build_run_spec(
        prof, gpu_access=devices_access(profile("gpu.devices=0"), h100x2(), host(*ALL_NODES))
    )
    two = build_run_spec(prof, gpu_access=devices_access(prof, h100x2(), host(*ALL_NODES)))
    assert one.label_map["io.hvinfra.spec-hash"] != two.label_map["io.hvinfra.spec-hash"]


def test_toolkit_mode_is_unchanged_a_device_request_and_no_nodes() -> None:
    spec = build_run_spec(load_profile("t2v", env={}).profile)
    assert spec.gpu_request is not None and spec.gpu_request.count == -1
    assert spec.devices == ()
    assert "LD_LIBRARY_PATH" not in spec.env_map


def test_docker_run_argv_and_create_kwargs_render_the_same_devices_and_mounts() -> None:
    prof = profile("gpu.devices=1")
    spec = build_run_spec(prof, gpu_access=devices_access(prof, h100x2(), host(*ALL_NODES)))
    argv = docker_run_argv(spec)
    assert "--gpus" not in argv
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "--device"]
    assert devices == [
        "/dev/nvidia0:/dev/nvidia0:rwm", "/dev/nvidiactl:/dev/nvidiactl:rwm",
        "/dev/nvidia-uvm:/dev/nvidia-uvm:rwm", "/dev/nvidia-uvm-tools:/dev/nvidia-uvm-tools:rwm",
    ]  # fmt: skip
    assert "/usr/local/nvidia/lib64:/usr/local/nvidia/lib64:ro" in argv
    assert f"PATH={CONTAINER_DRIVER_BIN}:{DOCKER_DEFAULT_PATH}" in argv
    kwargs = to_create_kwargs(spec)
    assert kwargs["devices"] == devices
    assert "device_requests" not in kwargs
    assert "/usr/local/nvidia/bin:/usr/local/nvidia/bin:ro" in kwargs["volumes"]


# -- describe_gpu_access (doctor's line) --------------------------------------------------------
def test_describe_toolkit_default_says_so() -> None:
    mode, why = describe_gpu_access(load_profile("t2v", env={}).profile, h100x2())
    assert mode == "toolkit" and "NVIDIA Container Toolkit" in why


def test_describe_toolkit_without_a_registered_runtime_suggests_devices_mode() -> None:
    prof = load_profile("t2v", env={}).profile
    mode, why = describe_gpu_access(prof, h100x2(), toolkit_registered=False)
    assert mode == "toolkit" and "gpu.mode=devices" in why


def test_describe_devices_names_the_nodes_and_the_driver_folder() -> None:
    mode, why = describe_gpu_access(profile(), h100x2(), host(*ALL_NODES))
    assert mode == "devices"
    assert "/dev/nvidia1, /dev/nvidia0" in why
    assert "/usr/local/nvidia/lib64 (found by nvml)" in why


def test_describe_devices_reports_missing_uvm_and_unfound_driver() -> None:
    _, why = describe_gpu_access(profile(), h100x2(), host("nvidia0", "nvidia1", driver=None))
    assert "/dev/nvidiactl" in why and "/dev/nvidia-uvm" in why
    assert "gpu.driver_lib_dir" in why


def test_describe_devices_without_nvml() -> None:
    mode, why = describe_gpu_access(profile(), None)
    assert mode == "devices" and "NVML" in why


# -- host_gpu: finding the driver (I/O over temp folders) ----------------------------------------
def test_nvml_path_from_proc_maps() -> None:
    maps = (
        "7f00-7f01 r--p 00000000 00:2a 1234 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 00:2a 99 /usr/local/nvidia/lib64/libnvidia-ml.so.580.159.04\n"
    )
    assert nvml_from_maps(maps) == "/usr/local/nvidia/lib64/libnvidia-ml.so.580.159.04"
    assert nvml_from_maps("7f00-7f01 rw-p 00000000 00:00 0 [heap]\n") is None


def test_nvml_path_from_ldconfig_prefers_the_x86_64_entry() -> None:
    text = (
        "1234 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibnvidia-ml.so.1 (libc6) => /usr/lib/i386-linux-gnu/libnvidia-ml.so.1\n"
        "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n"
        "\tlibnvidia-ml.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so\n"
    )
    assert nvml_from_ldconfig(text) == "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    assert nvml_from_ldconfig("0 libs found\n") is None


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("")


def test_find_driver_in_a_dedicated_folder_with_bin_beside_it(tmp_path: Path) -> None:
    lib, bin_ = tmp_path / "nvidia" / "lib64", tmp_path / "nvidia" / "bin"
    _touch(lib, "libnvidia-ml.so.1", "libcuda.so.1", "libcuda.so.580.1", "libEGL.so.1")
    _touch(bin_, "nvidia-smi", "nvidia-debugdump")
    system = GpuSystem("580.1", (13, 0), (), nvml_library_path=str(lib / "libnvidia-ml.so.1"))
    driver = find_driver(profile(), system)
    assert driver is not None
    assert (driver.lib_dir, driver.bin_dir, driver.found_by) == (str(lib), str(bin_), "nvml")
    assert not driver.lib_dir_shared and not driver.bin_dir_shared
    assert driver.lib_files == ("libcuda.so.1", "libcuda.so.580.1", "libnvidia-ml.so.1")


def test_find_driver_in_a_system_folder_marks_it_shared(tmp_path: Path) -> None:
    lib = tmp_path / "usr" / "lib" / "x86_64-linux-gnu"
    _touch(lib, "libc.so.6", "libnvidia-ml.so.1", "libcuda.so.1", "libz.so.1")
    bin_ = tmp_path / "usr" / "bin"
    _touch(bin_, "sh", "nvidia-smi", "ls")
    prof = profile(f"gpu.driver_lib_dir={lib}", f"gpu.driver_bin_dir={bin_}")
    driver = find_driver(prof, None)
    assert driver is not None and driver.found_by == "profile"
    assert driver.lib_dir_shared and driver.bin_dir_shared
    assert driver.lib_files == ("libcuda.so.1", "libnvidia-ml.so.1")
    assert driver.bin_files == ("nvidia-smi",)


def test_a_driver_lib_dir_that_is_not_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GpuRuntimeError, match="is not a folder"):
        find_driver(profile(f"gpu.driver_lib_dir={tmp_path / 'nope'}"), None)


def test_records_round_trip_through_json() -> None:
    system = h100x2()
    assert gpu_system_from_dict(json.loads(json.dumps(gpu_system_as_dict(system)))) == system
    assert system.gpus[0].compute_capability == (9, 0)


# -- the CLI: `up --dry-run` in devices mode, with records and a device folder from a test -------
@pytest.fixture
def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    dev = tmp_path / "dev"
    _touch(dev, *ALL_NODES)
    lib, bin_ = tmp_path / "nvidia" / "lib64", tmp_path / "nvidia" / "bin"
    _touch(lib, "libnvidia-ml.so.1", "libcuda.so.1")
    _touch(bin_, "nvidia-smi")
    records = json.loads(H100X2.read_text())
    records["nvml_library_path"] = str(lib / "libnvidia-ml.so.1")
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    monkeypatch.setenv("HVINFRA_GPU_RECORDS", str(path))
    monkeypatch.setenv("HVINFRA_DEV_DIR", str(dev))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return {"dev": dev, "lib": lib, "bin": bin_}


def test_up_dry_run_in_devices_mode_shows_the_nodes_mounts_and_env(
    fake_host: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["up", "t2v", "--dry-run", "--set", "gpu.mode=devices", "--gpus", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    dev, lib = fake_host["dev"], fake_host["lib"]
    assert f"--device {dev}/nvidia0:/dev/nvidia0:rwm" in out
    assert f"--device {dev}/nvidiactl:/dev/nvidiactl:rwm" in out
    assert f"--volume {lib}:/usr/local/nvidia/lib64:ro" in out
    assert f"--volume {fake_host['bin']}:/usr/local/nvidia/bin:ro" in out
    assert "--env LD_LIBRARY_PATH=/usr/local/nvidia/lib64" in out
    assert "--gpus" not in out
    assert "gpu.mode devices: GPU 1 (NVIDIA H100 80GB HBM3, /dev/nvidia0)" in err


def test_up_dry_run_in_devices_mode_fails_clearly_without_uvm(
    fake_host: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_host["dev"] / "nvidia-uvm").unlink()
    code = main(["up", "t2v", "--dry-run", "--set", "gpu.mode=devices"])
    err = capsys.readouterr().err
    assert code == ExitCode.GPU_RUNTIME
    assert "nvidia-uvm does not exist" in err and "fix:" in err


def test_up_dry_run_with_unreadable_records_is_a_gpu_error(
    fake_host: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("HVINFRA_GPU_RECORDS", str(tmp_path / "missing.json"))
    code = main(["up", "t2v", "--dry-run", "--set", "gpu.mode=devices"])
    assert code == ExitCode.GPU_RUNTIME
    assert "cannot read GPU records" in capsys.readouterr().err
