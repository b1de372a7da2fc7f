"""Baseline for `hvinfra up`: `containers.run(detach=True)` of the same create keyword arguments
(written as JSON by the harness from hvinfra's own spec), then wait until it runs."""

from __future__ import annotations

import json
import sys
import time

import docker
from docker.types import DeviceRequest, Ulimit


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        kwargs = json.load(handle)
    kwargs["ulimits"] = [Ulimit(**{k.lower(): v for k, v in u.items()}) for u in kwargs["ulimits"]]
    if "device_requests" in kwargs:
        kwargs["device_requests"] = [
            DeviceRequest(**{k.lower(): v for k, v in r.items() if k != "DeviceIDs"},
                          device_ids=r.get("DeviceIDs"))
            for r in kwargs["device_requests"]
        ]  # fmt: skip
    kwargs.pop("detach", None)
    client = docker.from_env()
    container = client.containers.run(detach=True, **kwargs)
    while container.status != "running":
        time.sleep(0.02)
        container.reload()
    print(container.name, container.status)


if __name__ == "__main__":
    main()
