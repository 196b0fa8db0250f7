"""Hardening at the connection level: timeouts, shutdown, limits, client and file faults.

Timeouts run on trio's ``autojump_clock``: virtual time jumps whenever every task is blocked,
so a 30-second timeout takes no real time, and the tests can check *when* the server acted.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, open_fd_count, random_file, sha256_file
from zerocopy.server import Server

MiB = 1 << 20


class Timed:
    """Raw non-blocking client socket with trio waits, for tests that watch the clock."""

    def __init__(self, port: int, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)

    async def recv(self, size: int = 65536) -> bytes:
        """The next bytes, or b"" at EOF or reset."""
        while True:
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except ConnectionResetError:
                return b""

    async def read_until_closed(self) -> bytes:
        data = bytearray()
        while chunk := await self.recv():
            data += chunk
        return bytes(data)

    def close(self, *, reset: bool = False) -> None:
        if reset:  # SO_LINGER 0: close sends RST
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


@pytest.fixture
async def tuned(nursery: trio.Nursery, www: Path, strategy: str) -> Server:
    """A server with explicit timeouts. Tests using it also request ``autojump_clock``:
    pytest-trio installs the clock only when the test function itself asks for it."""
    return await start_server(
        nursery,
        root=str(www),
        strategy=strategy,
        head_timeout=10.0,
        idle_timeout=15.0,
        send_timeout=30.0,
        shutdown_grace=10.0,
    )


# --- Timeouts ------------------------------------------------------------------------------


async def test_trickled_head_does_not_extend_the_head_deadline(
    tuned: Server, autojump_clock
) -> None:
    client = Timed(tuned.port)
    start = trio.current_time()
    head = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    answer = b""
    for byte in head:  # one byte per virtual second, never finishing the head
        await client.send(bytes([byte]))
        await trio.sleep(1)
        try:
            answer = client.sock.recv(1000)
        except BlockingIOError:
            continue
        break
    elapsed = trio.current_time() - start
    assert 10 <= elapsed <= 11  # the 10 s head deadline, counted from the first byte
    assert answer.startswith(b"HTTP/1.1 408 ")
    client.close()


async def test_silent_connection_is_closed_after_the_head_timeout(
    tuned: Server, autojump_clock
) -> None:
    client = Timed(tuned.port)
    start = trio.current_time()
    assert await client.read_until_closed() == b""  # closed quietly: nothing was asked
    assert 10 <= trio.current_time() - start <= 11
    client.close()


async def test_idle_keep_alive_connection_is_closed(tuned: Server, autojump_clock) -> None:
    client = Timed(tuned.port)
    await client.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    first = await client.recv()
    assert first.startswith(b"HTTP/1.1 200 ")
    start = trio.current_time()
    assert await client.read_until_closed() == b""
    assert 15 <= trio.current_time() - start <= 16
    client.close()


async def test_client_that_stops_reading_trips_the_send_timeout(
    tuned: Server, www: Path, autojump_clock
) -> None:
    random_file(www / "big.bin", 64 * MiB)
    client = Timed(tuned.port, rcvbuf=64 * 1024)
    await client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    await client.recv(1000)  # the response has started
    await trio.sleep(29)  # virtual time
    assert tuned.statistics().connections_open == 1  # still waiting for the client
    await trio.sleep(2)
    assert tuned.statistics().connections_open == 0  # 30 s without progress: dropped
    client.close()


async def test_slow_but_steady_reader_is_not_cut_off(
    tuned: Server, www: Path, autojump_clock
) -> None:
    random_file(www / "8m.bin", 8 * MiB)
    client = Timed(tuned.port, rcvbuf=256 * 1024)
    await client.send(b"GET /8m.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    received = bytearray()
    start = trio.current_time()
    while chunk := await client.recv(256 * 1024):
        received += chunk
        await trio.sleep(1)  # about 256 KiB/s: each write waits far less than 30 s
    assert trio.current_time() - start > 30  # the whole transfer took longer than the timeout
    body = bytes(received).partition(b"\r\n\r\n")[2]
    assert len(body) == 8 * MiB
    client.close()


# --- Graceful shutdown ---------------------------------------------------------------------


async def test_shutdown_finishes_in_flight_and_closes_idle(
    nursery: trio.Nursery, www: Path, strategy: str, autojump_clock
) -> None:
    random_file(www / "big.bin", 16 * MiB)
    server = await start_server(nursery, root=str(www), strategy=strategy, shutdown_grace=10.0)
    idle = Timed(server.port)
    await idle.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await idle.recv()).startswith(b"HTTP/1.1 200")
    busy = Timed(server.port, rcvbuf=64 * 1024)
    await busy.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    received = bytearray(await busy.recv())
    server.shutdown()
    start = trio.current_time()
    assert await idle.read_until_closed() == b""  # idle: closed at once
    assert trio.current_time() - start < 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port)).close()  # no longer listening
    received += await busy.read_until_closed()  # in flight: finished, then closed
    body = bytes(received).partition(b"\r\n\r\n")[2]
    assert len(body) == 16 * MiB
    with trio.fail_after(1):
        await server.wait_closed()
    idle.close()
    busy.close()


async def test_grace_period_ends_stalled_transfers(
    nursery: trio.Nursery, www: Path, strategy: str, autojump_clock
) -> None:
    random_file(www / "big.bin", 64 * MiB)
    server = await start_server(
        nursery, root=str(www), strategy=strategy, shutdown_grace=10.0, send_timeout=1000.0
    )
    stalled, _, _ = await _start_slow_download(server, "big.bin")
    server.shutdown()
    start = trio.current_time()
    await server.wait_closed()
    assert 10 <= trio.current_time() - start <= 11
    stalled.close()


async def test_second_shutdown_stops_at_once(
    nursery: trio.Nursery, www: Path, strategy: str, autojump_clock
) -> None:
    random_file(www / "big.bin", 64 * MiB)
    server = await start_server(nursery, root=str(www), strategy=strategy, shutdown_grace=100.0)
    stalled, _, _ = await _start_slow_download(server, "big.bin")
    server.shutdown()
    await trio.sleep(1)
    server.shutdown()
    start = trio.current_time()
    await server.wait_closed()
    assert trio.current_time() - start < 1
    stalled.close()


# --- Limits --------------------------------------------------------------------------------


async def test_connection_limit_pauses_accept(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, root=str(www), max_connections=2)
    first, second = Timed(server.port), Timed(server.port)
    for client in (first, second):
        await client.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await client.recv()).startswith(b"HTTP/1.1 200")
    third = Timed(server.port)  # the kernel completes the handshake; the server waits
    await third.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(BlockingIOError):
        third.sock.recv(100)
    assert server.statistics().connections_open == 2
    first.close()
    with trio.fail_after(5):
        assert (await third.recv()).startswith(b"HTTP/1.1 200")
    second.close()
    third.close()


async def test_many_pipelined_requests_are_answered_in_order(server: Server) -> None:
    # 500 pipelined requests in one write: all answered, in order. That the parser holds no
    # more than one slice of them parsed ahead of the responses is checked where it can be
    # seen, in tests/test_http_parser.py::test_pipelining_is_parsed_lazily.
    client = await RawClient.connect(server.port)
    count = 500
    await client.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n" * count)
    for _ in range(count):
        assert (await client.read_response()).body == b"hello, world\n"
    await client.aclose()


# --- Client faults -------------------------------------------------------------------------


async def test_reset_mid_transfer_is_quiet_and_frees_everything(
    server: Server, www: Path, caplog: pytest.LogCaptureFixture
) -> None:
    random_file(www / "big.bin", 32 * MiB)
    caplog.set_level(logging.DEBUG, logger="zerocopy")
    for _ in range(3):
        client = Timed(server.port, rcvbuf=64 * 1024)
        await client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        await client.recv(1000)
        client.close(reset=True)
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().connections_open == 0
    noisy = [
        r for r in caplog.records if r.levelno > logging.DEBUG and r.name.startswith("zerocopy")
    ]
    assert noisy == []
    assert not any(r.exc_info for r in caplog.records)


async def test_half_closed_client_still_gets_its_responses(server: Server, www: Path) -> None:
    client = Timed(server.port)
    await client.send(
        b"GET /1m.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    client.sock.shutdown(socket.SHUT_WR)
    data = await client.read_until_closed()
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.endswith(b"hello, world\n")
    assert (www / "1m.bin").read_bytes() in data
    client.close()


@pytest.mark.parametrize("payload", [b"", b"\r\n", b"\r\n\r\n"])
async def test_empty_connection_is_closed_quietly(server: Server, payload: bytes) -> None:
    client = Timed(server.port)
    await client.send(payload)
    client.sock.shutdown(socket.SHUT_WR)
    assert await client.read_until_closed() == b""
    client.close()


# --- File faults ---------------------------------------------------------------------------


async def _start_slow_download(server: Server, name: str) -> tuple[Timed, bytearray, int]:
    client = Timed(server.port, rcvbuf=64 * 1024)
    await client.send(f"GET /{name} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    received = bytearray()
    while b"\r\n\r\n" not in received:
        received += await client.recv()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return client, bytearray(body), length


async def test_truncated_mid_send_closes_without_padding(
    server: Server, www: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = random_file(www / "shrinking.bin", 32 * MiB).read_bytes()
    client, body, length = await _start_slow_download(server, "shrinking.bin")
    assert length == 32 * MiB
    os.truncate(www / "shrinking.bin", 4 * MiB)
    with trio.fail_after(20):
        body += await client.read_until_closed()
    assert len(body) < length  # cut short, never padded
    assert bytes(body) == original[: len(body)]  # and every byte sent is the file's
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("shrinking.bin" in message and "truncated" in message for message in errors)
    client.close()


@pytest.mark.parametrize("fault", ["replaced", "unlinked", "grown"])
async def test_file_changed_mid_send_serves_what_was_opened(
    server: Server, www: Path, fault: str
) -> None:
    path = www / "moving.bin"
    original = random_file(path, 16 * MiB).read_bytes()
    client, body, length = await _start_slow_download(server, "moving.bin")
    if fault == "replaced":
        random_file(www / "next.bin", 16 * MiB)
        os.replace(www / "next.bin", path)
    elif fault == "unlinked":
        path.unlink()
    else:
        with path.open("ab") as f:
            f.write(os.urandom(MiB))
    while len(body) < length:
        chunk = await client.recv()
        assert chunk, "connection closed early"
        body += chunk
    assert bytes(body) == original  # exactly the promised bytes of the file that was opened
    client.close()


async def test_grown_file_keeps_the_connection_usable(server: Server, www: Path) -> None:
    path = www / "log.txt"
    path.write_bytes(b"line\n" * 1000)
    client = await RawClient.connect(server.port)
    first = await client.request("/log.txt")
    with path.open("ab") as f:
        f.write(b"more\n")
    second = await client.request("/log.txt")
    assert len(second.body) == len(first.body) + 5
    assert second.header("ETag") != first.header("ETag")
    assert second.sha256 == sha256_file(path)
    await client.aclose()


async def test_fd_count_returns_to_baseline_after_many_connections(
    nursery: trio.Nursery, www: Path, strategy: str
) -> None:
    before = open_fd_count()
    server = await start_server(nursery, root=str(www), strategy=strategy)
    clients = [await RawClient.connect(server.port) for _ in range(200)]
    for client in clients:
        await client.send(b"GET /64k.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    for client in clients:
        assert (await client.read_response()).status == 200
        await client.aclose()
    await stop_server(server)
    assert open_fd_count() <= before
