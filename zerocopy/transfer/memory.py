"""Memory: a small body that the open-file cache already holds goes out in one ``send``.

Theory of operation. For a small file, the cost of a response is syscalls and Python work,
not bytes: ``sendfile`` needs the head sent with ``MSG_MORE`` and then the ``sendfile`` call
(plus a page-cache probe), two or three syscalls. When the open-file cache holds the file's
bytes (it reads them once, when the entry is made, and drops them with the entry), head and
body leave in a single ``send``.

It is not zero-copy, and the counters say so: every body byte is copied from user space into
the socket (``bytes_copied_out``) and counted under ``bytes_from_memory``; the one read that
filled the cache is counted by the cache. ``auto`` uses it below a measured size; the
``sendfile``, ``splice`` and ``readwrite`` strategies never do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.transfer.errors import translate_errors
from zerocopy.transfer.sockio import retry_writable

if TYPE_CHECKING:
    import socket

    from zerocopy.span import FileSpan
    from zerocopy.transfer.counters import Counters

__all__ = ["Memory"]


@final
class Memory:
    """Sends spans whose bytes are in memory (``span.data``); see the module docstring.

    Args:
        counters: Process-wide counters.
        send_timeout: Seconds one wait for the socket may last (see ``sockio.wait_writable``).
    """

    name: Final = "memory"

    def __init__(
        self, counters: Counters, *, send_timeout: float = math.inf, memory_max: int
    ) -> None:
        self._counters = counters
        self._timeout = send_timeout
        self.memory_max = memory_max

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        """See :meth:`~zerocopy.transfer.base.TransferStrategy.send_span`; ``span.data`` must
        hold the span's bytes."""
        data = span.data
        assert data is not None, "a memory span holds its bytes"
        await trio.lowlevel.checkpoint_if_cancelled()
        counters = self._counters
        view = memoryview(prefix + data)
        head = len(prefix)
        with translate_errors():
            while view:
                sent = await retry_writable(
                    sock, counters, "sendto", self._timeout, sock.send, view
                )
                counters.bytes_copied_out += sent
                body = sent - head if sent > head else 0
                head = head - sent if head > sent else 0
                counters.body_bytes += body
                counters.bytes_from_memory += body
                view = view[sent:]
        await trio.lowlevel.cancel_shielded_checkpoint()
        return span.count

    def way(self, span: FileSpan) -> str:
        """See :meth:`~zerocopy.transfer.base.TransferStrategy.way`."""
        return self.name

    def close(self) -> None:
        """Nothing to release: the bytes belong to the open-file cache."""
