"""Hardening benchmarks: a cold page cache, slow clients, idle connections.

``python -m bench.hardening {cold,slow,idle,all} [--quick]`` (``make bench-hardening``,
``make bench-cold``, ...) measures, writes ``bench/results/hardening.json``
(:class:`~bench.harness.schema.HardeningResults`), and renders ``hardening.md``. None of it
runs in CI: each case takes a minute or more, and its figures mean something only on an idle
machine.

* :mod:`~bench.hardening.probe`: the latency probe every case runs beside its load;
* :mod:`~bench.hardening.cases`: the three cases and the run that records them.
"""
