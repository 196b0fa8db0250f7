"""The Prometheus endpoint reports the server's own counters."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_server
from tests.helpers import RawClient


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape(port: int, target: str = "/metrics") -> tuple[int, str]:
    client = await RawClient.connect(port)
    response = await client.request(target)
    await client.aclose()
    return response.status, response.body.decode()


@pytest.mark.parametrize("strategy", ["sendfile", "splice", "readwrite"])
async def test_metrics_follow_traffic(nursery: trio.Nursery, www: Path, strategy: str) -> None:
    server = await start_server(nursery, root=str(www), strategy=strategy, metrics_port=0)
    assert server.metrics_port is not None
    status, before = await _scrape(server.metrics_port)
    assert status == 200
    client = await RawClient.connect(server.port)
    for _ in range(3):
        assert (await client.request("/1m.bin")).status == 200
    assert (await client.request("/missing")).status == 404
    await client.aclose()
    _, after = await _scrape(server.metrics_port)
    old, new = _samples(before), _samples(after)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return new.get(key, 0.0) - old.get(key, 0.0)

    assert delta("zerocopy_body_bytes_total") == 3 * (1 << 20)
    assert delta("zerocopy_responses_total", status="200") == 3
    assert delta("zerocopy_responses_total", status="404") == 1
    if strategy == "readwrite":
        assert delta("zerocopy_zero_copy_bytes_total") == 0
        # 4 x 256 KiB reads per file: preadv2 (RWF_NOWAIT) when cached, preadv in a thread if not.
        reads = delta("zerocopy_syscalls_total", syscall="preadv2") + delta(
            "zerocopy_syscalls_total", syscall="preadv"
        )
        assert reads >= 12
    else:
        assert delta("zerocopy_zero_copy_bytes_total") == 3 * (1 << 20)
        assert delta("zerocopy_syscalls_total", syscall=strategy) >= 3
    # Scraping is not counted as traffic.
    assert delta("zerocopy_connections_accepted_total") == 1


async def test_metrics_port_answers_only_metrics(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, root=str(www), metrics_port=0)
    assert server.metrics_port is not None
    status, _ = await _scrape(server.metrics_port, "/hello.txt")
    assert status == 404
