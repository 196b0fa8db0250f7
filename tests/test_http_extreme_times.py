"""Modification times an HTTP-date cannot write: clamped, never a crash, and conditionals agree.

tmpfs keeps 64-bit seconds, so ``os.utime`` there can set the year 36812 (``2**40``) or a time
``time.gmtime`` refuses (``2**56``), and any file system keeps times before 1970. The file's
metadata goes through the same functions as in the server (``fstat``, ``etag``,
``plan_file``), without a socket.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from zerocopy.files import etag
from zerocopy.http import Representation, Request, RequestParser, format_http_date, plan_file
from zerocopy.http.dates import HTTP_TIME_MAX, HTTP_TIME_MIN, http_time, parse_http_date
from zerocopy.span import FileSpan

IMF_FIXDATE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" \d{4} \d\d:\d\d:\d\d GMT"
)
LATEST = b"Fri, 31 Dec 9999 23:59:59 GMT"
EARLIEST = b"Thu, 01 Jan 1970 00:00:00 GMT"
DATE = b"Thu, 01 Jan 2026 00:00:00 GMT"

FORMAT_CASES: list[tuple[str, float, bytes]] = [
    ("epoch", 0, EARLIEST),
    ("RFC 9110 example", 784111777, b"Sun, 06 Nov 1994 08:49:37 GMT"),
    ("fraction floored", 784111777.999, b"Sun, 06 Nov 1994 08:49:37 GMT"),
    ("last writable second", HTTP_TIME_MAX, LATEST),
    ("half a second past it", HTTP_TIME_MAX + 0.5, LATEST),
    ("one second past it", HTTP_TIME_MAX + 1, LATEST),
    ("2**40: the year 36812", 2**40, LATEST),
    ("2**56: gmtime raises EOVERFLOW", 2**56, LATEST),
    ("2**63", 2**63, LATEST),
    ("2**1000", 2**1000, LATEST),
    ("infinity", math.inf, LATEST),
    ("one second before the epoch", -1, EARLIEST),
    ("half a second before it", -0.5, EARLIEST),
    ("-2**40", -(2**40), EARLIEST),
    ("-2**63", -(2**63), EARLIEST),
    ("minus infinity", -math.inf, EARLIEST),
    ("NaN", math.nan, EARLIEST),
]


@pytest.mark.parametrize(
    ("epoch", "expected"), [pytest.param(e, x, id=i) for i, e, x in FORMAT_CASES]
)
def test_format_http_date_clamps_and_never_raises(epoch: float, expected: bytes) -> None:
    text = format_http_date(epoch)
    assert text == expected
    assert IMF_FIXDATE.fullmatch(text)
    # What is written parses back to exactly the second the conditionals compare with.
    assert parse_http_date(text) == http_time(epoch)


def test_clamp_bounds_are_the_dates_they_claim() -> None:
    assert format_http_date(HTTP_TIME_MAX) == LATEST
    assert parse_http_date(LATEST) == HTTP_TIME_MAX
    assert format_http_date(HTTP_TIME_MIN) == EARLIEST
    assert parse_http_date(EARLIEST) == HTTP_TIME_MIN


# -- through the sans-IO layer, with real stat results from tmpfs ----------------------------


@pytest.fixture
def tmpfs_file() -> Iterator[Path]:
    """A file on tmpfs, which keeps 64-bit timestamps (most disk file systems cap them)."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        path = Path(directory) / "f.txt"
        path.write_bytes(b"0123456789")
        yield path


def request(*fields: bytes) -> Request:
    parser = RequestParser()
    parser.receive_data(
        b"GET /f.txt HTTP/1.1\r\nHost: h\r\n%s\r\n" % b"".join(f + b"\r\n" for f in fields)
    )
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


def representation(info: os.stat_result) -> Representation:
    # As the server builds it from fstat of the open file (server/respond.py).
    return Representation(
        body=FileSpan(3, 0, info.st_size, info.st_dev),
        mtime=int(info.st_mtime),
        etag=etag(info),
        content_type=b"text/plain; charset=utf-8",
    )


def answer(rep: Representation, *fields: bytes) -> tuple[int, dict[bytes, bytes]]:
    plan = plan_file(request(*fields), rep, date=DATE, keep_alive=True, max_ranges=8)
    lines = plan.head.split(b"\r\n")[1:-2]
    return plan.status, dict(line.split(b": ", 1) for line in lines)


EXTREME_CASES: list[tuple[str, int, bytes, bool]] = [
    # (name, mtime, Last-Modified, whether that date is the file's own second)
    ("in range", 784111777, b"Sun, 06 Nov 1994 08:49:37 GMT", True),
    ("2**40", 2**40, LATEST, False),
    ("2**56", 2**56, LATEST, False),
    ("-1", -1, EARLIEST, False),
    ("-2**40", -(2**40), EARLIEST, False),
]


@pytest.mark.parametrize(
    ("mtime", "last_modified", "exact"),
    [pytest.param(m, lm, x, id=i) for i, m, lm, x in EXTREME_CASES],
)
def test_extreme_mtime_is_clamped_and_conditionals_agree(
    tmpfs_file: Path, mtime: int, last_modified: bytes, exact: bool
) -> None:
    os.utime(tmpfs_file, (mtime, mtime))
    info = os.stat(tmpfs_file)
    if info.st_mtime != mtime:
        pytest.skip(f"this file system cannot keep the time {mtime}")
    rep = representation(info)

    status, fields = answer(rep)
    assert status == 200
    assert fields[b"Last-Modified"] == last_modified
    assert IMF_FIXDATE.fullmatch(fields[b"Last-Modified"])

    # A cache that sends back the date it was given has an up-to-date copy.
    assert answer(rep, b"If-Modified-Since: " + last_modified)[0] == 304
    assert answer(rep, b"If-Unmodified-Since: " + last_modified)[0] == 200
    # One second earlier: the file is newer than that, whether or not its time was clamped
    # (at the bottom, 1969 still parses).
    earlier = format_http_date(parse_http_date(last_modified) - 1)  # type: ignore[operator]
    if last_modified != EARLIEST:
        assert answer(rep, b"If-Modified-Since: " + earlier)[0] == 200
        assert answer(rep, b"If-Unmodified-Since: " + earlier)[0] == 412
    # If-Range honours the date only when it is the file's own second (RFC 9110 §13.1.5: a
    # clamped date is no strong validator); the ETag always works.
    ranged = answer(rep, b"Range: bytes=0-3", b"If-Range: " + last_modified)
    assert ranged[0] == (206 if exact else 200)
    assert answer(rep, b"Range: bytes=0-3", b"If-Range: " + rep.etag)[0] == 206
    assert answer(rep, b"If-None-Match: " + rep.etag)[0] == 304


def test_two_clamped_times_have_different_etags(tmpfs_file: Path) -> None:
    os.utime(tmpfs_file, (2**40, 2**40))
    first = representation(os.stat(tmpfs_file))
    os.utime(tmpfs_file, (2**41, 2**41))
    second = representation(os.stat(tmpfs_file))
    if second.mtime != 2**41:
        pytest.skip("this file system cannot keep the time 2**41")
    assert answer(first)[1][b"Last-Modified"] == answer(second)[1][b"Last-Modified"]
    assert first.etag != second.etag
    assert answer(second, b"If-None-Match: " + first.etag)[0] == 200
