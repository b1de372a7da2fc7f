"""The CLI edge of gpu.mode `devices`: probe the GPUs and the host's driver files (I/O), then
hand them to the pure `gpu_access.devices_access`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hvinfra.output import Output
    from hvinfra.profiles.models import Profile
    from hvinfra.spec import DevicesAccess


def _image_env(image: str) -> dict[str, str]:
    """The image's own environment when a reachable engine has it, else empty (best effort:
    PATH and LD_LIBRARY_PATH then build on Docker's defaults)."""
    from hvinfra.cli.common import connect
    from hvinfra.errors import HvinfraError

    try:
        info = connect().image(image)
    except HvinfraError:
        return {}
    if info is None:
        return {}
    return dict(item.partition("=")[::2] for item in info.env)


def devices_access_for(profile: Profile, output: Output) -> DevicesAccess:
    from hvinfra import host_gpu
    from hvinfra.gpu_access import devices_access

    system = host_gpu.probe_system() if profile.gpu.devices != "none" else None
    if system is None:
        from hvinfra.spec import DevicesAccess

        return DevicesAccess((), (), (), ())
    host = host_gpu.gather(profile, system)
    access = devices_access(profile, system, host, _image_env(profile.image))
    gpus = ", ".join(f"{g.index} ({g.name}, /dev/nvidia{g.minor_number})" for g in access.gpus)
    driver = host.driver
    where = f"{driver.lib_dir} (found by {driver.found_by})" if driver else "?"
    output.info(f"gpu.mode devices: GPU {gpus}; driver {system.driver_version} from {where}")
    return access


def gpu_access_for(profile: Profile, output: Output) -> DevicesAccess | None:
    """What `build_run_spec(gpu_access=…)` needs: None in toolkit mode."""
    return devices_access_for(profile, output) if profile.gpu.mode == "devices" else None
