"""The Prometheus endpoint reports the server's own counters."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, random_file
from zerocopy.server import Server, ServerConfig, ServerStatistics
from zerocopy.server.metrics import (
    HEAD_TIMEOUT,
    METRICS_SLOTS,
    Gauge,
    render_metrics,
    sum_statistics,
)
from zerocopy.transfer import TransferStatistics


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


async def test_idle_connections_cannot_starve_a_scrape(
    nursery: trio.Nursery, www: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Issue 11, defect 9: four idle connections held the four metrics slots, and a scrape
    # waited 9.8 s. Now idle clients time out in 2 s, and past METRICS_SLOTS a new client
    # evicts the oldest one that has not sent its request.
    server = await start_server(nursery, root=str(www), metrics_port=0)
    assert server.metrics_port is not None
    idle = []
    for _ in range(METRICS_SLOTS + 8):
        idle.append(await trio.open_tcp_stream("127.0.0.1", server.metrics_port))
        await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    status, body = await _scrape(server.metrics_port)
    assert status == 200
    assert "zerocopy_responses_total" in body or "zerocopy_connections_accepted" in body
    assert trio.current_time() - start < 0.5
    # And an idle client is dropped after the head timeout, not the file port's 10 s.
    await trio.sleep(HEAD_TIMEOUT + 0.1)
    for stream in idle:
        with trio.fail_after(1):
            assert await stream.receive_some(100) == b""
        await stream.aclose()


async def test_metrics_port_binds_loopback_by_default(nursery: trio.Nursery, www: Path) -> None:
    config = ServerConfig(root=str(www), bind="0.0.0.0", port=0, metrics_port=0)
    server: Server = await nursery.start(Server(config).serve)
    assert server.addresses[0][0] == "0.0.0.0"
    assert server.metrics_port is not None
    assert server._metrics is not None
    assert [listener.socket.getsockname()[0] for listener in server._metrics._listeners] == [
        "127.0.0.1"
    ]
    await stop_server(server)


async def test_metrics_bind_moves_the_port(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, root=str(www), metrics_port=0, metrics_bind="127.0.0.2")
    assert server.metrics_port is not None
    client = await RawClient.connect(server.metrics_port, host="127.0.0.2")
    assert (await client.request("/-/health")).status == 200
    await client.aclose()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.metrics_port)).close()
    await stop_server(server)


async def test_health_is_ok_while_accepting_and_503_while_shutting_down(
    nursery: trio.Nursery, www: Path
) -> None:
    random_file(www / "big.bin", 64 << 20)
    server = await start_server(nursery, root=str(www), metrics_port=0, shutdown_grace=30.0)
    assert server.metrics_port is not None
    assert await _scrape(server.metrics_port, "/-/health") == (200, "ok\n")
    # A download that the client does not read keeps the server in its grace period.
    slow = trio.socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    await slow.connect(("127.0.0.1", server.port))
    await slow.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await slow.recv(100)).startswith(b"HTTP/1.1 200")
    server.shutdown()
    status, _ = await _scrape(server.metrics_port, "/-/health")
    assert status == 503
    # /metrics still answers while draining.
    assert (await _scrape(server.metrics_port))[0] == 200
    slow.close()
    with trio.fail_after(10):
        await server.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.metrics_port)).close()


async def test_metrics_port_answers_head_and_refuses_other_methods(
    nursery: trio.Nursery, www: Path
) -> None:
    server = await start_server(nursery, root=str(www), metrics_port=0)
    assert server.metrics_port is not None
    client = await RawClient.connect(server.metrics_port)
    response = await client.request("/-/health", method="HEAD")
    assert response.status == 200
    await client.aclose()
    client = await RawClient.connect(server.metrics_port)
    response = await client.request("/metrics", method="POST")
    assert response.status == 405
    await client.aclose()


def test_per_worker_series_and_their_sum() -> None:
    first = ServerStatistics(
        connections_accepted=3,
        connections_open=1,
        responses={200: 5, 404: 1},
        transfer=TransferStatistics(syscalls={"sendfile": 5}, body_bytes=100),
    )
    second = ServerStatistics(
        connections_accepted=4,
        connections_open=0,
        responses={200: 2, 304: 7},
        transfer=TransferStatistics(syscalls={"sendfile": 2, "sendmsg": 1}, body_bytes=50),
    )
    total = sum_statistics([first, second], ServerStatistics(0, 0))
    assert total.connections_accepted == 7
    assert dict(total.responses) == {200: 7, 404: 1, 304: 7}
    assert dict(total.transfer.syscalls) == {"sendfile": 7, "sendmsg": 1}
    assert total.transfer.body_bytes == 150
    text = render_metrics(
        total, {"0": first, "1": second}, [Gauge("zerocopy_workers", "Workers.", 2)]
    ).decode()
    samples = _samples(text)
    assert samples[("zerocopy_responses_total", (("status", "200"),))] == 7
    assert samples[("zerocopy_worker_responses_total", (("status", "200"), ("worker", "0")))] == 5
    assert samples[("zerocopy_worker_responses_total", (("status", "200"), ("worker", "1")))] == 2
    assert samples[("zerocopy_worker_connections_open", (("worker", "0"),))] == 1
    assert samples[("zerocopy_worker_body_bytes_total", (("worker", "1"),))] == 50
    assert samples[("zerocopy_workers", ())] == 2
    assert sum_statistics([], ServerStatistics(0, 0)) == ServerStatistics(0, 0)
