"""How a container gets its GPUs: `toolkit` (a device request the NVIDIA Container Toolkit
fulfils) or `devices` (the device nodes and the host driver's files passed directly, for hosts
without the toolkit). Pure: what exists on the host is gathered by `host_gpu.py` and comes in
as a `HostGpuFiles` record.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from hvinfra.errors import GpuRuntimeError
from hvinfra.gpu_selection import GpuSelection
from hvinfra.profiles.models import Profile
from hvinfra.records import GpuInfo, GpuSystem
from hvinfra.spec import DeviceNode, Mount
from hvinfra.spec import DevicesAccess as DevicesAccess  # its home is spec; kept importable here

# Where the driver appears inside the container: the folders NVIDIA's CUDA base images already
# put on PATH and LD_LIBRARY_PATH, so images built on them need nothing more.
CONTAINER_DRIVER_LIB = "/usr/local/nvidia/lib64"
CONTAINER_DRIVER_BIN = "/usr/local/nvidia/bin"
# What dockerd gives a container whose image sets no PATH.
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Device nodes every CUDA process opens besides /dev/nvidiaN (uvm: CUDA's unified memory;
# uvm-tools: profilers; modeset: display, harmless). Passed where present.
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
REQUIRED_CONTROL_NODES = ("nvidiactl", "nvidia-uvm")

# The driver's user-space files, by name, for hosts that keep them in a shared system folder
# (/usr/lib/x86_64-linux-gnu): there only these are mounted, never the whole folder.
DRIVER_LIBRARY_GLOBS = (
    "libcuda.so*", "libcudadebugger.so*", "libnvidia-*.so*", "libnvcuvid.so*",
    "libnvoptix.so*", "libEGL_nvidia.so*", "libGLX_nvidia.so*", "libGLESv1_CM_nvidia.so*",
    "libGLESv2_nvidia.so*", "libvdpau_nvidia.so*",
)  # fmt: skip
DRIVER_BINARIES = (
    "nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
)  # fmt: skip
# A folder holding one of these is the system's own: mounting it whole would replace the
# container's libc or shell with the host's.
SHARED_LIB_MARKER = "libc.so.6"
SHARED_BIN_MARKER = "sh"


@dataclass(frozen=True)
class HostDriver:
    """Where the host's driver files are, as `host_gpu.find_driver` found them."""

    lib_dir: str
    lib_files: tuple[str, ...] = ()  # names of the driver's files in lib_dir
    lib_dir_shared: bool = False  # lib_dir is a system folder: mount lib_files one by one
    bin_dir: str | None = None
    bin_files: tuple[str, ...] = ()
    bin_dir_shared: bool = False
    found_by: str = ""  # "profile", "nvml", "ldconfig", … (for doctor and --dry-run)


@dataclass(frozen=True)
class HostGpuFiles:
    """The I/O facts the devices mode needs: which device nodes exist, and the driver."""

    present_nodes: frozenset[str]  # absolute host paths that exist, e.g. /dev/nvidia0
    driver: HostDriver | None
    dev_dir: str = "/dev"


def select_gpus(profile: Profile, system: GpuSystem) -> tuple[GpuInfo, ...]:
    """The GPUs `gpu.devices` names, resolved against NVML's as pre-flight resolves them."""
    from hvinfra.checks import select_gpus as resolve

    return resolve(GpuSelection.of(profile.gpu.devices).value, system)


def _node_path(dev_dir: str, name: str) -> str:
    return posixpath.join(dev_dir, name)


def device_nodes(gpus: tuple[GpuInfo, ...], host: HostGpuFiles) -> tuple[DeviceNode, ...]:
    """/dev/nvidiaN by each GPU's NVML minor number, then the control nodes that exist."""
    if not gpus:
        return ()
    nodes = []
    for gpu in gpus:
        if gpu.minor_number is None:
            raise GpuRuntimeError(
                f"NVML reports no minor number for GPU {gpu.index} ({gpu.uuid}), so its device"
                " node /dev/nvidiaN is unknown",
                "use gpu.mode toolkit on this host",
            )
        path = _node_path(host.dev_dir, f"nvidia{gpu.minor_number}")
        if path not in host.present_nodes:
            raise GpuRuntimeError(
                f"device node {path} of GPU {gpu.index} ({gpu.name}) does not exist",
                "load the driver's device nodes (`sudo nvidia-modprobe -c {0}` or run"
                " `nvidia-smi` once as root)".replace("{0}", str(gpu.minor_number)),
            )
        nodes.append(DeviceNode(path, f"/dev/nvidia{gpu.minor_number}"))
    for name in CONTROL_NODES:
        path = _node_path(host.dev_dir, name)
        if path in host.present_nodes:
            nodes.append(DeviceNode(path, f"/dev/{name}"))
        elif name in REQUIRED_CONTROL_NODES:
            raise GpuRuntimeError(
                f"device node {path} does not exist: CUDA cannot run without it",
                "load the driver's modules (`sudo nvidia-modprobe -u -c 0`, or run `nvidia-smi`"
                " once as root) and try again",
            )
    return tuple(nodes)


def driver_mounts(driver: HostDriver) -> tuple[Mount, ...]:
    """The driver's lib and bin folders read-only at the CUDA images' own paths: whole folders
    where they hold only the driver, file by file where they are the system's own."""
    mounts: list[Mount] = []
    if driver.lib_dir_shared:
        mounts += [
            Mount(posixpath.join(driver.lib_dir, name), f"{CONTAINER_DRIVER_LIB}/{name}", True)
            for name in sorted(driver.lib_files)
        ]
    else:
        mounts.append(Mount(driver.lib_dir, CONTAINER_DRIVER_LIB, True))
    if driver.bin_dir is not None:
        if driver.bin_dir_shared:
            mounts += [
                Mount(posixpath.join(driver.bin_dir, name), f"{CONTAINER_DRIVER_BIN}/{name}", True)
                for name in sorted(driver.bin_files)
            ]
        else:
            mounts.append(Mount(driver.bin_dir, CONTAINER_DRIVER_BIN, True))
    return tuple(mounts)


def _prepend(entry: str, current: str | None) -> str:
    parts = [p for p in (current or "").split(":") if p and p != entry]
    return ":".join([entry, *parts])


def driver_environment(
    driver: HostDriver, profile: Profile, image_env: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """PATH and LD_LIBRARY_PATH with the driver's folders first, keeping what the profile (or
    else the image, or else Docker's default) already has after them."""
    image_env = image_env or {}

    def base(name: str, default: str | None) -> str | None:
        return profile.environment.get(name, image_env.get(name, default))

    env = [("LD_LIBRARY_PATH", _prepend(CONTAINER_DRIVER_LIB, base("LD_LIBRARY_PATH", None)))]
    if driver.bin_dir is not None:
        env.append(("PATH", _prepend(CONTAINER_DRIVER_BIN, base("PATH", DOCKER_DEFAULT_PATH))))
    return tuple(env)


def no_driver_error() -> GpuRuntimeError:
    return GpuRuntimeError(
        "gpu.mode devices: cannot find the NVIDIA driver's libraries (libnvidia-ml.so.1) on"
        " this host",
        "check `nvidia-smi` works; or name the folder: `--set gpu.driver_lib_dir=/usr/lib64`"
        " (and gpu.driver_bin_dir for nvidia-smi's folder)",
    )


def devices_access(
    profile: Profile,
    system: GpuSystem,
    host: HostGpuFiles,
    image_env: Mapping[str, str] | None = None,
) -> DevicesAccess:
    """The device nodes, driver mounts and environment `devices` mode adds for this profile."""
    gpus = select_gpus(profile, system)
    if not gpus:
        return DevicesAccess((), (), (), ())
    if host.driver is None:
        raise no_driver_error()
    return DevicesAccess(
        gpus=gpus,
        devices=device_nodes(gpus, host),
        mounts=driver_mounts(host.driver),
        environment=driver_environment(host.driver, profile, image_env),
    )


def describe_gpu_access(
    profile: Profile,
    system: GpuSystem | None,
    host: HostGpuFiles | None = None,
    *,
    toolkit_registered: bool | None = None,
) -> tuple[str, str]:
    """(mode, why) for `doctor`: which access mode `up` will use for this profile and why.

    `toolkit_registered`: whether the engine lists an NVIDIA runtime (None: not known).
    """
    mode = profile.gpu.mode
    if profile.gpu.devices == "none":
        return mode, "gpu.devices is none: the container gets no GPU"
    if mode == "toolkit":
        why = "gpu.mode toolkit (the default): a device request for the NVIDIA Container Toolkit"
        if toolkit_registered is False:
            why += (
                "; but the engine lists no NVIDIA runtime, so `up` will fail: install the"
                " toolkit or use --set gpu.mode=devices"
            )
        return mode, why
    if system is None:
        return mode, "gpu.mode devices, but NVML is not available, so no GPU can be passed"
    try:
        gpus = select_gpus(profile, system)
    except GpuRuntimeError as error:
        return mode, f"gpu.mode devices, but {error.message}"
    parts = [f"gpu.mode devices: passes {len(gpus)} GPU(s) as device nodes"]
    nodes = ", ".join(f"/dev/nvidia{g.minor_number}" for g in gpus)
    parts.append(nodes)
    if host is not None:
        if host.driver is None:
            parts.append("but the driver's libraries were not found (set gpu.driver_lib_dir)")
        else:
            how = f" (found by {host.driver.found_by})" if host.driver.found_by else ""
            parts.append(f"driver from {host.driver.lib_dir}{how}")
        missing = [
            name
            for name in REQUIRED_CONTROL_NODES
            if _node_path(host.dev_dir, name) not in host.present_nodes
        ]
        if missing:
            parts.append("missing: " + ", ".join(f"/dev/{n}" for n in missing))
    if toolkit_registered:
        parts.append("the engine also has the NVIDIA runtime, so gpu.mode toolkit would work")
    return mode, "; ".join(parts)
