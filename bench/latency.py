"""``python -m bench.latency --plan FILE ...``: the pyperf worker script of the suite
(:mod:`bench.suite.latency`). The suite starts it; it is not meant to be run by hand."""

from __future__ import annotations

from bench.suite.latency import main

if __name__ == "__main__":
    main()
