"""The connection loop's edges: a client that resets while the server waits for its next
request, and the limits of the lingering close (``sender.LINGER_SECONDS`` and
``sender.LINGER_MAX_BYTES``).

Timeouts run on trio's ``autojump_clock``, so the tests can tell *when* the server closed: a
reset handled at once costs no virtual time, where a reset left to the idle timeout would cost
its 15 s.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from tests.conftest import start_server, stop_server
from tests.test_server_faults import Timed
from zerocopy.server.sender import LINGER_MAX_BYTES, LINGER_SECONDS, RECV_SIZE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from zerocopy.server import Server

REQUEST = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
LAST_REQUEST = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@pytest.fixture
async def server(nursery: trio.Nursery, www: Path) -> AsyncIterator[Server]:
    server = await start_server(
        nursery, root=str(www), head_timeout=10.0, idle_timeout=15.0, send_timeout=30.0
    )
    yield server
    await stop_server(server)


async def read_response(client: Timed) -> bytes:
    data = b""
    while not data.endswith(b"hello, world\n"):
        chunk = await client.recv()
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def noisy(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("zerocopy") and r.levelno > logging.DEBUG
    ]


# -- a reset while the server waits -------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="idle-before-the-first-request"),
        pytest.param(REQUEST, id="idle-between-requests"),
        pytest.param(REQUEST + b"GET /hello.txt HTTP/1.1\r\nHo", id="in-the-next-head"),
    ],
)
async def test_a_reset_while_waiting_closes_at_once_and_quietly(
    server: Server, sent: bytes, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.DEBUG, logger="zerocopy")
    client = Timed(server.port)
    if sent:
        await client.send(sent)
        await read_response(client)
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().connections_open == 1  # waiting: idle, or in a head
    start = trio.current_time()
    client.close(reset=True)
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().connections_open == 0
    assert trio.current_time() == start  # not the idle or head timeout: the reset itself
    assert noisy(caplog) == []
    assert not any(record.exc_info for record in caplog.records)
    assert any("went away" in record.getMessage() for record in caplog.records)
    assert server.statistics().responses.get(408, 0) == 0  # no answer to a gone client


# -- lingering close --------------------------------------------------------------------------


async def test_linger_ends_when_the_client_closes(server: Server, autojump_clock: object) -> None:
    client = Timed(server.port)
    await client.send(LAST_REQUEST)
    await read_response(client)
    assert await client.read_until_closed() == b""  # our side was shut down at once
    start = trio.current_time()
    client.close()
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().connections_open == 0
    assert trio.current_time() == start


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
async def test_linger_lasts_at_most_linger_seconds(
    server: Server, trickle: bool, autojump_clock: object
) -> None:
    # A client that keeps its socket open (silent, or sending a byte now and then) holds the
    # connection for LINGER_SECONDS in all, not per byte.
    client = Timed(server.port)
    await client.send(LAST_REQUEST)
    await read_response(client)
    start = trio.current_time()
    while trio.current_time() - start < LINGER_SECONDS - 0.1:
        assert server.statistics().connections_open == 1
        if trickle:
            await client.send(b"x")
        await trio.sleep(0.25)
    await trio.sleep(0.2)
    assert server.statistics().connections_open == 0
    client.close()


async def test_linger_reads_at_most_linger_max_bytes(server: Server) -> None:
    # A client that sends without end: the server reads and discards at most
    # LINGER_MAX_BYTES (in reads of RECV_SIZE), then closes, and the client's sends fail.
    client = Timed(server.port)
    await client.send(LAST_REQUEST)
    await read_response(client)
    await trio.testing.wait_all_tasks_blocked()
    before = server.statistics().transfer.bytes_copied_in
    junk = b"x" * 65536

    async def flood() -> None:
        for _ in range(64 * LINGER_MAX_BYTES // len(junk)):  # far beyond socket buffers
            await client.send(junk)

    with trio.fail_after(20), pytest.raises((BrokenPipeError, ConnectionResetError)):
        await flood()
    read = server.statistics().transfer.bytes_copied_in - before
    assert LINGER_MAX_BYTES <= read < LINGER_MAX_BYTES + RECV_SIZE
    assert server.statistics().connections_open == 0
    client.close()


async def test_the_response_survives_the_unread_rest_of_a_request(server: Server) -> None:
    # The reason to linger: bytes the server never read (here, pipelined junk after a
    # request that closes the connection) would make a plain close send a reset, which can
    # destroy the response in the client's receive buffer before it is read.
    client = Timed(server.port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await client.send(LAST_REQUEST + b"y" * 200_000)
    await trio.testing.wait_all_tasks_blocked()
    assert (await read_response(client)).startswith(b"HTTP/1.1 200 OK")
    client.close()
