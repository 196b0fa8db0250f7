"""Choosing a strategy per span, and falling back when zero-copy is unsupported.

``auto`` sends spans shorter than :data:`AUTO_THRESHOLD` by read/write and the rest by
sendfile. The threshold was first set at 64 KiB, from DESIGN-NOTES ("Cost by file size": at
4 KiB, one ``sendmsg`` of data *already read* costs less CPU than ``sendfile``). The benchmark
suite then measured this server, whose read/write path must also ``preadv`` the data on every
request, and calibrated it to 0: sendfile for every span.

* Under load, sendfile used less server CPU per request at every size measured. With
  ``python -m bench.load --strategies readwrite,sendfile --sizes 1KiB,16KiB,64KiB
  --connections 1,16`` (wrk, server pinned to one CPU, medians of 3 alternated runs), at 16
  connections: 69.7 against 92.3 us at 1 KiB (14.3k against 10.8k req/s), 70.3 against
  91.7 us at 16 KiB, 74.7 against 107.7 us at 64 KiB.
* With one connection the two are close: read/write 123 against 134 us at 1 KiB and 131
  against 143 at 16 KiB; a tie at 64 KiB. That is a difference at light load, where CPU is
  not scarce.

A file server's capacity is decided under load, so ``auto`` now picks sendfile for all spans;
the threshold stays a parameter of :class:`WithFallback`, and the benchmarks can re-measure it.

Every zero-copy strategy the server uses is wrapped in :class:`WithFallback`: when sendfile or
splice fail with EINVAL, ENOSYS or EOPNOTSUPP before sending any byte, the span goes by
read/write instead, and the file system (``st_dev``) is remembered, so later spans on it skip
the failing call. Each file system is logged once, not once per request; ``fallbacks`` counts
every span sent by read/write for that reason, remembered or not, and none of those sent by
read/write only because they were small.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, final

from zerocopy.transfer.errors import TransferUnsupported

if TYPE_CHECKING:
    import socket

    from zerocopy.span import FileSpan
    from zerocopy.transfer.base import TransferStrategy
    from zerocopy.transfer.counters import Counters

__all__ = ["AUTO_THRESHOLD", "WithFallback"]

AUTO_THRESHOLD: Final = 0
logger = logging.getLogger("zerocopy.transfer")


@final
class WithFallback:
    """Send by ``primary``, or by ``fallback`` for small spans and unsupported file systems.

    Args:
        name: The registry name this combination answers to.
        primary: A zero-copy strategy.
        fallback: The read/write strategy.
        counters: Process-wide counters (``fallbacks`` counts spans that fell back).
        threshold: Spans shorter than this go straight to ``fallback``.
    """

    def __init__(
        self,
        name: str,
        primary: TransferStrategy,
        fallback: TransferStrategy,
        counters: Counters,
        *,
        threshold: int = 0,
    ) -> None:
        self.name = name
        self._primary = primary
        self._fallback = fallback
        self._counters = counters
        self._threshold = threshold
        self._unsupported: set[int] = set()

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        """See :meth:`TransferStrategy.send_span`."""
        if span.count < self._threshold:
            return await self._fallback.send_span(sock, span, prefix=prefix)
        if span.dev in self._unsupported:
            self._counters.fallbacks += 1
            return await self._fallback.send_span(sock, span, prefix=prefix)
        try:
            return await self._primary.send_span(sock, span, prefix=prefix)
        except TransferUnsupported as exc:
            # The prefix went out and no byte of the span did: send the span alone.
            if span.dev not in self._unsupported:
                self._unsupported.add(span.dev)
                logger.warning(
                    "%s; using read/write for files on device %#x from now on", exc, span.dev
                )
            self._counters.fallbacks += 1
            return await self._fallback.send_span(sock, span)

    def close(self) -> None:
        """Close both strategies."""
        self._primary.close()
        self._fallback.close()
