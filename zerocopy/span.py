"""The one value shared by the response plan and the transfer layer.

A :class:`FileSpan` is a placeholder for body bytes that still live in a file: the HTTP core
(sans-IO) puts spans into a response plan, and a transfer strategy turns each span into
``sendfile``, ``splice`` or ``pread``/``send`` calls. It is the same idea as the opaque data
objects that h11 passes through ``send_with_data_passthrough``.

The HTTP layer never looks inside a span: a :class:`~zerocopy.http.Representation` carries the
whole file as one span, and a range is :meth:`FileSpan.part` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final


@final
class Warmth:
    """When a file's pages were last found in the page cache (``time.monotonic()``).

    Owned by one open-file cache entry, so it can never describe another file that happens to
    reuse the same descriptor number. The transfer layer's page-cache probe reads and sets it.
    """

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = 0.0


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
        data: Exactly the span's bytes, when the open-file cache already holds them in memory
            (whole small files only); ``auto`` may then send them from memory instead of from
            the file.
        warmth: The cache entry's page-cache mark, or ``None`` for an uncached file.
    """

    fd: int
    offset: int
    count: int
    dev: int = 0
    data: bytes | None = None
    warmth: Warmth | None = None

    def __len__(self) -> int:
        return self.count

    def part(self, offset: int, count: int) -> FileSpan:
        """The ``count`` bytes at ``offset`` of this span's file (for a range response).

        The part is always read from the file: only whole small files are sent from memory.
        """
        return FileSpan(self.fd, offset, count, self.dev, None, self.warmth)
