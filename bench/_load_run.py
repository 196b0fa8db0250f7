"""What both load scripts share: the command line, pinning, metadata, the measuring loop, output.

``bench/load.py`` and ``bench/peers.py`` differ in what they start and in the order of their
cells; everything else is here. A :class:`LoadRun` applies the shared flags, finds wrk and
chooses the pinning; :meth:`LoadRun.servers` gives a scratch directory and a
:class:`~bench.serverproc.ServerSet` in it, both cleaned up however the run ends;
:meth:`LoadRun.measure` runs the cells in the order given, bounded by the time budget, with
one progress line each. Errors that end a run (a server that does not start, a wrong file,
wrk failing, Ctrl-C or SIGTERM) become an exit status, with the servers stopped and, on a
failure, their logs kept.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from bench._load_wrk import WrkError, WrkSettings, measure, wrk_version
from bench.dataset import VerificationError
from bench.plan import format_size, parse_size
from bench.procfs import CLOCK_TICKS, cpu_model, loadavg
from bench.progress import STYLES, Progress
from bench.serverproc import ServerSet, ServerStartError, signals_raise_keyboard_interrupt

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from bench._load_wrk import Measurement
    from bench.dataset import DocFile
    from bench.serverproc import RunningServer

__all__ = [
    "COORDINATED_OMISSION_NOTE",
    "Budget",
    "Cell",
    "LoadRun",
    "Pinning",
    "add_common_arguments",
    "choose_pinning",
    "line_buffered_stdout",
    "machine_meta",
    "new_parser",
    "parse_int_list",
    "parse_size_list",
    "write_json",
]

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
SIZES: Final = "4KiB,1MiB"

COORDINATED_OMISSION_NOTE: Final = (
    "wrk is closed-loop: each connection waits for its response before sending the next "
    "request, so its latency percentiles suffer from coordinated omission and understate the "
    "tail once the server saturates; throughput is the robust number."
)


def line_buffered_stdout() -> None:
    """Notes on stdout and progress on stderr stay in order, also when piped (make, tee)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def parse_int_list(text: str) -> list[int]:
    """``"1,4,16"`` to ``[1, 4, 16]``; every value must be at least 1."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"need positive integers, comma-separated: {text!r}")
    return values


def parse_size_list(text: str) -> dict[str, int]:
    """``"4KiB,1MiB"`` to ``{"4KiB": 4096, "1MiB": 1048576}`` (labels normalised)."""
    sizes = {}
    for part in text.split(","):
        if part.strip():
            size = parse_size(part)
            sizes[format_size(size)] = size
    if not sizes:
        raise ValueError(f"no sizes in {text!r}")
    return sizes


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows every default; add the script's own flags, then
    :func:`add_common_arguments`."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def add_common_arguments(parser: argparse.ArgumentParser, *, output: str) -> None:
    """The flags shared by ``load.py`` and ``peers.py``."""
    parser.add_argument(
        "--sizes", type=parse_size_list, default=SIZES, help="comma-separated file sizes"
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
        help="seconds of unrecorded load per server and size before measuring (0: none)",
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
@dataclass(frozen=True, slots=True)
class Pinning:
    server_cpu: int | None
    wrk_cpu: int | None
    note: str


def choose_pinning(server_cpu: int, wrk_cpu: int, *, enabled: bool) -> Pinning:
    """Pin only when asked, taskset exists, and both CPUs are distinct and allowed to us."""
    if not enabled:
        return Pinning(None, None, "not pinned (--no-pin)")
    if shutil.which("taskset") is None:
        return Pinning(None, None, "not pinned: taskset is missing (util-linux)")
    allowed = os.sched_getaffinity(0)
    if server_cpu == wrk_cpu or not {server_cpu, wrk_cpu} <= allowed:
        return Pinning(
            None,
            None,
            f"not pinned: CPUs {server_cpu} and {wrk_cpu} are not two distinct CPUs of "
            f"{sorted(allowed)}",
        )
    return Pinning(server_cpu, wrk_cpu, f"server on CPU {server_cpu}, wrk on CPU {wrk_cpu}")


def _package_versions(names: Sequence[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_meta(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Machine, kernel, Python and package versions, and the load when the run started."""
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "clock_ticks_per_s": CLOCK_TICKS,
        "loadavg_at_start": [float(value) for value in loadavg()],
        "packages": _package_versions(["zerocopy", "trio", "httptools", *packages]),
    }


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
class Cell:
    """One wrk run to make: which repetition, against which server, for which file."""

    rep: int
    name: str
    """The strategy (load) or candidate (peers)."""
    server: RunningServer
    doc: DocFile
    connections: int


@final
class LoadRun:
    """One run of ``bench.load`` or ``bench.peers``: its flags, wrk, pinning and time budget.

    Constructing it applies ``--quick``, checks the shared flags, finds wrk, chooses the
    pinning and prints one line saying so.

    Args:
        args: the parsed flags of :func:`add_common_arguments`.
        title: ``bench-load`` or ``bench-peers``, for messages and the scratch directory.

    Raises:
        SystemExit: 2 for a flag out of range, 1 when wrk is missing (a message is printed).
    """

    def __init__(self, args: argparse.Namespace, title: str) -> None:
        if args.quick:
            args.duration, args.repetitions, args.warmup = 1, 1, 0
        if args.duration < 1 or args.repetitions < 1 or args.warmup < 0:
            print("--duration and --repetitions must be at least 1", file=sys.stderr)
            raise SystemExit(2)
        wrk = wrk_version()
        if wrk is None:
            print("wrk is not installed (apt-get install wrk); nothing measured", file=sys.stderr)
            raise SystemExit(1)
        line_buffered_stdout()
        self.args = args
        self.title = title
        self.wrk = wrk
        self.pinning = choose_pinning(args.server_cpu, args.wrk_cpu, enabled=args.pin)
        self.settings = WrkSettings(
            threads=args.threads,
            timeout_s=args.wrk_timeout,
            wrk_cpu=self.pinning.wrk_cpu,
            server_cpu=self.pinning.server_cpu,
        )
        self.budget = Budget(args.time_limit)
        print(f"{title}: {self.pinning.note}; {wrk}", flush=True)

    def meta(self, benchmark: str, packages: Sequence[str] = ()) -> dict[str, Any]:
        """The metadata both JSON files carry; each script adds its own keys."""
        args, pinning = self.args, self.pinning
        return machine_meta(packages) | {
            "benchmark": benchmark,
            "wrk": self.wrk,
            "wrk_threads": args.threads,
            "wrk_timeout_s": args.wrk_timeout,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "quick": args.quick,
            "pinning": {
                "server_cpu": pinning.server_cpu,
                "wrk_cpu": pinning.wrk_cpu,
                "note": pinning.note,
            },
            "page_cache": "hot: files written, read back and fetched once before measuring",
            "pinned_cpu_other_pct": "time the server's CPU (/proc/stat) gave to other processes "
            "or to the hypervisor (steal), in % of the run; high = disturbed run",
            "pinned_cpu_irq_pct": "time the server's CPU spent in irq+softirq (its ksoftirqd "
            "thread included), in % of the run: mostly loopback TCP processing, not in server "
            "CPU",
            "server_cpu_irq_per_req_us": "server CPU + that irq/softirq time, per request",
            "latency_note": COORDINATED_OMISSION_NOTE,
        }

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

    def measure(
        self, cells: Sequence[Cell], *, warmup_connections: int
    ) -> list[tuple[Cell, Measurement]]:
        """Warm every (file, server) pair up, then measure the cells in the order given.

        The warm-up is ``--warmup`` seconds of unrecorded load per server and file, at
        ``warmup_connections``. The cells stop early, with what was measured so far, once
        the time budget is spent.

        Raises:
            WrkError: wrk failed.
            ServerStartError: a server died during a run.
        """
        duration = self.args.duration
        if self.args.warmup:
            pairs = {(cell.doc.label, cell.name): cell for cell in cells}
            for cell in pairs.values():
                measure(
                    cell.server,
                    cell.doc,
                    connections=warmup_connections,
                    duration_s=self.args.warmup,
                    settings=self.settings,
                )
        results: list[tuple[Cell, Measurement]] = []
        with Progress(len(cells), self.title, style=self.args.progress) as progress:
            for cell in cells:
                if self.budget.exceeded():
                    progress.note("time limit reached: stopping")
                    break
                started = time.monotonic()
                measurement = measure(
                    cell.server,
                    cell.doc,
                    connections=cell.connections,
                    duration_s=duration,
                    settings=self.settings,
                )
                results.append((cell, measurement))
                progress.advance(
                    f"rep {cell.rep + 1} {cell.doc.label} c={cell.connections} {cell.name}: "
                    f"{measurement.describe()} ({time.monotonic() - started:.1f} s)"
                )
        return results

    def finish(self, meta: dict[str, Any]) -> None:
        """Record in ``meta`` how long the run took and whether it is complete."""
        meta["wall_time_s"] = round(self.budget.elapsed, 1)
        meta["complete"] = not self.budget.hit
        if self.budget.hit:
            meta["incomplete_reason"] = f"--time-limit {self.args.time_limit:g} s reached"

    def print_end(self) -> None:
        """The last lines of the output: an early stop, and where the JSON went."""
        if self.budget.hit:
            print(f"Stopped early: --time-limit {self.args.time_limit:g} s reached.")
        print(f"Wrote {self.args.output} in {self.budget.elapsed:.0f} s.")


def _clean(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(dict(document)), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
