#!/usr/bin/env python3
"""Print what NVML reports on this host as JSON, in the shape of tests/fixtures/gpu/*.json.

    PYTHONPATH=src python3 scripts/capture-gpu-records.py > tests/fixtures/gpu/recorded.json

Reads through hvinfra's own NVML adapter (hvinfra.gpu.NvmlProbe), so the fixture is exactly
what the checks see. Exit code 7 with an `error:`/`fix:` pair when NVML fails.
"""

from __future__ import annotations

import datetime
import json
import sys
from importlib import metadata


def main() -> int:
    from hvinfra.errors import HvinfraError
    from hvinfra.gpu import NvmlProbe
    from hvinfra.records import gpu_system_as_dict

    try:
        system = NvmlProbe().probe()
    except HvinfraError as error:
        print(f"error: {error.message}\nfix: {error.fix}", file=sys.stderr)
        return int(error.exit_code)
    try:
        bindings = metadata.version("nvidia-ml-py")
    except metadata.PackageNotFoundError:
        bindings = "unknown"
    today = datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%d")
    record = {
        "_provenance": f"captured by scripts/capture-gpu-records.py on {today}"
        f" (nvidia-ml-py {bindings})",
        **gpu_system_as_dict(system),
    }
    json.dump(record, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
