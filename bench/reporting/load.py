"""The wrk benchmarks in Markdown: ``load.json`` and ``peers.json`` as report sections, and the
summaries ``python -m bench.load`` and ``python -m bench.peers`` print when they finish."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from bench.harness.names import (
    ACCESS_LOG_CANDIDATE,
    DEFAULT_CANDIDATE,
    HTTP_SERVER,
    STRATEGIES,
)
from bench.harness.stats import paired_ratio
from bench.reporting.markdown import case_order, fixed, number, percent, ratio, table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.harness.schema import (
        Cell,
        LoadResults,
        PeersResults,
        Scaling,
        WorkerPlacement,
        WrkFigures,
    )

__all__ = ["load_section", "peers_section", "peers_summary", "sweep_summary"]

COORDINATED_OMISSION: Final = (
    "wrk is a closed-loop generator: its latency percentiles suffer from coordinated "
    "omission and understate the tail."
)


def _sweep_rows(results: LoadResults, workload: str) -> list[tuple[str, ...]]:
    order = {strategy: i for i, strategy in enumerate(STRATEGIES)}
    cells = sorted(
        (cell for cell in results.cells if cell.workload == workload),
        key=lambda cell: (cell.workers, order.get(cell.server, 99), cell.connections),
    )
    knees = {(k.server, k.workers, k.workload): k.connections for k in results.knees}
    rows: list[tuple[str, ...]] = []
    for cell in cells:
        knee = knees.get((cell.server, cell.workers, workload)) == cell.connections
        rows.append(
            (
                cell.server,
                str(cell.workers),
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
    "workers",
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
    by_server: dict[tuple[str, int], list[str]] = {}
    for knee in results.knees:
        by_server.setdefault((knee.server, knee.workers), []).append(
            f"{knee.workload} {'none' if knee.connections is None else knee.connections}"
        )
    for (server, workers), cells in by_server.items():
        name = server if workers == 1 else f"{server}, {workers} workers"
        lines.append(f"- {name}: {', '.join(cells)}")
    return [*lines, ""]


def _placements(placements: Sequence[WorkerPlacement]) -> list[str]:
    """Where multi-worker servers ran (nothing to say when only one worker was measured)."""
    if all(placement.workers == 1 for placement in placements):
        return []
    lines = [f"- {placement.note}" for placement in placements]
    if any(placement.shares_with_load for placement in placements):
        lines.append(
            "- Where the workers share the CPUs with wrk, req/s measures the machine (server "
            "and load generator together), not the server: compare CPU per request, summed "
            "over each server's process group, which stays comparable. irq time and other "
            "load are read only for a server pinned to one CPU."
        )
    return [*lines, ""]


_SCALING_HEADER: Final = (
    "server",
    "workload",
    "connections",
    "workers",
    "req/s vs 1 worker",
    "scaling efficiency (req/s / (N x req/s with 1))",
    "CPU per request vs 1 worker",
)


def _scaling(scaling: Sequence[Scaling]) -> list[str]:
    if not scaling:
        return []
    rows = [
        (
            item.server,
            item.workload,
            str(item.connections),
            str(item.workers),
            ratio(item.rps_ratio),
            fixed(item.efficiency, 2),
            ratio(item.cpu_ratio),
        )
        for item in scaling
    ]
    return [
        "Scaling: each server with N workers against itself with one, per repetition "
        "(medians of the ratios).",
        "",
        *table(_SCALING_HEADER, rows),
    ]


def sweep_summary(results: LoadResults) -> str:
    """What ``python -m bench.load`` prints: one table per workload, then the knees."""
    lines = []
    for info in results.workloads:
        lines += [f"### {info.label}", "", *table(_SWEEP_HEADER, _sweep_rows(results, info.label))]
    lines += _knees(results)
    lines += _scaling(results.scaling)
    lines += _placements(results.meta.placements)
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
    return [
        *lines,
        *_knees(results),
        *_scaling(results.scaling),
        *_placements(results.meta.placements),
    ]


def _peer_rows(results: PeersResults, workload: str) -> list[tuple[str, ...]]:
    cells: dict[tuple[str, int], Cell] = {
        (cell.server, cell.workers): cell for cell in results.cells if cell.workload == workload
    }
    rows: list[tuple[str, ...]] = []
    for workers in sorted({workers for _, workers in cells}):
        for candidate in results.candidates:
            cell = cells.get((candidate, workers))
            if cell is not None:
                rows.append(_peer_row(results, cell))
    return rows


def _peer_row(results: PeersResults, cell: Cell) -> tuple[str, ...]:
    ratios = results.ratio(cell.server, cell.workload, cell.workers)
    return (
        cell.server,
        str(cell.workers),
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


_PEERS_HEADER: Final = (
    "candidate",
    "workers",
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


def _access_log_cost(results: PeersResults) -> list[str]:
    """The access log's cost: ``zerocopy-auto-log`` against ``zerocopy-auto``, per
    repetition, on each workload where both ran with one worker."""
    lines = []
    for info in results.workloads:
        figures: dict[str, dict[int, WrkFigures]] = {}
        for row in results.rows:
            if row.workload == info.label and row.workers == 1:
                figures.setdefault(row.server, {})[row.rep] = row.figures
        logged, plain = figures.get(ACCESS_LOG_CANDIDATE), figures.get(DEFAULT_CANDIDATE)
        if not logged or not plain:
            continue
        rps = paired_ratio(
            {rep: f.rps for rep, f in logged.items()}, {rep: f.rps for rep, f in plain.items()}
        )
        cpu = paired_ratio(
            {rep: f.server_cpu_per_req_us for rep, f in logged.items()},
            {rep: f.server_cpu_per_req_us for rep, f in plain.items()},
        )
        lines.append(
            f"- Access log cost, {info.label}: req/s with the log {ratio(rps)} of without, "
            f"server CPU per request {ratio(cpu)} (`{ACCESS_LOG_CANDIDATE}` against "
            f"`{DEFAULT_CANDIDATE}`, medians of per-repetition ratios)."
        )
    return [*lines, ""] if lines else []


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
    lines += _access_log_cost(results)
    lines += _scaling(results.scaling)
    lines += _placements(results.meta.placements)
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
