"""The pyperf strategy suite (``make bench``): latency, server CPU, syscalls and copies, perf.

* :mod:`~bench.suite.plan`: the cases and the full and quick profiles;
* :mod:`~bench.suite.run`: the phases, the servers, ``measurements.json``;
* :mod:`~bench.suite.latency`: the pyperf worker script;
* :mod:`~bench.suite.tracers`: strace and bpftrace, attached and armed;
* :mod:`~bench.suite.perf`: ``perf record`` and what its report says;
* :mod:`~bench.suite.pyperf_files`: the CPU phase as pyperf benchmarks.
"""
