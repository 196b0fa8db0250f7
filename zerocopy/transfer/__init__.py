"""Transfer strategies: how a file span gets from the page cache to a socket.

The registry maps each ``--strategy`` name to a factory. ``sendfile`` and ``splice`` come
wrapped in the read/write fallback (for file systems that cannot do zero-copy, and for splice
under descriptor pressure); ``auto`` is sendfile with that fallback, and it also sends small
files that the open-file cache holds in memory in one ``send`` (``memory.py``). The bare
strategy classes are exported for tests and benchmarks that want one path only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from zerocopy.transfer.base import TransferStrategy
from zerocopy.transfer.counters import Counters, TransferStatistics
from zerocopy.transfer.errors import (
    FileTruncated,
    PeerGone,
    ResourcesExhausted,
    SendTimeout,
    TransferError,
    TransferUnsupported,
    translate_errors,
)
from zerocopy.transfer.fallback import WithFallback
from zerocopy.transfer.memory import Memory
from zerocopy.transfer.offload import DEFAULT_THREADS, Offload
from zerocopy.transfer.readwrite import BufferPool, ReadWrite
from zerocopy.transfer.sendfile import Sendfile
from zerocopy.transfer.sockio import recv, retry_writable, send_all, wait_writable
from zerocopy.transfer.splice import PipePool, Splice
from zerocopy.transfer.tls import KTLSStatus, TLSChannel, TLSReadWrite, ktls_status

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AUTO_THRESHOLD",
    "DEFAULT_THREADS",
    "STRATEGIES",
    "BufferPool",
    "Counters",
    "FileTruncated",
    "KTLSStatus",
    "Memory",
    "Offload",
    "PeerGone",
    "PipePool",
    "ReadWrite",
    "ResourcesExhausted",
    "SendTimeout",
    "Sendfile",
    "Splice",
    "TLSChannel",
    "TLSReadWrite",
    "TransferError",
    "TransferSettings",
    "TransferStatistics",
    "TransferStrategy",
    "TransferUnsupported",
    "WithFallback",
    "ktls_status",
    "make_strategy",
    "recv",
    "retry_writable",
    "send_all",
    "translate_errors",
    "wait_writable",
]


AUTO_THRESHOLD: Final = 64 * 1024
"""The largest file ``auto`` sends from memory (the open-file cache holds its bytes)."""


@final
@dataclass(frozen=True, slots=True)
class TransferSettings:
    """How strategies behave, as the server configures them.

    Attributes:
        send_timeout: Seconds one wait for a full socket may last (``sockio.wait_writable``).
        offload_threads: Worker threads for chunks not in the page cache (``offload.py``);
            0 keeps every file read on the event loop.
        auto_threshold: The largest file ``auto`` sends from memory; 0: never.
    """

    send_timeout: float = math.inf
    offload_threads: int = DEFAULT_THREADS
    auto_threshold: int = AUTO_THRESHOLD


def _zero_copy(
    name: str, primary: Callable[..., TransferStrategy], *, memory: bool = False
) -> Callable[[Counters, TransferSettings], TransferStrategy]:
    """The factory of a zero-copy strategy wrapped in the read/write fallback."""

    def build(counters: Counters, settings: TransferSettings) -> TransferStrategy:
        offload = Offload(counters, threads=settings.offload_threads)
        timeout = settings.send_timeout
        held = None
        if memory and settings.auto_threshold > 0:
            held = Memory(counters, send_timeout=timeout, memory_max=settings.auto_threshold)
        return WithFallback(
            name,
            primary(counters, send_timeout=timeout, offload=offload),
            ReadWrite(counters, send_timeout=timeout, offload=offload),
            counters,
            memory=held,
        )

    return build


def _readwrite(counters: Counters, settings: TransferSettings) -> TransferStrategy:
    offload = Offload(counters, threads=settings.offload_threads)
    return ReadWrite(counters, send_timeout=settings.send_timeout, offload=offload)


STRATEGIES: Final[dict[str, Callable[[Counters, TransferSettings], TransferStrategy]]] = {
    "auto": _zero_copy("auto", Sendfile, memory=True),
    "sendfile": _zero_copy("sendfile", Sendfile),
    "splice": _zero_copy("splice", Splice),
    "readwrite": _readwrite,
}
"""Every ``--strategy`` name and its factory, in the order ``--help`` lists them."""


def make_strategy(
    name: str, counters: Counters, settings: TransferSettings | None = None
) -> TransferStrategy:
    """Build the named strategy, with read/write fallback for the zero-copy ones.

    Raises:
        KeyError: Unknown name.
    """
    return STRATEGIES[name](counters, settings or TransferSettings())
