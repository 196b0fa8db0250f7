"""The project's benchmark targets, evaluated from what was measured. Pure functions.

Most compare zerocopy with nginx or aiohttp and need ``peers.json`` (``make bench-peers``); one
compares the strategies with each other and needs only the suite's CPU phase. A target whose
data is missing is "not run", never "met". Peer targets use ``zerocopy-auto``, the default
users run; the other strategies are shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from bench.harness.names import (
    AIOHTTP,
    BASELINE_STRATEGY,
    DEFAULT_CANDIDATE,
    MANY_FILES,
    NGINX_NOSENDFILE,
    NGINX_SENDFILE,
    ZEROCOPY_CANDIDATES,
)
from bench.harness.stats import paired_ratio

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bench.harness.schema import PeersResults

__all__ = ["MET", "NOT_MET", "NOT_RUN", "TargetResult", "evaluate_targets"]

MET: Final = "met"
NOT_MET: Final = "not met"
NOT_RUN: Final = "not run"


@final
@dataclass(frozen=True, slots=True)
class TargetResult:
    """One row of the targets table."""

    case: str
    target: str
    measured: str
    status: str


def _missing(peers: PeersResults | None, workload: str, *candidates: str) -> str | None:
    if peers is None:
        return "not run (make bench-peers)"
    for candidate in candidates:
        if candidate in peers.skipped:
            return f"not run: {candidate} skipped ({peers.skipped[candidate]})"
        if peers.ratio(candidate, workload) is None:
            return f"not run: no {workload} figures for {candidate} in peers.json"
    return None


def _vs_nginx(
    peers: PeersResults | None, case: str, target: str, workload: str, metric: str, bound: float
) -> TargetResult:
    reason = _missing(peers, workload, DEFAULT_CANDIDATE)
    if reason is not None or peers is None:
        return TargetResult(case, target, reason or "", NOT_RUN)
    value = getattr(peers.ratio(DEFAULT_CANDIDATE, workload), metric)
    if value is None:
        return TargetResult(case, target, "not run: nginx was not measured", NOT_RUN)
    lower_is_better = metric.startswith("cpu")
    met = value <= bound if lower_is_better else value >= bound
    others = []
    for candidate in ZEROCOPY_CANDIDATES[1:]:
        other = peers.ratio(candidate, workload)
        if other is not None and getattr(other, metric) is not None:
            others.append(f"{candidate.removeprefix('zerocopy-')} {getattr(other, metric):.2f}x")
    brackets = f" ({', '.join(others)})" if others else ""
    return TargetResult(case, target, f"auto {value:.2f}x nginx{brackets}", MET if met else NOT_MET)


def _vs_aiohttp(peers: PeersResults | None) -> TargetResult:
    case, target = "4 KiB vs aiohttp", "req/s ≥ 10x aiohttp's"
    reason = _missing(peers, "4KiB", DEFAULT_CANDIDATE, AIOHTTP)
    if reason is not None or peers is None:
        return TargetResult(case, target, reason or "", NOT_RUN)

    def by_rep(candidate: str) -> dict[int, float | None]:
        return {
            row.rep: row.figures.rps
            for row in peers.rows
            if row.server == candidate and row.workload == "4KiB" and row.workers == 1
        }

    value = paired_ratio(by_rep(DEFAULT_CANDIDATE), by_rep(AIOHTTP))
    if value is None:
        return TargetResult(case, target, "not run: no 4KiB aiohttp figures", NOT_RUN)
    return TargetResult(
        case, target, f"auto {value:.1f}x aiohttp", MET if value >= 10.0 else NOT_MET
    )


def _cpu_per_gib(cpu_per_gib: Mapping[str, Mapping[str, float]]) -> TargetResult:
    case, target = "256 MiB", "server CPU per GiB for sendfile and splice ≤ 0.7x readwrite"
    base = cpu_per_gib.get(BASELINE_STRATEGY, {}).get("256MiB")
    shares = {
        server: cpu_per_gib[server]["256MiB"] / base
        for server in ("sendfile", "splice", "auto", NGINX_SENDFILE, NGINX_NOSENDFILE)
        if base and "256MiB" in cpu_per_gib.get(server, {})
    }
    if not base or "sendfile" not in shares or "splice" not in shares:
        return TargetResult(case, target, "not run: no 256 MiB CPU phase", NOT_RUN)
    measured = f"sendfile {shares['sendfile']:.2f}x, splice {shares['splice']:.2f}x"
    nginx = [
        f"{name} {shares[name]:.2f}x"
        for name in (NGINX_SENDFILE, NGINX_NOSENDFILE)
        if name in shares
    ]
    if nginx:
        measured += f" ({', '.join(nginx)}, same run)"
    met = shares["sendfile"] <= 0.7 and shares["splice"] <= 0.7
    return TargetResult(case, target, measured, MET if met else NOT_MET)


def evaluate_targets(
    peers: PeersResults | None, cpu_per_gib: Mapping[str, Mapping[str, float]]
) -> list[TargetResult]:
    """Evaluate every target.

    Args:
        peers: ``peers.json``, or ``None`` if it was not produced.
        cpu_per_gib: Server CPU seconds per GiB, ``{server: {case label: value}}``, from the
            suite's CPU phase (strategies and nginx configurations).

    Returns:
        One row per target.
    """
    four = "4 KiB, 1 worker, 16 connections"
    return [
        _vs_nginx(
            peers, four, "server CPU per request ≤ 2.0x nginx's", "4KiB", "cpu_vs_nginx", 2.0
        ),
        _vs_nginx(peers, four, "req/s ≥ 0.5x nginx's", "4KiB", "rps_vs_nginx", 0.5),
        _vs_aiohttp(peers),
        _vs_nginx(
            peers,
            "Many files (random GETs, 1-4 KiB)",
            "req/s ≥ 0.35x nginx's",
            MANY_FILES,
            "rps_vs_nginx",
            0.35,
        ),
        _vs_nginx(peers, "1 MiB", "req/s ≥ 1.0x nginx's", "1MiB", "rps_vs_nginx", 1.0),
        _vs_nginx(
            peers, "1 MiB", "server CPU per request ≤ 1.0x nginx's", "1MiB", "cpu_vs_nginx", 1.0
        ),
        _cpu_per_gib(cpu_per_gib),
    ]
