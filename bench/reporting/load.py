"""The wrk benchmarks in Markdown: ``load.json`` and ``peers.json`` as report sections, and the
summaries ``python -m bench.load`` and ``python -m bench.peers`` print when they finish."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from bench.harness.names import HTTP_SERVER, STRATEGIES
from bench.reporting.markdown import case_order, fixed, number, percent, ratio, table

if TYPE_CHECKING:
    from bench.harness.schema import Cell, LoadResults, PeersResults

__all__ = ["load_section", "peers_section", "peers_summary", "sweep_summary"]

COORDINATED_OMISSION: Final = (
    "wrk is a closed-loop generator: its latency percentiles suffer from coordinated "
    "omission and understate the tail."
)


def _sweep_rows(results: LoadResults, workload: str) -> list[tuple[str, ...]]:
    order = {strategy: i for i, strategy in enumerate(STRATEGIES)}
    cells = sorted(
        (cell for cell in results.cells if cell.workload == workload),
        key=lambda cell: (order.get(cell.server, 99), cell.connections),
    )
    rows: list[tuple[str, ...]] = []
    for cell in cells:
        knee = results.knee.get(cell.server, {}).get(workload) == cell.connections
        rows.append(
            (
                cell.server,
                f"{cell.connections}{' ← knee' if knee else ''}",
                number(cell.rps),
                fixed(cell.p50_ms, 2),
                fixed(cell.p99_ms, 2),
                fixed(cell.server_cpu_per_req_us, 1),
                fixed(cell.server_cpu_irq_per_req_us, 1),
                percent(cell.pinned_cpu_other_pct),
                str(cell.errors),
            )
        )
    return rows


_SWEEP_HEADER: Final = (
    "strategy",
    "connections",
    "req/s",
    "p50 ms",
    "p99 ms",
    "server CPU µs/req",
    "CPU+irq µs/req",
    "other load on server CPU",
    "errors",
)


def _knees(results: LoadResults) -> list[str]:
    lines = ["Knee, in connections (none: p99 never outgrew req/s within the sweep):", ""]
    for strategy, by_workload in results.knee.items():
        cells = ", ".join(
            f"{workload} {'none' if knee is None else knee}"
            for workload, knee in by_workload.items()
        )
        lines.append(f"- {strategy}: {cells}")
    return [*lines, ""]


def sweep_summary(results: LoadResults) -> str:
    """What ``python -m bench.load`` prints: one table per workload, then the knees."""
    lines = []
    for info in results.workloads:
        lines += [f"### {info.label}", "", *table(_SWEEP_HEADER, _sweep_rows(results, info.label))]
    lines += _knees(results)
    lines.append(f"Latency: {COORDINATED_OMISSION}")
    return "\n".join(lines)


def load_section(results: LoadResults | None, reason: str) -> list[str]:
    """``## Load (wrk)`` of ``report.md``."""
    lines = ["## Load (wrk)", ""]
    if results is None:
        return [*lines, f"Not run (make bench-load): load.json {reason}.", ""]
    meta = results.meta
    lines += [
        f"From `load.json` (`make bench-load`, {meta.run.machine.date_utc}): medians of "
        f"{meta.run.repetitions} alternated repetitions of {meta.run.duration_s} s; "
        f"{meta.run.pinning.note}. {COORDINATED_OMISSION}",
        "",
    ]
    for workload in case_order(info.label for info in results.workloads):
        lines += [f"### {workload}", "", *table(_SWEEP_HEADER, _sweep_rows(results, workload))]
    return [*lines, *_knees(results)]


def _peer_rows(results: PeersResults, workload: str) -> list[tuple[str, ...]]:
    cells: dict[str, Cell] = {
        cell.server: cell for cell in results.cells if cell.workload == workload
    }
    rows: list[tuple[str, ...]] = []
    for candidate in results.candidates:
        cell = cells.get(candidate)
        if cell is None:
            continue
        ratios = results.ratios.get(candidate, {}).get(workload)
        rows.append(
            (
                candidate,
                number(cell.rps),
                fixed(cell.p99_ms, 2),
                fixed(cell.server_cpu_per_req_us, 1),
                fixed(cell.server_cpu_irq_per_req_us, 1),
                ratio(ratios.rps_vs_nginx if ratios else None),
                ratio(ratios.cpu_vs_nginx if ratios else None),
                ratio(ratios.cpu_irq_vs_nginx if ratios else None),
                percent(cell.pinned_cpu_other_pct),
                str(cell.errors),
            )
        )
    return rows


_PEERS_HEADER: Final = (
    "candidate",
    "req/s",
    "p99 ms",
    "server CPU µs/req",
    "CPU+irq µs/req",
    "req/s vs nginx",
    "CPU vs nginx",
    "CPU+irq vs nginx",
    "other load on server CPU",
    "errors",
)


def _peer_tables(results: PeersResults) -> list[str]:
    lines = []
    for info in results.workloads:
        lines += [
            f"### {info.label}, {results.meta.connections} connections",
            "",
            f"{info.description}.",
            "",
            *table(_PEERS_HEADER, _peer_rows(results, info.label)),
        ]
    for candidate, reason in results.skipped.items():
        lines.append(f"- {candidate}: skipped ({reason})")
    if results.skipped:
        lines.append("")
    return lines


def peers_summary(results: PeersResults) -> str:
    """What ``python -m bench.peers`` prints: one table per workload, then the notes."""
    lines = _peer_tables(results)
    lines.append(f"Ratios: {results.meta.run.notes.get('ratios', '')}")
    lines.append(f"Latency: {COORDINATED_OMISSION}")
    if HTTP_SERVER in results.candidates:
        lines.append(f"{HTTP_SERVER}: {results.meta.run.notes.get(HTTP_SERVER, '')}")
    return "\n".join(lines)


def peers_section(results: PeersResults | None, reason: str) -> list[str]:
    """``## Peers`` of ``report.md``."""
    lines = ["## Peers", ""]
    if results is None:
        return [*lines, f"Not run (make bench-peers): peers.json {reason}.", ""]
    meta = results.meta
    lines += [
        f"From `peers.json` (`make bench-peers`, {meta.run.machine.date_utc}): medians over "
        f"{meta.run.repetitions} alternated repetitions of {meta.run.duration_s} s, "
        f"{meta.connections} connections, {meta.run.pinning.note}; ratios are medians of "
        "per-repetition ratios against nginx's best configuration in that repetition. "
        f"{COORDINATED_OMISSION}",
        "",
        *_peer_tables(results),
    ]
    if not meta.run.complete:
        lines += ["The run stopped early (its time limit): some cells are missing.", ""]
    return lines
