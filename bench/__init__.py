"""The zerocopy benchmark suite: latency, server CPU and copy counts per transfer strategy.

``python -m bench.run`` measures and writes ``bench/results/``; ``python -m bench.report``
renders ``report.md`` and the charts from what is there; ``python -m bench.check`` validates
the artefacts without looking at any timing. See ``bench/README.md``.
"""
