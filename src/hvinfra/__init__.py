"""hvinfra: launch HunyuanVideo containers on NVIDIA GPU hosts."""

__version__ = "0.1.0"
