"""Prometheus metrics: the server's counters, on a port of their own.

``zerocopy serve --metrics-port N`` answers ``GET /metrics`` on that port in the Prometheus text
format, rendered by prometheus-client (the ``metrics`` extra). The counters are read from
``Server.statistics()`` at scrape time by a custom collector, so serving files costs no
metric updates beyond the plain integer increments the server makes anyway.

The benchmark suite scrapes this endpoint before and after each measured loop: it is how the
server's own syscall and copy counts reach the report, next to strace's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

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
from zerocopy.transfer import Counters, recv, send_all

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from zerocopy.server.listener import Connection
    from zerocopy.server.serve import ServerStatistics

__all__ = ["MetricsUnavailable", "check_available", "render_metrics", "serve_metrics_connection"]

_CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"


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


def _collector(statistics: Callable[[], ServerStatistics]) -> Any:
    CounterMetricFamily, GaugeMetricFamily = _families()

    class Collector:
        def collect(self) -> Iterator[Any]:
            stats = statistics()
            transfer = stats.transfer
            yield CounterMetricFamily(
                "zerocopy_connections_accepted",
                "Connections accepted.",
                value=stats.connections_accepted,
            )
            yield GaugeMetricFamily(
                "zerocopy_connections_open", "Connections open now.", value=stats.connections_open
            )
            labelled: list[tuple[str, str, str, Mapping[Any, int]]] = [
                ("zerocopy_responses", "Responses sent, by status.", "status", stats.responses),
                (
                    "zerocopy_syscalls",
                    "Transfer-path syscalls that returned, by kernel name.",
                    "syscall",
                    transfer.syscalls,
                ),
                (
                    "zerocopy_syscalls_eagain",
                    "Transfer-path syscalls that failed with EAGAIN.",
                    "syscall",
                    transfer.eagain,
                ),
            ]
            for family_name, text, label, counts in labelled:
                family = CounterMetricFamily(family_name, text, labels=[label])
                for key, count in sorted(counts.items()):
                    family.add_metric([str(key)], count)
                yield family
            copied = CounterMetricFamily(
                "zerocopy_user_copy_bytes",
                "Bytes copied between kernel and user space (in: recv/preadv, out: send/sendmsg).",
                labels=["direction"],
            )
            copied.add_metric(["in"], transfer.bytes_copied_in)
            copied.add_metric(["out"], transfer.bytes_copied_out)
            yield copied
            for name, text, value in [
                ("body_bytes", "File bytes the kernel accepted for sending.", transfer.body_bytes),
                ("zero_copy_bytes", "Bytes moved by sendfile or splice.", transfer.bytes_zero_copy),
                ("truncated", "Spans cut short by a truncated file.", transfer.truncated),
                (
                    "fallbacks",
                    "Spans sent by read/write after zero-copy failed.",
                    transfer.fallbacks,
                ),
                (
                    "offloaded",
                    "Chunks sent from a worker thread (cold page cache).",
                    transfer.offloaded,
                ),
            ]:
                yield CounterMetricFamily(f"zerocopy_{name}", text, value=value)

    return Collector()


def render_metrics(statistics: Callable[[], ServerStatistics]) -> bytes:
    """Render the server's counters in the Prometheus text format.

    Raises:
        MetricsUnavailable: prometheus-client is not installed.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_collector(statistics))
    return bytes(generate_latest(registry))


def check_available() -> None:
    """Raise :class:`MetricsUnavailable` now rather than at the first scrape."""
    _families()


async def serve_metrics_connection(
    conn: Connection, statistics: Callable[[], ServerStatistics], dates: DateCache
) -> None:
    """Answer one request on the metrics port, then close. Owns and closes ``conn``.

    Its syscalls go to a private counter, so scraping never shows up in what it reports.
    """
    parser = RequestParser()
    counters = Counters()
    try:
        with trio.move_on_after(10):
            while (event := parser.next_event()) is NEED_DATA:
                parser.receive_data(await recv(conn.socket, 8192, counters))
            if not isinstance(event, Request):
                return
            date = dates.now()
            if event.method == "GET" and event.target.partition(b"?")[0] == b"/metrics":
                body = render_metrics(statistics)
                plan = plan_content(body, _CONTENT_TYPE, event, date=date, keep_alive=False)
            else:
                plan = plan_error(HTTPError(404, "only /metrics here"), date=date)
            data = plan.head + b"".join(part for part in plan.body if isinstance(part, bytes))
            await send_all(conn.socket, data, counters)
    except (HTTPError, OSError):
        pass
    finally:
        conn.close()
