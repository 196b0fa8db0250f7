"""The issue's targets, evaluated from what was measured. Pure functions.

Three targets compare zerocopy with its peers and need ``peers.json`` (``make bench-peers``);
one compares the strategies with each other and needs only this suite's CPU phase. A target
whose data is missing is "not run", never "met".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Final, final

__all__ = [
    "MET",
    "NOT_MET",
    "NOT_RUN",
    "PEERS_CANDIDATE",
    "TargetResult",
    "evaluate_targets",
    "peer_ratio",
]

MET: Final = "met"
NOT_MET: Final = "not met"
NOT_RUN: Final = "not run"
# The configuration users run: the default strategy.
PEERS_CANDIDATE: Final = "zerocopy-auto"
_ZEROCOPY_CANDIDATES: Final = (
    "zerocopy-auto",
    "zerocopy-sendfile",
    "zerocopy-splice",
    "zerocopy-readwrite",
)


@final
@dataclass(frozen=True, slots=True)
class TargetResult:
    """One row of the targets table."""

    case: str
    target: str
    measured: str
    status: str


def _ratio(peers: dict[str, Any], candidate: str, size: str, key: str) -> float | None:
    try:
        value = peers["ratios"][candidate][size][key]
    except (KeyError, TypeError):
        return None
    return float(value) if value is not None else None


def peer_ratio(peers: dict[str, Any], candidate: str, other: str, size: str) -> float | None:
    """Median over repetitions of ``rps(candidate) / rps(other)`` at ``size``.

    Pairs values from the same repetition, as the alternating design intends. Falls back to
    the ratio of the two candidates' ``rps_vs_nginx`` when there are no repetitions.
    """
    by_rep: dict[int, dict[str, float]] = {}
    for row in peers.get("repetitions", []):
        if row.get("size") == size and row.get("candidate") in (candidate, other):
            by_rep.setdefault(int(row["rep"]), {})[row["candidate"]] = float(row["rps"])
    ratios = [
        rps[candidate] / rps[other]
        for rps in by_rep.values()
        if candidate in rps and other in rps and rps[other] > 0
    ]
    if ratios:
        return statistics.median(ratios)
    mine = _ratio(peers, candidate, size, "rps_vs_nginx")
    theirs = _ratio(peers, other, size, "rps_vs_nginx")
    if mine is None or theirs is None or theirs == 0:
        return None
    return mine / theirs


def _missing_reason(peers: dict[str, Any] | None, *candidates: str) -> str | None:
    if peers is None:
        return "not run (make bench-peers)"
    skipped = peers.get("skipped") or {}
    for candidate in candidates:
        if candidate in skipped:
            return f"not run: {candidate} skipped ({skipped[candidate]})"
    return None


def _others(peers: dict[str, Any], size: str, key: str) -> str:
    parts = []
    for candidate in _ZEROCOPY_CANDIDATES[1:]:
        value = _ratio(peers, candidate, size, key)
        if value is not None:
            parts.append(f"{candidate.removeprefix('zerocopy-')} {value:.2f}x")
    return f" ({', '.join(parts)})" if parts else ""


def _vs_nginx(
    peers: dict[str, Any] | None, case: str, target: str, size: str, key: str, bound: float
) -> TargetResult:
    reason = _missing_reason(peers, PEERS_CANDIDATE)
    if reason is not None or peers is None:
        return TargetResult(case, target, reason or "", NOT_RUN)
    value = _ratio(peers, PEERS_CANDIDATE, size, key)
    if value is None:
        return TargetResult(case, target, f"not run: no {size} {key} in peers.json", NOT_RUN)
    lower_is_better = key.startswith("cpu")
    met = value <= bound if lower_is_better else value >= bound
    measured = f"auto {value:.2f}x nginx" + _others(peers, size, key)
    return TargetResult(case, target, measured, MET if met else NOT_MET)


def evaluate_targets(
    peers: dict[str, Any] | None,
    cpu_per_gib: dict[str, dict[str, float]],
) -> list[TargetResult]:
    """Evaluate every target.

    Args:
        peers: The parsed ``peers.json``, or ``None`` if it was not produced.
        cpu_per_gib: Server CPU seconds per GiB, ``{strategy: {case label: value}}``, from
            this suite's CPU phase.

    Returns:
        One row per target, in the issue's order.
    """
    results = [
        _vs_nginx(
            peers,
            "4 KiB, 1 worker, 16 connections",
            "req/s ≥ 0.8x nginx (best of its two configs)",
            "4KiB",
            "rps_vs_nginx",
            0.8,
        ),
        _vs_nginx(peers, "1 MiB", "req/s ≥ 1.0x nginx", "1MiB", "rps_vs_nginx", 1.0),
        _vs_nginx(
            peers, "1 MiB", "server CPU per request ≤ 1.0x nginx", "1MiB", "cpu_vs_nginx", 1.0
        ),
    ]
    case, target = "256 MiB", "server CPU per GiB for sendfile and splice ≤ 0.7x readwrite"
    base = cpu_per_gib.get("readwrite", {}).get("256MiB")
    ratios = {
        strategy: cpu_per_gib.get(strategy, {}).get("256MiB") for strategy in ("sendfile", "splice")
    }
    if base is None or base <= 0 or any(value is None for value in ratios.values()):
        results.append(TargetResult(case, target, "not run: no 256 MiB CPU phase", NOT_RUN))
    else:
        shares = {strategy: value / base for strategy, value in ratios.items() if value is not None}
        measured = ", ".join(f"{strategy} {share:.2f}x" for strategy, share in shares.items())
        met = all(share <= 0.7 for share in shares.values())
        results.append(TargetResult(case, target, measured, MET if met else NOT_MET))
    case, target = "4 KiB vs aiohttp", "≥ 8x aiohttp req/s"
    reason = _missing_reason(peers, PEERS_CANDIDATE, "aiohttp")
    if reason is not None or peers is None:
        results.append(TargetResult(case, target, reason or "", NOT_RUN))
    else:
        value = peer_ratio(peers, PEERS_CANDIDATE, "aiohttp", "4KiB")
        if value is None:
            results.append(TargetResult(case, target, "not run: no 4KiB aiohttp figures", NOT_RUN))
        else:
            status = MET if value >= 8.0 else NOT_MET
            results.append(TargetResult(case, target, f"auto {value:.1f}x aiohttp", status))
    return results
