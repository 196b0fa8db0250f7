"""The load sweep: req/s, p50/p99 and server CPU per strategy, file size and concurrency.

``python -m bench.load`` (``make bench-load``) starts one zerocopy server per strategy, pinned
to one CPU, and drives each with wrk (pinned to another) at 1, 4, 16, 64 and 256 keep-alive
connections, on a 4 KiB and a 1 MiB file. Within each (size, concurrency) step the strategies
take turns, A B C D A B C D ..., so that drift on this shared machine hits them all alike;
each cell is the median of its repetitions. It writes ``bench/results/load.json`` and prints a
markdown summary with the knee of each sweep. ``--quick`` is a smoke test of under 30 s.

See ``bench/LOAD.md`` for what is measured, the knee's definition, and the caveats.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any, Final

from bench._load_run import (
    COORDINATED_OMISSION_NOTE,
    Cell,
    LoadRun,
    add_common_arguments,
    new_parser,
    parse_int_list,
    write_json,
)
from bench._load_stats import KneePoint, find_knee, format_cell, medians_by
from bench.dataset import make_docroot, verify_file
from bench.serverproc import zerocopy_argv

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

    from bench._load_wrk import Measurement
    from bench.serverproc import RunningServer

STRATEGIES: Final = ("auto", "sendfile", "splice", "readwrite")
CONNECTIONS: Final = (1, 4, 16, 64, 256)
QUICK_CONNECTIONS: Final = (1, 16)
WARMUP_CONNECTIONS: Final = 16

KNEE_DEFINITION: Final = (
    "For one strategy and size, with concurrency steps c_0 < c_1 < ... and median req/s rps_i "
    "and p99 p99_i, the knee is c_(i-1) for the first step i where the relative growth of p99 "
    "exceeds that of req/s: p99_i/p99_(i-1) - 1 > rps_i/rps_(i-1) - 1. null: p99 never "
    "outgrew req/s within the sweep."
)

_MEDIAN_FIELDS: Final = (
    "rps",
    "p50_ms",
    "p99_ms",
    "server_cpu_s",
    "server_cpu_per_req_us",
    "server_cpu_irq_per_req_us",
    "requests",
    "errors",
    "pinned_cpu_other_pct",
)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "python -m bench.load",
        "Concurrency sweep of every zerocopy strategy with wrk (writes bench/results/load.json).",
    )
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma-separated zerocopy strategies, measured alternately",
    )
    parser.add_argument(
        "--connections",
        type=parse_int_list,
        default=None,
        help=f"comma-separated concurrency steps (default {','.join(map(str, CONNECTIONS))}; "
        f"--quick: {','.join(map(str, QUICK_CONNECTIONS))})",
    )
    add_common_arguments(parser, output="load.json")
    return parser


def _row(cell: Cell, measurement: Measurement) -> dict[str, Any]:
    """One raw row of ``load.json``: the shared figures and wrk's finer ones."""
    wrk = measurement.wrk
    return {
        "rep": cell.rep,
        "strategy": cell.name,
        "size": cell.doc.label,
        "size_bytes": cell.doc.size,
        "connections": cell.connections,
        **measurement.fields(),
        "p75_ms": wrk.percentiles_ms.get(75.0, math.nan),
        "p90_ms": wrk.percentiles_ms.get(90.0, math.nan),
        "latency_avg_ms": wrk.latency_avg_ms,
        "latency_max_ms": wrk.latency_max_ms,
        "duration_s": wrk.duration_s,
        "bytes_read": wrk.bytes_read,
    }


def knees(
    runs: Sequence[Mapping[str, Any]], strategies: Sequence[str], sizes: Sequence[str]
) -> dict[str, dict[str, int | None]]:
    """``{strategy: {size: knee}}`` from the median cells."""
    result: dict[str, dict[str, int | None]] = {}
    for strategy in strategies:
        for size in sizes:
            points = [
                KneePoint(
                    int(run["connections"]),
                    math.nan if run["rps"] is None else float(run["rps"]),
                    math.nan if run["p99_ms"] is None else float(run["p99_ms"]),
                )
                for run in runs
                if run["strategy"] == strategy and run["size"] == size
            ]
            result.setdefault(strategy, {})[size] = find_knee(points) if points else None
    return result


def summary_markdown(
    runs: Sequence[Mapping[str, Any]],
    knee: Mapping[str, Mapping[str, int | None]],
    sizes: Sequence[str],
) -> str:
    """One table per size: a row per (strategy, connections), the knee row marked."""
    lines = []
    for size in sizes:
        lines += [
            f"### {size}",
            "",
            "| strategy | conns | req/s | p50 ms | p99 ms | server CPU µs/req "
            "| CPU+irq µs/req | other load on server CPU | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in runs:
            if run["size"] != size:
                continue
            is_knee = knee.get(run["strategy"], {}).get(size) == run["connections"]
            mark = " ← knee" if is_knee else ""
            lines.append(
                f"| {run['strategy']} | {run['connections']}{mark} | {format_cell(run['rps'])} "
                f"| {format_cell(run['p50_ms'], 2)} | {format_cell(run['p99_ms'], 2)} "
                f"| {format_cell(run['server_cpu_per_req_us'], 1)} "
                f"| {format_cell(run.get('server_cpu_irq_per_req_us'), 1)} "
                f"| {format_cell(run.get('pinned_cpu_other_pct'), 0, '%')} | {run['errors']} |"
            )
        lines.append("")
    lines.append("Knee, in connections (none: p99 never outgrew req/s within the sweep):")
    for strategy, by_size in knee.items():
        cells = ", ".join(f"{size} {'none' if k is None else k}" for size, k in by_size.items())
        lines.append(f"- {strategy}: {cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if unknown := sorted(set(strategies) - set(STRATEGIES)):
        print(f"unknown strategies: {unknown}; choose from {list(STRATEGIES)}", file=sys.stderr)
        return 2
    sizes: dict[str, int] = args.sizes
    if args.connections is not None:
        connections: list[int] = args.connections
    else:
        connections = list(QUICK_CONNECTIONS if args.quick else CONNECTIONS)
    run = LoadRun(args, "bench-load")
    meta = run.meta("load")
    meta |= {
        "repetitions": args.repetitions,
        "strategies": strategies,
        "connections": connections,
        "sizes": sizes,
        "order": "per size, per concurrency, per repetition: strategies in turn (A B C D A B C D)",
        "server_cpu": "utime+stime of the server's process group from /proc/PID/stat, "
        "difference around each wrk run (10 ms ticks)",
        "knee_definition": KNEE_DEFINITION,
    }
    with run.servers() as ss:
        docs = make_docroot(ss.workdir / "www", sizes)
        servers: dict[str, RunningServer] = {}
        for strategy in strategies:
            server = ss.start(f"zerocopy-{strategy}", zerocopy_argv(ss.workdir / "www", strategy))
            servers[strategy] = server
            for doc in docs.values():
                print(f"  {server.name} GET {doc.path}: {verify_file(server.port, doc)}")
        # Within each (size, connections) step the strategies take turns: A B C D A B C D.
        cells = [
            Cell(rep, strategy, server, doc, conns)
            for doc in docs.values()
            for conns in connections
            for rep in range(args.repetitions)
            for strategy, server in servers.items()
        ]
        results = run.measure(cells, warmup_connections=WARMUP_CONNECTIONS)
    raw = [_row(cell, measurement) for cell, measurement in results]
    run.finish(meta)
    runs = medians_by(raw, ("strategy", "size", "connections"), _MEDIAN_FIELDS)
    knee = knees(runs, strategies, list(sizes))
    write_json(args.output, {"meta": meta, "runs": runs, "knee": knee, "raw": raw})
    print()
    print(summary_markdown(runs, knee, list(sizes)))
    print()
    print(f"Latency: {COORDINATED_OMISSION_NOTE}")
    run.print_end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
