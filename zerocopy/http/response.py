"""Response plans: what to send, decided without doing any I/O.

A :class:`ResponsePlan` holds the status, the complete head as bytes, and the body as a tuple
of parts, each either small ``bytes`` (multipart boundaries, error text) or a
:class:`~zerocopy.span.FileSpan` for a transfer strategy to stream. Whoever sends the plan
decides nothing: it writes the head, then the parts in order.

A body that is produced while it is sent (a directory listing, a tar archive) is not in the
plan: the plan says how it is framed (``stream``), and :func:`frame_chunk` and
:data:`LAST_CHUNK` frame a chunked one.

Every ``plan_*`` function takes ``extra``: header fields the operator adds (``nosniff``,
CORS, ``Cache-Control`` and ``--header`` rules; ``http/headers.py``), placed before
``Connection``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, Literal, final

from zerocopy.http.conditional import evaluate_preconditions, if_range_allows
from zerocopy.http.dates import format_http_date
from zerocopy.http.errors import HTTPError
from zerocopy.http.ranges import ByteRange, plan_ranges

if TYPE_CHECKING:
    from zerocopy.http.parser import Request
    from zerocopy.span import FileSpan

__all__ = [
    "LAST_CHUNK",
    "Representation",
    "ResponsePlan",
    "frame_chunk",
    "head_200",
    "plan_archive",
    "plan_content",
    "plan_error",
    "plan_file",
    "plan_listing",
    "plan_page",
    "plan_redirect",
    "plan_status",
    "representation_fields",
]

SERVER: Final = b"zerocopy"
_STATUS_LINES: Final = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}
_TEXT: Final = b"text/plain; charset=utf-8"
# Multipart boundaries: unpredictable, so that file contents cannot be crafted to contain
# them, and cheap (no getrandom() per response).
_boundary_source = random.Random()


@final
@dataclass(frozen=True, slots=True)
class Representation:
    """What the HTTP layer needs to know about a file.

    Attributes:
        body: The whole file, as a span the plan's body parts are cut from; its ``count`` is
            the length (from ``fstat`` of the open file). The HTTP layer never looks inside.
        mtime: Modification time in whole seconds (Last-Modified's resolution).
        etag: Strong entity-tag, quotes included.
        content_type: Content-Type value (of the original, for a precompressed sidecar).
        coding: The content coding of a precompressed sidecar (``b"br"``), else empty.
        vary: Whether the file has sidecars, so that the answer varies with Accept-Encoding.
    """

    body: FileSpan
    mtime: int
    etag: bytes
    content_type: bytes
    coding: bytes = b""
    vary: bool = False

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.body.count


@final
@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """A response ready to be sent.

    Attributes:
        status: The status code, for logs and counters.
        head: The status line and header fields, ending with the blank line.
        body: Parts to send after the head, in order.
        keep_alive: Whether the connection may serve another request afterwards.
        stream: ``None``: the body is :attr:`body`. Otherwise the body is produced after the
            head is sent, by whoever made the plan, and framed ``chunked`` (HTTP/1.1),
            ``close``-delimited (HTTP/1.0: the connection closes after it), or by the
            ``length`` the head announced (a tar archive).
    """

    status: int
    head: bytes
    body: tuple[bytes | FileSpan, ...] = ()
    keep_alive: bool = True
    stream: Literal["chunked", "close", "length"] | None = None

    @property
    def body_length(self) -> int:
        """Bytes in :attr:`body`: what Content-Length announced (0 for HEAD, and for a
        streamed body, which is counted as it is sent)."""
        return sum(len(part) for part in self.body)


_END_KEEP_ALIVE: Final = b"\r\n"
_END_KEEP_ALIVE_10: Final = b"Connection: keep-alive\r\n\r\n"
_END_CLOSE: Final = b"Connection: close\r\n\r\n"


def _end(version: str, keep_alive: bool) -> bytes:
    """The end of every head: the Connection field where one is needed, and the blank line."""
    if not keep_alive:
        return _END_CLOSE
    return _END_KEEP_ALIVE_10 if version == "1.0" else _END_KEEP_ALIVE


def _head(
    status: int,
    date: bytes,
    fields: list[bytes],
    *,
    version: str,
    keep_alive: bool,
) -> bytes:
    return b"".join(
        (
            _STATUS_LINES[status],
            b"Server: ",
            SERVER,
            b"\r\nDate: ",
            date,
            b"\r\n",
            *fields,
            _end(version, keep_alive),
        )
    )


_OK_PREFIX: Final = _STATUS_LINES[200] + b"Server: " + SERVER + b"\r\nDate: "


@lru_cache(maxsize=4096)
def _validators(mtime: int, etag: bytes) -> bytes:
    # The same file is asked for again and again; formatting its date is most of this.
    return b"Last-Modified: %s\r\nETag: %s\r\n" % (format_http_date(mtime), etag)


def _coding(rep: Representation) -> bytes:
    coding = b"Content-Encoding: %s\r\n" % rep.coding if rep.coding else b""
    return coding + b"Vary: Accept-Encoding\r\n" if rep.vary else coding


def representation_fields(rep: Representation, extra: bytes = b"") -> bytes:
    """The header fields of a 200 for ``rep``: everything but the status line, ``Server``,
    ``Date`` and ``Connection``. The open-file cache keeps them with the file, and
    :func:`head_200` completes them, so that a plain GET of a cached file formats nothing.

    Args:
        rep: The file.
        extra: Further fields for the file (the operator's, ``http/headers.py``).
    """
    return b"Content-Type: %s\r\nContent-Length: %d\r\n%s%sAccept-Ranges: bytes\r\n%s" % (
        rep.content_type,
        rep.body.count,
        _coding(rep),
        _validators(rep.mtime, rep.etag),
        extra,
    )


def head_200(fields: bytes, date: bytes, version: str, keep_alive: bool) -> bytes:
    """The head of a 200 with ``fields`` from :func:`representation_fields`: the same bytes
    :func:`plan_file` sends for a request without conditionals or ranges."""
    return b"".join((_OK_PREFIX, date, b"\r\n", fields, _end(version, keep_alive)))


def plan_error(
    error: HTTPError,
    *,
    date: bytes,
    version: str = "1.1",
    keep_alive: bool = False,
    head_only: bool = False,
    extra: bytes = b"",
    detail: bytes = b"",
) -> ResponsePlan:
    """A short plain-text error response.

    Args:
        error: What went wrong; ``error.close`` forces ``Connection: close``.
        date: The Date header value.
        version: The request's HTTP version, ``"1.1"`` when it is unknown.
        keep_alive: Whether the client allowed keep-alive.
        head_only: Answer a HEAD request: the same head, no body.
        extra: The operator's fields (see the module docstring).
        detail: A line for the client after the status (why a 413), ending with a newline;
            ``error.reason`` is never sent.
    """
    status = error.status_hint
    keep_alive = keep_alive and not error.close
    text = b"%d %s\n%s" % (status, HTTPStatus(status).phrase.encode("ascii"), detail)
    fields = [b"%s: %s\r\n" % pair for pair in error.headers]
    fields.append(b"Content-Type: %s\r\nContent-Length: %d\r\n" % (_TEXT, len(text)))
    fields.append(extra)
    head = _head(status, date, fields, version=version, keep_alive=keep_alive)
    return ResponsePlan(status, head, () if head_only else (text,), keep_alive)


def plan_page(
    status: int,
    body: FileSpan,
    content_type: bytes,
    request: Request,
    *,
    date: bytes,
    keep_alive: bool,
    extra: bytes = b"",
) -> ResponsePlan:
    """A page read from a file, sent with ``status`` (``--not-found``): its type and length,
    no validators (they would describe the page, not what was asked for)."""
    fields = [b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, body.count), extra]
    head = _head(status, date, fields, version=request.version, keep_alive=keep_alive)
    parts: tuple[FileSpan, ...] = () if request.method == "HEAD" or not body.count else (body,)
    return ResponsePlan(status, head, parts, keep_alive)


def plan_status(
    status: int,
    fields: bytes,
    request: Request,
    *,
    date: bytes,
    keep_alive: bool,
) -> ResponsePlan:
    """A response of ``status`` with ``fields`` and no content (a 204)."""
    head = _head(status, date, [fields], version=request.version, keep_alive=keep_alive)
    return ResponsePlan(status, head, (), keep_alive)


def plan_redirect(
    location: bytes, request: Request, *, date: bytes, keep_alive: bool, extra: bytes = b""
) -> ResponsePlan:
    """301 to ``location`` (already made safe by ``redirect_location``)."""
    text = b"301 Moved Permanently: " + location + b"\n"
    fields = [
        b"Location: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
        % (location, _TEXT, len(text)),
        extra,
    ]
    head = _head(301, date, fields, version=request.version, keep_alive=keep_alive)
    return ResponsePlan(301, head, () if request.method == "HEAD" else (text,), keep_alive)


def plan_content(
    body: bytes, content_type: bytes, request: Request, *, date: bytes, keep_alive: bool
) -> ResponsePlan:
    """200 with a small generated body, such as the metrics page. No validators, no ranges."""
    fields = [
        b"Content-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-cache\r\n"
        % (content_type, len(body))
    ]
    head = _head(200, date, fields, version=request.version, keep_alive=keep_alive)
    return ResponsePlan(200, head, () if request.method == "HEAD" else (body,), keep_alive)


def _precondition_plan(
    request: Request,
    etag: bytes | None,
    mtime: int | None,
    fields_304: bytes,
    date: bytes,
    keep_alive: bool,
    common: bytes,
) -> ResponsePlan | None:
    """The 304 (with ``fields_304``) or 412 (with ``common``) that the preconditions call
    for, or ``None``."""
    precondition = evaluate_preconditions(request, etag, mtime)
    if precondition == 304:
        head = _head(304, date, [fields_304], version=request.version, keep_alive=keep_alive)
        return ResponsePlan(304, head, (), keep_alive)
    if precondition == 412:
        error = HTTPError(412, "precondition failed", close=False)
        return plan_error(
            error,
            date=date,
            version=request.version,
            keep_alive=keep_alive,
            head_only=request.method == "HEAD",
            extra=common,
        )
    return None


_NO_CACHE: Final = b"Cache-Control: no-cache\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"
"""The end of a chunked body (RFC 9112 §7.1): the last chunk, no trailers."""


def frame_chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (RFC 9112 §7.1); ``data`` must not be empty,
    which would end the body."""
    assert data, "an empty chunk is the last chunk"
    return b"%x\r\n%s\r\n" % (len(data), data)


def plan_listing(
    request: Request,
    content_type: bytes,
    *,
    date: bytes,
    keep_alive: bool,
    extra: bytes = b"",
    fields: bytes = b"",
) -> ResponsePlan:
    """The head of a generated page that is streamed after it (a directory listing).

    As nginx's autoindex: no Content-Length, so that nothing need be rendered before the head
    goes out; the body is chunked for HTTP/1.1 and delimited by the close for HTTP/1.0. HEAD
    gets the same head without framing fields and without a body, so it costs no rendering
    (RFC 9110 §9.3.2 lets a HEAD response omit what is known only once the content is made).

    A listing has no validators: no ETag and no Last-Modified. A directory's mtime changes
    when names are added or removed, not when a listed file changes its size or date (Apache
    warns of the same for ``IndexOptions TrackModified``), so it cannot vouch for the page;
    a digest of the page would cost the rendering that a 304 was meant to save. Conditionals
    are evaluated as for a representation without validators (see ``conditional.py``):
    ``If-Match`` with tags gets 412, ``If-None-Match: *`` gets 304, the date conditions are
    ignored. Range is ignored: the 200 has no ``Accept-Ranges``.

    Args:
        request: A GET or HEAD request.
        content_type: The page's Content-Type.
        date: The Date header value.
        keep_alive: Whether the client allowed keep-alive.
        extra: The operator's fields for every response (``nosniff``, CORS).
        fields: The page's own fields (``Vary``, ``Content-Security-Policy``), in the 200 and
            the 304.

    Returns:
        412, 304, or 200 with :attr:`ResponsePlan.stream` set (``None`` for HEAD).
    """
    version = request.version
    # A 304 carries the Cache-Control (and Vary) the 200 would have (RFC 9110 §15.4.5).
    refused = _precondition_plan(
        request, None, None, _NO_CACHE + fields + extra, date, keep_alive, common=extra
    )
    if refused is not None:
        return refused
    head_fields = [b"Content-Type: %s\r\n" % content_type, _NO_CACHE, fields, extra]
    stream: Literal["chunked", "close"] | None = None
    if request.method == "HEAD":
        pass
    elif version == "1.1":
        head_fields.append(b"Transfer-Encoding: chunked\r\n")
        stream = "chunked"
    else:
        keep_alive = False
        stream = "close"
    head = _head(200, date, head_fields, version=version, keep_alive=keep_alive)
    return ResponsePlan(200, head, (), keep_alive, stream)


def plan_archive(
    request: Request,
    length: int,
    disposition: bytes,
    *,
    date: bytes,
    keep_alive: bool,
    extra: bytes = b"",
) -> ResponsePlan:
    """The head of a tar archive of a directory, whose body is streamed after it.

    Unlike a listing, its length is known before it is sent (the tree was walked and every
    entry's size added up), so it has a Content-Length and the connection stays open after
    it. Like a listing, it has no validators: a directory's mtime does not change when a file
    deep in it does. Conditionals are evaluated as for a listing; Range is ignored (the 200 has
    no ``Accept-Ranges``: the next walk may find another tree).

    Args:
        request: A GET or HEAD request.
        length: The archive's length in bytes.
        disposition: The ``Content-Disposition`` value (``content_disposition``).
        date: The Date header value.
        keep_alive: Whether the client allowed keep-alive.
        extra: The operator's fields for every response (``nosniff``, CORS).

    Returns:
        412, 304, or 200 with :attr:`ResponsePlan.stream` ``length`` (``None`` for HEAD).
    """
    version = request.version
    refused = _precondition_plan(
        request, None, None, _NO_CACHE + extra, date, keep_alive, common=extra
    )
    if refused is not None:
        return refused
    fields = [
        b"Content-Type: application/x-tar\r\nContent-Length: %d\r\n" % length,
        b"Content-Disposition: %s\r\n" % disposition,
        _NO_CACHE,
        extra,
    ]
    head = _head(200, date, fields, version=version, keep_alive=keep_alive)
    stream: Literal["length"] | None = None if request.method == "HEAD" else "length"
    return ResponsePlan(200, head, (), keep_alive, stream)


def plan_file(
    request: Request,
    rep: Representation,
    *,
    date: bytes,
    keep_alive: bool,
    max_ranges: int,
    extra: bytes = b"",
    common: bytes = b"",
) -> ResponsePlan:
    """Plan the response to a GET or HEAD of an open regular file.

    Evaluates preconditions, then Range and If-Range, and returns 200, 206 (single or
    multipart), 304, 412 or 416.

    Args:
        request: A GET or HEAD request.
        rep: The file's metadata, taken from ``fstat`` of the open file. The plan's spans are
            parts of ``rep.body``: they borrow its descriptor, which the caller closes after
            sending.
        date: The Date header value.
        keep_alive: Whether the connection stays open after this response.
        max_ranges: The range-count guard.
        extra: Further fields for the 200, 206 and 304 (RFC 9110 §15.4.5: a 304 carries the
            caching fields a 200 would).
        common: The operator's fields for the 412 and 416 (those of every response).
    """
    version = request.version
    validators = _validators(rep.mtime, rep.etag)
    vary = b"Vary: Accept-Encoding\r\n" if rep.vary else b""
    refused = _precondition_plan(
        request, rep.etag, rep.mtime, validators + vary + extra, date, keep_alive, common
    )
    if refused is not None:
        return refused

    ranges: tuple[ByteRange, ...] | None = None
    if request.method == "GET":
        header = request.single(b"range")
        if header is not None and if_range_allows(request, rep.etag, rep.mtime):
            ranges = plan_ranges(header, rep.size, max_ranges=max_ranges)

    if ranges is None:
        head = head_200(representation_fields(rep, extra), date, version, keep_alive)
        if request.method == "HEAD" or rep.size == 0:
            return ResponsePlan(200, head, (), keep_alive)
        return ResponsePlan(200, head, (rep.body,), keep_alive)

    if not ranges:
        error = HTTPError(
            416,
            "range not satisfiable",
            close=False,
            headers=((b"Content-Range", b"bytes */%d" % rep.size),),
        )
        return plan_error(error, date=date, version=version, keep_alive=keep_alive, extra=common)

    if len(ranges) == 1:
        (only,) = ranges
        fields = [
            b"Content-Type: %s\r\nContent-Length: %d\r\n" % (rep.content_type, len(only)),
            b"Content-Range: bytes %d-%d/%d\r\n" % (only.start, only.end, rep.size),
            _coding(rep),
            validators,
            b"Accept-Ranges: bytes\r\n",
            extra,
        ]
        head = _head(206, date, fields, version=version, keep_alive=keep_alive)
        return ResponsePlan(206, head, (rep.body.part(only.start, len(only)),), keep_alive)

    boundary = b"%020d" % _boundary_source.getrandbits(64)
    parts: list[bytes | FileSpan] = []
    for index, byte_range in enumerate(ranges):
        parts.append(
            b"%s--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n"
            % (
                b"\r\n" if index else b"",
                boundary,
                rep.content_type,
                byte_range.start,
                byte_range.end,
                rep.size,
            )
        )
        parts.append(rep.body.part(byte_range.start, len(byte_range)))
    parts.append(b"\r\n--%s--\r\n" % boundary)
    body = tuple(parts)
    length = sum(len(part) for part in body)
    fields = [
        b"Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %d\r\n"
        % (boundary, length),
        _coding(rep),
        validators,
        b"Accept-Ranges: bytes\r\n",
        extra,
    ]
    head = _head(206, date, fields, version=version, keep_alive=keep_alive)
    return ResponsePlan(206, head, body, keep_alive)
