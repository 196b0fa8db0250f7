"""``python -m bench.run [--quick] [--out DIR] [--data-dir DIR] [--no-report]`` (``make bench``).

The strategy suite (:mod:`bench.suite.run`) measures and writes the pyperf files and
``measurements.json``; then :mod:`bench.reporting` renders ``report.md`` and its charts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness.servers import signals_raise_keyboard_interrupt
from bench.reporting.report import write_report
from bench.suite.plan import FULL, QUICK
from bench.suite.run import default_out, run

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few values (smoke test)")
    parser.add_argument(
        "--out", type=Path, help="results directory (default bench/results[/quick])"
    )
    parser.add_argument("--data-dir", help="where to create the served files (default /var/tmp)")
    parser.add_argument("--no-report", action="store_true", help="measure only")
    args = parser.parse_args(argv)
    out = args.out or default_out(args.quick)
    try:
        with signals_raise_keyboard_interrupt():
            run(QUICK if args.quick else FULL, out, data_parent=args.data_dir)
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        return 130
    if not args.no_report:
        write_report(out)
    print(f"bench: results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
