"""The statistics every benchmark uses: medians, percentiles, and ratios within a repetition.

Candidates are always measured in turn, repetition by repetition, so that drift on a shared
machine hits them alike. A comparison is therefore a ratio *within* each repetition, and the
median of those ratios: never the ratio of two medians, which would mix repetitions measured
under different conditions. Nothing here runs a process or reads a clock.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["finite_or_none", "median", "median_or_none", "paired_ratio", "percentile"]


def median(values: Iterable[float | None]) -> float:
    """The median of the finite values; NaN if there are none."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return statistics.median(finite) if finite else math.nan


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a number that does not exist is ``None``."""
    return value if math.isfinite(value) else None


def median_or_none(values: Iterable[float | None]) -> float | None:
    """:func:`median`, with ``None`` where there is no finite value."""
    return finite_or_none(median(values))


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; NaN if empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def paired_ratio(
    values: Mapping[int, float | None], baselines: Mapping[int, float | None]
) -> float | None:
    """The median over repetitions of ``values[rep] / baselines[rep]``.

    Only repetitions with a finite value and a positive finite baseline count; ``None`` when
    there is none.
    """
    ratios = []
    for rep, value in values.items():
        base = baselines.get(rep)
        if value is None or base is None or not math.isfinite(value):
            continue
        if math.isfinite(base) and base > 0:
            ratios.append(value / base)
    return median_or_none(ratios)
