"""The pure arithmetic of the load benchmarks: medians, the knee, ratios to nginx, table cells.

Nothing here runs a process or reads a clock, so all of it is unit-tested on synthetic tables
(``tests/test_bench_load.py``).

The knee (see ``bench/LOAD.md``): for one strategy and file size, take the concurrency steps
``c_0 < c_1 < ...`` with median throughput ``rps_i`` and median 99th-percentile latency ``p99_i``.
The knee is ``c_(i-1)`` for the first step ``i`` at which the relative growth of p99 exceeds the
relative growth of throughput::

    p99_i / p99_(i-1) - 1  >  rps_i / rps_(i-1) - 1

that is, the last concurrency before added connections buy more queueing than throughput. No
such step: no knee within the sweep (``None``). In a closed loop, Little's law ties the two
(connections = throughput x mean latency), so with 4x steps the knee is where throughput stops
at least doubling per step.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "NGINX_BASELINES",
    "KneePoint",
    "Sample",
    "find_knee",
    "finite_or_none",
    "format_cell",
    "median",
    "median_ratios",
    "medians_by",
]

NGINX_BASELINES: Final = ("nginx-sendfile", "nginx-nosendfile")
"""The candidates that together form "nginx at its best" for the peer ratios."""


def median(values: Iterable[float]) -> float:
    """The median of the finite values; NaN if there are none."""
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else math.nan


@final
@dataclass(frozen=True, slots=True)
class KneePoint:
    """One cell of a sweep: medians at one concurrency."""

    connections: int
    rps: float
    p99_ms: float


def find_knee(points: Iterable[KneePoint]) -> int | None:
    """The knee of a concurrency sweep, as defined in the module docstring.

    Steps whose earlier cell has no usable numbers (zero or NaN throughput or p99) are skipped,
    since a relative growth from zero is undefined.

    Returns:
        The concurrency ``c_(i-1)``, or None when p99 never outgrows throughput.
    """
    ordered = sorted(points, key=lambda point: point.connections)
    for before, after in pairwise(ordered):
        if not (before.rps > 0 and before.p99_ms > 0):
            continue
        if not (math.isfinite(after.rps) and math.isfinite(after.p99_ms)):
            continue
        if after.p99_ms / before.p99_ms > after.rps / before.rps:
            return before.connections
    return None


@final
@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement of one candidate on one file size in one repetition."""

    rep: int
    candidate: str
    size: str
    rps: float
    p99_ms: float
    cpu_per_req_us: float
    cpu_irq_per_req_us: float = math.nan


def _ratio(value: float, baseline: float) -> float:
    if not (math.isfinite(value) and math.isfinite(baseline)) or baseline <= 0:
        return math.nan
    return value / baseline


def median_ratios(
    samples: Sequence[Sample], baselines: Sequence[str] = NGINX_BASELINES
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per-repetition ratios against the best baseline, then the median over repetitions.

    Within each (repetition, size), "nginx at its best" is, for each metric separately, the
    baseline candidate with the *highest* req/s (``rps_vs_nginx``), the *lowest* server CPU per
    request (``cpu_vs_nginx``) and the lowest CPU plus irq time per request
    (``cpu_irq_vs_nginx``), measured in the same repetition, so drift between repetitions
    cancels out.

    Returns:
        ``{candidate: {size: {"rps_vs_nginx": r, "cpu_vs_nginx": r, "cpu_irq_vs_nginx": r}}}``
        for every candidate and size present, ``r`` a float or None where no baseline was
        measured (or no finite ratio exists).
    """
    metrics: dict[str, tuple[Callable[[Sample], float], bool]] = {
        "rps_vs_nginx": (lambda sample: sample.rps, True),
        "cpu_vs_nginx": (lambda sample: sample.cpu_per_req_us, False),
        "cpu_irq_vs_nginx": (lambda sample: sample.cpu_irq_per_req_us, False),
    }
    result: dict[str, dict[str, dict[str, float | None]]] = {}
    for metric, (value_of, higher_is_better) in metrics.items():
        best: dict[tuple[int, str], float] = {}
        for sample in samples:
            value = value_of(sample)
            if sample.candidate in baselines and math.isfinite(value) and value > 0:
                key = (sample.rep, sample.size)
                pick = max if higher_is_better else min
                best[key] = pick(best.get(key, value), value)
        ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
        for sample in samples:
            baseline = best.get((sample.rep, sample.size), math.nan)
            ratios[sample.candidate, sample.size].append(_ratio(value_of(sample), baseline))
        for (candidate, size), values in ratios.items():
            cell = result.setdefault(candidate, {}).setdefault(size, {})
            cell[metric] = finite_or_none(median(values))
    return result


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: missing numbers are written as null."""
    return value if math.isfinite(value) else None


def medians_by(
    rows: Iterable[Mapping[str, object]], keys: Sequence[str], fields: Sequence[str]
) -> list[dict[str, object]]:
    """Group ``rows`` by ``keys`` (first-seen order) and take the median of each field.

    Every value of ``fields`` must be an int or float; ints stay ints (rounded median).
    """
    groups: dict[tuple[object, ...], list[Mapping[str, object]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    out = []
    for group_key, members in groups.items():
        cell: dict[str, object] = dict(zip(keys, group_key, strict=True))
        for name in fields:
            values = [_number(member[name]) for member in members]
            value = median(values)
            if all(isinstance(member[name], int) for member in members) and math.isfinite(value):
                cell[name] = round(value)
            else:
                cell[name] = finite_or_none(value)
        out.append(cell)
    return out


def _number(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


def format_cell(value: object, digits: int = 0, suffix: str = "") -> str:
    """A number for a markdown summary table (``1,234``, ``0.25``, ``3%``); ``-`` if none."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}{suffix}"
