"""The load sweep: req/s, p50/p99 and server CPU per strategy, file size and concurrency.

``python -m bench.load`` (``make bench-load``) starts one zerocopy server per strategy, pinned
to one CPU, and drives each with wrk (pinned to another) at 1, 4, 16, 64 and 256 keep-alive
connections, on a 4 KiB and a 1 MiB file. Within each (size, concurrency) step the strategies
take turns, A B C D A B C D ..., so that drift on this shared machine hits them all alike;
each cell is the median of its repetitions. It writes ``bench/results/load.json``
(:class:`~bench.harness.schema.LoadResults`). ``--quick`` is a smoke test of under 30 s.

The knee: for one strategy and file size, take the concurrency steps ``c_0 < c_1 < ...`` with
median throughput ``rps_i`` and median 99th-percentile latency ``p99_i``. The knee is
``c_(i-1)`` for the first step ``i`` at which the relative growth of p99 exceeds the relative
growth of throughput::

    p99_i / p99_(i-1) - 1  >  rps_i / rps_(i-1) - 1

that is, the last concurrency before added connections buy more queueing than throughput. No
such step: no knee within the sweep (``None``). In a closed loop, Little's law ties the two
(connections = throughput x mean latency), so with 4x steps the knee is where throughput stops
at least doubling per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Final, final

from bench.harness.files import make_docroot, verify_file
from bench.harness.names import STRATEGIES
from bench.harness.results import write_record
from bench.harness.schema import Knee, LoadMeta, LoadResults
from bench.harness.servers import zerocopy_argv
from bench.loadtest.common import (
    Job,
    LoadRun,
    add_common_arguments,
    choose,
    medians,
    new_parser,
    parse_int_list,
    scaling,
)
from bench.loadtest.wrk import Workload

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Sequence

    from bench.harness.schema import Cell
    from bench.harness.servers import RunningServer

__all__ = ["KneePoint", "build_parser", "find_knee", "knees", "run"]

CONNECTIONS: Final = (1, 4, 16, 64, 256)
QUICK_CONNECTIONS: Final = (1, 16)
WARMUP_CONNECTIONS: Final = 16
KNEE_DEFINITION: Final = (
    "For one strategy and size, with concurrency steps c_0 < c_1 < ... and median req/s rps_i "
    "and p99 p99_i, the knee is c_(i-1) for the first step i where the relative growth of p99 "
    "exceeds that of req/s: p99_i/p99_(i-1) - 1 > rps_i/rps_(i-1) - 1. null: p99 never "
    "outgrew req/s within the sweep."
)


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


def knees(cells: Sequence[Cell]) -> tuple[Knee, ...]:
    """The knee of every (strategy, workers, workload) swept, from the median cells."""
    points: dict[tuple[str, int, str], list[KneePoint]] = {}
    for cell in cells:
        points.setdefault((cell.server, cell.workers, cell.workload), []).append(
            KneePoint(
                cell.connections,
                math.nan if cell.rps is None else cell.rps,
                math.nan if cell.p99_ms is None else cell.p99_ms,
            )
        )
    return tuple(
        Knee(server, workers, workload, find_knee(found))
        for (server, workers, workload), found in points.items()
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
    add_common_arguments(
        parser,
        output="load.json",
        workers="1",
        workers_note="every strategy is swept at every count (the sweep is already 10 min)",
    )
    return parser


def run(argv: Sequence[str] | None = None) -> LoadResults:
    """Parse the flags, measure, write ``load.json`` and return what it holds.

    Raises:
        SystemExit: 2 for bad flags; 1 or 130 when the run fails or is interrupted (the
            servers are stopped, a message printed).
    """
    args = build_parser().parse_args(argv)
    strategies = choose(args.strategies, STRATEGIES, "strategies")
    sizes: dict[str, int] = args.sizes
    if args.connections is not None:
        connections: list[int] = args.connections
    else:
        connections = list(QUICK_CONNECTIONS if args.quick else CONNECTIONS)
    load = LoadRun(args, "bench-load")
    with load.servers() as ss:
        docs = make_docroot(ss.workdir / "www", sizes)
        workloads = [Workload.of_file(doc) for doc in docs.values()]
        servers: dict[tuple[str, int], RunningServer] = {}
        for workers in args.workers:
            for strategy in strategies:
                name = f"zerocopy-{strategy}" + (f"-w{workers}" if workers > 1 else "")
                argv = zerocopy_argv(ss.workdir / "www", strategy, "--workers", str(workers))
                server = ss.start(name, argv, cpus=load.server_cpus(workers))
                servers[strategy, workers] = server
                for doc in docs.values():
                    print(f"  {server.name} GET {doc.path}: {verify_file(server.port, doc)}")
        # Within each (size, connections) step the servers take turns: A B C D A B C D.
        jobs = [
            Job(rep, strategy, server, workload, conns, workers)
            for workload in workloads
            for conns in connections
            for rep in range(args.repetitions)
            for (strategy, workers), server in servers.items()
        ]
        rows = load.measure(jobs, warmup_connections=WARMUP_CONNECTIONS)
    cells = medians(rows)
    results = LoadResults(
        meta=LoadMeta(
            run=load.record(
                {
                    "order": "per size, per concurrency, per repetition: strategies in turn "
                    "(A B C D A B C D)",
                    "knee": KNEE_DEFINITION,
                }
            ),
            strategies=tuple(strategies),
            connections=tuple(connections),
            placements=tuple(load.placements.values()),
        ),
        workloads=tuple(workload.info for workload in workloads),
        cells=cells,
        knees=knees(cells),
        scaling=scaling(rows),
        rows=tuple(rows),
    )
    write_record(args.output, results)
    load.print_end()
    return results
