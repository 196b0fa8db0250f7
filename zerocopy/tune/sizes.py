"""File sizes: binary units, labels (``4KiB``) and parsing (``4k``, ``1MiB``, ``65536``).

Shared by ``zerocopy tune`` and the benchmarks (``bench.harness.sizes`` re-exports it).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["GiB", "KiB", "MiB", "format_size", "parse_size", "parse_size_list"]

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

_SIZE_RE: Final = re.compile(r"^\s*([0-9]+)\s*(|B|K|KB|KiB|M|MB|MiB|G|GB|GiB)\s*$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "b": 1, "k": KiB, "m": MiB, "g": GiB}


def format_size(size: int) -> str:
    """``4096`` → ``"4KiB"``, ``1000`` → ``"1000B"``: exact multiples of 1024 get a unit."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def parse_size(text: str, *, minimum: int = 1) -> int:
    """``"64KiB"``, ``"64k"``, ``"1MiB"``, ``"4096"`` → bytes; the inverse of :func:`format_size`.

    Binary multiples throughout (``4KB`` is 4096 bytes too), as on wrk's command line.

    Raises:
        ValueError: Not a size, or below ``minimum`` (1: zero is refused).
    """
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (examples: 4KiB, 1MiB, 65536)")
    size = int(match[1]) * _SIZE_UNITS[match[2][:1].lower()]
    if size < minimum:
        raise ValueError(f"size must be at least {minimum}: {text!r}")
    return size


def parse_size_list(text: str) -> dict[str, int]:
    """``"4KiB,1MiB"`` to ``{"4KiB": 4096, "1MiB": 1048576}`` (labels normalised).

    Raises:
        ValueError: A part is not a size, or there is none.
    """
    sizes = {}
    for part in text.split(","):
        if part.strip():
            size = parse_size(part)
            sizes[format_size(size)] = size
    if not sizes:
        raise ValueError(f"no sizes in {text!r}")
    return sizes
