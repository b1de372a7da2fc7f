"""Reference for `hvinfra pull`: a bare docker-py pull of one reference, its progress stream
read to the end (and not drawn)."""

from __future__ import annotations

import sys

import docker


def main() -> None:
    client = docker.from_env()
    for _ in client.api.pull(sys.argv[1], stream=True, decode=True):
        pass


if __name__ == "__main__":
    main()
