"""Choosing how each span goes: from memory, by zero-copy, or by read/write when zero-copy
cannot.

Every zero-copy strategy the server uses is wrapped in :class:`WithFallback`:

* When sendfile or splice fail with EINVAL, ENOSYS or EOPNOTSUPP before sending any byte of a
  span, the span goes by read/write instead, and the file system (``st_dev``) is remembered,
  so later spans on it skip the failing call. Each file system is logged once, not once per
  request; ``fallbacks`` counts every span sent by read/write for that reason, remembered or
  not.
* When splice cannot get a pipe for lack of descriptors (ResourcesExhausted), nothing has
  been sent yet, and read/write sends the head and the span. It is logged once per episode
  and counted under ``fallbacks`` too.
* ``auto`` also holds a :class:`~zerocopy.transfer.memory.Memory` strategy: a span whose bytes
  the open-file cache holds (``span.data``), at most ``memory_max`` bytes long, goes out in one
  ``send`` with its head.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

from zerocopy.transfer.errors import ResourcesExhausted, TransferUnsupported

if TYPE_CHECKING:
    import socket

    from zerocopy.span import FileSpan
    from zerocopy.transfer.base import TransferStrategy
    from zerocopy.transfer.counters import Counters

__all__ = ["WithFallback"]

logger = logging.getLogger("zerocopy.transfer")


@final
class WithFallback:
    """Send by ``primary``, from memory when allowed, or by ``fallback`` when ``primary``
    cannot.

    Args:
        name: The registry name this combination answers to.
        primary: A zero-copy strategy.
        fallback: The read/write strategy.
        counters: Process-wide counters (``fallbacks`` counts spans that fell back).
        memory: Sends spans whose bytes are in memory (``Memory``), up to its ``memory_max``;
            ``None``: never from memory.
    """

    def __init__(
        self,
        name: str,
        primary: TransferStrategy,
        fallback: TransferStrategy,
        counters: Counters,
        *,
        memory: TransferStrategy | None = None,
    ) -> None:
        self.name = name
        self._primary = primary
        self._fallback = fallback
        self._counters = counters
        self._memory = memory
        self.memory_max = memory.memory_max if memory is not None else 0
        self._unsupported: set[int] = set()
        self._exhausted = False

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        """See :meth:`~zerocopy.transfer.base.TransferStrategy.send_span`."""
        if span.data is not None and span.count <= self.memory_max and self._memory is not None:
            return await self._memory.send_span(sock, span, prefix=prefix)
        if span.dev in self._unsupported:
            self._counters.fallbacks += 1
            return await self._fallback.send_span(sock, span, prefix=prefix)
        try:
            sent = await self._primary.send_span(sock, span, prefix=prefix)
        except TransferUnsupported as exc:
            # The prefix went out and no byte of the span did: send the span alone.
            if span.dev not in self._unsupported:
                self._unsupported.add(span.dev)
                logger.warning(
                    "%s; using read/write for files on device %#x from now on", exc, span.dev
                )
            self._counters.fallbacks += 1
            return await self._fallback.send_span(sock, span)
        except ResourcesExhausted as exc:
            # Nothing went out: read/write sends the prefix and the span.
            if not self._exhausted:
                self._exhausted = True
                logger.warning("%s; sending by read/write until it recovers", exc)
            self._counters.fallbacks += 1
            return await self._fallback.send_span(sock, span, prefix=prefix)
        if self._exhausted:
            self._exhausted = False
            logger.warning("%s: descriptors available again", self.name)
        return sent

    def way(self, span: FileSpan) -> str:
        """The name of the strategy that sends ``span`` now: ``memory``, ``readwrite`` (a
        file system without zero-copy, or no descriptors for a pipe), or the primary's. Asked
        just after a send, the one that sent it. Never blocks."""
        if span.data is not None and span.count <= self.memory_max and self._memory is not None:
            return self._memory.name
        if span.dev in self._unsupported or self._exhausted:
            return self._fallback.name
        return self._primary.name

    def close(self) -> None:
        """Close the strategies."""
        self._primary.close()
        self._fallback.close()
        if self._memory is not None:
            self._memory.close()
