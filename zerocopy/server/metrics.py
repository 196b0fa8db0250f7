"""The metrics port: Prometheus metrics at ``/metrics`` and a health check at ``/-/health``.

``zerocopy serve --metrics-port N`` answers on ``--metrics-bind`` (127.0.0.1 unless told
otherwise: counters describe traffic, and are nobody else's business):

* ``GET /metrics``: the server's counters in the Prometheus text format, rendered by
  prometheus-client (the ``metrics`` extra). They are read from ``Server.statistics()`` at
  scrape time by a custom collector, so serving files costs no metric updates beyond the plain
  integer increments the server makes anyway. With several worker processes the supervisor
  serves the port: each family is the sum over the workers (plus the final counts of workers
  that were replaced), and a ``zerocopy_worker_*`` twin of it carries one series per worker,
  labelled ``worker``.
* ``GET /-/health``: ``200 ok`` while the server accepts connections, ``503`` once it is
  shutting down (a load balancer then stops sending it new clients).

Scrapes must get through whatever else connects here. A connection has 2 s to send its request
head (a scraper sends it at once; Prometheus' own scrape timeout is 10 s), and when all
:data:`METRICS_SLOTS` are taken, a new connection evicts the oldest one that is still waiting
for its head. Idle clients therefore cannot lock a scraper out, and cannot hold more than a
bounded number of descriptors either.

The benchmark suite scrapes this endpoint before and after each measured loop: it is how the
server's own syscall and copy counts reach the report, next to strace's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, final

import trio

from zerocopy.http import (
    NEED_DATA,
    DateCache,
    HTTPError,
    Request,
    RequestParser,
    plan_content,
    plan_error,
)
from zerocopy.server.listener import RawListener
from zerocopy.transfer import Counters, recv, send_all

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from zerocopy.server.listener import Connection
    from zerocopy.server.serve import ServerStatistics

__all__ = [
    "METRICS_SLOTS",
    "MetricsPort",
    "MetricsUnavailable",
    "check_available",
    "render_metrics",
    "sum_statistics",
]

logger = logging.getLogger("zerocopy.server")

_CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"
_TEXT: Final = b"text/plain; charset=utf-8"

METRICS_SLOTS: Final = 32
"""Connections the metrics port holds at once. A scraper needs one; the rest is headroom for
several scrapers and health checkers, small enough that the port never crowds out files."""
HEAD_TIMEOUT: Final = 2.0
"""Seconds a metrics connection has to send its request head."""
SEND_TIMEOUT: Final = 10.0
"""Seconds to send the answer (Prometheus gives up after its 10 s scrape timeout anyway)."""


class MetricsUnavailable(RuntimeError):
    """prometheus-client is not installed."""


def _families() -> tuple[Any, Any]:
    """prometheus-client's counter and gauge family classes, imported on demand."""
    try:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    except ImportError as exc:
        raise MetricsUnavailable(
            "--metrics-port needs prometheus-client: pip install 'zerocopy[metrics]'"
        ) from exc
    return CounterMetricFamily, GaugeMetricFamily


# One row per family: (name, kind, help, label name or "", {label value: value}).
_Row = tuple[str, str, str, str, Mapping[str, float]]


def _rows(stats: ServerStatistics) -> list[_Row]:
    transfer = stats.transfer
    files = stats.files
    log = stats.access_log

    def by_key(counts: Mapping[Any, int]) -> dict[str, float]:
        return {str(key): count for key, count in sorted(counts.items())}

    return [
        (
            "zerocopy_connections_accepted",
            "counter",
            "Connections accepted.",
            "",
            {"": stats.connections_accepted},
        ),
        (
            "zerocopy_connections_open",
            "gauge",
            "Connections open now.",
            "",
            {"": stats.connections_open},
        ),
        (
            "zerocopy_responses",
            "counter",
            "Responses sent, by status.",
            "status",
            by_key(stats.responses),
        ),
        (
            "zerocopy_syscalls",
            "counter",
            "Transfer-path syscalls that returned, by kernel name.",
            "syscall",
            by_key(transfer.syscalls),
        ),
        (
            "zerocopy_syscalls_eagain",
            "counter",
            "Transfer-path syscalls that failed with EAGAIN.",
            "syscall",
            by_key(transfer.eagain),
        ),
        (
            "zerocopy_user_copy_bytes",
            "counter",
            "Bytes copied between kernel and user space (in: recv/preadv, out: send/sendmsg).",
            "direction",
            {"in": transfer.bytes_copied_in, "out": transfer.bytes_copied_out},
        ),
        (
            "zerocopy_body_bytes",
            "counter",
            "File bytes the kernel accepted for sending.",
            "",
            {"": transfer.body_bytes},
        ),
        (
            "zerocopy_zero_copy_bytes",
            "counter",
            "Bytes moved by sendfile or splice.",
            "",
            {"": transfer.bytes_zero_copy},
        ),
        (
            "zerocopy_truncated",
            "counter",
            "Spans cut short by a truncated file.",
            "",
            {"": transfer.truncated},
        ),
        (
            "zerocopy_fallbacks",
            "counter",
            "Spans sent by read/write after zero-copy failed.",
            "",
            {"": transfer.fallbacks},
        ),
        (
            "zerocopy_offloaded",
            "counter",
            "Chunks sent from a worker thread (cold page cache).",
            "",
            {"": transfer.offloaded},
        ),
        (
            "zerocopy_memory_body_bytes",
            "counter",
            "Body bytes sent from memory (small cached files, auto); each one copied out of "
            "user space, so also in zerocopy_user_copy_bytes{direction=out}.",
            "",
            {"": transfer.bytes_from_memory},
        ),
        (
            "zerocopy_open_file_cache_entries",
            "gauge",
            "Files held open by the open-file cache.",
            "",
            {"": files.entries},
        ),
        (
            "zerocopy_open_file_cache_lookups",
            "counter",
            "Open-file cache lookups, by result.",
            "result",
            {"hit": files.hits, "miss": files.misses},
        ),
        (
            "zerocopy_open_file_cache_drops",
            "counter",
            "Entries dropped: reported changed by inotify, or evicted (changed on a per-hit "
            "check, least recently used, inactive).",
            "reason",
            {"changed": files.invalidations, "evicted": files.evictions},
        ),
        (
            "zerocopy_open_file_cache_overflows",
            "counter",
            "Times the inotify queue overflowed and every entry was dropped.",
            "",
            {"": files.overflows},
        ),
        (
            "zerocopy_open_file_cache_watches",
            "gauge",
            "Directories watched with inotify.",
            "",
            {"": files.watches},
        ),
        (
            "zerocopy_memory_cache_bytes",
            "gauge",
            "Bytes of small files held in memory, and the most that may be.",
            "kind",
            {"used": files.memory_bytes, "limit": files.memory_limit},
        ),
        (
            "zerocopy_memory_cache_read_bytes",
            "counter",
            "Bytes read into memory (one copy into user space each).",
            "",
            {"": files.memory_read_bytes},
        ),
        (
            "zerocopy_access_log_lines",
            "counter",
            "Access log lines: written, dropped (the disk did not keep up), failed (write error).",
            "result",
            {"written": log.lines, "dropped": log.dropped, "failed": log.failed},
        ),
        (
            "zerocopy_access_log_reopens",
            "counter",
            "Access log files reopened (SIGUSR1).",
            "",
            {"": log.reopens},
        ),
    ]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Gauge:
    """A gauge of the process that serves the metrics (a supervisor's worker count)."""

    name: str
    help: str
    value: float
    kind: str = "gauge"


def _collector(
    total: ServerStatistics,
    per_worker: Mapping[str, ServerStatistics],
    extra: Sequence[Gauge],
) -> Any:
    CounterMetricFamily, GaugeMetricFamily = _families()
    kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
    workers = {worker: _rows(stats) for worker, stats in per_worker.items()}

    class Collector:
        def collect(self) -> Iterator[Any]:
            for index, (name, kind, text, label, samples) in enumerate(_rows(total)):
                labels = [label] if label else []
                family = kinds[kind](name, text, labels=labels)
                for value_label, value in samples.items():
                    family.add_metric([value_label] if label else [], value)
                yield family
                if not workers:
                    continue
                family = kinds[kind](
                    name.replace("zerocopy_", "zerocopy_worker_", 1),
                    f"{text} Per worker process.",
                    labels=["worker", *labels],
                )
                for worker, rows in workers.items():
                    for value_label, value in rows[index][4].items():
                        family.add_metric([worker, value_label] if label else [worker], value)
                yield family
            for gauge in extra:
                yield kinds[gauge.kind](gauge.name, gauge.help, value=gauge.value)

    return Collector()


def render_metrics(
    total: ServerStatistics,
    per_worker: Mapping[str, ServerStatistics] | None = None,
    extra: Sequence[Gauge] = (),
) -> bytes:
    """Render counters in the Prometheus text format.

    Args:
        total: The counters of the whole server (the sum over its workers).
        per_worker: Each worker's own counters, by worker label; rendered as
            ``zerocopy_worker_*`` families with a ``worker`` label.
        extra: Further single-value families (the supervisor's).

    Raises:
        MetricsUnavailable: prometheus-client is not installed.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_collector(total, per_worker or {}, extra))
    return bytes(generate_latest(registry))


def sum_statistics(items: Sequence[Any], empty: Any) -> Any:
    """Add up frozen statistics dataclasses field by field: numbers add, mappings add per
    key, nested dataclasses recurse. ``empty`` is the value for no items (and the type)."""
    if not items:
        return empty
    first = items[0]
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return dataclasses.replace(
            first,
            **{
                spec.name: sum_statistics(
                    [getattr(item, spec.name) for item in items], getattr(first, spec.name)
                )
                for spec in dataclasses.fields(first)
            },
        )
    if isinstance(first, Mapping):
        merged: dict[Any, Any] = {}
        for item in items:
            for key, value in item.items():
                merged[key] = merged.get(key, 0) + value
        return merged
    if isinstance(first, str):
        return first  # A mode, the same in every worker.
    return sum(items)


def check_available() -> None:
    """Raise :class:`MetricsUnavailable` now rather than at the first scrape."""
    _families()


@final
class _EvictingSlots:
    """Connection slots for the metrics port. When every slot is taken, the next accept first
    cancels the oldest connection still waiting for its request head."""

    def __init__(self, total: int) -> None:
        self._slots = trio.Semaphore(total)
        self._waiting: dict[trio.CancelScope, None] = {}  # insertion-ordered

    async def acquire(self) -> None:
        if self._slots.value == 0 and self._waiting:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.cancel()
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    @contextmanager
    def waiting(self, scope: trio.CancelScope) -> Iterator[None]:
        self._waiting[scope] = None
        try:
            yield
        finally:
            self._waiting.pop(scope, None)


@final
class MetricsPort:
    """The metrics port's listeners and its two answers.

    Args:
        sockets: Bound, listening sockets. The port owns them and closes them when
            :meth:`serve` returns.
        render: Returns the ``/metrics`` body; it may wait (a supervisor asks its workers).
        healthy: Whether the server accepts connections (``/-/health``).
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        render: Callable[[], Awaitable[bytes]],
        healthy: Callable[[], bool],
    ) -> None:
        self._slots = _EvictingSlots(METRICS_SLOTS)
        self._listeners = [RawListener(sock, self._slots) for sock in sockets]
        self._port = int(sockets[0].getsockname()[1])
        self._render = render
        self._healthy = healthy
        self._dates = DateCache()
        # Scraping is not traffic: its syscalls go to a counter of their own.
        self._counters = Counters()

    @property
    def port(self) -> int:
        """The bound port; known once bound, and still after :meth:`serve` returns."""
        return self._port

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer until cancelled; then close the listeners and every connection.

        Resource handling: owns the listeners and each accepted connection.
        """
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(self._answer, self._listeners, handler_nursery=nursery)
        finally:
            for listener in self._listeners:
                listener.close()

    async def _answer(self, conn: Connection) -> None:
        """Answer one request, then close. Owns and closes ``conn``."""
        parser = RequestParser()
        try:
            with trio.move_on_after(HEAD_TIMEOUT) as head, self._slots.waiting(head):
                while (event := parser.next_event()) is NEED_DATA:
                    parser.receive_data(await recv(conn.socket, 8192, self._counters))
            if head.cancelled_caught or not isinstance(event, Request):
                return
            with trio.move_on_after(SEND_TIMEOUT):
                plan = await self._plan(event)
                data = plan.head + b"".join(part for part in plan.body if isinstance(part, bytes))
                await send_all(conn.socket, data, self._counters)
        except (HTTPError, OSError):
            pass
        finally:
            conn.close()

    async def _plan(self, request: Request) -> Any:
        date = self._dates.now()
        path = request.target.partition(b"?")[0]
        head_only = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            error = HTTPError(405, "GET or HEAD only", headers=((b"Allow", b"GET, HEAD"),))
            return plan_error(error, date=date)
        if path == b"/metrics":
            body = await self._render()
            return plan_content(body, _CONTENT_TYPE, request, date=date, keep_alive=False)
        if path == b"/-/health":
            if self._healthy():
                return plan_content(b"ok\n", _TEXT, request, date=date, keep_alive=False)
            return plan_error(HTTPError(503, "shutting down"), date=date, head_only=head_only)
        return plan_error(
            HTTPError(404, "only /metrics and /-/health here"), date=date, head_only=head_only
        )
