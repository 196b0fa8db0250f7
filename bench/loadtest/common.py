"""What the sweep and the peer comparison share: flags, pinning, the measuring loop, medians.

``bench.loadtest.sweep`` and ``bench.loadtest.peers`` differ in what they start and in the
order of their jobs; everything else is here. A :class:`LoadRun` applies the shared flags,
finds wrk and chooses the pinning; :meth:`LoadRun.servers` gives a scratch directory and a
:class:`~bench.harness.servers.ServerSet` in it, both cleaned up however the run ends;
:meth:`LoadRun.measure` runs the jobs in the order given, bounded by the time budget, with one
progress line each. Errors that end a run (a server that does not start, a wrong file, wrk
failing, Ctrl-C or SIGTERM) become an exit status, with the servers stopped and, on a failure,
their logs kept.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

from bench.harness.files import VerificationError
from bench.harness.machine import auto_workers, choose_pinning, machine_info, place_workers
from bench.harness.progress import STYLES, Progress
from bench.harness.results import RESULTS_DIR
from bench.harness.schema import Cell, Row, Scaling, WrkRun
from bench.harness.servers import ServerSet, ServerStartError, signals_raise_keyboard_interrupt
from bench.harness.sizes import parse_size_list
from bench.harness.stats import median_or_none, paired_ratio
from bench.loadtest.wrk import WrkError, WrkSettings, measure, wrk_version

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from bench.harness.schema import Machine, WorkerPlacement
    from bench.harness.servers import RunningServer
    from bench.loadtest.wrk import Measurement, Workload

__all__ = [
    "COORDINATED_OMISSION_NOTE",
    "CPU_NOTES",
    "Budget",
    "Job",
    "LoadRun",
    "add_common_arguments",
    "choose",
    "medians",
    "new_parser",
    "parse_int_list",
    "parse_workers",
    "scaling",
]

SIZES: Final = "4KiB,1MiB"

COORDINATED_OMISSION_NOTE: Final = (
    "wrk is closed-loop: each connection waits for its response before sending the next "
    "request, so its latency percentiles suffer from coordinated omission and understate the "
    "tail once the server saturates; throughput is the robust number."
)
CPU_NOTES: Final = {
    "server_cpu": "utime+stime summed over the server's process group (nginx's master and "
    "worker) from /proc/PID/stat, difference around each wrk run (10 ms ticks)",
    "pinned_cpu_other_pct": "time the server's CPU (/proc/stat) gave to other processes or to "
    "the hypervisor (steal), in % of the run; high = disturbed run",
    "pinned_cpu_irq_pct": "time the server's CPU spent in irq+softirq (its ksoftirqd thread "
    "included), in % of the run: mostly loopback TCP processing, not in server CPU",
    "server_cpu_irq_per_req_us": "server CPU + that irq/softirq time, per request",
    "page_cache": "hot: files written, read back and fetched once before measuring",
    "latency": COORDINATED_OMISSION_NOTE,
}


def _line_buffered_stdout() -> None:
    """Notes on stdout and progress on stderr stay in order, also when piped (make, tee)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def parse_int_list(text: str) -> list[int]:
    """``"1,4,16"`` to ``[1, 4, 16]``; every value must be at least 1."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"need positive integers, comma-separated: {text!r}")
    return values


def parse_workers(text: str) -> list[int]:
    """``--workers``: ``"1,2"``, or ``"auto"`` (:func:`bench.harness.machine.auto_workers`:
    1, and the CPUs left once wrk has one; on a 2-CPU machine also 2, sharing with wrk)."""
    if text.strip() == "auto":
        return auto_workers(len(os.sched_getaffinity(0)))
    return sorted(set(parse_int_list(text)))


def choose(text: str, known: Sequence[str], what: str) -> list[str]:
    """The comma-separated names of ``text``, each one of ``known``, in the order given.

    Raises:
        SystemExit: 2, with a message, for a name that is not known.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if unknown := sorted(set(names) - set(known)):
        print(f"unknown {what}: {unknown}; choose from {list(known)}", file=sys.stderr)
        raise SystemExit(2)
    return names


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows every default; add the script's own flags, then
    :func:`add_common_arguments`."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def add_common_arguments(
    parser: argparse.ArgumentParser, *, output: str, workers: str, workers_note: str
) -> None:
    """The flags shared by ``bench.load`` and ``bench.peers``."""
    parser.add_argument(
        "--sizes", type=parse_size_list, default=SIZES, help="comma-separated file sizes"
    )
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=workers,
        help="comma-separated worker counts (zerocopy --workers N against nginx "
        "worker_processes N), or auto: 1 and the CPUs left once wrk has one (on 2 CPUs also "
        f"2, sharing the CPUs with wrk); {workers_note}",
    )
    parser.add_argument(
        "--duration", type=int, default=5, help="seconds per wrk run (whole seconds, wrk's -d)"
    )
    parser.add_argument(
        "--repetitions", type=int, default=3, help="repetitions of every cell; medians reported"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="seconds of unrecorded load per server and workload before measuring (0: none)",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (wrk's -t)")
    parser.add_argument(
        "--wrk-timeout", type=int, default=2, help="wrk's --timeout in seconds (wrk default: 2)"
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin with taskset"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=3600.0,
        help="stop measuring after this many seconds and write what was measured",
    )
    parser.add_argument(
        "--progress",
        choices=STYLES,
        default="auto",
        help="progress display on stderr (rich or tqdm when installed)",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / output, help="where the JSON goes"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 s runs, one repetition, no warm-up, fewer cells (overrides the above)",
    )


@final
class Budget:
    """A wall-clock bound on a whole run: loops ask ``exceeded()`` before every step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.hit = False

    def exceeded(self) -> bool:
        if time.monotonic() - self.started > self.seconds:
            self.hit = True
        return self.hit

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@final
@dataclass(frozen=True, slots=True)
class Job:
    """One wrk run to make: which repetition, against which server, for which workload."""

    rep: int
    name: str
    """The strategy (sweep) or candidate (peers)."""
    server: RunningServer
    workload: Workload
    connections: int
    workers: int = 1
    """Worker processes of ``server``."""


def row(job: Job, measurement: Measurement) -> Row:
    """The record of one measured job."""
    return Row(
        rep=job.rep,
        server=job.name,
        workers=job.workers,
        workload=job.workload.label,
        connections=job.connections,
        figures=measurement.figures(),
    )


def medians(rows: Iterable[Row]) -> tuple[Cell, ...]:
    """The median of every figure per (server, workers, workload, connections), in first-seen
    order."""
    groups: dict[tuple[str, int, str, int], list[Row]] = {}
    for item in rows:
        key = (item.server, item.workers, item.workload, item.connections)
        groups.setdefault(key, []).append(item)
    cells = []
    for (server, workers, workload, connections), members in groups.items():
        figures = [member.figures for member in members]
        cells.append(
            Cell(
                server=server,
                workers=workers,
                workload=workload,
                connections=connections,
                repetitions=len(members),
                rps=median_or_none(f.rps for f in figures),
                p50_ms=median_or_none(f.p50_ms for f in figures),
                p99_ms=median_or_none(f.p99_ms for f in figures),
                server_cpu_per_req_us=median_or_none(f.server_cpu_per_req_us for f in figures),
                server_cpu_irq_per_req_us=median_or_none(
                    f.server_cpu_irq_per_req_us for f in figures
                ),
                pinned_cpu_other_pct=median_or_none(f.pinned_cpu_other_pct for f in figures),
                requests=round(median_or_none(f.requests for f in figures) or 0),
                errors=sum(f.errors for f in figures),
            )
        )
    return tuple(cells)


def scaling(rows: Iterable[Row]) -> tuple[Scaling, ...]:
    """Every server measured with N > 1 workers against itself with 1, on the same workload
    and connections, repetition by repetition (medians of per-repetition ratios)."""
    rps: dict[tuple[str, str, int, int], dict[int, float | None]] = {}
    cpu: dict[tuple[str, str, int, int], dict[int, float | None]] = {}
    for item in rows:
        key = (item.server, item.workload, item.connections, item.workers)
        rps.setdefault(key, {})[item.rep] = item.figures.rps
        cpu.setdefault(key, {})[item.rep] = item.figures.server_cpu_per_req_us
    result = []
    for (server, workload, connections, workers), values in rps.items():
        single = (server, workload, connections, 1)
        if workers == 1 or single not in rps:
            continue
        per_worker = {
            rep: None if value is None else value / workers for rep, value in values.items()
        }
        result.append(
            Scaling(
                server=server,
                workload=workload,
                connections=connections,
                workers=workers,
                efficiency=paired_ratio(per_worker, rps[single]),
                rps_ratio=paired_ratio(values, rps[single]),
                cpu_ratio=paired_ratio(cpu[server, workload, connections, workers], cpu[single]),
            )
        )
    return tuple(result)


@final
class LoadRun:
    """One run of ``bench.load`` or ``bench.peers``: its flags, wrk, pinning and time budget.

    Constructing it applies ``--quick``, checks the shared flags, finds wrk, chooses the
    pinning and prints one line saying so.

    Args:
        args: the parsed flags of :func:`add_common_arguments`.
        title: ``bench-load`` or ``bench-peers``, for messages and the scratch directory.
        packages: Python distributions whose versions the results record.

    Raises:
        SystemExit: 2 for a flag out of range, 1 when wrk is missing (a message is printed).
    """

    def __init__(self, args: argparse.Namespace, title: str, packages: Sequence[str] = ()) -> None:
        if args.quick:
            args.duration, args.repetitions, args.warmup = 1, 1, 0
        if args.duration < 1 or args.repetitions < 1 or args.warmup < 0:
            print("--duration and --repetitions must be at least 1", file=sys.stderr)
            raise SystemExit(2)
        wrk = wrk_version()
        if wrk is None:
            print("wrk is not installed (apt-get install wrk); nothing measured", file=sys.stderr)
            raise SystemExit(1)
        _line_buffered_stdout()
        self.args = args
        self.title = title
        self.machine: Machine = machine_info(packages, tools=("wrk", "nginx"))
        self.pinning = choose_pinning(args.server_cpu, args.wrk_cpu, enabled=args.pin)
        self.settings = WrkSettings(
            threads=args.threads,
            timeout_s=args.wrk_timeout,
            wrk_cpu=self.pinning.client_cpu,
            server_cpu=self.pinning.server_cpu,
        )
        self.budget = Budget(args.time_limit)
        self.placements: dict[int, WorkerPlacement] = {
            workers: place_workers(workers, self.pinning) for workers in args.workers
        }
        print(f"{title}: {self.pinning.note}; {wrk}", flush=True)
        for placement in self.placements.values():
            if placement.workers > 1:
                print(f"  {placement.note}", flush=True)

    @contextlib.contextmanager
    def servers(self) -> Iterator[ServerSet]:
        """A scratch directory with a :class:`ServerSet` in it, for the ``with`` block.

        Raises:
            SystemExit: 130 on Ctrl-C, SIGTERM or SIGHUP; 1 when a server does not start,
                serves the wrong file, or wrk fails (a message is printed).

        Resource handling: every server is stopped when the block ends; the directory is
        removed, except after a failure, when it keeps the servers' logs.
        """
        workdir = Path(tempfile.mkdtemp(prefix=f"zerocopy-{self.title}-"))
        workdir.chmod(0o755)
        keep_logs = False
        try:
            with (
                signals_raise_keyboard_interrupt(),
                ServerSet(workdir, cpu=self.pinning.server_cpu) as servers,
            ):
                yield servers
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except (ServerStartError, VerificationError, WrkError) as exc:
            keep_logs = True
            print(
                f"{self.title} failed: {exc}\nservers stopped; logs kept in {workdir}",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
        finally:
            if not keep_logs:
                shutil.rmtree(workdir, ignore_errors=True)

    def measure(self, jobs: Sequence[Job], *, warmup_connections: int) -> list[Row]:
        """Warm every (workload, server) pair up, then measure the jobs in the order given.

        The warm-up is ``--warmup`` seconds of unrecorded load per server and workload, at
        ``warmup_connections``. The jobs stop early, with what was measured so far, once the
        time budget is spent.

        Raises:
            WrkError: wrk failed.
            ServerStartError: a server died during a run.
        """
        duration = self.args.duration
        if self.args.warmup:
            pairs = {(job.workload.label, job.name, job.workers): job for job in jobs}
            for job in pairs.values():
                measure(
                    job.server,
                    job.workload,
                    connections=warmup_connections,
                    duration_s=self.args.warmup,
                    settings=self._settings(job),
                )
        rows: list[Row] = []
        with Progress(len(jobs), self.title, style=self.args.progress) as progress:
            for job in jobs:
                if self.budget.exceeded():
                    progress.note("time limit reached: stopping")
                    break
                started = time.monotonic()
                measurement = measure(
                    job.server,
                    job.workload,
                    connections=job.connections,
                    duration_s=duration,
                    settings=self._settings(job),
                )
                rows.append(row(job, measurement))
                workers = f" x{job.workers}" if job.workers > 1 else ""
                progress.advance(
                    f"rep {job.rep + 1} {job.workload.label} c={job.connections} "
                    f"{job.name}{workers}: {measurement.describe()} "
                    f"({time.monotonic() - started:.1f} s)"
                )
        return rows

    def _settings(self, job: Job) -> WrkSettings:
        """One worker is pinned to the server CPU, whose irq time and other load are read;
        several share CPUs, where neither means anything for the server alone."""
        if job.workers == 1:
            return self.settings
        return dataclasses.replace(self.settings, server_cpu=None)

    def server_cpus(self, workers: int) -> tuple[int, ...] | None:
        """The CPUs a server with ``workers`` workers is pinned to."""
        return self.placements[workers].cpus

    @property
    def complete(self) -> bool:
        """Whether every job ran (the time budget was not hit)."""
        return not self.budget.hit

    def record(self, notes: dict[str, str]) -> WrkRun:
        """How this run went, for its results file: call it when measuring is over."""
        args = self.args
        return WrkRun(
            machine=self.machine,
            pinning=self.pinning,
            duration_s=args.duration,
            warmup_s=args.warmup,
            repetitions=args.repetitions,
            quick=args.quick,
            wrk_threads=args.threads,
            wrk_timeout_s=args.wrk_timeout,
            wall_time_s=round(self.budget.elapsed, 1),
            complete=self.complete,
            notes={**CPU_NOTES, **notes},
        )

    def print_end(self) -> None:
        """The last lines of the output: an early stop, and where the JSON went."""
        if self.budget.hit:
            print(f"Stopped early: --time-limit {self.args.time_limit:g} s reached.")
        print(f"Wrote {self.args.output} in {self.budget.elapsed:.0f} s.")
