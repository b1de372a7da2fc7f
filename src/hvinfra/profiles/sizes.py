"""Byte sizes as people write them in docker flags: 64m, 16g, 1024, 512k (binary units)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: object) -> int:
    """Return bytes for an int or a size string; raise ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '64m' or '16g'")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number, unit = match.groups()
            return int(float(number) * _UNITS[unit.lower()])
    raise ValueError(f"{value!r} is not a size: use bytes (67108864) or a unit (64m, 16g, 512k)")


def format_size(num_bytes: int) -> str:
    """The shortest exact docker-style form: 67108864 -> '64m'; -1 stays '-1'."""
    if num_bytes < 0:
        return str(num_bytes)
    for unit in ("t", "g", "m", "k"):
        factor = _UNITS[unit]
        if num_bytes and num_bytes % factor == 0:
            return f"{num_bytes // factor}{unit}"
    return str(num_bytes)
