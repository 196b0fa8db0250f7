"""Request parsing: bytes in, :class:`Request` events out (sans-IO, httptools underneath).

The interface follows h11's: :meth:`RequestParser.receive_data` takes what the socket read
(``b""`` for end of file) and :meth:`RequestParser.next_event` returns the next complete
request, :data:`NEED_DATA`, or :data:`CLOSED`, or raises :class:`HTTPError`.

llhttp (through httptools) does the framing, and rejects the request-smuggling inputs:
Content-Length with Transfer-Encoding, duplicate or signed Content-Length, bare CR or LF,
obs-fold, whitespace before the colon. It leaves these to us, checked in
``on_headers_complete``:

* versions other than 1.0 and 1.1: 505. llhttp is told to accept any well-formed
  ``HTTP/D.D`` (``lenient_version``; that flag only skips its list of known versions), so
  the version reaches ``on_headers_complete`` whatever way the bytes were split. Left strict,
  llhttp rejects ``HTTP/1.9`` with the same error as ``HTTX/1.1``, and telling the two apart
  would mean finding the request line again in bytes it has already consumed;
* a missing or repeated Host on HTTP/1.1, a repeated Host on 1.0: 400;
* Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1: faulty framing): 400;
* the request-target length (414), header count and head size (431), body size (413). A
  Content-Length over the limit is refused as soon as the head is complete, as nginx's
  ``client_max_body_size`` is: waiting for the body would let a client that announces a
  gigabyte and sends nothing hold the connection until the head timeout;
* ``Expect`` (RFC 9110 §10.1.1), below.

``Expect: 100-continue`` with a body: the client waits for ``100 Continue`` (or up to a second
or so) before it sends the body, and this server wants no body. So the request is returned as
soon as its head is complete, with ``keep_alive=False``, and the parser stops there: the final
response goes out at once, without a ``100 Continue``, and the connection closes after it,
which §10.1.1 allows ("the server ... can send a final status code ... and close the
connection"). The server's lingering close then discards whatever part of the body the
client sends anyway. nginx sends ``100 Continue`` and reads the body; skipping it costs the
client a reconnect, never the body's upload. Without a body, or on HTTP/1.0 (§10.1.1: "MUST
ignore"), the expectation changes nothing. Any other expectation gets 417 and a close, as
Apache answers it: the body that may follow cannot be framed reliably past a refusal.

A request that ends the connection (``Connection: close``, HTTP/1.0 without keep-alive, an
Upgrade) is the last one returned: RFC 9112 §9.6 says the server "MUST NOT process any further
requests received on that connection", so whatever follows it is dropped, not parsed and
answered with an error.

Parsing is lazy: the buffer is fed to llhttp in slices of at most :data:`SLICE` bytes, and only
until one request is ready. The server reads again only when the parser asks for data, so the
requests held ahead of their responses are bounded by what one slice can hold, and pipelined
requests are answered strictly in order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final, final

import httptools

from zerocopy.http.errors import HTTPError
from zerocopy.http.limits import Limits

__all__ = ["CLOSED", "NEED_DATA", "ParserStatistics", "Request", "RequestParser"]


@final
class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""No complete request is buffered: read more from the socket."""
CLOSED: Final = _Sentinel("CLOSED")
"""The peer closed its side and every complete request has been returned."""

SLICE: Final = 4096
"""Bytes handed to llhttp per call. Small enough that a flood of tiny pipelined requests cannot
queue more than a few hundred events; large enough that a normal head is one call."""

# Headers the file server acts on. All others are counted against the limits and dropped.
_TRACKED: Final = frozenset(
    {
        b"host",
        b"accept",
        b"accept-encoding",
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"transfer-encoding",
        b"content-length",
        b"expect",
        b"authorization",
    }
)


_LOGGED: Final = frozenset({b"referer", b"user-agent"})
"""Headers kept only for the access log (``log_fields``); they never make a request unplain."""
_TRACKED_AND_LOGGED: Final = _TRACKED | _LOGGED

_NONE_REPEATED: Final = frozenset[bytes]()
_EMPTY: Final = memoryview(b"")
# Method names as the parser reports them, decoded once.
_METHODS: Final = {name.encode(): name for name in ("GET", "HEAD", "POST", "PUT", "OPTIONS")}


@final
@dataclass(slots=True)
class Request:
    """One parsed request head. Not frozen: one is made per request, and a frozen
    dataclass's ``__init__`` costs about four times as much. Treat it as read-only.

    Attributes:
        method: The method, e.g. ``"GET"``.
        target: The raw request-target bytes, still percent-encoded.
        version: ``"1.0"`` or ``"1.1"``.
        keep_alive: Whether the client allows the connection to stay open.
        headers: The tracked headers, lower-cased names; repeated fields joined with ``", "``.
            With ``log_fields``, also Referer and User-Agent.
        repeated: Names of tracked headers that appeared more than once.
        has_body: Whether the request carried a body (discarded by the parser).
        plain: No tracked header but Host, Accept, Accept-Encoding and Authorization (which
            the server checks before anything else): no conditional, no range, no body. Such a
            GET or HEAD of a cached file takes the server's fast path (Accept only chooses a
            listing's format, and directories are never on it).
    """

    method: str
    target: bytes
    version: str
    keep_alive: bool
    headers: dict[bytes, bytes] = field(default_factory=dict)
    repeated: frozenset[bytes] = frozenset()
    has_body: bool = False
    plain: bool = False

    def single(self, name: bytes) -> bytes | None:
        """Return a header that must appear at most once, or ``None`` if absent or repeated."""
        if name in self.repeated:
            return None
        return self.headers.get(name)


@final
@dataclass(frozen=True, slots=True)
class ParserStatistics:
    """What a parser holds between calls.

    Attributes:
        queued_events: Requests (or an error) parsed and not yet returned by ``next_event``.
        buffered_bytes: Bytes received and not yet handed to llhttp.
    """

    queued_events: int
    buffered_bytes: int


class _Abort(Exception):
    """Raised inside an llhttp callback to stop parsing.

    Carries the error to answer with, or ``None`` when the stream simply ends there.
    """

    def __init__(self, error: HTTPError | None) -> None:
        super().__init__(error.reason if error else "end of stream")
        self.error = error


def _expects_continue(field: bytes | None) -> bool:
    """Whether an Expect field asks for ``100-continue``; 417 for any other expectation.

    Raises:
        _Abort: With a 417, for an expectation other than ``100-continue``.
    """
    if field is None:
        return False
    # Expect = #expectation (RFC 9110 §10.1.1); empty members are allowed and ignored.
    members = {member.strip(b" \t").lower() for member in field.split(b",")} - {b""}
    if members - {b"100-continue"}:
        raise _Abort(HTTPError(417, "unsupported expectation"))
    return bool(members)


@final
class RequestParser:
    """Turns a connection's bytes into requests. One parser per connection.

    Args:
        limits: The limits to enforce; see :class:`~zerocopy.http.limits.Limits`.
        log_fields: Also keep Referer and User-Agent in ``Request.headers``, for the access
            log. They do not make a request unplain.
    """

    def __init__(self, limits: Limits | None = None, *, log_fields: bool = False) -> None:
        self._limits = limits or Limits()
        self._log_fields = log_fields
        self._tracked = _TRACKED_AND_LOGGED if log_fields else _TRACKED
        self._parser = httptools.HttpRequestParser(self)
        self._parser.set_dangerous_leniencies(lenient_version=True)
        self._events: deque[Request | HTTPError] = deque()
        self._buffer = _EMPTY
        self._eof = False
        self._failed = False
        # Per-message state, reset in on_message_begin.
        self._in_message = False
        self._in_head = False
        self._began_in_slice = False
        self._url = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._repeated: set[bytes] = set()
        self._header_count = 0
        self._head_size = 0
        self._head_overflow = 0
        self._body_size = 0
        self._request: Request | None = None

    # -- public interface ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; ``b""`` means the peer closed its sending side."""
        if not data:
            self._eof = True
        elif not self._failed:
            if self._buffer:
                self._buffer = memoryview(bytes(self._buffer) + data)
            else:
                self._buffer = memoryview(data)

    def next_event(self) -> Request | _Sentinel:
        """Return the next request in order, or :data:`NEED_DATA` or :data:`CLOSED`.

        Raises:
            HTTPError: The next thing in the stream is a bad request. Every later call
                returns :data:`CLOSED`: a stream that failed to parse is never trusted again.
        """
        while not self._events and self._buffer and not self._failed:
            self._feed_slice()
        if self._events:
            event = self._events.popleft()
            if isinstance(event, HTTPError):
                self._events.clear()
                raise event
            return event
        if self._failed or self._eof:
            return CLOSED
        return NEED_DATA

    def statistics(self) -> ParserStatistics:
        """What the parser holds now: parsing is lazy, so pipelined bytes wait unparsed."""
        return ParserStatistics(len(self._events), len(self._buffer))

    @property
    def in_message(self) -> bool:
        """Whether part of a request has arrived: the head deadline runs, not the idle one."""
        return self._in_message or bool(self._buffer)

    # -- feeding --------------------------------------------------------------------------

    def _feed_slice(self) -> None:
        chunk = self._buffer
        if len(chunk) > SLICE:
            self._buffer = chunk[SLICE:]
            chunk = chunk[:SLICE]
        else:
            self._buffer = _EMPTY
        self._began_in_slice = False
        try:
            self._parser.feed_data(chunk)
        except httptools.HttpParserCallbackError as exc:
            abort = exc.__context__
            if not isinstance(abort, _Abort):  # pragma: no cover - our callbacks raise only _Abort
                raise
            self._fail(abort.error)
        except httptools.HttpParserUpgrade:  # pragma: no cover - see below
            # An Upgrade or CONNECT request is queued with keep_alive=False, so
            # on_message_complete already stopped the parser before llhttp pauses for the
            # upgrade. Should that order change, the answer is the same: what follows is
            # another protocol that we do not speak.
            self._fail(None)
        except httptools.HttpParserInvalidMethodError:
            self._fail(HTTPError(501, "method not recognised by the parser"))
        except httptools.HttpParserError as exc:
            self._fail(self._classify(str(exc)))
        else:
            # A head that keeps growing across slices is bounded here, before httptools'
            # own accumulation of an unfinished header value can grow without limit.
            if self._in_head and not self._began_in_slice:
                self._head_overflow += len(chunk)
                if self._head_overflow > self._limits.max_head_size:
                    self._fail(HTTPError(431, "request head too large"))

    def _fail(self, error: HTTPError | None) -> None:
        self._failed = True
        self._buffer = _EMPTY
        if error is not None:
            self._events.append(error)

    def _classify(self, message: str) -> HTTPError:
        if "PRI" in message:  # "Pause on PRI/Upgrade": the HTTP/2 connection preface.
            return HTTPError(505, "HTTP/2 preface on an HTTP/1.1 port")
        return HTTPError(400, f"malformed request: {message}")

    # -- llhttp callbacks (called from feed_data) -----------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._began_in_slice = True
        self._url = bytearray()
        self._headers = {}
        self._repeated = set()
        self._header_count = 0
        self._head_size = 0
        self._head_overflow = 0
        self._body_size = 0
        self._request = None

    def on_url(self, fragment: bytes) -> None:
        self._url += fragment
        if len(self._url) > self._limits.max_target_length:
            raise _Abort(HTTPError(414, "request-target too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._header_count > self._limits.max_header_count:
            raise _Abort(HTTPError(431, "too many header fields"))
        if self._head_size + len(self._url) > self._limits.max_head_size:
            raise _Abort(HTTPError(431, "request head too large"))
        key = name.lower()
        if key in self._tracked:
            previous = self._headers.get(key)
            if previous is None:
                self._headers[key] = value
            else:
                self._repeated.add(key)
                self._headers[key] = previous + b", " + value

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Abort(HTTPError(505, f"unsupported HTTP version {version}"))
        headers = self._headers
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        if self._repeated and b"host" in self._repeated:
            raise _Abort(HTTPError(400, "repeated Host header"))
        acted_on = len(headers)
        if self._log_fields:  # Referer and User-Agent are only logged.
            acted_on -= (b"referer" in headers) + (b"user-agent" in headers)
        if acted_on == (
            (b"host" in headers)
            + (b"accept" in headers)
            + (b"accept-encoding" in headers)
            + (b"authorization" in headers)
        ):
            # Nothing tracked but Host, Accept, Accept-Encoding and Authorization: most
            # requests. No body, no Expect, no conditional, no range.
            if version == "1.1" and b"host" not in headers:
                raise _Abort(HTTPError(400, "HTTP/1.1 request without Host"))
            self._request = Request(
                method,
                bytes(self._url),
                version,
                parser.should_keep_alive() and not parser.should_upgrade(),
                headers,
                _NONE_REPEATED,
                False,
                True,
            )
            return
        if version == "1.1" and b"host" not in headers:
            raise _Abort(HTTPError(400, "HTTP/1.1 request without Host"))
        if version == "1.0" and b"transfer-encoding" in headers:
            raise _Abort(HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request"))
        # llhttp has checked the value (digits, below 2**64, not repeated); OWS may surround it.
        length = headers.get(b"content-length", b"").strip(b" \t")
        if length.isdigit() and int(length) > self._limits.max_body_size:
            raise _Abort(HTTPError(413, "declared request body too large"))
        has_body = b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"
        expects_continue = _expects_continue(headers.get(b"expect"))
        answer_now = expects_continue and has_body and version == "1.1"
        request = Request(
            method=method,
            target=bytes(self._url),
            version=version,
            # An upgrade request is answered, then the connection closes: whatever follows
            # it is another protocol. So does one answered before its body (Expect).
            keep_alive=(
                parser.should_keep_alive() and not parser.should_upgrade() and not answer_now
            ),
            headers=headers,
            repeated=frozenset(self._repeated) if self._repeated else _NONE_REPEATED,
            has_body=has_body,
            plain=False,
        )
        if answer_now:
            # The request is complete as far as the server cares; nothing after its head is
            # parsed (see the module docstring).
            self._in_message = False
            self._events.append(request)
            raise _Abort(None)
        self._request = request

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_size:
            raise _Abort(HTTPError(413, "request body too large"))

    def on_message_complete(self) -> None:
        self._in_message = False
        request = self._request
        if request is not None:
            self._events.append(request)
            self._request = None
            if not request.keep_alive:
                raise _Abort(None)  # RFC 9112 §9.6: nothing after it is processed.
