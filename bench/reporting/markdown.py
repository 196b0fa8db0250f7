"""Markdown building blocks for every report: tables and number formats.

A measured number that does not exist (``None``: no request, no such source) prints as "—";
a zero prints as "0". Which one a cell gets is decided by the typed records, never by a key
that happens to be missing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bench.harness.sizes import parse_size

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["MISSING", "case_order", "fixed", "number", "percent", "ratio", "seconds", "table"]

MISSING = "—"


def _real(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def seconds(value: float | None) -> str:
    """``1.23 s``, ``4.56 ms``, ``789 µs``."""
    if value is None or not _real(value):
        return MISSING
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


def number(value: float | None) -> str:
    """``1,234`` from 100 up, three significant digits below, ``0`` for zero."""
    if value is None or not _real(value):
        return MISSING
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def fixed(value: float | None, digits: int = 2, suffix: str = "") -> str:
    """``12.35`` (``digits`` decimals, thousands separated) and an optional suffix."""
    if value is None or not _real(value):
        return MISSING
    return f"{value:,.{digits}f}{suffix}"


def percent(value: float | None) -> str:
    return fixed(value, 0, "%")


def ratio(value: float | None) -> str:
    return fixed(value, 2, "x")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table, and the blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def case_order(labels: Iterable[str]) -> list[str]:
    """Case labels (``4KiB``, ``64MiB_cold``) by size, hot before cold; others last, sorted."""

    def key(label: str) -> tuple[int, bool, str]:
        size, _, cold = label.partition("_")
        try:
            return parse_size(size), bool(cold), label
        except ValueError:
            return 1 << 62, False, label

    return sorted(set(labels), key=key)
