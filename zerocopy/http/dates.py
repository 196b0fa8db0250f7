"""HTTP dates (RFC 9110 §5.6.7): formatting, strict parsing, and a once-per-second cache.

Parsing accepts exactly the three formats the RFC lists, and nothing else:

* IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT``
* RFC 850: ``Sunday, 06-Nov-94 08:49:37 GMT``
* asctime: ``Sun Nov  6 08:49:37 1994``

``email.utils.parsedate_tz`` is deliberately not used: it reads the first date out of
``"<date>, <date>"`` and rolls ``32 Nov`` or ``25:00:00`` over into another day, where RFC 9110
§13.1.3-4 says a conditional with an invalid date, or with more than one member, is ignored.
nginx's ``ngx_parse_http_time`` is as strict about the calendar.

Formatting never fails, whatever the time. File systems keep times that an HTTP-date cannot
write: tmpfs and ext4 keep 64-bit seconds (``touch -d @1099511627776`` is the year 36812),
and any of them keeps times before 1970. IMF-fixdate has a four-digit year, and RFC 9110
§5.6.7 counts from the epoch, so :func:`http_time` clamps first, as nginx's ``ngx_gmtime``
does: later than ``Fri, 31 Dec 9999 23:59:59 GMT`` is written as that date, earlier than the
epoch as ``Thu, 01 Jan 1970 00:00:00 GMT``. The conditionals compare with the same clamped
second (:mod:`zerocopy.http.conditional`), so a client that sends back the Last-Modified it
was given is answered consistently.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from typing import Final, final

_MONTH_NAMES: Final = b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_DAY_NAMES: Final = b"Mon Tue Wed Thu Fri Sat Sun".split()  # In tm_wday order.
_MONTHS: Final = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_MONTH: Final = b"(" + b"|".join(_MONTH_NAMES) + b")"
_DAY: Final = b"(?:" + b"|".join(_DAY_NAMES) + b")"
_LONG_DAY: Final = rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_TIME: Final = rb"(\d\d):(\d\d):(\d\d)"
# Each pattern captures (day, month, year, hour, minute, second), in some order given below.
_IMF_FIXDATE: Final = re.compile(_DAY + rb", (\d\d) " + _MONTH + rb" (\d{4}) " + _TIME + rb" GMT")
_RFC850: Final = re.compile(_LONG_DAY + rb", (\d\d)-" + _MONTH + rb"-(\d\d) " + _TIME + rb" GMT")
_ASCTIME: Final = re.compile(_DAY + b" " + _MONTH + rb" ((?:\d| )\d) " + _TIME + rb" (\d{4})")


HTTP_TIME_MIN: Final = 0
"""``Thu, 01 Jan 1970 00:00:00 GMT``: the earliest second a Last-Modified is written as."""
HTTP_TIME_MAX: Final = 253402300799
"""``Fri, 31 Dec 9999 23:59:59 GMT``: the latest second an IMF-fixdate can write."""


def http_time(epoch: float) -> int:
    """The whole second that the HTTP-date for ``epoch`` names: floored, then clamped.

    Args:
        epoch: Seconds since the epoch, e.g. ``st_mtime``; any int or float (NaN gives the
            minimum).

    Returns:
        A second from :data:`HTTP_TIME_MIN` to :data:`HTTP_TIME_MAX`, both included.
    """
    if epoch >= HTTP_TIME_MAX:
        return HTTP_TIME_MAX
    if not epoch > HTTP_TIME_MIN:  # Also NaN, which compares false with everything.
        return HTTP_TIME_MIN
    return math.floor(epoch)


def format_http_date(epoch: float) -> bytes:
    """Format ``epoch`` (seconds, UTC) as an IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Never raises: the time is clamped by :func:`http_time` first.
    """
    # Not email.utils.formatdate: importing email.utils imports socket, which the sans-IO
    # core must not pull in (tests/test_layering.py).
    t = time.gmtime(http_time(epoch))
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAY_NAMES[t.tm_wday],
        t.tm_mday,
        _MONTH_NAMES[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def _rfc850_year(two_digits: int, rest: tuple[int, ...], now: float | None) -> int:
    # RFC 9110 §5.6.7: a two-digit year that "appears to be more than 50 years in the future"
    # is "the most recent year in the past that had the same last two digits". ``rest`` is
    # (month, day, hour, minute, second), compared against the same instant 50 years ahead.
    current = time.gmtime(now)
    limit = (current.tm_year + 50, *current[1:6])
    year = current.tm_year - current.tm_year % 100 + two_digits
    if (year, *rest) > limit:
        year -= 100
    elif (year + 100, *rest) <= limit:
        year += 100
    return year


def parse_http_date(value: bytes, *, now: float | None = None) -> int | None:
    """Parse any of the three HTTP date formats into whole epoch seconds.

    Args:
        value: The field value; surrounding whitespace is allowed.
        now: The current time, only to place an RFC 850 two-digit year in its century
            (default: ``time.time()``).

    Returns:
        The time, or ``None`` for a value that is not exactly one valid date. Callers ignore
        such a header, as RFC 9110 §13.1.3 and §13.1.4 require.
    """
    value = value.strip(b" \t")
    if len(value) > 40:  # Longer than any of the three formats: not worth matching.
        return None
    if (match := _IMF_FIXDATE.fullmatch(value)) or (match := _RFC850.fullmatch(value)):
        day, month, year, hour, minute, second = match.groups()
    elif match := _ASCTIME.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
    else:
        return None
    rest = (_MONTHS[month], int(day), int(hour), int(minute), int(second))
    full_year = int(year) if len(year) == 4 else _rfc850_year(int(year), rest, now)
    if full_year < 1:  # "0000": the proleptic calendar (and calendar.timegm) starts at 1.
        return None
    month_number, day_number, hour_number, minute_number, second_number = rest
    if not 1 <= day_number <= calendar.monthrange(full_year, month_number)[1]:
        return None
    # 60 is a leap second (RFC 9110 §5.6.7 allows it); timegm carries it into the next minute.
    if hour_number > 23 or minute_number > 59 or second_number > 60:
        return None
    return calendar.timegm((full_year, *rest))


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
