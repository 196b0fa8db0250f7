"""Render ``report.md`` and its charts from a results directory: ``python -m bench.report DIR``.

Reads what is there and says what is not: the pyperf files and ``measurements.json`` that the
suite writes and, when present, ``load.json`` (``make bench-load``) and ``peers.json``
(``make bench-peers``). Every JSON file is read through its typed record, so a file whose
layout drifted stops the report with the path of the first bad key instead of rendering "—".
It can be re-run at any time, for instance after the load or peers benchmarks, without
measuring anything again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import pyperf

from bench.harness.results import read_record
from bench.harness.schema import LoadResults, Measurements, PeersResults, SchemaError
from bench.reporting.load import load_section, peers_section
from bench.reporting.markdown import case_order, table
from bench.reporting.suite import SuiteView, sections
from bench.reporting.targets import evaluate_targets

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.reporting.targets import TargetResult

__all__ = ["CHARTS", "SECTIONS", "main", "read_optional", "write_report"]

T = TypeVar("T")

CHARTS: Final = ("latency.png", "cpu_per_gib.png", "syscalls_copies.png")
SECTIONS: Final = (
    "## Environment",
    "## Headline: copies and context switches",
    "## Targets",
    "## Latency",
    "## Server CPU",
    "## Syscalls and copies",
    "### The whole process (outside tracer)",
    "### Agreement: server counters, strace -c, bpftrace",
    "## Kernel copy routines (perf)",
    "## splice against sendfile (256 MiB)",
    "## TLS against plain",
    "## Load (wrk)",
    "## Peers",
    "## Profile",
    "## Method",
)


def read_optional(path: Path, cls: type[T]) -> tuple[T | None, str]:
    """A results file another target writes: the record, or ``None`` and ``"absent"``.

    Raises:
        SchemaError: The file is there but not of ``cls``'s layout.
    """
    if not path.exists():
        return None, "absent"
    return read_record(path, cls), ""


def _targets(
    results: Sequence[TargetResult], peers: PeersResults | None, view: SuiteView
) -> list[str]:
    lines = ["## Targets", ""]
    lines += table(
        ("case", "target", "measured", "status"),
        ((r.case, r.target, r.measured, f"**{r.status}**") for r in results),
    )
    lines += [
        "Peer targets use `zerocopy-auto` (the default strategy) from `peers.json`; the other "
        "strategies are shown in brackets. The 256 MiB target uses this run's CPU phase "
        "(medians over repetitions), with nginx measured in the same rotation.",
        "",
    ]
    if peers is not None:
        lines += [
            f"peers.json was measured at {peers.meta.run.machine.date_utc} (`make bench-peers`), "
            f"this suite at {view.measurements.meta.machine.date_utc}.",
            "",
        ]
        if peers.meta.connections != 16:
            lines += [
                f"Note: peers.json was measured with {peers.meta.connections} connections, not 16.",
                "",
            ]
    return lines


def write_report(out: Path) -> Path:
    """Render ``out/report.md`` and the charts from the files in ``out``.

    Raises:
        FileNotFoundError: ``measurements.json`` is missing (the suite has not run).
        SchemaError: A results file does not have its documented layout.
    """
    measurements = read_record(out / "measurements.json", Measurements)
    suites = {}
    for strategy in measurements.strategies:
        path = out / f"{strategy}.json"
        if path.exists():
            suites[strategy] = pyperf.BenchmarkSuite.load(str(path))
    load, load_reason = read_optional(out / "load.json", LoadResults)
    peers, peers_reason = read_optional(out / "peers.json", PeersResults)
    view = SuiteView(out, measurements, suites)
    results = evaluate_targets(peers, view.cpu_per_gib())
    parts = sections(view, results)
    meta = measurements.meta
    lines = [
        f"# zerocopy benchmark report ({meta.profile} run)",
        "",
        f"Measured {meta.machine.date_utc} on {meta.machine.hostname} (Linux "
        f"{meta.machine.kernel}, Python {meta.machine.python}), {meta.duration_s:g} s. "
        f"Strategies: {', '.join(measurements.strategies)}"
        + (f"; reference: {', '.join(measurements.nginx)}" if measurements.nginx else "")
        + f". Sizes: {', '.join(case_order(measurements.cases.cpu))}.",
        "",
        *parts["## Environment"],
        *parts["## Headline: copies and context switches"],
        *_targets(results, peers, view),
        *parts["## Latency"],
        *parts["## Server CPU"],
        *parts["## Syscalls and copies"],
        *parts["## Kernel copy routines (perf)"],
        *parts["## splice against sendfile (256 MiB)"],
        *parts["## TLS against plain"],
        *load_section(load, load_reason),
        *peers_section(peers, peers_reason),
        *parts["## Profile"],
        *parts["## Method"],
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("results", type=Path, nargs="?", default=Path("bench/results"))
    args = parser.parse_args(argv)
    try:
        path = write_report(args.results)
    except FileNotFoundError as exc:
        print(f"bench.report: {exc}; run `make bench` first", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"bench.report: {args.results}/{exc}", file=sys.stderr)
        return 2
    print(f"bench.report: wrote {path}", file=sys.stderr)
    return 0
