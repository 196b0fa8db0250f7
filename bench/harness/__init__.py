"""What every measurement needs, each written once.

Stacks (``bench.suite``, ``bench.loadtest``, ``bench.hardening``, ``bench.reporting``) import
from here and never from each other:

* :mod:`~bench.harness.names`: strategies, peer candidates and nginx configurations;
* :mod:`~bench.harness.sizes`: byte units, size labels and parsing;
* :mod:`~bench.harness.schema`: every JSON layout, as typed records, and the strict loader;
* :mod:`~bench.harness.results`: paths, and writing and reading result files;
* :mod:`~bench.harness.stats`: medians, percentiles, ratios within a repetition;
* :mod:`~bench.harness.procfs`: CPU time, context switches and memory from /proc;
* :mod:`~bench.harness.machine`: machine metadata and CPU pinning;
* :mod:`~bench.harness.servers`: server processes, each in a process group, always stopped;
* :mod:`~bench.harness.nginx`: nginx's configurations and start;
* :mod:`~bench.harness.files`: the served files, page-cache eviction, checking a server's bytes;
* :mod:`~bench.harness.client`: the keep-alive HTTP client;
* :mod:`~bench.harness.metrics`: zerocopy's counters from its metrics endpoint;
* :mod:`~bench.harness.progress`: progress on stderr.

The pure modules (names, sizes, schema, results, stats) start no process, so the reporting
stack can use them.
"""
