"""pyperf script: time per request, to the last byte, over one keep-alive connection.

One ``pyperf.Runner`` per script (STYLE §14). ``bench.run`` starts one server per strategy and
runs this script once per strategy per round with ``--append``, so that the strategies
alternate (A B C, B C A, …) and every round adds worker processes to each benchmark. The
server's port and the cases come in a plan file (``--plan``), forwarded to the worker
processes with ``add_cmdline_args``; the workers never start servers.

``bench_time_func`` wraps ``trio.run`` and returns the ``perf_counter`` time of the requests
only: connecting, and evicting the file in the cold-cache case, are not timed. pyperf runs
the function with ``loops=1`` (``bench.run`` passes ``--loops 1``) and ``inner_loops`` set per
case from a short calibration, so each value is the mean over ``inner_loops`` requests.
Values are seconds per request, never throughput: ``compare_to`` calls the smaller faster.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import pyperf
import trio

from bench import dataset
from bench.client import REQUEST_TIMEOUT, KeepAliveClient, request_bytes

if TYPE_CHECKING:
    import argparse

__all__ = ["LatencyCase", "LatencyPlan", "main"]


@final
@dataclass(frozen=True, slots=True)
class LatencyCase:
    """One benchmark: ``name``, the file to GET, and how many requests make one value."""

    name: str
    filename: str
    size: int
    cold: bool
    inner_loops: int


@final
@dataclass(frozen=True, slots=True)
class LatencyPlan:
    """What a latency run measures: a server (strategy, port, root) and the cases."""

    strategy: str
    port: int
    root: str
    server_cpu: int | None
    client_cpu: int | None
    cases: tuple[LatencyCase, ...]

    def dump(self, path: str) -> None:
        data = {
            "strategy": self.strategy,
            "port": self.port,
            "root": self.root,
            "server_cpu": self.server_cpu,
            "client_cpu": self.client_cpu,
            "cases": [
                {
                    "name": c.name,
                    "filename": c.filename,
                    "size": c.size,
                    "cold": c.cold,
                    "inner_loops": c.inner_loops,
                }
                for c in self.cases
            ],
        }
        with open(path, "w") as f:
            json.dump(data, f)

    @classmethod
    def load(cls, path: str) -> LatencyPlan:
        with open(path) as f:
            data = json.load(f)
        return cls(
            strategy=data["strategy"],
            port=data["port"],
            root=data["root"],
            server_cpu=data["server_cpu"],
            client_cpu=data["client_cpu"],
            cases=tuple(LatencyCase(**case) for case in data["cases"]),
        )


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
                dataset.evict(evict_path)
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
    """Benchmark metadata: what was measured, and where (STYLE §14)."""
    return {
        "description": f"seconds per GET of a {case.size}-byte file, to the last byte, "
        "one keep-alive loopback connection",
        "strategy": plan.strategy,
        "file_size": case.size,
        "page_cache": "cold (evicted before each request)" if case.cold else "hot",
        "kernel": platform.release(),
        "server_cpu": "unpinned" if plan.server_cpu is None else str(plan.server_cpu),
        "client_cpu": "unpinned" if plan.client_cpu is None else str(plan.client_cpu),
        "filesystem": dataset.filesystem_type(plan.root),
    }


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_forward, program_args=("-m", "bench.latency"))
    runner.argparser.add_argument("--plan", required=True, help="plan file written by bench.run")
    args = runner.parse_args()
    plan = LatencyPlan.load(args.plan)
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


if __name__ == "__main__":
    main()
