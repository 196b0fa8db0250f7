"""Transfer strategies: how a file span gets from the page cache to a socket.

The registry maps each ``--strategy`` name to a factory. ``sendfile`` and ``splice`` come
wrapped in the read/write fallback (for file systems that cannot do zero-copy); ``auto`` also
sends small spans by read/write. The bare strategy classes are exported for tests and
benchmarks that want one path only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

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
from zerocopy.transfer.readwrite import BufferPool, ReadWrite
from zerocopy.transfer.sendfile import Sendfile
from zerocopy.transfer.sockio import recv, send_all
from zerocopy.transfer.splice import PipePool, Splice

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AUTO_THRESHOLD",
    "STRATEGIES",
    "BufferPool",
    "Counters",
    "FileTruncated",
    "PeerGone",
    "PipePool",
    "ReadWrite",
    "SendTimeout",
    "Sendfile",
    "Splice",
    "TransferError",
    "TransferStatistics",
    "TransferStrategy",
    "TransferUnsupported",
    "WithFallback",
    "make_strategy",
    "recv",
    "send_all",
    "translate_errors",
]


def _auto(counters: Counters, send_timeout: float) -> TransferStrategy:
    zero_copy = Sendfile(counters, send_timeout=send_timeout)
    fallback = ReadWrite(counters, send_timeout=send_timeout)
    return WithFallback("auto", zero_copy, fallback, counters, threshold=AUTO_THRESHOLD)


def _sendfile(counters: Counters, send_timeout: float) -> TransferStrategy:
    zero_copy = Sendfile(counters, send_timeout=send_timeout)
    fallback = ReadWrite(counters, send_timeout=send_timeout)
    return WithFallback("sendfile", zero_copy, fallback, counters)


def _splice(counters: Counters, send_timeout: float) -> TransferStrategy:
    zero_copy = Splice(counters, send_timeout=send_timeout)
    fallback = ReadWrite(counters, send_timeout=send_timeout)
    return WithFallback("splice", zero_copy, fallback, counters)


def _readwrite(counters: Counters, send_timeout: float) -> TransferStrategy:
    return ReadWrite(counters, send_timeout=send_timeout)


STRATEGIES: Final[dict[str, Callable[[Counters, float], TransferStrategy]]] = {
    "auto": _auto,
    "sendfile": _sendfile,
    "splice": _splice,
    "readwrite": _readwrite,
}
"""Every ``--strategy`` name and its factory, in the order ``--help`` lists them."""


def make_strategy(
    name: str, counters: Counters, *, send_timeout: float = math.inf
) -> TransferStrategy:
    """Build the named strategy, with read/write fallback for the zero-copy ones.

    Raises:
        KeyError: Unknown name.
    """
    return STRATEGIES[name](counters, send_timeout)
