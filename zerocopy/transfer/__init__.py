"""Transfer strategies: how a file span gets from the page cache to a socket.

The registry maps each ``--strategy`` name to a factory. ``sendfile`` and ``splice`` come
wrapped in the read/write fallback (for file systems that cannot do zero-copy); ``auto`` also
sends small spans by read/write. The bare strategy classes are exported for tests and
benchmarks that want one path only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

from zerocopy.transfer.auto import AUTO_THRESHOLD, WithFallback
from zerocopy.transfer.base import TransferStrategy
from zerocopy.transfer.counters import Counters, TransferStatistics
from zerocopy.transfer.errors import (
    FileTruncated,
    PeerGone,
    SendTimeout,
    TransferError,
    TransferUnsupported,
    translate_errors,
)
from zerocopy.transfer.offload import DEFAULT_THREADS, Offload
from zerocopy.transfer.readwrite import BufferPool, ReadWrite
from zerocopy.transfer.sendfile import Sendfile
from zerocopy.transfer.sockio import recv, send_all
from zerocopy.transfer.splice import PipePool, Splice

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AUTO_THRESHOLD",
    "DEFAULT_THREADS",
    "STRATEGIES",
    "BufferPool",
    "Counters",
    "FileTruncated",
    "Offload",
    "PeerGone",
    "PipePool",
    "ReadWrite",
    "SendTimeout",
    "Sendfile",
    "Splice",
    "TransferError",
    "TransferSettings",
    "TransferStatistics",
    "TransferStrategy",
    "TransferUnsupported",
    "WithFallback",
    "make_strategy",
    "recv",
    "send_all",
    "translate_errors",
]


@final
@dataclass(frozen=True, slots=True)
class TransferSettings:
    """How strategies behave, as the server configures them.

    Attributes:
        send_timeout: Seconds one wait for a full socket may last (``sockio.wait_writable``).
        offload_threads: Worker threads for chunks not in the page cache (``offload.py``);
            0 keeps every file read on the event loop.
    """

    send_timeout: float = math.inf
    offload_threads: int = DEFAULT_THREADS


def _parts(counters: Counters, settings: TransferSettings) -> dict[str, Any]:
    offload = Offload(counters, threads=settings.offload_threads)
    return {"send_timeout": settings.send_timeout, "offload": offload}


def _auto(counters: Counters, settings: TransferSettings) -> TransferStrategy:
    parts = _parts(counters, settings)
    zero_copy, fallback = Sendfile(counters, **parts), ReadWrite(counters, **parts)
    return WithFallback("auto", zero_copy, fallback, counters, threshold=AUTO_THRESHOLD)


def _sendfile(counters: Counters, settings: TransferSettings) -> TransferStrategy:
    parts = _parts(counters, settings)
    zero_copy, fallback = Sendfile(counters, **parts), ReadWrite(counters, **parts)
    return WithFallback("sendfile", zero_copy, fallback, counters)


def _splice(counters: Counters, settings: TransferSettings) -> TransferStrategy:
    parts = _parts(counters, settings)
    zero_copy, fallback = Splice(counters, **parts), ReadWrite(counters, **parts)
    return WithFallback("splice", zero_copy, fallback, counters)


def _readwrite(counters: Counters, settings: TransferSettings) -> TransferStrategy:
    return ReadWrite(counters, **_parts(counters, settings))


STRATEGIES: Final[dict[str, Callable[[Counters, TransferSettings], TransferStrategy]]] = {
    "auto": _auto,
    "sendfile": _sendfile,
    "splice": _splice,
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
