"""Validate a results directory without looking at any timing: ``python -m bench.check DIR``.

Checks that every artefact exists and is well formed: each strategy's pyperf file loads with
``pyperf.BenchmarkSuite.load`` and holds the expected benchmark names (the same in every
file, so that ``compare_to`` lines them up); ``measurements.json`` has its parts;
``report.md`` has every section and links every chart; each chart is a PNG with a sane
header and size. Exit status 0 when all is well, 1 with one line per problem otherwise.
``make test`` runs it after ``make bench-quick`` as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyperf

from bench.plan import STRATEGIES
from bench.report import CHARTS, SECTIONS

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["check", "check_png", "main"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
MEASUREMENT_KEYS: Final = ("meta", "strategies", "cases", "cpu_windows", "counts", "perf")


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


def _expected_names(measurements: dict[str, object]) -> set[str]:
    cases = measurements.get("cases")
    if not isinstance(cases, dict):
        return set()
    names = {f"latency_{label}" for label in cases.get("latency", [])}
    names |= {f"cpu_{label}" for label in cases.get("cpu", [])}
    return names


def check(results: Path) -> list[str]:
    """Every problem found in ``results``; an empty list when all is well."""
    problems: list[str] = []
    measurements: dict[str, object] = {}
    path = results / "measurements.json"
    try:
        with path.open() as f:
            loaded = json.load(f)
    except (OSError, ValueError) as exc:
        problems.append(f"measurements.json: {exc}")
    else:
        if isinstance(loaded, dict):
            measurements = loaded
            problems += [
                f"measurements.json: no {key!r}" for key in MEASUREMENT_KEYS if key not in loaded
            ]
        else:
            problems.append("measurements.json: not an object")
    expected = _expected_names(measurements)
    names_by_file = {}
    for strategy in STRATEGIES:
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
    report = results / "report.md"
    try:
        text = report.read_text()
    except OSError as exc:
        problems.append(f"report.md: {exc.strerror or exc}")
    else:
        problems += [f"report.md: no section {s!r}" for s in SECTIONS if s not in text]
        problems += [f"report.md: no link to {c}" for c in CHARTS if f"({c})" not in text]
    for chart in CHARTS:
        problem = check_png(results / chart)
        if problem:
            problems.append(problem)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("results", type=Path, nargs="?", default=Path("bench/results"))
    args = parser.parse_args(argv)
    problems = check(args.results)
    for problem in problems:
        print(f"bench.check: {args.results}: {problem}", file=sys.stderr)
    if not problems:
        print(f"bench.check: {args.results}: all artefacts present and well formed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
