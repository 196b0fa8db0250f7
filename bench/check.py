"""``python -m bench.check [DIR]``: validate a results directory, no timing looked at
(:mod:`bench.reporting.check`); ``make bench-check`` runs it on the quick suite's results."""

from __future__ import annotations

import sys

from bench.reporting.check import main

if __name__ == "__main__":
    sys.exit(main())
