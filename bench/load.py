"""``python -m bench.load [--quick] ...`` (``make bench-load``): the wrk concurrency sweep of
every strategy (:mod:`bench.loadtest.sweep`), then its summary on stdout
(:mod:`bench.reporting.load`). ``--help`` lists every flag."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bench.loadtest.sweep import run
from bench.reporting.load import sweep_summary

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    print(sweep_summary(run(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
