"""The keep-alive HTTP/1.1 GET client of every benchmark, and bounded sequential loops.

The client itself is the package's (:mod:`zerocopy.tune.client`: ``zerocopy tune`` drives load
with it when wrk is missing); this module adds what only the benchmarks need: sequential
timed loops, with the page cache evicted before each request for the cold cases.
"""

from __future__ import annotations

import math
import time

import trio

from bench.harness.files import evict
from zerocopy.tune.client import BUFFER, REQUEST_TIMEOUT, KeepAliveClient, request_bytes

__all__ = ["BUFFER", "REQUEST_TIMEOUT", "KeepAliveClient", "request_bytes", "run_requests"]


async def run_requests(
    port: int,
    path: str,
    *,
    count: int,
    min_time: float = 0.0,
    max_time: float = math.inf,
    evict_path: str | None = None,
) -> tuple[int, float]:
    """Send sequential GETs on one keep-alive connection.

    Sends at least ``count`` requests and keeps going until ``min_time`` seconds have passed,
    but stops at ``max_time`` seconds whatever the count (every loop is bounded).

    Args:
        port: The server's port.
        path: The file to request.
        count: Least number of requests.
        min_time: Least seconds.
        max_time: Most seconds.
        evict_path: If set, evict this file from the page cache before each request; the
            eviction is not timed.

    Returns:
        ``(requests, seconds)``: how many responses arrived whole, and the time they took,
        eviction excluded.

    Raises:
        trio.TooSlowError: The server owed responses for ``REQUEST_TIMEOUT`` seconds each.
    """
    bound = count * REQUEST_TIMEOUT + (max_time if math.isfinite(max_time) else min_time)
    with trio.fail_after(bound):
        return await _loop(port, request_bytes(path), count, min_time, max_time, evict_path)


async def _loop(
    port: int,
    request: bytes,
    count: int,
    min_time: float,
    max_time: float,
    evict_path: str | None,
) -> tuple[int, float]:
    done, elapsed = 0, 0.0
    start = time.perf_counter()
    async with await KeepAliveClient.connect(port) as client:
        while True:
            now = time.perf_counter()
            if now - start >= max_time or (done >= count and now - start >= min_time):
                break
            if evict_path is not None:
                evict(evict_path)
            t0 = time.perf_counter()
            await client.get(request)
            elapsed += time.perf_counter() - t0
            done += 1
    return done, elapsed
