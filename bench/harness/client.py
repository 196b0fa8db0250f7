"""The keep-alive HTTP/1.1 GET client of every benchmark, and bounded sequential loops.

The client itself is the package's (:mod:`zerocopy.tune.client`: ``zerocopy tune`` drives load
with it when wrk is missing); this module adds what only the benchmarks need: the same client
over TLS, and sequential timed loops, with the page cache evicted before each request for the
cold cases.

Over TLS the client reads through ``trio.SSLStream`` (``receive_some``, then one copy into the
client's buffer): decryption is the client's work, on the client's CPU, and never in the
server's figures.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, final

import trio

from bench.harness.files import evict
from zerocopy.tune.client import BUFFER, REQUEST_TIMEOUT, KeepAliveClient, request_bytes

if TYPE_CHECKING:
    import ssl

__all__ = [
    "BUFFER",
    "REQUEST_TIMEOUT",
    "KeepAliveClient",
    "connect",
    "request_bytes",
    "run_requests",
]


@final
class _TLSTransport:
    """A TLS stream with the socket calls the client makes (``send``, ``recv_into``)."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self._stream = stream

    async def send(self, data: bytes, /) -> int:
        await self._stream.send_all(data)
        return len(data)

    async def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int:
        data = await self._stream.receive_some(nbytes or len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Close the TCP socket at once: no close_notify (the server never waits for one)."""
        self._stream.transport_stream.socket.close()


async def connect(port: int, tls: ssl.SSLContext | None = None) -> KeepAliveClient:
    """A keep-alive client to ``127.0.0.1:port``; over TLS (handshake done, server name
    ``localhost``) when ``tls`` is given.

    Raises:
        OSError: Nothing listens.
        trio.BrokenResourceError: The TLS handshake failed.

    Resource handling: the caller closes the client (``async with``).
    """
    if tls is None:
        return await KeepAliveClient.connect(port)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    secure = trio.SSLStream(stream, tls, server_hostname="localhost")
    try:
        await secure.do_handshake()
    except BaseException:
        stream.socket.close()
        raise
    return KeepAliveClient(_TLSTransport(secure))


async def run_requests(
    port: int,
    path: str,
    *,
    count: int,
    min_time: float = 0.0,
    max_time: float = math.inf,
    evict_path: str | None = None,
    tls: ssl.SSLContext | None = None,
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
        tls: Speak TLS with this client context (the handshake is not timed).

    Returns:
        ``(requests, seconds)``: how many responses arrived whole, and the time they took,
        eviction excluded.

    Raises:
        trio.TooSlowError: The server owed responses for ``REQUEST_TIMEOUT`` seconds each.
    """
    bound = count * REQUEST_TIMEOUT + (max_time if math.isfinite(max_time) else min_time)
    with trio.fail_after(bound):
        async with await connect(port, tls) as client:
            return await _loop(client, request_bytes(path), count, min_time, max_time, evict_path)


async def _loop(
    client: KeepAliveClient,
    request: bytes,
    count: int,
    min_time: float,
    max_time: float,
    evict_path: str | None,
) -> tuple[int, float]:
    done, elapsed = 0, 0.0
    start = time.perf_counter()
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
