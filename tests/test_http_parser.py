"""RequestParser: bytes in, requests (or one error, then CLOSED) out. No sockets anywhere.

The tables follow h11's ``test_io.py`` SIMPLE_CASES: each row is raw bytes and what the parser
must make of them. Expected values come from RFC 9112 (framing, keep-alive, Host) and from
the status nginx answers to each fault, not from running the parser.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerocopy.http import CLOSED, NEED_DATA, HTTPError, Limits, Request, RequestParser
from zerocopy.http.parser import SLICE, ParserStatistics


@dataclass(frozen=True)
class Req:
    """What a test cares about in a parsed request."""

    method: str
    target: bytes
    version: str
    keep_alive: bool


@dataclass(frozen=True)
class Err:
    """An HTTPError, by status."""

    status: int


Event = Req | Err


def summarize(request: Request) -> Req:
    return Req(request.method, request.target, request.version, request.keep_alive)


def drain(parser: RequestParser) -> tuple[list[Event], object]:
    """Call next_event until it returns a sentinel; return the events and that sentinel.

    After an error it checks the contract that every later call returns CLOSED.
    """
    events: list[Event] = []
    while True:
        try:
            event = parser.next_event()
        except HTTPError as exc:
            events.append(Err(exc.status_hint))
            for _ in range(3):
                assert parser.next_event() is CLOSED
            parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert parser.next_event() is CLOSED
            return events, CLOSED
        if event is NEED_DATA or event is CLOSED:
            return events, event
        assert isinstance(event, Request)
        events.append(summarize(event))


def parse(
    chunks: list[bytes], *, eof: bool = True, limits: Limits | None = None
) -> tuple[list[Event], object]:
    """Feed ``chunks`` one by one, draining after each, then EOF if asked.

    Empty chunks are skipped: ``receive_data(b"")`` means end of file.
    """
    parser = RequestParser(limits)
    events: list[Event] = []
    final: object = NEED_DATA
    for chunk in filter(None, chunks):
        parser.receive_data(chunk)
        more, final = drain(parser)
        events += more
        if final is CLOSED:
            return events, final
    if eof:
        parser.receive_data(b"")
        more, final = drain(parser)
        events += more
    return events, final


def get(target: bytes = b"/", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    host = b"Host: example.com\r\n" if version == b"1.1" else b""
    return b"GET %s HTTP/%s\r\n%s%s\r\n" % (target, version, host, extra)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# -- well-formed requests -----------------------------------------------------------------

GOOD_CASES: list[tuple[str, bytes, list[Event]]] = [
    ("get", get(), [Req("GET", b"/", "1.1", True)]),
    (
        "head",
        b"HEAD /a/b.txt?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        [Req("HEAD", b"/a/b.txt?x=1", "1.1", True)],
    ),
    (
        "absolute-form target kept raw",
        b"GET http://h/a%20b?q HTTP/1.1\r\nHost: h\r\n\r\n",
        [Req("GET", b"http://h/a%20b?q", "1.1", True)],
    ),
    # RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
    ("1.1 default keep-alive", get(), [Req("GET", b"/", "1.1", True)]),
    (
        "1.1 Connection: close",
        get(extra=b"Connection: close\r\n"),
        [Req("GET", b"/", "1.1", False)],
    ),
    (
        "1.1 Connection: CLOSE (case-insensitive)",
        get(extra=b"Connection: CLOSE\r\n"),
        [Req("GET", b"/", "1.1", False)],
    ),
    (
        "1.1 close among other options",
        get(extra=b"Connection: TE, close\r\n"),
        [Req("GET", b"/", "1.1", False)],
    ),
    (
        "1.1 Connection: keep-alive",
        get(extra=b"Connection: keep-alive\r\n"),
        [Req("GET", b"/", "1.1", True)],
    ),
    ("1.0 default close", get(version=b"1.0"), [Req("GET", b"/", "1.0", False)]),
    (
        "1.0 Connection: keep-alive",
        get(version=b"1.0", extra=b"Connection: keep-alive\r\n"),
        [Req("GET", b"/", "1.0", True)],
    ),
    (
        "1.0 Connection: Keep-Alive",
        get(version=b"1.0", extra=b"Connection: Keep-Alive\r\n"),
        [Req("GET", b"/", "1.0", True)],
    ),
    (
        "1.0 Connection: close",
        get(version=b"1.0", extra=b"Connection: close\r\n"),
        [Req("GET", b"/", "1.0", False)],
    ),
    # Host is only required on 1.1 (RFC 9112 §3.2).
    ("1.0 without Host", b"GET / HTTP/1.0\r\n\r\n", [Req("GET", b"/", "1.0", False)]),
    (
        "1.0 with Host",
        b"GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
        [Req("GET", b"/", "1.0", True)],
    ),
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
    ("leading CRLF", b"\r\n" + get(), [Req("GET", b"/", "1.1", True)]),
    ("two leading CRLFs", b"\r\n\r\n" + get(), [Req("GET", b"/", "1.1", True)]),
    (
        "pipelined in order",
        get(b"/1") + b"HEAD /2 HTTP/1.1\r\nHost: h\r\n\r\n" + get(b"/3"),
        [
            Req("GET", b"/1", "1.1", True),
            Req("HEAD", b"/2", "1.1", True),
            Req("GET", b"/3", "1.1", True),
        ],
    ),
    (
        "pipelined, 1.0 keep-alive then 1.1",
        get(b"/1", version=b"1.0", extra=b"Connection: keep-alive\r\n") + get(b"/2"),
        [Req("GET", b"/1", "1.0", True), Req("GET", b"/2", "1.1", True)],
    ),
    # RFC 9112 §9.6: after "close" the server MUST NOT process further requests.
    (
        "nothing after Connection: close",
        get(b"/1", extra=b"Connection: close\r\n") + get(b"/2"),
        [Req("GET", b"/1", "1.1", False)],
    ),
    (
        "nothing after a 1.0 request without keep-alive",
        get(b"/1", version=b"1.0") + get(b"/2"),
        [Req("GET", b"/1", "1.0", False)],
    ),
    (
        "garbage after Connection: close is not answered",
        get(b"/1", extra=b"Connection: close\r\n") + b"\x00\x01garbage\r\n\r\n",
        [Req("GET", b"/1", "1.1", False)],
    ),
    # Smuggling: a body on a GET is framed by Content-Length (RFC 9112 §6.3) and skipped,
    # even when it looks like a request itself.
    (
        "GET body skipped, next request parsed",
        get(b"/1", extra=b"Content-Length: 5\r\n") + b"hello" + get(b"/2"),
        [Req("GET", b"/1", "1.1", True), Req("GET", b"/2", "1.1", True)],
    ),
    (
        "request-shaped body is not a request",
        get(b"/1", extra=b"Content-Length: %d\r\n" % len(get(b"/smuggled")))
        + get(b"/smuggled")
        + get(b"/2"),
        [Req("GET", b"/1", "1.1", True), Req("GET", b"/2", "1.1", True)],
    ),
    (
        "chunked body skipped",
        get(b"/1", extra=b"Transfer-Encoding: chunked\r\n")
        + b"5\r\nhello\r\n0\r\n\r\n"
        + get(b"/2"),
        [Req("GET", b"/1", "1.1", True), Req("GET", b"/2", "1.1", True)],
    ),
    # Methods the parser knows but the server refuses are still requests: check_method
    # answers them (405/501) on a connection that stays framed.
    (
        "PROPFIND parses",
        b"PROPFIND / HTTP/1.1\r\nHost: h\r\n\r\n",
        [Req("PROPFIND", b"/", "1.1", True)],
    ),
    ("POST parses", b"POST / HTTP/1.1\r\nHost: h\r\n\r\n", [Req("POST", b"/", "1.1", True)]),
    # An upgrade is answered, then the connection closes: what follows is another protocol.
    (
        "upgrade ends the stream",
        get(b"/1", extra=b"Connection: upgrade\r\nUpgrade: websocket\r\n") + get(b"/2"),
        [Req("GET", b"/1", "1.1", False)],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [pytest.param(d, e, id=i) for i, d, e in GOOD_CASES])
def test_good_requests(data: bytes, expected: list[Event]) -> None:
    assert parse([data]) == (expected, CLOSED)


@pytest.mark.parametrize(("data", "expected"), [pytest.param(d, e, id=i) for i, d, e in GOOD_CASES])
def test_good_requests_byte_by_byte(data: bytes, expected: list[Event]) -> None:
    assert parse(bytewise(data)) == (expected, CLOSED)


@pytest.mark.parametrize("size", [2, 3, 7, 13, 100])
@pytest.mark.parametrize(("data", "expected"), [pytest.param(d, e, id=i) for i, d, e in GOOD_CASES])
def test_good_requests_odd_chunks(data: bytes, expected: list[Event], size: int) -> None:
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert parse(chunks) == (expected, CLOSED)


def test_pipeline_longer_than_one_slice() -> None:
    # More bytes than one llhttp slice, split at a prime so boundaries fall everywhere.
    requests = [get(b"/%d" % i) for i in range(300)]
    data = b"".join(requests)
    assert len(data) > 2 * SLICE
    expected = [Req("GET", b"/%d" % i, "1.1", True) for i in range(300)]
    assert parse([data]) == (expected, CLOSED)
    chunks = [data[i : i + 997] for i in range(0, len(data), 997)]
    assert parse(chunks) == (expected, CLOSED)


def test_pipelining_is_parsed_lazily() -> None:
    # 500 pipelined requests in one read. One next_event parses at most one slice: the rest
    # waits as unparsed bytes, so the requests held ahead of their responses are bounded by
    # what one slice can hold, not by what the client sent. An eager parser would hold 499
    # parsed requests here and no bytes.
    request = get(b"/hello.txt")
    data = request * 500
    parser = RequestParser()
    parser.receive_data(data)
    assert parser.statistics() == ParserStatistics(queued_events=0, buffered_bytes=len(data))
    first = parser.next_event()
    assert isinstance(first, Request)
    held = parser.statistics()
    assert held.queued_events <= SLICE // len(request)
    assert held.buffered_bytes >= len(data) - SLICE
    # Each later call parses another slice only once the queue is empty.
    targets = [first.target]
    while isinstance(event := parser.next_event(), Request):
        targets.append(event.target)
        held = parser.statistics()
        assert held.queued_events <= SLICE // len(request)
    assert event is NEED_DATA
    assert targets == [b"/hello.txt"] * 500
    assert parser.statistics() == ParserStatistics(queued_events=0, buffered_bytes=0)


def test_requests_come_one_at_a_time() -> None:
    parser = RequestParser()
    parser.receive_data(get(b"/1") + get(b"/2"))
    first = parser.next_event()
    assert isinstance(first, Request)
    assert first.target == b"/1"
    second = parser.next_event()
    assert isinstance(second, Request)
    assert second.target == b"/2"
    assert parser.next_event() is NEED_DATA


# -- end of file ----------------------------------------------------------------------------


def test_need_data_until_eof() -> None:
    parser = RequestParser()
    assert parser.next_event() is NEED_DATA
    assert not parser.in_message
    parser.receive_data(b"GET / HTTP/1.1\r\nHo")
    assert parser.next_event() is NEED_DATA
    assert parser.in_message
    parser.receive_data(b"st: h\r\n\r\n")
    assert isinstance(parser.next_event(), Request)
    assert not parser.in_message
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"")
    assert parser.next_event() is CLOSED
    assert parser.next_event() is CLOSED


def test_eof_on_empty_connection() -> None:
    assert parse([], eof=True) == ([], CLOSED)


def test_half_close_still_returns_requests() -> None:
    # The client sends two requests and shuts down its side before reading: both are still
    # answered (h11 treats a half-closed peer the same way).
    parser = RequestParser()
    parser.receive_data(get(b"/1") + get(b"/2"))
    parser.receive_data(b"")
    for target in (b"/1", b"/2"):
        assert parser.next_event() == Request(
            "GET", target, "1.1", True, {b"host": b"example.com"}, plain=True
        )
    assert parser.next_event() is CLOSED


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"GET / HT", id="mid request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: h\r\n", id="mid head"),
        pytest.param(get(extra=b"Content-Length: 10\r\n") + b"abc", id="mid body"),
    ],
)
def test_eof_mid_request_closes_after_complete_ones(tail: bytes) -> None:
    # A request cut off by EOF can never be answered; the complete one before it is.
    events, final = parse([get(b"/1") + tail])
    assert (events, final) == ([Req("GET", b"/1", "1.1", True)], CLOSED)


# -- errors ---------------------------------------------------------------------------------

ERROR_CASES: list[tuple[str, bytes, int]] = [
    # Versions, as nginx answers them: well-formed but unsupported → 505, malformed → 400.
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    ("HTTP/1.9", b"GET / HTTP/1.9\r\nHost: h\r\n\r\n", 505),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
    ("HTTP/0.9", b"GET / HTTP/0.9\r\n\r\n", 505),
    ("HTTX/1.1", b"GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400),
    ("HTTP/1", b"GET / HTTP/1\r\nHost: h\r\n\r\n", 400),
    ("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    ("HTTP/1.1x", b"GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400),
    ("lower-case http/1.1", b"GET / http/1.1\r\nHost: h\r\n\r\n", 400),
    # No version at all is HTTP/0.9's Simple-Request (RFC 1945 §4.1): a version we do not serve.
    ("no version (HTTP/0.9)", b"GET /\r\nHost: h\r\n\r\n", 505),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # Host (RFC 9112 §3.2).
    ("1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    # The fields a plain request may carry do not stand in for Host.
    ("1.1 without Host, with Accept", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    (
        "1.1 without Host, with Accept-Encoding",
        b"GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
        400,
    ),
    (
        "1.1 without Host, with Authorization",
        b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
        400,
    ),
    ("1.1 two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("1.1 two equal Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("1.0 two Hosts", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    # Framing and smuggling (RFC 9112 §6).
    ("Transfer-Encoding on 1.0", get(version=b"1.0", extra=b"Transfer-Encoding: chunked\r\n"), 400),
    (
        "Content-Length with Transfer-Encoding",
        get(extra=b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
        400,
    ),
    (
        "duplicate Content-Length",
        get(extra=b"Content-Length: 3\r\nContent-Length: 3\r\n") + b"abc",
        400,
    ),
    ("Content-Length list", get(extra=b"Content-Length: 3, 3\r\n") + b"abc", 400),
    ("signed Content-Length +", get(extra=b"Content-Length: +3\r\n") + b"abc", 400),
    ("signed Content-Length -", get(extra=b"Content-Length: -3\r\n") + b"abc", 400),
    ("Transfer-Encoding not ending in chunked", get(extra=b"Transfer-Encoding: gzip\r\n"), 400),
    # Line syntax (RFC 9112 §2.2, §5.1, §5.2).
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: h\n\n", 400),
    ("bare LF after a header", b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
    ("bare CR inside a header", b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),
    ("obs-fold", get(extra=b"X-A: b\r\n c\r\n"), 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    ("NUL in header value", get(extra=b"X-A: a\x00b\r\n"), 400),
    ("NUL in header name", get(extra=b"X\x00A: b\r\n"), 400),
    ("header without colon", get(extra=b"X-A b\r\n"), 400),
    # Methods llhttp does not know at all (RFC 9110 §9.1 → 501).
    ("unknown method BREW", b"BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    # A good request first: it is returned, then the error.
    ("error after a good request", get(b"/1") + b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
]


@pytest.mark.parametrize(("data", "status"), [pytest.param(d, s, id=i) for i, d, s in ERROR_CASES])
def test_errors(data: bytes, status: int) -> None:
    events, final = parse([data], eof=False)
    assert events[-1] == Err(status)
    assert all(isinstance(event, Req) for event in events[:-1])
    assert final is CLOSED


@pytest.mark.parametrize(("data", "status"), [pytest.param(d, s, id=i) for i, d, s in ERROR_CASES])
def test_errors_byte_by_byte(data: bytes, status: int) -> None:
    assert parse(bytewise(data), eof=False) == parse([data], eof=False)
    assert parse(bytewise(data), eof=False)[0][-1] == Err(status)


def test_logged_fields_do_not_stand_in_for_host() -> None:
    # With the access log on, Referer and User-Agent are kept but leave a request plain.
    parser = RequestParser(log_fields=True)
    parser.receive_data(b"GET / HTTP/1.1\r\nUser-Agent: x\r\nReferer: y\r\n\r\n")
    assert first_error(parser).status_hint == 400


@pytest.mark.xfail(
    strict=True,
    reason="llhttp also accepts RTSP/1.0 request lines, and httptools does not report which "
    "protocol name it saw, so GET / RTSP/1.0 is served as HTTP/1.0 (RFC 9112 §2.3: 400)",
)
def test_rtsp_protocol_name_is_malformed() -> None:
    assert parse([b"GET / RTSP/1.0\r\nHost: h\r\n\r\n"]) == ([Err(400)], CLOSED)


def test_error_after_good_request_keeps_order() -> None:
    events, final = parse([get(b"/1") + b"BREW / HTTP/1.1\r\nHost: h\r\n\r\n" + get(b"/3")])
    assert (events, final) == ([Req("GET", b"/1", "1.1", True), Err(501)], CLOSED)


def first_error(parser: RequestParser) -> HTTPError:
    """Skip the good requests before the error and return it."""
    while True:
        try:
            event = parser.next_event()
        except HTTPError as exc:
            return exc
        assert isinstance(event, Request), event


@pytest.mark.parametrize("data", [pytest.param(d, id=i) for i, d, _ in ERROR_CASES])
def test_errors_close_the_connection(data: bytes) -> None:
    # Once a stream fails to parse, nothing after it can be framed: every error closes.
    parser = RequestParser()
    parser.receive_data(data)
    assert first_error(parser).close


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        pytest.param(100, [Req("GET", b"/" + b"a" * 99, "1.1", True)], id="at the limit"),
        pytest.param(101, [Err(414)], id="one over"),
        pytest.param(5000, [Err(414)], id="far over"),
    ],
)
def test_target_length(length: int, expected: list[Event]) -> None:
    data = get(b"/" + b"a" * (length - 1))
    limits = Limits(max_target_length=100)
    assert parse([data], limits=limits) == (expected, CLOSED)
    chunks = [data[i : i + 10] for i in range(0, len(data), 10)]
    assert parse(chunks, limits=limits) == (expected, CLOSED)


def test_default_target_limit() -> None:
    limit = Limits().max_target_length
    assert parse([get(b"/" + b"a" * (limit - 1))])[0][0] == Req(
        "GET", b"/" + b"a" * (limit - 1), "1.1", True
    )
    assert parse([get(b"/" + b"a" * limit)])[0] == [Err(414)]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        pytest.param(5, [Req("GET", b"/", "1.1", True)], id="at the limit"),
        pytest.param(6, [Err(431)], id="one over"),
    ],
)
def test_header_count(count: int, expected: list[Event]) -> None:
    # Host is one of the fields.
    data = get(extra=b"X-A: b\r\n" * (count - 1))
    assert parse([data], limits=Limits(max_header_count=5)) == (expected, CLOSED)


def test_many_small_headers_over_head_size() -> None:
    limits = Limits()
    field = b"X-Filler: " + b"v" * 400 + b"\r\n"
    count = limits.max_head_size // len(field) + 2
    assert count < limits.max_header_count  # So that 431 comes from the size, not the count.
    assert parse([get(extra=field * count)]) == ([Err(431)], CLOSED)


def test_head_just_under_size_is_fine() -> None:
    limits = Limits()
    field = b"X-Filler: " + b"v" * 400 + b"\r\n"
    count = limits.max_head_size // len(field) - 2
    assert parse([get(extra=field * count)]) == ([Req("GET", b"/", "1.1", True)], CLOSED)


@pytest.mark.parametrize("chunk_size", [1, 1000, SLICE, 3 * SLICE + 1])
def test_one_huge_header_fails_before_it_is_buffered(chunk_size: int) -> None:
    # llhttp (through httptools) accumulates an unfinished header value itself; the parser
    # must stop it near max_head_size, not after the whole value arrives.
    limits = Limits()
    parser = RequestParser(limits)
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nX-Huge: ")
    sent = 0
    error = None
    while error is None and sent < 64 * limits.max_head_size:
        try:
            assert parser.next_event() is NEED_DATA
        except HTTPError as exc:
            error = exc
        else:
            parser.receive_data(b"a" * chunk_size)
            sent += chunk_size
    assert error is not None
    assert error.status_hint == 431
    assert sent <= limits.max_head_size + SLICE + chunk_size
    assert parser.next_event() is CLOSED


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            b"Content-Length: 10\r\n\r\n0123456789",
            [Req("GET", b"/", "1.1", True)],
            id="length at the limit",
        ),
        pytest.param(b"Content-Length: 11\r\n\r\n0123456789X", [Err(413)], id="length one over"),
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
            [Req("GET", b"/", "1.1", True)],
            id="chunked at the limit",
        ),
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n6789X\r\n0\r\n\r\n",
            [Err(413)],
            id="chunked one over",
        ),
    ],
)
def test_body_size(body: bytes, expected: list[Event]) -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + body
    assert parse([data], limits=Limits(max_body_size=10)) == (expected, CLOSED)
    assert parse(bytewise(data), limits=Limits(max_body_size=10)) == (expected, CLOSED)


# -- Expect (RFC 9110 §10.1.1) --------------------------------------------------------------

CONTINUE = b"Expect: 100-continue\r\n"
NEXT = [Req("GET", b"/next", "1.1", True)]
# (name, bytes, events, what next_event says after them, without EOF)
EXPECT_CASES: list[tuple[str, bytes, list[Event], object]] = [
    # A body announced with 100-continue: answered at once, then the connection closes.
    (
        "length, no body yet",
        get(extra=CONTINUE + b"Content-Length: 10\r\n"),
        [Req("GET", b"/", "1.1", False)],
        CLOSED,
    ),
    (
        "length, body sent anyway, then another request",
        get(extra=CONTINUE + b"Content-Length: 3\r\n") + b"abc" + get(b"/next"),
        [Req("GET", b"/", "1.1", False)],
        CLOSED,
    ),
    (
        "chunked",
        get(extra=b"Transfer-Encoding: chunked\r\n" + CONTINUE) + b"3\r\nab",
        [Req("GET", b"/", "1.1", False)],
        CLOSED,
    ),
    (
        "any case, OWS",
        get(extra=b"Expect:  100-Continue \r\nContent-Length: 1\r\n"),
        [Req("GET", b"/", "1.1", False)],
        CLOSED,
    ),
    (
        "empty list members",
        get(extra=b"Expect: ,100-continue,\r\nContent-Length: 1\r\n"),
        [Req("GET", b"/", "1.1", False)],
        CLOSED,
    ),
    (
        "POST gets its answer (a 405) at once too",
        b"POST /f HTTP/1.1\r\nHost: h\r\n" + CONTINUE + b"Content-Length: 5\r\n\r\n",
        [Req("POST", b"/f", "1.1", False)],
        CLOSED,
    ),
    # Nothing to wait for: the expectation changes nothing.
    (
        "no body",
        get(extra=CONTINUE) + get(b"/next"),
        [Req("GET", b"/", "1.1", True), *NEXT],
        NEED_DATA,
    ),
    (
        "zero length",
        get(extra=CONTINUE + b"Content-Length: 0\r\n") + get(b"/next"),
        [Req("GET", b"/", "1.1", True), *NEXT],
        NEED_DATA,
    ),
    (
        "empty field",
        get(extra=b"Expect:\r\nContent-Length: 1\r\n") + b"x" + get(b"/next"),
        [Req("GET", b"/", "1.1", True), *NEXT],
        NEED_DATA,
    ),
    # HTTP/1.0: "A server that receives a 100-continue expectation in an HTTP/1.0 request MUST
    # ignore that expectation." The body is read and skipped as usual.
    (
        "HTTP/1.0",
        get(
            version=b"1.0",
            extra=b"Connection: keep-alive\r\n" + CONTINUE + b"Content-Length: 2\r\n",
        )
        + b"ab"
        + get(b"/next"),
        [Req("GET", b"/", "1.0", True), *NEXT],
        NEED_DATA,
    ),
    # Any other expectation: 417.
    ("unknown expectation", get(extra=b"Expect: something\r\n"), [Err(417)], CLOSED),
    (
        "unknown, with a body",
        get(extra=b"Expect: x\r\nContent-Length: 2\r\n") + b"ab",
        [Err(417)],
        CLOSED,
    ),
    ("100-continue and another", get(extra=b"Expect: 100-continue, x\r\n"), [Err(417)], CLOSED),
    ("with a parameter", get(extra=b"Expect: 100-continue;a=b\r\n"), [Err(417)], CLOSED),
    ("HTTP/1.0, unknown", get(version=b"1.0", extra=b"Expect: x\r\n"), [Err(417)], CLOSED),
    ("repeated fields combine", get(extra=CONTINUE + b"Expect: x\r\n"), [Err(417)], CLOSED),
    # The body limit still comes first.
    (
        "announced body over the limit",
        get(extra=CONTINUE + b"Content-Length: 2000000\r\n"),
        [Err(413)],
        CLOSED,
    ),
]


@pytest.mark.parametrize(
    ("data", "expected", "final"), [pytest.param(d, e, f, id=i) for i, d, e, f in EXPECT_CASES]
)
def test_expect(data: bytes, expected: list[Event], final: object) -> None:
    # No EOF: a request that expects 100-continue must come out without waiting for its body.
    assert parse([data], eof=False) == (expected, final)
    assert parse(bytewise(data), eof=False) == (expected, final)


def test_expect_continue_is_answered_before_its_body_and_nothing_after_is_parsed() -> None:
    parser = RequestParser()
    parser.receive_data(get(b"/f", extra=CONTINUE + b"Content-Length: 10\r\n"))
    event = parser.next_event()
    assert isinstance(event, Request)
    assert (event.target, event.keep_alive, event.has_body) == (b"/f", False, True)
    assert event.headers[b"expect"] == b"100-continue"
    # The body and a pipelined request after it are never parsed: the connection is closing.
    parser.receive_data(b"0123456789" + get(b"/next"))
    assert parser.next_event() is CLOSED
    assert not parser.in_message


# -- tracked headers ------------------------------------------------------------------------


def parse_one(data: bytes) -> Request:
    parser = RequestParser()
    parser.receive_data(data)
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


def test_tracked_headers_are_lower_cased_and_others_dropped() -> None:
    request = parse_one(
        b'GET / HTTP/1.1\r\nHOST: h\r\nRange: bytes=0-1\r\nIf-None-Match: "x"\r\n'
        b"X-Other: y\r\nUser-Agent: z\r\n\r\n"
    )
    assert request.headers == {b"host": b"h", b"range": b"bytes=0-1", b"if-none-match": b'"x"'}
    assert request.single(b"range") == b"bytes=0-1"
    assert request.single(b"if-match") is None
    assert not request.has_body


def test_repeated_tracked_headers() -> None:
    request = parse_one(
        get(
            extra=b'If-None-Match: "a"\r\nIf-None-Match: W/"b"\r\n'
            b"Range: bytes=0-1\r\nRange: bytes=2-3\r\n"
            b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        )
    )
    # RFC 9110 §5.3: repeated list fields combine with commas, in order.
    assert request.headers[b"if-none-match"] == b'"a", W/"b"'
    assert request.headers[b"range"] == b"bytes=0-1, bytes=2-3"
    assert request.repeated == frozenset({b"if-none-match", b"range"})
    # Singleton fields that came twice are unusable.
    assert request.single(b"range") is None
    assert request.single(b"if-none-match") is None
    assert request.single(b"if-modified-since") == b"Sun, 06 Nov 1994 08:49:37 GMT"


def test_body_is_noted() -> None:
    assert parse_one(get(extra=b"Content-Length: 2\r\n") + b"ab").has_body
    assert parse_one(get(extra=b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n").has_body
    assert not parse_one(get(extra=b"Content-Length: 0\r\n")).has_body


# -- arbitrary splits -----------------------------------------------------------------------

REQUEST_PIECES = [
    get(b"/a"),
    b"HEAD /b?c=d HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n",
    get(b"/c", version=b"1.0", extra=b"Connection: keep-alive\r\n"),
    get(b"/d", extra=b"Content-Length: 5\r\n") + b"GET /",
    get(b"/e", extra=b"Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n",
    b"\r\n" + get(b"/f"),
    get(b"/" + b"x" * 5000),
]
TAIL_PIECES = [
    b"",
    get(b"/last", extra=b"Connection: close\r\n") + get(b"/ignored"),
    b"GET / HTTP/1.9\r\nHost: h\r\n\r\n",
    b"GET / HTTX/1.1\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"BREW / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHo",
]


@given(
    pieces=st.lists(st.sampled_from(REQUEST_PIECES), max_size=8),
    tail=st.sampled_from(TAIL_PIECES),
    cuts=st.lists(st.integers(min_value=0, max_value=50_000), max_size=20),
    eof=st.booleans(),
)
def test_any_split_parses_like_the_whole(
    pieces: list[bytes], tail: bytes, cuts: list[int], eof: bool
) -> None:
    data = b"".join(pieces) + tail
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse(chunks, eof=eof) == parse([data], eof=eof)
