"""Request limits, with the precedent behind each default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final


@final
@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may make the server hold.

    Attributes:
        max_target_length: Longest request-target, in bytes, before 414. Apache's
            ``LimitRequestLine`` is 8190 for the whole line; nginx's default header buffer is
            8 KiB. Browsers cap URLs near 2 MiB, but no file path here is longer than 4 KiB.
        max_header_count: Most header fields before 431. Apache's ``LimitRequestFields`` is 100.
        max_head_size: Most bytes in a request head before 431. nginx's
            ``large_client_header_buffers 4 8k`` allows 32 KiB in all.
        max_body_size: Most body bytes discarded from a request before 413. A file server reads
            no bodies; it only skips them to keep the stream framed. nginx's
            ``client_max_body_size`` default is 1 MiB.
        max_ranges: Most ranges in one Range header; past it the whole file is sent with 200.
            Apache's ``MaxRanges`` defaults to 200; we cap lower, since no real client asks for
            more than a few dozen (CVE-2011-3192 used over a thousand).
    """

    max_target_length: int = 8192
    max_header_count: int = 100
    max_head_size: int = 32 * 1024
    max_body_size: int = 1024 * 1024
    max_ranges: int = 64
