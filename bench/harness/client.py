"""A minimal keep-alive HTTP/1.1 GET client on trio sockets, for timing and for load.

It parses only what it needs (the status and ``Content-Length``), reads every body into one
reused buffer with ``recv_into``, and never reads past the response it waits for, so the cost
it adds per request is small and the same for every strategy. The loopback receiver still
copies each body byte once, kernel to user: that copy is the client's, whatever the server
does.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Final, final

import trio

from bench.harness.files import evict

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["BUFFER", "REQUEST_TIMEOUT", "KeepAliveClient", "request_bytes", "run_requests"]

BUFFER: Final = 4 * 1024 * 1024
# Every loop is bounded in time as well as in count: a server that stops answering fails the
# loop after this many seconds per request it still owed (the largest file, cold, takes well
# under a second here).
REQUEST_TIMEOUT: Final = 30.0
_HEAD_LIMIT: Final = 64 * 1024


def request_bytes(path: str) -> bytes:
    """A GET for ``path`` on a keep-alive connection."""
    return f"GET /{path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode("ascii")


def _content_length(head: bytes) -> int:
    status = head[9:12]
    if not head.startswith(b"HTTP/1.1 ") or status != b"200":
        raise RuntimeError(f"unexpected response: {head[:80]!r}")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError("response without Content-Length")


@final
class KeepAliveClient:
    """One connection to ``127.0.0.1:port``; use as ``async with``."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        self._buffer = bytearray(BUFFER)
        self._view = memoryview(self._buffer)

    @classmethod
    async def connect(cls, port: int) -> KeepAliveClient:
        """Connect; raises OSError if nothing listens."""
        sock = trio.socket.socket()
        try:
            # As HTTP clients do (trio.open_tcp_stream too): a request never waits for an ACK.
            sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
            await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def __aenter__(self) -> KeepAliveClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._sock.close()

    async def get(self, request: bytes) -> int:
        """Send ``request``, read the whole 200 response; return the body length.

        Raises:
            RuntimeError: Not a 200 with Content-Length.
            EOFError: The server closed the connection.
        """
        sock, view, buffer = self._sock, self._view, self._buffer
        sent = 0
        while sent < len(request):
            sent += await sock.send(request[sent:])
        filled = 0
        while True:
            got = await sock.recv_into(view[filled:_HEAD_LIMIT])
            if not got:
                raise EOFError("server closed the connection")
            filled += got
            end = buffer.find(b"\r\n\r\n", 0, filled)
            if end >= 0:
                break
            if filled >= _HEAD_LIMIT:
                raise RuntimeError("response head too large")
        length = _content_length(bytes(buffer[:end]))
        remaining = length - (filled - end - 4)
        while remaining > 0:
            got = await sock.recv_into(view, min(remaining, len(view)))
            if not got:
                raise EOFError(f"server closed the connection with {remaining} bytes to go")
            remaining -= got
        if remaining < 0:
            raise RuntimeError("more bytes than Content-Length")
        return length


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
