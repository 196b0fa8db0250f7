"""pyperf script: time per request, to the last byte, over one keep-alive connection.

One ``pyperf.Runner`` per script, as pyperformance does. :mod:`bench.suite.run` starts one
server per strategy and runs this script (``python -m bench.latency``) once per strategy per
round with ``--append``, so that the strategies alternate (A B C D, B C D A, …) and every round
adds worker processes to each benchmark. The server's port and the cases come in a plan file
(``--plan``, a :class:`~bench.harness.schema.LatencyPlan`), forwarded to the worker processes
with ``add_cmdline_args``; the workers never start servers.

``bench_time_func`` wraps ``trio.run`` and returns the ``perf_counter`` time of the requests
only: connecting, and evicting the file in the cold-cache case, are not timed. pyperf runs
the function with ``loops=1`` (the suite passes ``--loops 1``) and ``inner_loops`` set per
case from a short calibration, so each value is the mean over ``inner_loops`` requests.
Values are seconds per request, never throughput: ``compare_to`` calls the smaller faster.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyperf
import trio

from bench.harness.client import REQUEST_TIMEOUT, KeepAliveClient, request_bytes
from bench.harness.files import evict, filesystem_type
from bench.harness.results import read_record
from bench.harness.schema import LatencyCase, LatencyPlan

if TYPE_CHECKING:
    import argparse

__all__ = ["PROGRAM", "main", "metadata_for", "time_requests"]

PROGRAM = ("-m", "bench.latency")
"""How pyperf starts this script's worker processes (``bench/latency.py`` is its front)."""


async def _timed_requests(port: int, request: bytes, count: int, evict_path: str | None) -> float:
    elapsed = 0.0
    # One deadline for the whole loop (bounded in time as well as count), set outside the
    # timed region: a cancel scope per request would add its cost to every value.
    with trio.fail_after(count * REQUEST_TIMEOUT):
        elapsed = await _requests(port, request, count, evict_path)
    return elapsed


async def _requests(port: int, request: bytes, count: int, evict_path: str | None) -> float:
    elapsed = 0.0
    async with await KeepAliveClient.connect(port) as client:
        if evict_path is None:
            start = time.perf_counter()
            for _ in range(count):
                await client.get(request)
            elapsed = time.perf_counter() - start
        else:
            for _ in range(count):
                evict(evict_path)
                start = time.perf_counter()
                await client.get(request)
                elapsed += time.perf_counter() - start
    return elapsed


def time_requests(loops: int, port: int, case: LatencyCase, root: str) -> float:
    """pyperf's time function: ``loops x inner_loops`` requests, their total seconds."""
    evict_path = os.path.join(root, case.filename) if case.cold else None
    return trio.run(
        _timed_requests, port, request_bytes(case.filename), loops * case.inner_loops, evict_path
    )


def _forward(cmd: list[str], args: argparse.Namespace) -> None:
    cmd.extend(["--plan", args.plan])


def metadata_for(plan: LatencyPlan, case: LatencyCase) -> dict[str, Any]:
    """Benchmark metadata: what was measured, and where (the kernel, the file, the page cache)."""
    return {
        "description": f"seconds per GET of a {case.size}-byte file, to the last byte, "
        "one keep-alive loopback connection",
        "strategy": plan.strategy,
        "file_size": case.size,
        "page_cache": "cold (evicted before each request)" if case.cold else "hot",
        "kernel": platform.release(),
        "server_cpu": "unpinned" if plan.server_cpu is None else str(plan.server_cpu),
        "client_cpu": "unpinned" if plan.client_cpu is None else str(plan.client_cpu),
        "filesystem": filesystem_type(plan.root),
    }


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_forward, program_args=PROGRAM)
    runner.argparser.add_argument("--plan", required=True, help="plan file written by bench.run")
    args = runner.parse_args()
    plan = read_record(Path(args.plan), LatencyPlan)
    for case in plan.cases:
        runner.bench_time_func(
            case.name,
            time_requests,
            plan.port,
            case,
            plan.root,
            inner_loops=case.inner_loops,
            metadata=metadata_for(plan, case),
        )
