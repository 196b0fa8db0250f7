"""Preconditions (RFC 9110 §13.2.2), evaluated in the order the RFC gives.

1. If-Match, strong comparison, ``*`` allowed: on failure 412.
2. Otherwise If-Unmodified-Since: on failure 412.
3. If-None-Match, weak comparison, ``*`` allowed: on a match 304 (only GET and HEAD get here).
4. Otherwise If-Modified-Since: not modified since, 304.
5. Then If-Range decides whether Range applies (:func:`if_range_allows`).

Dates that do not parse are ignored (§13.1.3-4), as are repeated date fields.

Dates are compared with what Last-Modified says, not with the raw modification time: the file's
time clamped into what an IMF-fixdate can write (:func:`~zerocopy.http.dates.http_time`). A
file modified in the year 36812 is sent as ``Fri, 31 Dec 9999 23:59:59 GMT``, and a client
that sends that date back in If-Modified-Since gets 304, as it does for any other file. Two
times past 9999 look the same to If-Modified-Since; the ETag (nanosecond mtime and size)
still tells them apart, and a client that has it sends If-None-Match, which wins.

A representation without validators (a directory listing, as nginx and Apache send it) has no
entity-tag and no modification date. Then only ``*`` matches a tag list (RFC 9110 §13.1.1-2:
the representation exists), so ``If-Match: "x"`` gets 412 and ``If-None-Match: *`` gets 304;
and If-Unmodified-Since and If-Modified-Since are ignored (§13.1.3-4: a recipient MUST ignore
them when the resource has no modification date; nginx answers 412 to If-Unmodified-Since
there).

If-Range is stricter. RFC 9110 §13.1.5 honours a date only when it is a strong validator, and a
clamped date stands for every time past 9999 (or before 1970), so it is not one: If-Range with
it gets the whole file. A false match there would splice the bytes of two different files into
one download; a miss costs one full transfer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from zerocopy.http.dates import HTTP_TIME_MAX, HTTP_TIME_MIN, http_time, parse_http_date

if TYPE_CHECKING:
    from zerocopy.http.parser import Request

__all__ = ["evaluate_preconditions", "if_range_allows"]

_ENTITY_TAG: Final = re.compile(rb'(?:W/)?"[^"]*"')


def _tag_list_matches(field: bytes, etag: bytes | None, *, weak: bool) -> bool:
    if field.strip() == b"*":
        return True
    if etag is None:
        return False
    for match in _ENTITY_TAG.finditer(field):
        tag = match.group()
        if tag.startswith(b"W/"):
            if weak and tag[2:] == etag:
                return True
        elif tag == etag:
            return True
    return False


def evaluate_preconditions(request: Request, etag: bytes | None, mtime: int | None) -> int | None:
    """Return 412, 304, or ``None`` when the request should proceed.

    Args:
        request: A GET or HEAD request.
        etag: The representation's strong entity-tag, quotes included; ``None``: it has none.
        mtime: Its modification time in whole seconds, as ``stat`` gave it, compared as
            Last-Modified writes it (clamped by ``http_time``); ``None``: it has none, and the
            date conditions are ignored.
    """
    last_modified = None if mtime is None else http_time(mtime)
    headers = request.headers
    if_match = headers.get(b"if-match")
    if if_match is not None:
        if not _tag_list_matches(if_match, etag, weak=False):
            return 412
    else:
        since = request.single(b"if-unmodified-since")
        if since is not None and last_modified is not None:
            when = parse_http_date(since)
            if when is not None and last_modified > when:
                return 412
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        if _tag_list_matches(if_none_match, etag, weak=True):
            return 304
    else:
        since = request.single(b"if-modified-since")
        if since is not None and last_modified is not None:
            when = parse_http_date(since)
            if when is not None and last_modified <= when:
                return 304
    return None


def if_range_allows(request: Request, etag: bytes, mtime: int) -> bool:
    """Whether a Range header may be honoured (RFC 9110 §13.1.5).

    An entity-tag must match byte for byte, and a weak one never does. A date must equal
    Last-Modified exactly, and Last-Modified must be the file's own time, not a clamped one
    (see the module docstring). Anything else, a repeated field included, means "send it all".

    Args:
        request: A GET request with a Range header.
        etag: The file's strong entity-tag, quotes included.
        mtime: The file's modification time in whole seconds, as ``stat`` gave it.
    """
    if b"if-range" not in request.headers:
        return True
    value = request.single(b"if-range")
    if value is None:
        return False
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag
    if value.startswith(b"W/"):
        return False
    if not HTTP_TIME_MIN <= mtime <= HTTP_TIME_MAX:
        return False
    when = parse_http_date(value)
    return when is not None and when == mtime
