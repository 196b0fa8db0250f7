"""The project's keep-alive HTTP/1.1 GET client: ``zerocopy tune``'s load when wrk is missing,
and the benchmarks' client (``bench.harness.client`` builds on it).

It parses only what it needs (the status and ``Content-Length``), reads every body into one
reused buffer with ``recv_into``, and never reads past the response it waits for, so the cost
it adds per request is small and the same for every server. The loopback receiver still
copies each body byte once, kernel to user: that copy is the client's, whatever the server
does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, final

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from types import TracebackType

__all__ = [
    "BUFFER",
    "REQUEST_TIMEOUT",
    "KeepAliveClient",
    "Transport",
    "request_bytes",
    "run_load",
]

BUFFER: Final = 4 * 1024 * 1024
REQUEST_TIMEOUT: Final = 30.0
"""Seconds a server may owe one response before a loop that waits for it fails (the largest
file of any benchmark, cold, takes well under a second here)."""
_HEAD_LIMIT: Final = 64 * 1024


def request_bytes(path: str) -> bytes:
    """A GET for ``/path`` on a keep-alive connection."""
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


class Transport(Protocol):
    """What the client reads and writes: a trio socket, or a TLS stream made to look like one."""

    def send(self, data: bytes, /) -> Awaitable[int]: ...

    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> Awaitable[int]: ...

    def close(self) -> None: ...


@final
class KeepAliveClient:
    """One connection; use as ``async with``, which closes the transport.

    Args:
        transport: A connected trio socket (:meth:`connect`) or another :class:`Transport`.
    """

    def __init__(self, transport: Transport) -> None:
        self._sock = transport
        self._buffer = bytearray(BUFFER)
        self._view = memoryview(self._buffer)

    @classmethod
    async def connect(cls, port: int) -> KeepAliveClient:
        """Connect to ``127.0.0.1:port``; raises OSError if nothing listens."""
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


async def run_load(port: int, path: str, *, connections: int, seconds: float) -> int:
    """``connections`` keep-alive clients GET ``/path`` back to back for ``seconds``.

    A closed loop, like wrk: each connection sends its next request when the last response
    is in. Requests still in flight when the time is up are not counted.

    Returns:
        The responses that arrived whole.

    Raises:
        OSError, EOFError, RuntimeError: A connection failed or a response was not a 200.
        trio.TooSlowError: A response took more than :data:`REQUEST_TIMEOUT`.

    Checkpoints: yes (it is a load); every connection is closed when it returns.
    """
    request = request_bytes(path)
    done = 0

    async def loop() -> None:
        nonlocal done
        async with await KeepAliveClient.connect(port) as client:
            while True:
                with trio.fail_after(REQUEST_TIMEOUT):
                    await client.get(request)
                done += 1

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(loop)
    return done
