"""HTTP dates (RFC 9110 §5.6.7): formatting, lenient parsing, and a once-per-second cache."""

from __future__ import annotations

import calendar
import time
from email.utils import formatdate, parsedate_tz
from typing import final


def format_http_date(epoch: float) -> bytes:
    """Format ``epoch`` (seconds, UTC) as an IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(epoch, usegmt=True).encode("ascii")


def parse_http_date(value: bytes) -> int | None:
    """Parse any of the three HTTP date formats into whole epoch seconds.

    Returns:
        The time, or ``None`` for a value that is not a date. Callers ignore such a header,
        as RFC 9110 §13.1.3 and §13.1.4 require.
    """
    if len(value) > 64:  # Far longer than any of the three formats; not worth parsing.
        return None
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    parsed = parsedate_tz(text)
    if parsed is None:
        return None
    try:
        return calendar.timegm(parsed[:6]) - (parsed[9] or 0)
    except (OverflowError, ValueError):
        return None


@final
class DateCache:
    """The ``Date`` header value, formatted at most once per wall-clock second.

    nginx caches its time strings the same way (``ngx_time_update``); formatting a date costs
    more than the rest of a small response head.
    """

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self, clock: float | None = None) -> bytes:
        """Return the formatted date for ``clock`` (default: ``time.time()``)."""
        second = int(time.time() if clock is None else clock)
        if second != self._second:
            self._value = format_http_date(second)
            self._second = second
        return self._value
