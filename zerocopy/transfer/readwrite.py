"""Read/write: ``preadv`` into a pooled buffer, then ``send``. The fallback path.

Theory of operation:

* Each chunk is copied twice by the CPU: ``preadv`` copies page-cache pages into our buffer
  (kernel to user), and ``sendmsg`` copies them into socket buffers (user to kernel). Both
  copies show up in ``bytes_copied_in`` / ``bytes_copied_out``.
* A small response costs one ``preadv`` and one ``sendmsg([head, body])``: one packet, two
  syscalls.
* With offloading on, the read is ``preadv2(RWF_NOWAIT)``: a short read returns what is
  cached, EAGAIN sends the read to a worker thread, and so does a read of 0 bytes, which on
  Linux 5.9 and 5.10 can mean "not cached" rather than end of file.
* ``sendmsg`` may take part of ``[head, body]``. Body bytes are counted per call, after the
  head's share is taken off, so that ``body_bytes`` stays what the kernel accepted even when a
  chunk fails half-sent (peer gone, timeout, cancellation).
* ``preadv`` returning 0 before the count means the file was truncated: FileTruncated. A
  short, non-zero read is real data at the new end of the file; the next read returns 0. If
  the very first read returns 0, the prefix (held back to share the first ``sendmsg``) is
  sent alone before raising, as sendfile and splice would have sent it.
* Buffers come from a :class:`BufferPool`, so that steady-state traffic allocates nothing.
* The chunk is :data:`CHUNK` bytes: large enough that per-call overhead is small next to the
  copies, small enough to stay in the L2 cache between the read and the send.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.transfer.base import StrategyBase
from zerocopy.transfer.errors import FileTruncated
from zerocopy.transfer.sockio import retry_writable, send_all

if TYPE_CHECKING:
    import socket

    from zerocopy.span import FileSpan
    from zerocopy.transfer.counters import Counters
    from zerocopy.transfer.offload import Offload

__all__ = ["CHUNK", "BufferPool", "ReadWrite"]

CHUNK: Final = 256 * 1024


@final
@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """Attributes: free buffers kept, buffers lent out now, and buffers ever allocated."""

    free: int
    in_use: int
    allocated: int


@final
class _Loan:
    """``with pool.borrow() as buffer``: a class rather than ``@contextmanager``, because
    every read/write span takes one and a generator-based manager costs several times more."""

    __slots__ = ("_buffer", "_pool")

    def __init__(self, pool: BufferPool) -> None:
        self._pool = pool

    def __enter__(self) -> bytearray:
        self._buffer = self._pool._take()
        return self._buffer

    def __exit__(self, *exc_info: object) -> None:
        self._pool._give_back(self._buffer)


@final
class BufferPool:
    """Reusable ``bytearray`` buffers of one size.

    A borrower takes a free buffer, or a new one when none is free: a slow client that holds a
    buffer while it waits for its socket never makes another connection wait. At most ``keep``
    buffers are retained when they come back, which bounds the memory held at rest.

    Args:
        size: Bytes per buffer.
        keep: Most free buffers to retain.
    """

    def __init__(self, size: int = CHUNK, keep: int = 64) -> None:
        self.size = size
        self._keep = keep
        self._free: list[bytearray] = []
        self._in_use = 0
        self._allocated = 0

    def borrow(self) -> _Loan:
        """Lend a buffer for the duration of a ``with`` block."""
        return _Loan(self)

    def _take(self) -> bytearray:
        self._in_use += 1
        if self._free:
            return self._free.pop()
        self._allocated += 1
        return bytearray(self.size)

    def _give_back(self, buffer: bytearray) -> None:
        self._in_use -= 1
        if len(self._free) < self._keep:
            self._free.append(buffer)

    def statistics(self) -> PoolStatistics:
        """Return the pool's counts."""
        return PoolStatistics(len(self._free), self._in_use, self._allocated)

    def clear(self) -> None:
        """Drop the retained buffers."""
        self._free.clear()


@final
class ReadWrite(StrategyBase):
    """``preadv`` + ``send``. See the module docstring.

    Args:
        counters: Process-wide counters.
        pool: Where read buffers come from.
        send_timeout: Seconds one wait for the socket may last (see ``sockio.wait_writable``).
        offload: Reads what is not cached in worker threads (``offload.py``); ``None``: every
            read runs on the event loop.
    """

    name: Final = "readwrite"

    def __init__(
        self,
        counters: Counters,
        pool: BufferPool | None = None,
        *,
        send_timeout: float = math.inf,
        offload: Offload | None = None,
    ) -> None:
        super().__init__(counters, send_timeout=send_timeout, offload=offload)
        self._pool = pool or BufferPool()

    async def _send(self, sock: socket.socket, span: FileSpan, prefix: bytes) -> None:
        counters = self._counters
        offset, remaining = span.offset, span.count
        with self._pool.borrow() as buffer:
            view = memoryview(buffer)
            head = memoryview(prefix)
            while remaining:
                got = await self._offload.read(span.fd, view[: min(remaining, len(view))], offset)
                if got == 0:
                    counters.truncated += 1
                    if head:
                        # As with the zero-copy strategies, the prefix goes out before the
                        # body fails: every strategy leaves the same bytes on the wire.
                        await send_all(sock, head, counters, send_timeout=self._timeout)
                    raise FileTruncated(offset, remaining)
                counters.bytes_copied_in += got
                await self._send_head_and_body(sock, head, view[:got])
                head = memoryview(b"")
                offset += got
                remaining -= got
                await trio.lowlevel.checkpoint()

    async def _send_head_and_body(
        self, sock: socket.socket, head: memoryview, body: memoryview
    ) -> None:
        """``sendmsg([head, body])`` until both are sent; count body bytes per call."""
        counters = self._counters
        while body:
            buffers = [head, body] if head else [body]
            sent = await retry_writable(
                sock, counters, "sendmsg", self._timeout, sock.sendmsg, buffers
            )
            counters.bytes_copied_out += sent
            from_head = min(sent, len(head))
            head = head[from_head:]
            body = body[sent - from_head :]
            counters.body_bytes += sent - from_head

    def close(self) -> None:
        """Drop the pool's buffers."""
        self._pool.clear()
