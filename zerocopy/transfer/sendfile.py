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

import os
import socket
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.transfer.base import StrategyBase
from zerocopy.transfer.errors import UNSUPPORTED_ERRNOS, FileTruncated, TransferUnsupported
from zerocopy.transfer.sockio import retry_writable, send_all, wait_writable

if TYPE_CHECKING:
    from zerocopy.span import FileSpan

__all__ = ["CHUNK", "Sendfile"]

CHUNK: Final = 2 * 1024 * 1024


@final
class Sendfile(StrategyBase):
    """``os.sendfile`` on the raw socket. See the module docstring and :class:`StrategyBase`."""

    name: Final = "sendfile"

    async def _send(self, sock: socket.socket, span: FileSpan, prefix: bytes) -> None:
        counters = self._counters
        offload = self._offload
        out = sock.fileno()
        offset, remaining = span.offset, span.count
        if prefix:
            await send_all(sock, prefix, counters, socket.MSG_MORE, send_timeout=self._timeout)
        while remaining:
            count = min(remaining, CHUNK)
            try:
                if offload.cached(span.fd, offset, count, span.warmth):
                    sent = await retry_writable(
                        sock, counters, "sendfile", self._timeout, os.sendfile,
                        out, span.fd, offset, count,
                    )  # fmt: skip
                else:
                    sent = await offload.run(os.sendfile, out, span.fd, offset, count)
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
            await trio.lowlevel.checkpoint()
