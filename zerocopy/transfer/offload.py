"""Cold page cache: keep disk reads off the event loop.

Theory of operation. O_NONBLOCK protects only the socket side. When file pages are not in the
page cache, ``sendfile``, ``splice`` (file → pipe) and ``preadv`` block the calling thread
until the disk delivers, and that thread is the event loop: every other connection stalls.
nginx solves it with ``aio threads``; so do we, per chunk:

* **Probe.** ``preadv2(fd, [1 byte], offset, RWF_NOWAIT)`` raises EAGAIN when the page at
  ``offset`` is not cached, without waiting (and starts readahead). The zero-copy strategies
  probe the first and the last page of each chunk: two cheap calls per chunk of up to 2 MiB.
  It is a heuristic: a page in the middle of a chunk may still miss, but sequential readahead
  makes that rare. The read/write strategy needs no probe: it reads with RWF_NOWAIT directly
  and gets what is cached (a short read), or EAGAIN.
* **Offload.** On a miss, the chunk's blocking call runs in a worker thread
  (``trio.to_thread.run_sync``), bounded by a :class:`trio.CapacityLimiter`. The socket stays
  non-blocking, so the thread never waits for the client: an EAGAIN from the socket comes back
  to the event loop, which waits with ``wait_writable`` as usual.
* When probing is impossible (EOPNOTSUPP: a file system without RWF_NOWAIT), the chunk is
  treated as cached, as it was before this module existed.
* A probe that returns 0 bytes means "not cached", never end of file: on Linux 5.9 and 5.10
  ``preadv2(RWF_NOWAIT)`` can return 0 before the end of a file whose pages are not cached
  (lighttpd's source notes it). The chunk then goes to a thread, where a real end of file
  still shows as the zero-copy call returning 0 (truncation).
* A small file that was just found cached is not probed again for :data:`WARM_SECONDS`. The
  mark (:class:`~zerocopy.span.Warmth`) belongs to the open-file cache entry, never to a
  descriptor number, which the kernel reuses for other files. Pages evicted within that window
  cost one blocking read of at most :data:`WARM_MAX` bytes on the event loop.

Counters: each probe counts as a ``preadv2`` call (an EAGAIN probe under ``eagain``), its byte
as copied into user space, and each chunk moved in a thread under ``offloaded``.
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING, Any, Final, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from zerocopy.span import Warmth
    from zerocopy.transfer.counters import Counters

__all__ = ["DEFAULT_THREADS", "Offload"]

DEFAULT_THREADS: Final = 8
"""Concurrent blocking file reads. Each blocked thread is one disk request in flight and uses
no CPU while it waits; nginx's default thread pool has 32 threads for many more cores."""
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")
WARM_SECONDS: Final = 1.0
"""How long a positive probe of a small cached file is trusted."""
WARM_MAX: Final = 64 * 1024
"""Largest chunk that a recent positive probe may vouch for: a blocking read of this much from
a disk costs about as long as one scheduling pass under load."""


@final
class Offload:
    """Probes the page cache and runs blocking file calls in worker threads.

    Args:
        counters: Process-wide counters.
        threads: Most concurrent worker threads; 0 disables probing and offloading, so cold
            reads block the event loop (for comparison benchmarks).
    """

    def __init__(self, counters: Counters, *, threads: int = DEFAULT_THREADS) -> None:
        self._counters = counters
        self._limiter = trio.CapacityLimiter(threads) if threads > 0 else None
        self._probe = bytearray(1)

    def cached(self, fd: int, offset: int, count: int, warmth: Warmth | None = None) -> bool:
        """Whether the first and last pages of ``count`` bytes at ``offset`` are cached.

        Always true when offloading is disabled. Never blocks.

        Args:
            fd: The file.
            offset: The chunk's first byte.
            count: The chunk's length.
            warmth: The file's cache-entry mark: a chunk of at most :data:`WARM_MAX` bytes of
                a file found cached less than :data:`WARM_SECONDS` ago is not probed again.
        """
        if self._limiter is None or count <= 0:
            return True
        if warmth is not None and count <= WARM_MAX:
            if warmth.until > time.monotonic():
                return True
        else:
            warmth = None
        counters = self._counters
        last = offset + count - 1
        for at in (offset, last) if last // _PAGE != offset // _PAGE else (offset,):
            try:
                got = os.preadv(fd, [self._probe], at, os.RWF_NOWAIT)
            except BlockingIOError:
                counters.eagain["preadv2"] += 1
                return False
            except OSError as exc:
                if exc.errno == errno.EOPNOTSUPP:
                    return True
                raise
            counters.syscalls["preadv2"] += 1
            if not got:
                return False  # Not cached (Linux 5.9/5.10), or past the end: see above.
            counters.bytes_copied_in += got  # one byte, but a copy all the same
        if warmth is not None:
            warmth.until = time.monotonic() + WARM_SECONDS
        return True

    async def read(self, fd: int, into: memoryview, offset: int) -> int:
        """Read into ``into`` from ``offset``: what is cached without blocking, the rest in a
        worker thread; returns the bytes read (0 at end of file).

        With offloading on, the read is ``preadv2(RWF_NOWAIT)``: a short read returns what is
        cached, and EAGAIN, or a 0 that may mean "not cached" (Linux 5.9 and 5.10), sends the
        read to a thread, where a real end of file still reads 0. A file system without
        RWF_NOWAIT (EOPNOTSUPP), or offloading off, gets one blocking ``preadv``. Each call is
        counted under its syscall name.

        Checkpoints: only when it goes to a thread.
        """
        counters = self._counters
        if self._limiter is not None:
            try:
                got = os.preadv(fd, [into], offset, os.RWF_NOWAIT)
            except BlockingIOError:
                counters.eagain["preadv2"] += 1
                return await self._read_in_thread(fd, into, offset)
            except OSError as exc:
                if exc.errno != errno.EOPNOTSUPP:
                    raise
            else:
                counters.syscalls["preadv2"] += 1
                if got or not into:
                    return got
                return await self._read_in_thread(fd, into, offset)
        got = os.preadv(fd, [into], offset)
        counters.syscalls["preadv"] += 1
        return got

    async def _read_in_thread(self, fd: int, into: memoryview, offset: int) -> int:
        got = await self.run(os.preadv, fd, [into], offset)
        self._counters.syscalls["preadv"] += 1
        return got

    async def run(self, call: Callable[..., int], *args: Any) -> int:
        """Run a blocking file call in a worker thread and return its result.

        Checkpoints: always. Cancellation waits for the call to finish (it is one chunk of disk
        I/O), so that no thread outlives the transfer that started it.
        """
        assert self._limiter is not None
        self._counters.offloaded += 1
        return await trio.to_thread.run_sync(call, *args, limiter=self._limiter)
