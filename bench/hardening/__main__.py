"""``python -m bench.hardening {cold,slow,idle,listing,tar,all} [--quick] [--data DIR]``: measure
(:mod:`bench.hardening.cases`), then render ``hardening.md`` (:mod:`bench.reporting.hardening`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.hardening.cases import CASES, RESULTS, measure
from bench.harness.servers import signals_raise_keyboard_interrupt
from bench.reporting.hardening import write_markdown

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hardening",
        description="Hardening benchmarks: a cold page cache (beside nginx), slow clients, "
        "idle connections, huge directory listings (beside nginx), a directory downloaded as "
        "tar against its files one by one. Writes "
        "bench/results/hardening.json and hardening.md.",
    )
    parser.add_argument("case", choices=[*CASES, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes and short holds")
    parser.add_argument("--data", type=Path, default=None, help="where to keep the test files")
    args = parser.parse_args(argv)
    cases = CASES if args.case == "all" else (args.case,)
    try:
        with signals_raise_keyboard_interrupt():
            results = measure(cases, quick=args.quick, data=args.data)
    except KeyboardInterrupt:
        print("hardening: interrupted; servers stopped", file=sys.stderr)
        return 130
    markdown = write_markdown(results, RESULTS.with_suffix(".md"))
    print(f"wrote {RESULTS} and {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
