"""sendfile: the kernel moves page-cache pages to the socket; no CPU copy on the server.

Theory of operation:

* ``os.sendfile(sock_fd, file_fd, offset, count)`` on the raw non-blocking socket.
  ``socket.sendfile()`` cannot be used: it refuses non-blocking sockets. Internally the kernel
  splices through a private pipe, and since 6.x TCP attaches the page-cache pages by reference
  (MSG_SPLICE_PAGES).
* The response head goes first with ``MSG_MORE``, so that it shares a packet with the body
  even though the socket has TCP_NODELAY (nginx's ``tcp_nopush`` does the same with
  TCP_CORK).
* errno review:

  - EAGAIN: the socket buffer is full; ``wait_writable`` and retry.
  - EINVAL, ENOSYS, EOPNOTSUPP on the first call of a span: this file system cannot
    (FUSE, some network mounts, /proc-like files); raise TransferUnsupported and let the
    fallback send the span by read/write. Later in a span, the same errors are real errors.
  - EPIPE, ECONNRESET: the client left (PeerGone, via ``translate_errors``).
  - A return of 0 before the count: the file was truncated under us. Raise FileTruncated;
    retrying would spin forever.

* Each call moves at most :data:`CHUNK` bytes. The kernel caps one call at 0x7ffff000 bytes
  anyway; a much smaller cap makes every 2 MiB a checkpoint, so that a client on a socket that
  never fills (loopback) cannot monopolise the event loop. nginx's ``sendfile_max_chunk``
  defaults to 2m for the same reason.
"""

from __future__ import annotations

import math
import os
import socket
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.transfer.errors import (
    UNSUPPORTED_ERRNOS,
    FileTruncated,
    TransferUnsupported,
    translate_errors,
)
from zerocopy.transfer.offload import Offload
from zerocopy.transfer.sockio import retry_writable, send_all, wait_writable

if TYPE_CHECKING:
    from zerocopy.span import FileSpan
    from zerocopy.transfer.counters import Counters

__all__ = ["CHUNK", "Sendfile"]

CHUNK: Final = 2 * 1024 * 1024


@final
class Sendfile:
    """``os.sendfile`` on the raw socket. See the module docstring.

    Args:
        counters: Process-wide counters.
        send_timeout: Seconds one wait for the socket may last (see ``sockio.wait_writable``).
        offload: Runs chunks whose pages are not cached in worker threads (``offload.py``);
            ``None``: every call runs on the event loop.
    """

    name: Final = "sendfile"

    def __init__(
        self,
        counters: Counters,
        *,
        send_timeout: float = math.inf,
        offload: Offload | None = None,
    ) -> None:
        self._counters = counters
        self._timeout = send_timeout
        self._offload = offload or Offload(counters, threads=0)

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        """See :meth:`TransferStrategy.send_span`."""
        if not prefix and not span.count:
            await trio.lowlevel.checkpoint()
            return 0
        counters = self._counters
        out = sock.fileno()
        offset, remaining = span.offset, span.count
        with translate_errors():
            if prefix:
                flags = socket.MSG_MORE if remaining else 0
                await send_all(sock, prefix, counters, flags, send_timeout=self._timeout)
            while remaining:
                count = min(remaining, CHUNK)
                try:
                    if self._offload.cached(span.fd, offset, count):
                        sent = await retry_writable(
                            sock,
                            counters,
                            "sendfile",
                            self._timeout,
                            os.sendfile,
                            out,
                            span.fd,
                            offset,
                            count,
                        )
                    else:
                        sent = await self._offload.run(os.sendfile, out, span.fd, offset, count)
                        counters.syscalls["sendfile"] += 1
                except BlockingIOError:
                    # Only the offloaded call gets here: the socket was full. Wait on the
                    # event loop, then probe again (the thread may have cached the pages).
                    counters.eagain["sendfile"] += 1
                    await wait_writable(sock, self._timeout)
                    continue
                except OSError as exc:
                    if exc.errno in UNSUPPORTED_ERRNOS and offset == span.offset:
                        raise TransferUnsupported("sendfile", exc.errno) from exc
                    raise
                if sent == 0:
                    counters.truncated += 1
                    raise FileTruncated(offset, remaining)
                counters.body_bytes += sent
                counters.bytes_zero_copy += sent
                offset += sent
                remaining -= sent
        return span.count

    def close(self) -> None:
        """Nothing to release."""
