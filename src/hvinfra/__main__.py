"""Entry point. Imports stay lazy so that `hvinfra --help` does not load docker or pynvml."""

from __future__ import annotations


def main() -> None:
    from hvinfra.cli import run

    run()


if __name__ == "__main__":
    main()
