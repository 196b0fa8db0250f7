"""The zerocopy benchmarks: one harness, four stacks, and thin command-line fronts.

* ``bench.harness``: what every measurement needs (servers, /proc, files, the client, machine
  metadata and pinning, result files and their layouts, statistics, sizes, progress, names);
* ``bench.suite``: the pyperf strategy suite (latency, server CPU, syscalls, perf);
* ``bench.loadtest``: the wrk load sweep and the peer comparison;
* ``bench.hardening``: cold page cache, slow clients, idle connections;
* ``bench.reporting``: pure rendering and checking of the results (Markdown, PNG charts).

The stacks import the harness and never each other; the fronts (``python -m bench.run``,
``bench.report``, ``bench.check``, ``bench.load``, ``bench.peers``, ``bench.hardening``,
``bench.latency``) compose them. See ``bench/README.md``.
"""
