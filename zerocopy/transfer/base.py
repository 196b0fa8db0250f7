"""The transfer interface: one async method that sends a file span on a socket.

Modelled on httpx's one-method transport interface. Strategies are process-wide objects:
whatever they hold (a buffer pool, a pipe pool) is shared by all connections and bounded, so
an idle keep-alive connection holds nothing of theirs.

:class:`StrategyBase` holds what every strategy shares: its counters, the send timeout, the
page-cache offload, and the preamble of :meth:`~TransferStrategy.send_span`. A strategy only
writes ``_send``, the loop over chunks.

Checkpoints: a syscall that succeeds at once does not yield. A strategy takes one checkpoint
after each chunk, so a response of one chunk costs one pass through trio's scheduler, and a
large body still yields between chunks (on loopback a socket may never return EAGAIN, so
waiting alone would never let other tasks run).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Protocol

import trio

from zerocopy.transfer.errors import translate_errors
from zerocopy.transfer.offload import Offload
from zerocopy.transfer.sockio import send_all

if TYPE_CHECKING:
    import socket

    from zerocopy.span import FileSpan
    from zerocopy.transfer.counters import Counters

__all__ = ["StrategyBase", "TransferStrategy"]


class TransferStrategy(Protocol):
    """Sends file spans on non-blocking sockets.

    Implementations are ``@final`` classes in ``sendfile.py``, ``splice.py``, ``readwrite.py``
    and ``memory.py``, plus the fallback wrapper in ``fallback.py``.
    """

    @property
    def name(self) -> str:
        """The registry name: ``sendfile``, ``splice``, ``readwrite``, ``memory`` or ``auto``."""
        ...

    @property
    def memory_max(self) -> int:
        """The longest span this strategy sends from memory when ``span.data`` holds its
        bytes; 0: never. The open-file cache keeps the bytes of files up to this size."""
        ...

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        """Send ``prefix``, then exactly ``span.count`` bytes of the file from ``span.offset``.

        ``prefix`` is the response head (or a multipart boundary). Strategies send it so that
        it shares a packet with the body: ``MSG_MORE`` before a zero-copy call, or one
        ``sendmsg([prefix, data])`` for read/write.

        Args:
            sock: A connected, non-blocking socket. Borrowed: the caller closes it.
            span: The bytes to send. Its ``fd`` is borrowed: the caller closes it.
            prefix: Bytes to send before the span.

        Returns:
            ``span.count``; anything less raises.

        Raises:
            FileTruncated: The file ended before ``span.count`` bytes.
            TransferUnsupported: The zero-copy call is unsupported here; raised only after the
                prefix and before any byte of the span went out.
            ResourcesExhausted: Out of descriptors for a pipe; raised before anything, the
                prefix included, went out.
            PeerGone: The client disconnected.
            TransferError: Any other failure. After any of these, the response is incomplete
                and the connection must close.

        Checkpoints: once after every chunk, including the last, and never per syscall;
        nothing is sent when the task is already cancelled.
        """
        ...

    def way(self, span: FileSpan) -> str:
        """The name of the strategy that sends ``span`` (asked just after a send: that sent
        it), for the access log. A single strategy answers its ``name``; the fallback wrapper
        answers which of its strategies it chose. Never blocks."""
        ...

    def close(self) -> None:
        """Release pooled resources (buffers, pipes). Called once, at server shutdown."""
        ...


class StrategyBase:
    """Shared constructor and preamble of the ``@final`` strategies.

    Args:
        counters: Process-wide counters.
        send_timeout: Seconds one wait for the socket may last (see ``sockio.wait_writable``).
        offload: Runs chunks whose pages are not cached in worker threads (``offload.py``);
            ``None``: every call runs on the event loop.
    """

    name: ClassVar[str]
    memory_max = 0

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

    def way(self, span: FileSpan) -> str:
        """See :meth:`TransferStrategy.way`: this strategy's name."""
        return self.name

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        """See :meth:`TransferStrategy.send_span`."""
        # A transfer cancelled before it starts sends nothing and costs no read or pipe.
        await trio.lowlevel.checkpoint_if_cancelled()
        if span.count:
            with translate_errors():
                await self._send(sock, span, prefix)
            return span.count
        if prefix:
            with translate_errors():
                await send_all(sock, prefix, self._counters, send_timeout=self._timeout)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return 0

    async def _send(self, sock: socket.socket, span: FileSpan, prefix: bytes) -> None:
        """Send ``prefix`` and the non-empty ``span``, checkpointing after each chunk.

        Runs inside ``translate_errors``: OSError may escape.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release, unless a strategy pools something."""
