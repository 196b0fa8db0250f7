"""``python -m bench.report [DIR]`` (``make bench-report``): render ``report.md`` and its charts
from a results directory, without measuring anything (:mod:`bench.reporting.report`)."""

from __future__ import annotations

import sys

from bench.reporting.report import main

if __name__ == "__main__":
    sys.exit(main())
