"""The server's own counters, from its Prometheus endpoint, as deltas over a window.

The metrics port answers ``GET /metrics``; scrapes are not counted in the counters they
report. :func:`parse_samples` and :func:`counter_delta` are pure and unit-tested; only
:func:`scrape` touches the network.
"""

from __future__ import annotations

import urllib.request
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from bench.harness.schema import CounterDelta

__all__ = ["Samples", "counter_delta", "parse_samples", "sample_value", "scrape"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SCRAPE_TIMEOUT: Final = 10.0


def parse_samples(text: str) -> Samples:
    """Every sample in a Prometheus text exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(metrics_port: int) -> Samples:
    """Fetch and parse ``http://127.0.0.1:PORT/metrics``."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
        return parse_samples(response.read().decode())


def _by_label(before: Samples, after: Samples, name: str, label: str) -> dict[str, int]:
    result: dict[str, int] = {}
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        key = dict(labels).get(label)
        if key is None:
            continue
        delta = round(value - before.get((sample, labels), 0.0))
        if delta:
            result[key] = delta
    return result


def sample_value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the server has not exported it yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scalar(before: Samples, after: Samples, name: str, **labels: str) -> int:
    key = (name, tuple(sorted(labels.items())))
    return round(after.get(key, 0.0) - before.get(key, 0.0))


def counter_delta(before: Samples, after: Samples) -> CounterDelta:
    """The change in zerocopy's counters from ``before`` to ``after``.

    A counter absent from ``before`` counts from zero (labels appear on first use).
    """
    return CounterDelta(
        syscalls=_by_label(before, after, "zerocopy_syscalls_total", "syscall"),
        eagain=_by_label(before, after, "zerocopy_syscalls_eagain_total", "syscall"),
        copy_in=_scalar(before, after, "zerocopy_user_copy_bytes_total", direction="in"),
        copy_out=_scalar(before, after, "zerocopy_user_copy_bytes_total", direction="out"),
        zero_copy=_scalar(before, after, "zerocopy_zero_copy_bytes_total"),
        body=_scalar(before, after, "zerocopy_body_bytes_total"),
        responses=_by_label(before, after, "zerocopy_responses_total", "status"),
        connections=_scalar(before, after, "zerocopy_connections_accepted_total"),
    )
