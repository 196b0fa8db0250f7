"""The transfer interface: one async method that sends a file span on a socket.

Modelled on httpx's one-method transport interface. Strategies are process-wide objects:
whatever they hold (a buffer pool, a pipe pool) is shared by all connections and bounded, so
an idle keep-alive connection holds nothing of theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import socket

    from zerocopy.span import FileSpan

__all__ = ["TransferStrategy"]


class TransferStrategy(Protocol):
    """Sends file spans on non-blocking sockets.

    Implementations are ``@final`` classes in ``sendfile.py``, ``splice.py`` and
    ``readwrite.py``, plus the fallback wrapper in ``auto.py``.
    """

    @property
    def name(self) -> str:
        """The registry name: ``sendfile``, ``splice``, ``readwrite`` or ``auto``."""
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
            PeerGone: The client disconnected.
            TransferError: Any other failure. After any of these, the response is incomplete
                and the connection must close.

        Checkpoints: always (an empty span with no prefix still takes one, as every trio
        async function does), and at least once per chunk, so a transfer to a client that
        never fills its socket (loopback) cannot monopolise the event loop.
        """
        ...

    def close(self) -> None:
        """Release pooled resources (buffers, pipes). Called once, at server shutdown."""
        ...
