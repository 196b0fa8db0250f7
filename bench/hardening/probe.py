"""The probe: sequential keep-alive GETs of a small hot file, each timed, in a thread.

It runs beside a load (cold downloads, an attack, idle connections) and measures what a
well-behaved client sees meanwhile. It is the harness's keep-alive client in a ``trio.run``
of its own thread, so the load can run in other threads or processes. Like wrk, it is a closed
loop: its percentiles suffer from coordinated omission (a stall delays the requests that would
have been sent during it, so they are never measured), and they are lower bounds of the tail.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final, Self, final

import trio

from bench.harness.client import REQUEST_TIMEOUT, KeepAliveClient, request_bytes
from bench.harness.schema import LatencySummary
from bench.harness.stats import finite_or_none, percentile

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["HOT", "Probe", "summarise"]

HOT: Final = "hot.bin"
"""The probe's 4 KiB file, in every case's document root."""
JOIN_TIMEOUT: Final = 30.0


def summarise(latencies: list[float]) -> LatencySummary:
    """Request count, p50, p99 and max in milliseconds (``None`` without requests)."""
    ms = [value * 1000 for value in latencies]
    return LatencySummary(
        requests=len(ms),
        p50_ms=finite_or_none(percentile(ms, 50)),
        p99_ms=finite_or_none(percentile(ms, 99)),
        max_ms=max(ms) if ms else None,
    )


@final
class Probe:
    """GETs of ``path`` on one keep-alive connection, one after another, while in ``with``.

    A failed request (reset, timeout, a closed connection) counts in ``errors`` and the probe
    reconnects.

    Resource handling: the thread and its connection end when the block ends.
    """

    def __init__(self, port: int, path: str = HOT) -> None:
        self._port = port
        self._request = request_bytes(path)
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.errors = 0
        self._thread = threading.Thread(target=trio.run, args=(self._loop,), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT)

    @property
    def summary(self) -> LatencySummary:
        return summarise(self.latencies)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                async with await KeepAliveClient.connect(self._port) as client:
                    while not self._stop.is_set():
                        with trio.fail_after(REQUEST_TIMEOUT):
                            start = time.perf_counter()
                            await client.get(self._request)
                            self.latencies.append(time.perf_counter() - start)
            except (OSError, EOFError, RuntimeError, trio.TooSlowError):
                self.errors += 1
                await trio.sleep(0.01)
