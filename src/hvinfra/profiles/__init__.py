"""Profiles: pydantic models of the YAML files and their layering. A pure leaf."""

from hvinfra.profiles.load import LoadedProfile, load_profile, load_profile_file
from hvinfra.profiles.models import GpuConfig, Profile, Ulimit, Volume

__all__ = [
    "GpuConfig",
    "LoadedProfile",
    "Profile",
    "Ulimit",
    "Volume",
    "load_profile",
    "load_profile_file",
]
