"""The CPU phase as pyperf benchmarks: one ``cpu_<case>`` benchmark per case in each strategy's
pyperf file, beside the latency benchmarks the workers wrote.

Each CPU-phase window is one pyperf run with one value: server CPU seconds per request
(schedstat, else utime + stime). Copy counts and context switches ride along as run metadata,
zeros included; a window with no measurable CPU is left out, never fudged (pyperf requires
values > 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import pyperf

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from bench.harness.schema import CpuWindow

__all__ = ["add_cpu_benchmarks"]

_BASE_KEYS: Final = (
    "hostname",
    "cpu_model_name",
    "cpu_count",
    "platform",
    "python_implementation",
    "python_version",
    "python_executable",
    "python_unicode",
    "aslr",
    "kernel",
    "server_cpu",
    "client_cpu",
    "filesystem",
    "strategy",
)


def _per_request(value: float, requests: int) -> float:
    return value / requests if requests else 0.0


def add_cpu_benchmarks(path: Path, strategy: str, windows: Iterable[CpuWindow]) -> None:
    """Append one ``cpu_<case>`` benchmark per case to ``strategy``'s pyperf file at ``path``.

    The machine metadata of the file's first benchmark (written by the latency workers) is
    copied onto each run, so that ``pyperf show --metadata`` reads the same for both kinds.
    """
    base: dict[str, Any] = {}
    if path.exists():
        suite = pyperf.BenchmarkSuite.load(str(path))
        first = suite.get_benchmarks()[0].get_metadata()
        base = {key: first[key] for key in _BASE_KEYS if key in first}
    base["strategy"] = strategy
    by_case: dict[str, list[CpuWindow]] = {}
    for window in windows:
        if window.server == strategy and window.counters is not None:
            by_case.setdefault(window.case, []).append(window)
    for case, rows in by_case.items():
        runs = []
        for row in rows:
            requests = row.requests
            value = _per_request(row.cpu_s, requests)
            if value <= 0 or row.counters is None:
                continue
            counters = row.counters
            metadata = {
                **base,
                "name": f"cpu_{case}",
                "unit": "second",
                "loops": max(1, requests),
                "date": row.date,
                "description": "server CPU seconds (user + sys) per request",
                "file_size": row.size,
                "page_cache": "cold (evicted before each request)" if row.cold else "hot",
                "server_user_s_per_request": _per_request(row.utime_s, requests),
                "server_sys_s_per_request": _per_request(row.stime_s, requests),
                "cpu_source": "schedstat" if row.runtime_s is not None else "stat ticks",
                "syscalls_per_request": _per_request(sum(counters.syscalls.values()), requests),
                "syscalls_by_kind": " ".join(
                    f"{k}={v}" for k, v in sorted(counters.syscalls.items())
                )
                or "none",
                "user_copy_bytes_in_per_request": _per_request(counters.copy_in, requests),
                "user_copy_bytes_out_per_request": _per_request(counters.copy_out, requests),
                "zero_copy_bytes_per_request": _per_request(counters.zero_copy, requests),
                "voluntary_ctxt_switches_per_request": _per_request(row.voluntary, requests),
                "involuntary_ctxt_switches_per_request": _per_request(row.involuntary, requests),
            }
            runs.append(pyperf.Run([value], metadata=metadata, collect_metadata=False))
        if runs:
            pyperf.add_runs(str(path), pyperf.Benchmark(runs))
