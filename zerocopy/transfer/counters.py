"""What the transfer layer did, counted where it happened.

Counts are by kernel syscall name (``sendto``, ``sendmsg``, ``recvfrom``, ``preadv``,
``preadv2``, ``sendfile``, ``splice``), so that they can be checked against ``strace -c`` or
bpftrace tracepoints. Only calls that returned count; calls that failed with EAGAIN are counted
separately, because strace counts them too.

"Copied through user space" follows the data: bytes that ``recv``/``preadv`` returned were
copied from the kernel into our memory, and bytes that ``send``/``sendmsg`` accepted were
copied out of it. ``sendfile`` and ``splice`` move bytes without passing them through user
space and count under ``bytes_zero_copy``. Bodies sent from memory (the ``memory`` way, for
small cached files) count under ``bytes_copied_out`` like any send, and also under
``bytes_from_memory``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Mapping


@final
@dataclass(frozen=True, slots=True)
class TransferStatistics:
    """A snapshot of :class:`Counters`.

    Attributes:
        syscalls: Successful calls by kernel syscall name.
        eagain: Calls that failed with EAGAIN, by name.
        body_bytes: File bytes the kernel accepted for sending.
        bytes_copied_in: Bytes copied from the kernel into user space (recv, preadv).
        bytes_copied_out: Bytes copied from user space into the kernel (send, sendmsg).
        bytes_zero_copy: Bytes moved by sendfile or splice (file to socket or pipe to socket).
        bytes_from_memory: Body bytes sent from the open-file cache's memory (also counted in
            ``bytes_copied_out``).
        truncated: Spans that failed because the file shrank under them.
        fallbacks: Spans sent by read/write because the zero-copy call was unsupported.
        offloaded: Chunks moved in a worker thread because the file was not in the page cache.
    """

    syscalls: Mapping[str, int] = field(default_factory=dict)
    eagain: Mapping[str, int] = field(default_factory=dict)
    body_bytes: int = 0
    bytes_copied_in: int = 0
    bytes_copied_out: int = 0
    bytes_zero_copy: int = 0
    bytes_from_memory: int = 0
    truncated: int = 0
    fallbacks: int = 0
    offloaded: int = 0


@final
class Counters:
    """Mutable, process-wide counters. Plain attribute increments: no locks on the hot path.

    The event loop thread is the only writer, except for offloaded chunks, which count after
    ``to_thread`` returns, back on the loop.
    """

    __slots__ = (
        "body_bytes",
        "bytes_copied_in",
        "bytes_copied_out",
        "bytes_from_memory",
        "bytes_zero_copy",
        "eagain",
        "fallbacks",
        "offloaded",
        "syscalls",
        "truncated",
    )

    def __init__(self) -> None:
        self.syscalls: Counter[str] = Counter()
        self.eagain: Counter[str] = Counter()
        self.body_bytes = 0
        self.bytes_copied_in = 0
        self.bytes_copied_out = 0
        self.bytes_zero_copy = 0
        self.bytes_from_memory = 0
        self.truncated = 0
        self.fallbacks = 0
        self.offloaded = 0

    def statistics(self) -> TransferStatistics:
        """Return a frozen snapshot."""
        return TransferStatistics(
            syscalls=MappingProxyType(dict(self.syscalls)),
            eagain=MappingProxyType(dict(self.eagain)),
            body_bytes=self.body_bytes,
            bytes_copied_in=self.bytes_copied_in,
            bytes_copied_out=self.bytes_copied_out,
            bytes_zero_copy=self.bytes_zero_copy,
            bytes_from_memory=self.bytes_from_memory,
            truncated=self.truncated,
            fallbacks=self.fallbacks,
            offloaded=self.offloaded,
        )
