"""wrk load benchmarks: the concurrency sweep (``make bench-load``) and the peer comparison
(``make bench-peers``); see ``bench/LOAD.md``.

* :mod:`~bench.loadtest.wrk`: wrk's command line and report, and /proc around each run;
* :mod:`~bench.loadtest.common`: flags, the measuring loop, medians;
* :mod:`~bench.loadtest.sweep`: the sweep and its knee;
* :mod:`~bench.loadtest.peers`: the candidates, the workloads, the ratios to nginx.
"""
