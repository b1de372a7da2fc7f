"""gpu.mode `devices` moved below the CLI, to `hvinfra.bringup` (one GPU probe and one engine
client per command, from the AppContext). These wrappers keep the old call shape."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hvinfra.context import AppContext
    from hvinfra.output import Output
    from hvinfra.profiles.models import Profile
    from hvinfra.spec import DevicesAccess


def gpu_access_for(
    profile: Profile, output: Output, context: AppContext | None = None
) -> DevicesAccess | None:
    """What `build_run_spec(gpu_access=…)` needs: None in toolkit mode."""
    from hvinfra import bringup
    from hvinfra.context import AppContext

    return bringup.gpu_access_for(context or AppContext(), profile, output)
