"""Fix texts that more than one layer shows (an engine error and a pre-flight check say the same
thing). Imports nothing, so every layer may use it."""

from __future__ import annotations

TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit, run `sudo nvidia-ctk runtime configure --runtime=docker`"
    " and restart dockerd (`sudo systemctl restart docker`); hosts without it can use "
    "`--set gpu.mode=devices`"
)

MEMLOCK_FIX = (
    "give dockerd unlimited memlock (systemd: `LimitMEMLOCK=infinity` in docker.service, then"
    " `systemctl daemon-reload && systemctl restart docker`), or lower it for this run:"
    " `--set ulimits.memlock=8m`"
)
