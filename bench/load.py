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

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench._load_env import (
    COORDINATED_OMISSION_NOTE,
    Budget,
    Pinning,
    add_common_arguments,
    choose_pinning,
    line_buffered_stdout,
    machine_meta,
    parse_int_list,
    parse_size_list,
    signals_raise_keyboard_interrupt,
    write_json,
)
from bench._load_progress import Progress
from bench._load_servers import (
    ServerSet,
    ServerStartError,
    VerificationError,
    make_docroot,
    measure,
    verify_file,
    zerocopy_argv,
)
from bench._load_stats import KneePoint, find_knee, finite_or_none, medians_by
from bench._load_wrk import WrkError, wrk_version

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from bench._load_servers import DocFile, Measurement, RunningServer

STRATEGIES: Final = ("auto", "sendfile", "splice", "readwrite")
CONNECTIONS: Final = (1, 4, 16, 64, 256)
QUICK_CONNECTIONS: Final = (1, 16)
SIZES: Final = "4KiB,1MiB"
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
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Concurrency sweep of every zerocopy strategy with wrk "
        "(writes bench/results/load.json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma-separated zerocopy strategies, measured alternately",
    )
    parser.add_argument(
        "--sizes", type=parse_size_list, default=SIZES, help="comma-separated file sizes"
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


def _row(
    rep: int, strategy: str, doc: DocFile, connections: int, measurement: Measurement
) -> dict[str, Any]:
    wrk = measurement.wrk
    return {
        "rep": rep,
        "strategy": strategy,
        "size": doc.label,
        "size_bytes": doc.size,
        "connections": connections,
        "rps": wrk.rps,
        "p50_ms": wrk.p50_ms,
        "p75_ms": wrk.percentiles_ms.get(75.0, math.nan),
        "p90_ms": wrk.percentiles_ms.get(90.0, math.nan),
        "p99_ms": wrk.p99_ms,
        "latency_avg_ms": wrk.latency_avg_ms,
        "latency_max_ms": wrk.latency_max_ms,
        "server_cpu_s": measurement.server_cpu_s,
        "server_cpu_per_req_us": measurement.cpu_per_req_us,
        "server_cpu_irq_per_req_us": measurement.cpu_irq_per_req_us,
        "requests": wrk.requests,
        "duration_s": wrk.duration_s,
        "bytes_read": wrk.bytes_read,
        "socket_errors": {
            "connect": wrk.socket_errors.connect,
            "read": wrk.socket_errors.read,
            "write": wrk.socket_errors.write,
            "timeout": wrk.socket_errors.timeout,
        },
        "non_2xx_3xx": wrk.non_2xx_3xx,
        "errors": wrk.errors,
        "server_involuntary_switches": measurement.involuntary_switches,
        "pinned_cpu_other_pct": measurement.pinned_cpu_other_pct,
        "pinned_cpu_steal_pct": measurement.pinned_cpu_steal_pct,
        "pinned_cpu_irq_pct": measurement.pinned_cpu_irq_pct,
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


def _fmt(value: object, digits: int = 0, suffix: str = "") -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}{suffix}"


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
                f"| {run['strategy']} | {run['connections']}{mark} | {_fmt(run['rps'])} "
                f"| {_fmt(run['p50_ms'], 2)} | {_fmt(run['p99_ms'], 2)} "
                f"| {_fmt(run['server_cpu_per_req_us'], 1)} "
                f"| {_fmt(run.get('server_cpu_irq_per_req_us'), 1)} "
                f"| {_fmt(run.get('pinned_cpu_other_pct'), 0, '%')} | {run['errors']} |"
            )
        lines.append("")
    lines.append("Knee, in connections (none: p99 never outgrew req/s within the sweep):")
    for strategy, by_size in knee.items():
        cells = ", ".join(f"{size} {'none' if k is None else k}" for size, k in by_size.items())
        lines.append(f"- {strategy}: {cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    line_buffered_stdout()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if unknown := sorted(set(strategies) - set(STRATEGIES)):
        print(f"unknown strategies: {unknown}; choose from {list(STRATEGIES)}", file=sys.stderr)
        return 2
    sizes: dict[str, int] = args.sizes
    if args.connections is not None:
        connections: list[int] = args.connections
    else:
        connections = list(QUICK_CONNECTIONS if args.quick else CONNECTIONS)
    if args.quick:
        args.duration, args.repetitions, args.warmup = 1, 1, 0
    if args.duration < 1 or args.repetitions < 1 or args.warmup < 0:
        print("--duration and --repetitions must be at least 1", file=sys.stderr)
        return 2
    wrk = wrk_version()
    if wrk is None:
        print("wrk is not installed (apt-get install wrk); nothing measured", file=sys.stderr)
        return 1
    pinning = choose_pinning(args.server_cpu, args.wrk_cpu, enabled=args.pin)
    print(f"bench-load: {pinning.note}; {wrk}", flush=True)

    meta: dict[str, Any] = machine_meta()
    meta |= {
        "benchmark": "load",
        "wrk": wrk,
        "wrk_threads": args.threads,
        "wrk_timeout_s": args.wrk_timeout,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repetitions": args.repetitions,
        "strategies": strategies,
        "connections": connections,
        "sizes": sizes,
        "quick": args.quick,
        "pinning": {
            "server_cpu": pinning.server_cpu,
            "wrk_cpu": pinning.wrk_cpu,
            "note": pinning.note,
        },
        "order": "per size, per concurrency, per repetition: strategies in turn (A B C D A B C D)",
        "page_cache": "hot: files written, read back and fetched once before measuring",
        "server_cpu": "utime+stime of the server's process group from /proc/PID/stat, "
        "difference around each wrk run (10 ms ticks)",
        "pinned_cpu_other_pct": "time the server's CPU (/proc/stat) gave to other processes or "
        "to the hypervisor (steal), in % of the run; high = disturbed run",
        "pinned_cpu_irq_pct": "time the server's CPU spent in irq+softirq (its ksoftirqd thread "
        "included), in % of the run: mostly loopback TCP processing, not in server CPU",
        "server_cpu_irq_per_req_us": "server CPU + that irq/softirq time, per request",
        "latency_note": COORDINATED_OMISSION_NOTE,
        "knee_definition": KNEE_DEFINITION,
    }
    budget = Budget(args.time_limit)
    workdir = Path(tempfile.mkdtemp(prefix="zerocopy-bench-load-"))
    workdir.chmod(0o755)
    raw: list[dict[str, Any]] = []
    keep_logs = False
    try:
        with signals_raise_keyboard_interrupt(), ServerSet(workdir, cpu=pinning.server_cpu) as ss:
            docs = make_docroot(workdir / "www", sizes)
            servers: dict[str, RunningServer] = {}
            for strategy in strategies:
                server = ss.start(f"zerocopy-{strategy}", zerocopy_argv(workdir / "www", strategy))
                servers[strategy] = server
                for doc in docs.values():
                    print(f"  {server.name} GET {doc.path}: {verify_file(server.port, doc)}")
            raw = _sweep(args, servers, docs, connections, budget, pinning)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ServerStartError, VerificationError, WrkError) as exc:
        keep_logs = True
        print(f"bench-load failed: {exc}\nservers stopped; logs kept in {workdir}", file=sys.stderr)
        return 1
    finally:
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    meta["wall_time_s"] = round(budget.elapsed, 1)
    meta["complete"] = not budget.hit
    if budget.hit:
        meta["incomplete_reason"] = f"--time-limit {args.time_limit:g} s reached"
    runs = medians_by(raw, ("strategy", "size", "connections"), _MEDIAN_FIELDS)
    knee = knees(runs, strategies, list(sizes))
    write_json(args.output, {"meta": meta, "runs": runs, "knee": knee, "raw": raw})
    print()
    print(summary_markdown(runs, knee, list(sizes)))
    print()
    print(f"Latency: {COORDINATED_OMISSION_NOTE}")
    if budget.hit:
        print(f"Stopped early: --time-limit {args.time_limit:g} s reached.")
    print(f"Wrote {args.output} in {budget.elapsed:.0f} s.")
    return 0


def _sweep(
    args: argparse.Namespace,
    servers: Mapping[str, RunningServer],
    docs: Mapping[str, DocFile],
    connections: Sequence[int],
    budget: Budget,
    pinning: Pinning,
) -> list[dict[str, Any]]:
    """The measuring loops; bounded by their counts and by ``budget``."""
    common = {
        "threads": args.threads,
        "wrk_timeout_s": args.wrk_timeout,
        "wrk_cpu": pinning.wrk_cpu,
        "server_cpu": pinning.server_cpu,
    }
    if args.warmup:
        for doc in docs.values():
            for server in servers.values():
                measure(
                    server, doc, connections=WARMUP_CONNECTIONS, duration_s=args.warmup, **common
                )
    raw: list[dict[str, Any]] = []
    total = len(docs) * len(connections) * args.repetitions * len(servers)
    with Progress(total, "bench-load", style=args.progress) as progress:
        for doc in docs.values():
            for conns in connections:
                for rep in range(args.repetitions):
                    for strategy, server in servers.items():
                        if budget.exceeded():
                            progress.note("time limit reached: stopping")
                            return raw
                        started = time.monotonic()
                        measurement = measure(
                            server, doc, connections=conns, duration_s=args.duration, **common
                        )
                        row = _row(rep, strategy, doc, conns, measurement)
                        raw.append(row)
                        warn = f" ERRORS {row['errors']}" if row["errors"] else ""
                        progress.advance(
                            f"{doc.label} c={conns} rep {rep + 1} {strategy}: "
                            f"{row['rps']:,.0f} req/s, p50 {row['p50_ms']:.2f} ms, "
                            f"p99 {row['p99_ms']:.2f} ms, "
                            f"{finite_or_none(row['server_cpu_per_req_us']) or 0:.1f} µs CPU/req"
                            f"{warn} ({time.monotonic() - started:.1f} s)"
                        )
    return raw


if __name__ == "__main__":
    sys.exit(main())
