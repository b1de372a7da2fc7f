"""Baseline for `hvinfra status`: list the containers labelled io.hvinfra.managed=true with
docker-py and print one row each (name, profile, status, image, image id, gpus, id)."""

from __future__ import annotations

import docker


def main() -> None:
    client = docker.from_env()
    rows = client.api.containers(all=True, filters={"label": "io.hvinfra.managed=true"})
    for row in sorted(rows, key=lambda r: r["Names"][0]):
        labels = row.get("Labels") or {}
        print(
            row["Names"][0].lstrip("/"),
            labels.get("io.hvinfra.profile", ""),
            row["State"],
            row["Image"],
            row["ImageID"][7:19],
            labels.get("io.hvinfra.gpus", ""),
            row["Id"][:12],
        )


if __name__ == "__main__":
    main()
