"""Validate a results directory without looking at any timing: ``python -m bench.check DIR``.

Checks that every artefact exists and is well formed:

* ``measurements.json`` loads as its typed record (:class:`~bench.harness.schema.Measurements`):
  a missing, renamed or mistyped key is a problem, named by its path; so are ``load.json``,
  ``peers.json`` and ``hardening.json`` when present;
* each strategy's pyperf file loads with ``pyperf.BenchmarkSuite.load`` and holds the expected
  benchmark names (the same in every file, so that ``compare_to`` lines them up), all values
  positive;
* every traced window agrees with the server's counters, or its disagreement is explained: an
  unexplained disagreement between the server and the tracers is a problem (a window the
  tracer missed is run again by the suite, never compared);
* ``report.md`` has every section and links every chart; each chart is a PNG with a sane
  header and size.

Exit status 0 when all is well, 1 with one line per problem otherwise. ``make test`` runs it
after ``make bench-quick`` as a smoke test.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyperf

from bench.harness.results import read_record
from bench.harness.schema import (
    HardeningResults,
    LoadResults,
    Measurements,
    PeersResults,
    SchemaError,
)
from bench.reporting.agreement import assess, unexplained
from bench.reporting.report import CHARTS, SECTIONS
from bench.reporting.suite import UNEXPLAINED

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["PNG_SIGNATURE", "check", "check_png", "main"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
OPTIONAL: Final = (
    ("load.json", LoadResults),
    ("peers.json", PeersResults),
    ("hardening.json", HardeningResults),
)


def check_png(path: Path) -> str | None:
    """A problem with the PNG at ``path``, or ``None``.

    Reads the signature and the IHDR chunk: width and height must be positive.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path.name}: {exc.strerror or exc}"
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return f"{path.name}: not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        return f"{path.name}: empty image ({width}x{height})"
    return None


def _pyperf(results: Path, measurements: Measurements) -> list[str]:
    problems = []
    expected = {f"latency_{label}" for label in measurements.cases.latency}
    expected |= {f"cpu_{label}" for label in measurements.cases.cpu}
    names_by_file = {}
    for strategy in measurements.strategies:
        path = results / f"{strategy}.json"
        try:
            suite = pyperf.BenchmarkSuite.load(str(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.name}: does not load with pyperf: {exc}")
            continue
        names = set(suite.get_benchmark_names())
        names_by_file[path.name] = names
        problems += [f"{path.name}: no benchmark {name}" for name in sorted(expected - names)]
        for bench in suite.get_benchmarks():
            if not all(value > 0 for value in bench.get_values()):
                problems.append(f"{path.name}: {bench.get_name()} has a value <= 0")
    if len({frozenset(names) for names in names_by_file.values()}) > 1:
        problems.append(f"benchmark names differ between files: {names_by_file}")
    return problems


def _agreement(measurements: Measurements) -> list[str]:
    return [
        f"measurements.json: {window.strategy} {window.case}: unexplained tracer disagreement "
        f"on {row.quantity!r}: server {row.server}, strace {row.strace}, bpftrace "
        f"{row.bpftrace} ({row.worst:.1%})"
        for window in measurements.counts
        for row in unexplained(assess(window))
    ]


def check(results: Path) -> list[str]:
    """Every problem found in ``results``; an empty list when all is well."""
    problems: list[str] = []
    try:
        measurements = read_record(results / "measurements.json", Measurements)
    except FileNotFoundError:
        problems.append("measurements.json: missing")
        measurements = None
    except SchemaError as exc:
        problems.append(str(exc))
        measurements = None
    if measurements is not None:
        problems += _pyperf(results, measurements)
        problems += _agreement(measurements)
    for name, cls in OPTIONAL:
        try:
            read_record(results / name, cls)
        except FileNotFoundError:
            continue
        except SchemaError as exc:
            problems.append(str(exc))
    report = results / "report.md"
    try:
        text = report.read_text()
    except OSError as exc:
        problems.append(f"report.md: {exc.strerror or exc}")
    else:
        problems += [f"report.md: no section {s!r}" for s in SECTIONS if s not in text]
        problems += [f"report.md: no link to {c}" for c in CHARTS if f"({c})" not in text]
        if UNEXPLAINED in text:
            problems.append("report.md: shows an unexplained tracer disagreement")
    for chart in CHARTS:
        problem = check_png(results / chart)
        if problem:
            problems.append(problem)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.check", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("results", type=Path, nargs="?", default=Path("bench/results"))
    args = parser.parse_args(argv)
    problems = check(args.results)
    for problem in problems:
        print(f"bench.check: {args.results}: {problem}", file=sys.stderr)
    if not problems:
        print(f"bench.check: {args.results}: all artefacts present and well formed")
    return 1 if problems else 0
