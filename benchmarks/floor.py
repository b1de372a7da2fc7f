"""The floor of a row: its baseline script, run after importing what hvinfra is built on for
that command (typer for every command; pydantic with the profile schema and PyYAML where a
profile is read; rich where progress is drawn), plus the fixed waits the command makes for its
answer (`up --settle`). What hvinfra takes above this is its own code; what the floor takes
above the baseline is the price of the stack and of those waits.

    python benchmarks/floor.py --import typer [--settle 0.25] -- SCRIPT [ARGS...]
"""

from __future__ import annotations

import argparse
import importlib
import runpy
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--import", dest="modules", action="append", default=[])
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    for module in options.modules:
        importlib.import_module(module)
    script = Path(__file__).resolve().parent / options.script
    sys.argv = [str(script), *options.args]
    runpy.run_path(str(script), run_name="__main__")
    time.sleep(options.settle)


if __name__ == "__main__":
    main()
