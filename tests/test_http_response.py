"""Response plans, end to end: parsed request + file metadata → status, head bytes, body parts.

Requests go through the real parser. The fd is a made-up integer: a plan never touches it, it
only names it in its FileSpans. Multipart bodies are checked against the stdlib ``email``
parser, an independent reader of RFC 2046 multipart.
"""

from __future__ import annotations

import pytest

from tests.oracles import multipart_parts
from zerocopy.http import (
    ALLOW,
    LAST_CHUNK,
    DateCache,
    HTTPError,
    Representation,
    Request,
    RequestParser,
    ResponsePlan,
    check_method,
    format_http_date,
    frame_chunk,
    plan_content,
    plan_error,
    plan_file,
    plan_listing,
    plan_redirect,
)
from zerocopy.span import FileSpan

FD = 7
DATE = b"Thu, 01 Jan 2026 00:00:00 GMT"
CONTENT = b"abcdefghijklmnopqrstuvwxyz0123456789"  # 36 bytes: easy to eyeball slices of.
MTIME = 784111777
LAST_MODIFIED = b"Sun, 06 Nov 1994 08:49:37 GMT"
ETAG = b'"2ebc7ba1-24"'
DEV = 42
REP = Representation(
    body=FileSpan(FD, 0, len(CONTENT), DEV),
    mtime=MTIME,
    etag=ETAG,
    content_type=b"text/plain; charset=utf-8",
)


def request(
    *fields: bytes, method: bytes = b"GET", version: bytes = b"1.1", target: bytes = b"/f.txt"
) -> Request:
    host = b"Host: h\r\n" if version == b"1.1" else b""
    head = b"%s %s HTTP/%s\r\n%s%s\r\n" % (
        method,
        target,
        version,
        host,
        b"".join(field + b"\r\n" for field in fields),
    )
    parser = RequestParser()
    parser.receive_data(head)
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


def plan(req: Request, rep: Representation = REP, *, max_ranges: int = 8) -> ResponsePlan:
    return plan_file(req, rep, date=DATE, keep_alive=req.keep_alive, max_ranges=max_ranges)


def parse_head(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """Split a head into its status line and fields, checking the framing on the way."""
    assert head.endswith(b"\r\n\r\n")
    assert all(0x20 <= byte < 0x7F for byte in head.replace(b"\r\n", b""))
    status_line, *lines = head[:-4].split(b"\r\n")
    fields: dict[bytes, bytes] = {}
    for line in lines:
        name, sep, value = line.partition(b": ")
        assert sep, line
        assert name.lower() not in fields, f"duplicate field {name!r}"
        fields[name.lower()] = value
    return status_line, fields


def body_bytes(result: ResponsePlan, content: bytes = CONTENT) -> bytes:
    """What the transfer layer would send: bytes as they are, spans read from ``content``."""
    out = b""
    for part in result.body:
        if isinstance(part, FileSpan):
            assert part.fd == FD
            assert part.dev == DEV
            out += content[part.offset : part.offset + part.count]
        else:
            out += part
    return out


# -- 200 ------------------------------------------------------------------------------------


def test_get_200_head_fields() -> None:
    result = plan(request())
    status_line, fields = parse_head(result.head)
    assert status_line == b"HTTP/1.1 200 OK"
    assert result.status == 200
    assert fields == {
        b"server": b"zerocopy",
        b"date": DATE,
        b"content-type": b"text/plain; charset=utf-8",
        b"content-length": b"36",
        b"last-modified": LAST_MODIFIED,
        b"etag": ETAG,
        b"accept-ranges": b"bytes",
    }
    assert result.body == (FileSpan(FD, 0, 36, 42),)
    assert result.body_length == 36
    assert result.keep_alive


@pytest.mark.parametrize(
    ("version", "fields", "keep_alive", "connection"),
    [
        # HTTP/1.1 persists by default, so saying so is redundant (RFC 9112 §9.3).
        pytest.param(b"1.1", [], True, None, id="1.1 keep-alive: no Connection"),
        pytest.param(b"1.1", [b"Connection: close"], False, b"close", id="1.1 close"),
        # A 1.0 client only keeps the connection if the response says so (RFC 9112 §9.3).
        pytest.param(b"1.0", [b"Connection: keep-alive"], True, b"keep-alive", id="1.0 keep-alive"),
        pytest.param(b"1.0", [], False, b"close", id="1.0 default"),
    ],
)
def test_connection_header(
    version: bytes, fields: list[bytes], keep_alive: bool, connection: bytes | None
) -> None:
    req = request(*fields, version=version)
    assert req.keep_alive is keep_alive
    result = plan(req)
    assert result.keep_alive is keep_alive
    assert parse_head(result.head)[1].get(b"connection") == connection


def test_server_may_refuse_keep_alive() -> None:
    # The server (e.g. shutting down) passes keep_alive=False for a client that allowed it.
    result = plan_file(request(), REP, date=DATE, keep_alive=False, max_ranges=8)
    assert not result.keep_alive
    assert parse_head(result.head)[1][b"connection"] == b"close"


def test_head_has_the_get_head_and_no_body() -> None:
    get = plan(request())
    head = plan(request(method=b"HEAD"))
    assert head.status == 200
    assert head.head == get.head  # Same Content-Length, validators and all.
    assert head.body == ()
    assert head.body_length == 0


def test_empty_file() -> None:
    empty = Representation(
        body=FileSpan(FD, 0, 0, DEV), mtime=MTIME, etag=b'"0-0"', content_type=b"text/plain"
    )
    result = plan(request(), empty)
    assert result.status == 200
    assert parse_head(result.head)[1][b"content-length"] == b"0"
    assert result.body == ()


# -- conditionals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([b"If-None-Match: " + ETAG], id="If-None-Match"),
        pytest.param([b"If-Modified-Since: " + LAST_MODIFIED], id="If-Modified-Since"),
    ],
)
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_304(fields: list[bytes], method: bytes) -> None:
    result = plan(request(*fields, method=method))
    status_line, head = parse_head(result.head)
    assert status_line == b"HTTP/1.1 304 Not Modified"
    # RFC 9110 §15.4.5: the validators and Date a 200 would carry; no content.
    assert head[b"etag"] == ETAG
    assert head[b"last-modified"] == LAST_MODIFIED
    assert head[b"date"] == DATE
    assert b"content-type" not in head
    assert result.body == ()
    assert result.keep_alive


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_412(method: bytes) -> None:
    result = plan(request(b'If-Match: "other"', method=method))
    status_line, head = parse_head(result.head)
    assert status_line.startswith(b"HTTP/1.1 412 ")
    assert result.keep_alive  # A refused precondition leaves the stream framed.
    length = int(head[b"content-length"])
    if method == b"GET":
        assert result.body_length == length > 0
    else:
        assert result.body == ()


# -- ranges ---------------------------------------------------------------------------------


def test_206_single_range() -> None:
    result = plan(request(b"Range: bytes=2-5"))
    status_line, head = parse_head(result.head)
    assert status_line == b"HTTP/1.1 206 Partial Content"
    assert head[b"content-range"] == b"bytes 2-5/36"
    assert head[b"content-length"] == b"4"
    assert head[b"content-type"] == REP.content_type
    assert head[b"etag"] == ETAG
    assert result.body == (FileSpan(FD, 2, 4, 42),)
    assert body_bytes(result) == b"cdef"


def test_206_suffix_range() -> None:
    result = plan(request(b"Range: bytes=-3"))
    assert parse_head(result.head)[1][b"content-range"] == b"bytes 33-35/36"
    assert body_bytes(result) == b"789"


def test_416() -> None:
    result = plan(request(b"Range: bytes=36-"))
    status_line, head = parse_head(result.head)
    assert status_line.startswith(b"HTTP/1.1 416 ")
    # RFC 9110 §15.5.17: the current length, as an unsatisfied-range.
    assert head[b"content-range"] == b"bytes */36"
    assert result.body_length == int(head[b"content-length"])
    assert result.keep_alive
    assert not any(isinstance(part, FileSpan) for part in result.body)


def parse_multipart(result: ResponsePlan) -> list[tuple[bytes, bytes, bytes]]:
    """(Content-Type, Content-Range, payload) per part, read by the stdlib email parser."""
    _, head = parse_head(result.head)
    return multipart_parts(head[b"content-type"], body_bytes(result))


def test_206_multipart() -> None:
    result = plan(request(b"Range: bytes=0-2, 10-12, -3"))
    status_line, head = parse_head(result.head)
    assert status_line == b"HTTP/1.1 206 Partial Content"
    content_type, _, boundary = head[b"content-type"].partition(b"; boundary=")
    assert content_type == b"multipart/byteranges"
    assert 1 <= len(boundary) <= 70  # RFC 2046 §5.1.1.
    assert b"content-range" not in head  # Each part has its own.
    body = body_bytes(result)
    assert int(head[b"content-length"]) == len(body) == result.body_length
    # The framing, byte for byte (RFC 2046 §5.1.1): delimiters on their own lines.
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    assert body.count(b"--" + boundary) == 4
    assert parse_multipart(result) == [
        (REP.content_type, b"bytes 0-2/36", b"abc"),
        (REP.content_type, b"bytes 10-12/36", b"klm"),
        (REP.content_type, b"bytes 33-35/36", b"789"),
    ]
    spans = [part for part in result.body if isinstance(part, FileSpan)]
    assert spans == [FileSpan(FD, 0, 3, 42), FileSpan(FD, 10, 3, 42), FileSpan(FD, 33, 3, 42)]


def test_multipart_boundaries_differ() -> None:
    heads = {plan(request(b"Range: bytes=0-0,2-2")).head for _ in range(5)}
    assert len(heads) == 5


def test_multipart_with_unsatisfiable_part_sends_the_rest() -> None:
    result = plan(request(b"Range: bytes=0-0,100-200,5-5"))
    assert [part[1:] for part in parse_multipart(result)] == [
        (b"bytes 0-0/36", b"a"),
        (b"bytes 5-5/36", b"f"),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([b"Range: bytes=0-1"], id="HEAD ignores Range"),
        pytest.param([b"Range: bytes=0-1", b'If-Range: "other"'], id="If-Range tag mismatch"),
        pytest.param([b"Range: bytes=0-1", b"If-Range: W/" + ETAG], id="If-Range weak tag"),
        pytest.param(
            [b"Range: bytes=0-1", b"If-Range: Sun, 06 Nov 1994 08:49:38 GMT"],
            id="If-Range date mismatch",
        ),
        pytest.param([b"Range: items=0-1"], id="unknown unit"),
        pytest.param([b"Range: bytes=1-0"], id="invalid range"),
        pytest.param([b"Range: bytes=0-1,1-2"], id="overlap"),
        pytest.param([b"Range: bytes=0-1", b"Range: bytes=3-4"], id="two Range fields"),
    ],
)
def test_range_ignored_gives_full_200(fields: list[bytes]) -> None:
    method = b"HEAD" if fields == [b"Range: bytes=0-1"] else b"GET"
    result = plan(request(*fields, method=method))
    assert result.status == 200
    assert b"content-range" not in parse_head(result.head)[1]
    if method == b"GET":
        assert result.body == (FileSpan(FD, 0, 36, 42),)


@pytest.mark.parametrize(
    "if_range", [ETAG, LAST_MODIFIED], ids=["If-Range tag match", "If-Range date match"]
)
def test_if_range_match_gives_206(if_range: bytes) -> None:
    result = plan(request(b"Range: bytes=0-1", b"If-Range: " + if_range))
    assert result.status == 206
    assert body_bytes(result) == b"ab"


def test_too_many_ranges_gives_full_200() -> None:
    result = plan(request(b"Range: bytes=0-0,2-2,4-4"), max_ranges=2)
    assert result.status == 200
    assert result.body == (FileSpan(FD, 0, 36, 42),)


def test_preconditions_come_before_range() -> None:
    assert plan(request(b"Range: bytes=0-1", b"If-None-Match: *")).status == 304
    assert plan(request(b"Range: bytes=99-", b'If-Match: "x"')).status == 412


# -- errors, methods, redirects, generated content -------------------------------------------


def test_plan_error_405_carries_allow() -> None:
    error = HTTPError(405, "no", close=False, headers=((b"Allow", ALLOW),))
    result = plan_error(error, date=DATE, keep_alive=True)
    status_line, head = parse_head(result.head)
    assert status_line == b"HTTP/1.1 405 Method Not Allowed"
    assert head[b"allow"] == b"GET, HEAD"
    assert head[b"content-type"] == b"text/plain; charset=utf-8"
    assert b"connection" not in head
    assert result.keep_alive
    assert result.body_length == int(head[b"content-length"]) > 0
    assert b"".join(part for part in result.body if isinstance(part, bytes)).startswith(b"405 ")


def test_plan_error_head_only_keeps_the_length() -> None:
    error = HTTPError(404, "missing", close=False)
    get = plan_error(error, date=DATE, keep_alive=True)
    head = plan_error(error, date=DATE, keep_alive=True, head_only=True)
    assert head.head == get.head
    assert head.body == ()
    assert int(parse_head(head.head)[1][b"content-length"]) == get.body_length


@pytest.mark.parametrize(
    ("close", "keep_alive", "version", "connection"),
    [
        pytest.param(True, True, "1.1", b"close", id="error forces close"),
        pytest.param(False, False, "1.1", b"close", id="client asked to close"),
        pytest.param(False, True, "1.1", None, id="1.1 keep-alive"),
        pytest.param(False, True, "1.0", b"keep-alive", id="1.0 keep-alive"),
    ],
)
def test_plan_error_connection(
    close: bool, keep_alive: bool, version: str, connection: bytes | None
) -> None:
    result = plan_error(
        HTTPError(400, "bad", close=close), date=DATE, version=version, keep_alive=keep_alive
    )
    assert result.keep_alive is (keep_alive and not close)
    assert parse_head(result.head)[1].get(b"connection") == connection


@pytest.mark.parametrize(
    "status", [400, 403, 404, 408, 412, 413, 414, 416, 431, 500, 501, 503, 505]
)
def test_plan_error_every_status_we_use(status: int) -> None:
    result = plan_error(HTTPError(status, "x"), date=DATE)
    status_line, head = parse_head(result.head)
    assert status_line.startswith(b"HTTP/1.1 %d " % status)
    assert head[b"connection"] == b"close"
    assert result.body_length == int(head[b"content-length"])


METHOD_CASES: list[tuple[str, int | None]] = [
    ("GET", None),
    ("HEAD", None),
    # RFC 9110 §9.3 methods a file server does not allow: 405 with Allow (§15.5.6).
    ("POST", 405),
    ("PUT", 405),
    ("DELETE", 405),
    ("CONNECT", 405),
    ("OPTIONS", 405),
    ("TRACE", 405),
    ("PATCH", 405),  # RFC 5789.
    # Methods we do not implement at all: 501 (§15.6.2).
    ("PROPFIND", 501),
    ("BREW", 501),
    ("get", 501),  # Methods are case-sensitive (§9.1).
]


@pytest.mark.parametrize(("method", "status"), METHOD_CASES, ids=[m for m, _ in METHOD_CASES])
def test_check_method(method: str, status: int | None) -> None:
    if status is None:
        check_method(method)
        return
    with pytest.raises(HTTPError) as info:
        check_method(method)
    error = info.value
    assert error.status_hint == status
    assert not error.close  # The request was framed correctly; the connection can go on.
    if status == 405:
        assert error.headers == ((b"Allow", b"GET, HEAD"),)
    else:
        assert error.headers == ()


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_plan_redirect(method: bytes) -> None:
    req = request(method=method, target=b"/dir")
    result = plan_redirect(b"/dir/", req, date=DATE, keep_alive=True)
    status_line, head = parse_head(result.head)
    assert status_line == b"HTTP/1.1 301 Moved Permanently"
    assert head[b"location"] == b"/dir/"
    assert result.keep_alive
    if method == b"GET":
        assert result.body_length == int(head[b"content-length"])
    else:
        assert result.body == ()


def test_plan_content() -> None:
    body = b"<!doctype html><title>x</title>"
    result = plan_content(body, b"text/html; charset=utf-8", request(), date=DATE, keep_alive=True)
    _, head = parse_head(result.head)
    assert head[b"content-length"] == b"%d" % len(body)
    assert head[b"content-type"] == b"text/html; charset=utf-8"
    assert result.body == (body,)
    head_only = plan_content(
        body, b"text/html", request(method=b"HEAD"), date=DATE, keep_alive=True
    )
    assert head_only.body == ()


# -- listings: streamed after the head -------------------------------------------------------

HTML = b"text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("method", "version", "keep_alive", "stream", "connection"),
    [
        # HTTP/1.1: chunked, and the connection stays open.
        (b"GET", b"1.1", True, "chunked", None),
        (b"GET", b"1.1", False, "chunked", b"close"),
        # HTTP/1.0 has no chunked coding: the close delimits the body.
        (b"GET", b"1.0", True, "close", b"close"),
        (b"GET", b"1.0", False, "close", b"close"),
        # HEAD: no body, and nothing to stream; the connection may stay open.
        (b"HEAD", b"1.1", True, None, None),
        (b"HEAD", b"1.0", True, None, b"keep-alive"),
    ],
)
def test_plan_listing(
    method: bytes,
    version: bytes,
    keep_alive: bool,
    stream: str | None,
    connection: bytes | None,
) -> None:
    fields = (b"Connection: keep-alive",) if version == b"1.0" and keep_alive else ()
    req = request(*fields, method=method, version=version, target=b"/d/")
    result = plan_listing(req, HTML, date=DATE, keep_alive=keep_alive)
    status_line, head = parse_head(result.head)
    assert status_line == b"HTTP/1.1 200 OK"
    assert (result.status, result.body, result.stream) == (200, (), stream)
    assert result.keep_alive is (connection != b"close")
    assert head.get(b"connection") == connection
    assert head[b"content-type"] == HTML
    assert head[b"cache-control"] == b"no-cache"
    # No length and no validators; chunked only when the body is.
    assert b"content-length" not in head
    assert head.get(b"transfer-encoding") == (b"chunked" if stream == "chunked" else None)
    for name in (b"etag", b"last-modified", b"accept-ranges"):
        assert name not in head


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize(
    ("field", "status"),
    [
        (b'If-Match: "nope"', 412),
        (b"If-Match: *", 200),
        (b"If-None-Match: *", 304),
        (b'If-None-Match: "nope"', 200),
        (b"If-Modified-Since: " + DATE, 200),
        (b"If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT", 200),
        (b"Range: bytes=0-0", 200),
    ],
)
def test_plan_listing_conditionals(field: bytes, status: int, method: bytes) -> None:
    result = plan_listing(request(field, method=method), HTML, date=DATE, keep_alive=True)
    _, head = parse_head(result.head)
    assert result.status == status
    assert result.keep_alive
    if status == 304:
        assert (result.body, result.stream) == ((), None)
        assert head[b"cache-control"] == b"no-cache"  # what the 200 would carry
        assert b"content-length" not in head
    elif status == 412:
        assert result.stream is None
        assert result.body_length == (0 if method == b"HEAD" else int(head[b"content-length"]))


def test_chunk_framing() -> None:
    assert frame_chunk(b"x") == b"1\r\nx\r\n"
    assert frame_chunk(b"y" * 300) == b"12c\r\n" + b"y" * 300 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"
    with pytest.raises(AssertionError):
        frame_chunk(b"")


# -- Date -----------------------------------------------------------------------------------


def test_date_cache_formats_once_per_second() -> None:
    cache = DateCache()
    first = cache.now(MTIME + 0.1)
    assert first == LAST_MODIFIED
    assert cache.now(MTIME + 0.9) is first  # Same second: the cached object itself.
    later = cache.now(MTIME + 1.0)
    assert later == format_http_date(MTIME + 1) == b"Sun, 06 Nov 1994 08:49:38 GMT"
    assert cache.now(MTIME + 1.5) is later
    assert cache.now(MTIME) == LAST_MODIFIED  # A clock that steps back is followed.


def test_date_cache_default_clock() -> None:
    value = DateCache().now()
    assert len(value) == 29
    assert value.endswith(b" GMT")
