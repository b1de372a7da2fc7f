"""Reference for `hvinfra logs`: a bare docker-py stream loop writing the container's output."""

from __future__ import annotations

import sys

import docker


def main() -> None:
    client = docker.from_env()
    sink = sys.stdout.buffer
    for chunk in client.api.logs(sys.argv[1], stream=True, follow=False):
        sink.write(chunk)
    sink.flush()


if __name__ == "__main__":
    main()
