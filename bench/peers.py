"""``python -m bench.peers [--quick] ...`` (``make bench-peers``): zerocopy against nginx and the
Python servers with wrk (:mod:`bench.loadtest.peers`), then the summary on stdout
(:mod:`bench.reporting.load`). ``--help`` lists every flag."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bench.loadtest.peers import run
from bench.reporting.load import peers_summary

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    print(peers_summary(run(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
