"""The one value shared by the response plan and the transfer layer.

A :class:`FileSpan` is a placeholder for body bytes that still live in a file: the HTTP core
(sans-IO) puts spans into a response plan, and a transfer strategy turns each span into
``sendfile``, ``splice`` or ``pread``/``send`` calls. It is the same idea as the opaque data
objects that h11 passes through ``send_with_data_passthrough``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final


@final
@dataclass(frozen=True, slots=True)
class FileSpan:
    """``count`` bytes of the open file ``fd`` starting at ``offset``.

    Attributes:
        fd: An open, readable file descriptor. The span borrows it: whoever built the plan
            closes it, after the transfer has finished.
        offset: The first byte to send.
        count: How many bytes to send; the transfer sends exactly this many or fails.
        dev: ``st_dev`` of the file, so that strategies can remember per filesystem that a
            zero-copy call is unsupported without another ``fstat``.
    """

    fd: int
    offset: int
    count: int
    dev: int = 0

    def __len__(self) -> int:
        return self.count
