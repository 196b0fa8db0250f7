"""Hostile input over raw sockets, against a live server: one table, one row per attack.

Each row is the exact bytes a client sends (clients such as curl normalise paths, so they
cannot send most of these) and what must come back: the statuses of the responses in order,
then whether the connection must stay usable or be closed; or :data:`CLOSE`, meaning a close
with no response or with one error response. Every response is checked for what must never
happen whatever the row: a 500, bytes from outside the root, a body that disagrees with its
Content-Length, a ``Location`` that is not a plain absolute path. After every row a new
connection must still get ``/hello.txt``.

Rows whose response carries file bytes run over all three transfer strategies; the others
run once (see :func:`_cases`).

The family of a file swapped for a symlink *during* requests is at the end, outside the table:
it needs a keep-alive connection across swaps, and a thread that swaps concurrently.
"""

from __future__ import annotations

import html.parser
import logging
import os
import re
import socket
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast
from urllib.parse import quote, unquote

import pytest
import trio

from tests.conftest import BARE_STRATEGIES, start_server, stop_server
from tests.helpers import RawClient, Response, open_fd_count

SECRET: Final = b"TOP SECRET, outside the root\n"
HELLO: Final = b"hello, world\n"
LITERAL: Final = b"a file literally named %2e%2e\n"
CLOSE: Final = "close"
"""Expect the connection to close, with no response or with one error response first."""
OPEN: Final = "open"
CLOSED: Final = "closed"
IS_ROOT: Final = os.geteuid() == 0
ALLOWED_STATUSES: Final = frozenset(
    {200, 206, 301, 304, 400, 403, 404, 405, 412, 413, 414, 416, 431, 501, 505}
)
# A directory whose name carries CR LF: only its percent-encoded form can reach the Location.
CRLF_DIR: Final = "dir\r\nSet-Cookie: x=1"
HOSTILE_NAMES: Final = (
    "<script src=data:,alert(1)>.txt",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(document.cookie)",
    "' onmouseover='alert(1)",
    "a&amp;b.txt",
    "?query=1#frag",
    "%2e%2e",
)
HOSTILE_DIRS: Final = ("<svg onload=alert(1)>", "javascript:void(0)")


# -- the document root ----------------------------------------------------------------------


@pytest.fixture
def root(www: Path, tmp_path: Path) -> Path:
    """``www`` plus everything the rows aim at: secrets next to it, links out, odd files.

    ``tmp_path/secret.txt`` and ``tmp_path/outside/`` hold :data:`SECRET`; a traversal that
    worked would find them at ``/../secret.txt``.
    """
    (tmp_path / "secret.txt").write_bytes(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    os.mkfifo(outside / "fifo")
    (www / "%2e%2e").write_bytes(LITERAL)
    (www / "evil.com" / "dir").mkdir(parents=True)
    (www / "dir").mkdir()
    (www / CRLF_DIR).mkdir()
    names = www / "names"
    names.mkdir()
    for name in HOSTILE_NAMES:
        (names / name).write_text("x")
    for name in HOSTILE_DIRS:
        (names / name).mkdir()
    # Links: out of the root (absolute and relative), inside it, broken, looping, to special
    # files outside.
    os.symlink(tmp_path / "secret.txt", www / "escape.txt")
    os.symlink("../secret.txt", www / "rel-escape.txt")
    os.symlink(outside, www / "escape-dir")
    os.symlink("hello.txt", www / "inside.txt")
    os.symlink("sub", www / "inside-dir")
    os.symlink("nowhere", www / "dangling")
    os.symlink("loop", www / "loop")
    os.symlink("/dev/zero", www / "escape-dev")
    os.symlink(outside / "fifo", www / "escape-fifo")
    (www / "deep" / "a" / "b").mkdir(parents=True)
    os.symlink(outside, www / "deep" / "a" / "b" / "out")
    # Special files inside the root.
    os.mkfifo(www / "fifo")
    with socket.socket(socket.AF_UNIX) as listener:
        # sun_path holds about 108 bytes; tmp_path can be longer, so bind relative to it.
        cwd = os.getcwd()
        os.chdir(www)
        try:
            listener.bind("sock")
        finally:
            os.chdir(cwd)
    if IS_ROOT:
        os.mknod(www / "dev-zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
        os.mknod(www / "dev-null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(www / "dev-none", stat.S_IFCHR | 0o600, os.makedev(240, 7))  # no driver
        os.mknod(www / "dev-block", stat.S_IFBLK | 0o600, os.makedev(7, 250))  # a loop slot
    return www


# -- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One attack.

    Attributes:
        id: The test id.
        request: Bytes to send; ``{etag}`` and ``{last_modified}`` are filled in with those
            of ``/4k.bin``.
        expect: Statuses of the responses, in order; or :data:`CLOSE`.
        then: After them, :data:`OPEN` (the connection carries exactly these responses and
            serves another request) or :data:`CLOSED` (end of stream, nothing more).
        moves_bytes: The response carries file bytes: run over every transfer strategy.
        head: The requests are HEADs (responses have no body); or one flag per response.
        eof: Half-close the connection after sending.
        options: Server options (``follow_symlinks``, ``listing``).
        check: Further assertions on the responses, given the root.
        needs_root: The root fixture only makes these files as root (``mknod``).
        seconds: How long the row may take, server start and the final check included.
    """

    id: str
    request: bytes
    expect: tuple[int, ...] | str
    then: str = OPEN
    moves_bytes: bool = False
    head: bool | tuple[bool, ...] = False
    eof: bool = False
    options: Mapping[str, object] = field(default_factory=dict)
    check: Callable[[list[Response], Path], None] | None = None
    needs_root: bool = False
    seconds: float = 10.0


def get(target: bytes | str, *headers: bytes | str, method: str = "GET") -> bytes:
    """A request with ``Host``; a str target is sent as latin-1."""
    raw = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode() + b" " + raw + b" HTTP/1.1", b"Host: t"]
    lines += [h.encode("latin-1") if isinstance(h, str) else h for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def body_is(name: str) -> Callable[[list[Response], Path], None]:
    def check(responses: list[Response], root: Path) -> None:
        assert responses[0].body == (root / name).read_bytes()

    return check


def content_range(start: int, end: int, size: int) -> Callable[[list[Response], Path], None]:
    def check(responses: list[Response], root: Path) -> None:
        response = responses[0]
        assert response.header("Content-Range") == f"bytes {start}-{end}/{size}"
        assert response.body == (root / "4k.bin").read_bytes()[start : end + 1]

    return check


def multipart(count: int) -> Callable[[list[Response], Path], None]:
    def check(responses: list[Response], root: Path) -> None:
        kind = responses[0].header("Content-Type") or ""
        assert kind.startswith("multipart/byteranges; boundary=")
        assert responses[0].body.count(b"Content-Range: bytes ") == count

    return check


def location_is(expected: str) -> Callable[[list[Response], Path], None]:
    def check(responses: list[Response], root: Path) -> None:
        assert responses[0].header("Location") == expected

    return check


def no_escape_links(responses: list[Response], root: Path) -> None:
    names = set(re.findall(rb'href="\./([^"]*)"', responses[0].body))
    assert b"hello.txt" in names  # the control: this is the root's listing
    assert b"inside.txt" in names  # followed, since it stays inside
    for name in (b"escape.txt", b"rel-escape.txt", b"escape-dir/", b"escape-dev", b"dangling"):
        assert name not in names


def no_links_listed(responses: list[Response], root: Path) -> None:
    names = set(re.findall(rb'href="\./([^"]*)"', responses[0].body))
    assert b"hello.txt" in names  # the control: this is the root's listing
    for name in (b"escape.txt", b"inside.txt", b"escape-dir/", b"inside-dir/", b"dangling"):
        assert name not in names


def second_is(name: str) -> Callable[[list[Response], Path], None]:
    def check(responses: list[Response], root: Path) -> None:
        assert responses[1].body == (root / name).read_bytes()

    return check


FOLLOW: Final = {"follow_symlinks": True}
TE_CHUNKED: Final = b"Transfer-Encoding: chunked"
HIDDEN: Final = b"GET /sub/ HTTP/1.1\r\nHost: t\r\n\r\n"
MANY_OVERLAPPING: Final = "bytes=" + ",".join(["0-4095"] * 3000)
BEYOND_64_BITS: Final = str(1 << 64)

ROWS: Final[list[Row]] = [
    # --- Traversal, in every encoding --------------------------------------------------------
    Row("dotdot", get("/../secret.txt"), (400,), CLOSED),
    Row("dotdot-deep", get("/../../../../../../etc/passwd"), (400,), CLOSED),
    Row("dotdot-after-dir", get("/sub/../../secret.txt"), (400,), CLOSED),
    Row("dotdot-final", get("/sub/.."), (400,), CLOSED),
    Row("pct-lower", get("/%2e%2e/secret.txt"), (400,), CLOSED),
    Row("pct-mixed-case", get("/%2E%2e/secret.txt"), (400,), CLOSED),
    Row("pct-upper", get("/%2E%2E/secret.txt"), (400,), CLOSED),
    Row("pct-half", get("/.%2e/secret.txt"), (400,), CLOSED),
    Row("pct-other-half", get("/%2e./secret.txt"), (400,), CLOSED),
    Row("pct-slash-hides-dotdot", get("/sub/..%2f..%2fsecret.txt"), (400,), CLOSED),
    Row("pct-all-encoded", get("/%2e%2e%2f%2e%2e%2fsecret.txt"), (400,), CLOSED),
    Row("dot-segments-are-fine", get("/./sub/./index.html"), (200,)),
    Row(
        "double-slash-is-fine",
        get("//hello.txt"),
        (200,),
        moves_bytes=True,
        check=body_is("hello.txt"),
    ),
    Row("three-dots-is-a-name", get("/..."), (404,)),
    Row("double-encoded-is-a-name", get("/%252e%252e/secret.txt"), (404,)),
    Row(
        "double-encoded-literal-file",
        get("/%252e%252e"),
        (200,),
        moves_bytes=True,
        check=body_is("%2e%2e"),
    ),
    Row("overlong-2-byte", get("/%c0%ae%c0%ae/secret.txt"), (400,), CLOSED),
    Row("overlong-3-byte", get("/%e0%80%ae%e0%80%ae/secret.txt"), (400,), CLOSED),
    Row("overlong-4-byte", get("/%f0%80%80%ae%f0%80%80%ae/secret.txt"), (400,), CLOSED),
    Row("overlong-slash", get("/..%c0%afsecret.txt"), (400,), CLOSED),
    Row("overlong-backslash", get("/..%c1%9csecret.txt"), (400,), CLOSED),
    Row("backslash-raw", get("/..\\secret.txt"), (400,), CLOSED),
    Row("backslash-raw-windows", get("/sub\\..\\..\\secret.txt"), (400,), CLOSED),
    Row("backslash-pct-lower", get("/..%5csecret.txt"), (400,), CLOSED),
    Row("backslash-pct-upper", get("/%5C..%5Csecret.txt"), (400,), CLOSED),
    Row("nul-pct", get("/hello.txt%00.png"), (400,), CLOSED),
    Row("nul-pct-alone", get("/%00"), (400,), CLOSED),
    Row("nul-raw", get(b"/hello.txt\x00"), (400,), CLOSED),
    Row("utf8-ff", get("/%ff"), (400,), CLOSED),
    Row("utf8-lone-continuation", get("/%80"), (400,), CLOSED),
    Row("utf8-continuations", get("/%bf%bf/secret.txt"), (400,), CLOSED),
    Row("utf8-truncated", get("/caf%c3"), (400,), CLOSED),
    Row("utf8-surrogate", get("/%ed%a0%80"), (400,), CLOSED),
    Row("utf8-raw-ff", get(b"/\xff\xfe"), (400,), CLOSED),
    Row("bad-escape", get("/%zz"), (400,), CLOSED),
    Row("bad-escape-short", get("/hello.txt%2"), (400,), CLOSED),
    Row("long-segment-300", get("/" + "a" * 300), (404,)),
    Row("long-segment-255", get("/" + "a" * 255), (404,)),
    Row("path-over-path-max", get("/" + "a/" * 2100 + "x"), (404,)),
    Row("target-at-limit", get("/" + "a" * 8191), (404,)),
    Row("target-over-limit", get("/" + "a" * 8192), (414,), CLOSED),
    Row("target-huge", get("/" + "a/" * 50_000), (414,), CLOSED),
    Row(
        "absolute-form",
        get("http://x/hello.txt"),
        (200,),
        moves_bytes=True,
        check=body_is("hello.txt"),
    ),
    Row("absolute-form-dotdot", get("http://x/../secret.txt"), (400,), CLOSED),
    Row("absolute-form-pct-dotdot", get("http://x/%2e%2e/secret.txt"), (400,), CLOSED),
    Row("absolute-form-host-dotdot", get("http://../secret.txt"), (404,)),
    Row("absolute-form-https-backslash", get("https://x/..%5csecret.txt"), (400,), CLOSED),
    Row("not-a-path", get("secret.txt"), (400,), CLOSED),
    Row("other-scheme", get("file:///etc/passwd"), (400,), CLOSED),
    # --- Symlinks and special files ----------------------------------------------------------
    Row("link-out-file", get("/escape.txt"), (403,)),
    Row("link-out-file-follow", get("/escape.txt"), (404,), options=FOLLOW),
    Row("link-out-relative", get("/rel-escape.txt"), (403,)),
    Row("link-out-relative-follow", get("/rel-escape.txt"), (404,), options=FOLLOW),
    Row("link-out-dir-file", get("/escape-dir/secret.txt"), (403,)),
    Row("link-out-dir-file-follow", get("/escape-dir/secret.txt"), (404,), options=FOLLOW),
    # Whether something exists beyond a link must not show: the same answer as for a file
    # that is there (aiohttp CVE-2025-69226 leaked existence through a difference like this).
    Row("link-out-dir-missing", get("/escape-dir/missing.txt"), (403,)),
    Row("link-out-dir-missing-follow", get("/escape-dir/missing.txt"), (404,), options=FOLLOW),
    Row("link-out-dir-not-a-dir", get("/escape-dir/secret.txt/x"), (403,)),
    Row("link-out-dir-not-a-dir-follow", get("/escape-dir/secret.txt/x"), (404,), options=FOLLOW),
    Row("link-out-dir-deep-missing", get("/escape-dir/no/such/deep/x.txt"), (403,)),
    Row(
        "link-out-dir-deep-missing-follow",
        get("/escape-dir/no/such/deep/x.txt"),
        (404,),
        options=FOLLOW,
    ),
    Row("link-out-deep-in-tree", get("/deep/a/b/out/no/such/x.txt"), (403,)),
    Row("link-out-deep-in-tree-follow", get("/deep/a/b/out/no/such/x.txt"), (404,), options=FOLLOW),
    Row("missing-deep-in-tree", get("/deep/a/b/no/such/x.txt"), (404,)),
    Row("missing-deep-in-tree-follow", get("/deep/a/b/no/such/x.txt"), (404,), options=FOLLOW),
    Row("link-out-dir-listing", get("/escape-dir/"), (403,)),
    Row("link-out-dir-listing-follow", get("/escape-dir/"), (404,), options=FOLLOW),
    Row("link-out-dir-no-slash", get("/escape-dir"), (403,)),
    Row("link-out-dir-no-slash-follow", get("/escape-dir"), (404,), options=FOLLOW),
    Row("link-in-file", get("/inside.txt"), (403,)),
    Row(
        "link-in-file-follow",
        get("/inside.txt"),
        (200,),
        moves_bytes=True,
        options=FOLLOW,
        check=body_is("hello.txt"),
    ),
    Row("link-in-dir", get("/inside-dir/index.html"), (403,)),
    Row(
        "link-in-dir-follow",
        get("/inside-dir/index.html"),
        (200,),
        moves_bytes=True,
        options=FOLLOW,
        check=body_is("sub/index.html"),
    ),
    Row("link-dangling", get("/dangling"), (403,)),
    Row("link-dangling-follow", get("/dangling"), (404,), options=FOLLOW),
    Row("link-loop", get("/loop"), (403,)),
    Row("link-loop-follow", get("/loop"), (403,), options=FOLLOW),
    Row("link-to-device-outside", get("/escape-dev"), (403,)),
    Row("link-to-device-outside-follow", get("/escape-dev"), (404,), options=FOLLOW),
    Row("link-to-fifo-outside", get("/escape-fifo"), (403,)),
    Row("link-to-fifo-outside-follow", get("/escape-fifo"), (404,), options=FOLLOW),
    Row("listing-hides-links", get("/"), (200,), check=no_links_listed),
    Row("listing-hides-links-out-follow", get("/"), (200,), options=FOLLOW, check=no_escape_links),
    Row("fifo", get("/fifo"), (403,)),
    Row("fifo-follow", get("/fifo"), (403,), options=FOLLOW),
    Row("fifo-head", get("/fifo", method="HEAD"), (403,), head=True),
    Row("unix-socket", get("/sock"), (403,)),
    Row("unix-socket-follow", get("/sock"), (403,), options=FOLLOW),
    Row("device-zero", get("/dev-zero"), (403,), needs_root=True),
    Row("device-zero-follow", get("/dev-zero"), (403,), options=FOLLOW, needs_root=True),
    Row("device-null", get("/dev-null"), (403,), needs_root=True),
    Row("device-without-driver", get("/dev-none"), (403,), needs_root=True),
    Row("device-block", get("/dev-block"), (403,), needs_root=True),
    # --- Directory redirects: never "//host", never a raw control byte -----------------------
    Row(
        "redirect-double-slash", get("//evil.com/dir"), (301,), check=location_is("/evil.com/dir/")
    ),
    Row(
        "redirect-many-slashes",
        get("////evil.com//dir"),
        (301,),
        check=location_is("/evil.com/dir/"),
    ),
    Row("redirect-pct-slashes", get("/%2F%2Fevil.com"), (301,), check=location_is("/evil.com/")),
    Row(
        "redirect-pct-slashes-query",
        get("/%2f%2fevil.com/dir?next=//evil.com"),
        (301,),
        check=location_is("/evil.com/dir/?next=//evil.com"),
    ),
    Row("redirect-dot-slash", get("/.//evil.com/dir"), (301,), check=location_is("/evil.com/dir/")),
    Row(
        "redirect-absolute-form",
        get("http://evil.com//evil.com/dir"),
        (301,),
        check=location_is("/evil.com/dir/"),
    ),
    Row("redirect-backslashes", get("/%5C%5Cevil.com"), (400,), CLOSED),
    Row("redirect-raw-backslashes", get("/\\\\evil.com"), (400,), CLOSED),
    Row(
        "redirect-crlf-dir",
        get("/dir%0d%0aSet-Cookie:%20x=1"),
        (301,),
        check=location_is("/dir%0D%0ASet-Cookie:%20x=1/"),
    ),
    Row("redirect-crlf-missing", get("/dir%0d%0aSet-Cookie:x"), (404,)),
    Row(
        "redirect-crlf-query",
        get("/dir?%0d%0aSet-Cookie:x"),
        (301,),
        check=location_is("/dir/?%0d%0aSet-Cookie:x"),
    ),
    Row(
        "redirect-quotes-and-brackets-query",
        get(b"/dir?\"<'>"),
        (301,),
        check=location_is("/dir/?%22%3C'%3E"),
    ),
    # llhttp refuses bytes above 0x7F anywhere in the target.
    Row("redirect-raw-bytes-query", get(b"/dir?\x80\xff"), (400,), CLOSED),
    Row("raw-utf8-path", get("/ünï.txt".encode()), (400,), CLOSED),
    Row(
        "redirect-stray-percent",
        get("/dir?a=%&b=%zz"),
        (301,),
        check=location_is("/dir/?a=%25&b=%25zz"),
    ),
    Row("redirect-fragment-dropped", get("/dir#//evil.com"), (301,), check=location_is("/dir/")),
    Row("redirect-head", get("/dir", method="HEAD"), (301,), head=True, check=location_is("/dir/")),
    # --- Listings of names that carry HTML ---------------------------------------------------
    Row(
        "listing-hostile-names",
        get("/names/"),
        (200,),
        check=lambda r, root: check_listing(r[0], HOSTILE_NAMES, HOSTILE_DIRS),
    ),
    Row(
        "listing-hostile-title",
        get("/names/" + quote(HOSTILE_DIRS[0]) + "/"),
        (200,),
        check=lambda r, root: check_listing(r[0], (), ()),
    ),
    Row("listing-disabled", get("/names/"), (403,), options={"listing": False}),
    # --- Smuggling and framing ---------------------------------------------------------------
    Row(
        "cl-and-te",
        get("/hello.txt", "Content-Length: 5", TE_CHUNKED) + b"0\r\n\r\n",
        (400,),
        CLOSED,
    ),
    Row(
        "te-and-cl",
        get("/hello.txt", TE_CHUNKED, "Content-Length: 5") + b"0\r\n\r\n",
        (400,),
        CLOSED,
    ),
    Row(
        "cl-duplicate-same",
        get("/hello.txt", "Content-Length: 1", "Content-Length: 1") + b"x",
        (400,),
        CLOSED,
    ),
    Row(
        "cl-duplicate-different",
        get("/hello.txt", "Content-Length: 1", "Content-Length: 2") + b"xy",
        (400,),
        CLOSED,
    ),
    Row("cl-list", get("/hello.txt", "Content-Length: 1, 1") + b"x", (400,), CLOSED),
    Row("cl-plus", get("/hello.txt", "Content-Length: +1") + b"x", (400,), CLOSED),
    Row("cl-minus", get("/hello.txt", "Content-Length: -1") + b"x", (400,), CLOSED),
    Row("cl-hex", get("/hello.txt", "Content-Length: 0x1") + b"x", (400,), CLOSED),
    Row("cl-words", get("/hello.txt", "Content-Length: abc"), (400,), CLOSED),
    Row("cl-overflow", get("/hello.txt", "Content-Length: " + "9" * 30), (400,), CLOSED),
    # Refused from the header alone: no waiting for a gigabyte that will not come.
    Row("cl-too-large", get("/hello.txt", "Content-Length: 10000000000"), (413,), CLOSED),
    Row(
        "te-on-http10",
        b"GET /hello.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        (400,),
        CLOSED,
    ),
    Row(
        "te-chunked-identity",
        get("/hello.txt", "Transfer-Encoding: chunked, identity"),
        (400,),
        CLOSED,
    ),
    Row("te-identity", get("/hello.txt", "Transfer-Encoding: identity"), (400,), CLOSED),
    Row(
        "te-xchunked",
        get("/hello.txt", "Transfer-Encoding: xchunked") + b"0\r\n\r\n",
        (400,),
        CLOSED,
    ),
    Row(
        "te-twice",
        get("/hello.txt", TE_CHUNKED, "Transfer-Encoding: identity") + b"0\r\n\r\n",
        (400,),
        CLOSED,
    ),
    Row(
        "te-chunk-size-overflow",
        get("/hello.txt", TE_CHUNKED) + b"f" * 20 + b"\r\n",
        (400,),
        CLOSED,
    ),
    Row(
        "te-chunk-bare-lf", get("/hello.txt", TE_CHUNKED) + b"5\nhello\r\n0\r\n\r\n", (400,), CLOSED
    ),
    Row("bare-lf", b"GET /hello.txt HTTP/1.1\nHost: t\n\n", (400,), CLOSED),
    Row("bare-cr", b"GET /hello.txt HTTP/1.1\rHost: t\r\r", (400,), CLOSED),
    Row("bare-cr-in-value", get("/hello.txt", b"X: a\rb"), (400,), CLOSED),
    Row("nul-in-value", get("/hello.txt", b"X: a\x00b"), (400,), CLOSED),
    Row("obs-fold", get("/hello.txt", "X: a", " b"), (400,), CLOSED),
    Row("space-before-colon", get("/hello.txt", "Host : t"), (400,), CLOSED),
    Row("tab-before-colon", get("/hello.txt", "X\t: t"), (400,), CLOSED),
    Row("bad-header-name", get("/hello.txt", "X(y): z"), (400,), CLOSED),
    Row("missing-host", b"GET /hello.txt HTTP/1.1\r\n\r\n", (400,), CLOSED),
    Row("duplicate-host", get("/hello.txt", "Host: evil.com"), (400,), CLOSED),
    Row(
        "duplicate-host-http10",
        b"GET /hello.txt HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        (400,),
        CLOSED,
    ),
    Row(
        "http10-without-host",
        b"GET /hello.txt HTTP/1.0\r\n\r\n",
        (200,),
        CLOSED,
        moves_bytes=True,
        check=body_is("hello.txt"),
    ),
    Row(
        "hidden-request-in-cl-body",
        get("/hello.txt", f"Content-Length: {len(HIDDEN)}") + HIDDEN + get("/4k.bin"),
        (200, 200),
        moves_bytes=True,
        check=second_is("4k.bin"),
    ),
    Row(
        "hidden-request-in-chunked-body",
        get("/hello.txt", TE_CHUNKED)
        + b"%x\r\n" % len(HIDDEN)
        + HIDDEN
        + b"\r\n0\r\n\r\n"
        + get("/4k.bin"),
        (200, 200),
        moves_bytes=True,
        check=second_is("4k.bin"),
    ),
    Row(
        "pipelined-after-connection-close",
        get("/hello.txt", "Connection: close") + get("/4k.bin"),
        (200,),
        CLOSED,
        moves_bytes=True,
    ),
    Row(
        "pipelined-after-http10",
        b"GET /hello.txt HTTP/1.0\r\n\r\n" + get("/4k.bin"),
        (200,),
        CLOSED,
        moves_bytes=True,
    ),
    Row(
        "pipelined-after-upgrade",
        get("/hello.txt", "Upgrade: websocket", "Connection: upgrade") + get("/4k.bin"),
        (200,),
        CLOSED,
        moves_bytes=True,
    ),
    Row(
        "pipelined-after-bad-request",
        get("/../secret.txt") + get("/4k.bin"),
        (400,),
        CLOSED,
    ),
    Row(
        "pipelined-mixed",
        get("/4k.bin") + get("/missing") + get("/hello.txt", method="HEAD") + get("/sub"),
        (200, 404, 200, 301),
        moves_bytes=True,
        head=(False, False, True, False),
    ),
    Row("leading-empty-line", b"\r\n" + get("/hello.txt"), (200,), moves_bytes=True),
    Row("truncated-head-then-eof", b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n", CLOSE, eof=True),
    Row(
        "truncated-body-then-eof", get("/hello.txt", "Content-Length: 10") + b"abc", CLOSE, eof=True
    ),
    Row("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32, CLOSE),
    Row("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (505,), CLOSED),
    # --- Limits, versions, methods -----------------------------------------------------------
    Row("headers-at-limit", get("/hello.txt", *[f"X-{i}: y" for i in range(99)]), (200,)),
    Row("headers-too-many", get("/hello.txt", *[f"X-{i}: y" for i in range(100)]), (431,), CLOSED),
    Row("header-too-large", get("/hello.txt", "X: " + "y" * 33_000), (431,), CLOSED),
    Row("header-never-ends", b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"y" * 40_000, (431,), CLOSED),
    Row("version-2", get("/hello.txt").replace(b"HTTP/1.1", b"HTTP/2.0"), (505,), CLOSED),
    Row("version-3", get("/hello.txt").replace(b"HTTP/1.1", b"HTTP/3.0"), (505,), CLOSED),
    Row("version-1.9", get("/hello.txt").replace(b"HTTP/1.1", b"HTTP/1.9"), (505,), CLOSED),
    Row("version-0.9", get("/hello.txt").replace(b"HTTP/1.1", b"HTTP/0.9"), (505,), CLOSED),
    Row("version-httx", get("/hello.txt").replace(b"HTTP/1.1", b"HTTX/1.1"), (400,), CLOSED),
    Row("version-lower-case", get("/hello.txt").replace(b"HTTP/1.1", b"http/1.1"), (400,), CLOSED),
    Row("version-11", get("/hello.txt").replace(b"HTTP/1.1", b"HTTP/11"), (400,), CLOSED),
    Row("version-1.1.1", get("/hello.txt").replace(b"HTTP/1.1", b"HTTP/1.1.1"), (400,), CLOSED),
    Row(
        "version-trailing-space",
        get("/hello.txt").replace(b"HTTP/1.1", b"HTTP/1.1 "),
        (400,),
        CLOSED,
    ),
    Row("method-post", get("/hello.txt", "Content-Length: 3", method="POST") + b"abc", (405,)),
    Row("method-put", get("/hello.txt", method="PUT"), (405,)),
    Row("method-delete", get("/hello.txt", method="DELETE"), (405,)),
    Row("method-options", get("*", method="OPTIONS"), (405,)),
    Row("method-trace", get("/hello.txt", method="TRACE"), (405,)),
    Row("method-patch", get("/hello.txt", method="PATCH"), (405,)),
    Row(
        "method-connect", get("evil.com:443", method="CONNECT") + get("/hello.txt"), (405,), CLOSED
    ),
    Row("method-propfind", get("/", method="PROPFIND"), (501,)),
    Row("method-purge", get("/hello.txt", method="PURGE"), (501,)),
    Row("method-unknown", get("/hello.txt", method="BREW"), (501,), CLOSED),
    Row("method-lower-case", get("/hello.txt", method="get"), (501,), CLOSED),
    Row("head", get("/4k.bin", method="HEAD"), (200,), head=True),
    # --- Malicious ranges ---------------------------------------------------------------------
    Row(
        "range-thousands-overlapping",
        get("/4k.bin", "Range: " + MANY_OVERLAPPING),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
        seconds=2.0,  # CVE-2011-3192 made servers spend their time on such headers
    ),
    Row(
        "range-overlapping-under-cap",
        get("/4k.bin", "Range: bytes=" + ",".join(f"{i}-{i + 100}" for i in range(0, 640, 10))),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row(
        "range-many-disjoint-at-cap",
        get("/4k.bin", "Range: bytes=" + ",".join(f"{i}-{i}" for i in range(0, 128, 2))),
        (206,),
        moves_bytes=True,
        check=multipart(64),
    ),
    Row(
        "range-many-disjoint-over-cap",
        get("/4k.bin", "Range: bytes=" + ",".join(f"{i}-{i}" for i in range(0, 130, 2))),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row(
        "range-end-beyond-64-bits",
        get("/4k.bin", f"Range: bytes=0-{BEYOND_64_BITS}"),
        (206,),
        moves_bytes=True,
        check=content_range(0, 4095, 4096),
    ),
    Row(
        "range-end-huge",
        get("/4k.bin", "Range: bytes=4000-" + "9" * 5000),
        (206,),
        moves_bytes=True,
        check=content_range(4000, 4095, 4096),
    ),
    Row("range-start-beyond-64-bits", get("/4k.bin", f"Range: bytes={BEYOND_64_BITS}-"), (416,)),
    Row(
        "range-suffix-beyond-64-bits",
        get("/4k.bin", f"Range: bytes=-{BEYOND_64_BITS}"),
        (206,),
        moves_bytes=True,
        check=content_range(0, 4095, 4096),
    ),
    Row("range-start-past-end", get("/4k.bin", "Range: bytes=4096-"), (416,)),
    # An empty range cannot be written in a Content-Range: 200 with the empty file (nginx).
    Row("range-open-on-empty-file", get("/empty.bin", "Range: bytes=0-"), (200,)),
    Row("range-suffix-on-empty-file", get("/empty.bin", "Range: bytes=-1"), (200,)),
    Row("range-start-past-end-empty-file", get("/empty.bin", "Range: bytes=1-"), (416,)),
    Row(
        "range-unknown-unit",
        get("/4k.bin", "Range: items=0-1"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row(
        "range-no-equals",
        get("/4k.bin", "Range: bytes 0-1"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row("range-suffix-zero", get("/4k.bin", "Range: bytes=-0"), (416,)),
    Row(
        "range-suffix-zero-and-one",
        get("/4k.bin", "Range: bytes=-0,0-0"),
        (206,),
        moves_bytes=True,
        check=content_range(0, 0, 4096),
    ),
    Row(
        "range-reversed",
        get("/4k.bin", "Range: bytes=5-1"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row(
        "range-negative",
        get("/4k.bin", "Range: bytes=-5-1"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row("range-unicode-digits", get("/4k.bin", "Range: bytes=\xb2-\xb3"), (200,), moves_bytes=True),
    Row(
        "range-twice",
        get("/4k.bin", "Range: bytes=0-0", "Range: bytes=1-1"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row("range-on-head", get("/4k.bin", "Range: bytes=0-0", method="HEAD"), (200,), head=True),
    Row(
        "range-weak-if-range",
        get("/4k.bin", "Range: bytes=0-0", "If-Range: W/{etag}"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    # --- Conditionals ------------------------------------------------------------------------
    Row("ims-day-32", get("/4k.bin", "If-Modified-Since: Sun, 32 Nov 2099 08:49:37 GMT"), (200,)),
    Row("ims-hour-25", get("/4k.bin", "If-Modified-Since: Sun, 06 Nov 2099 25:00:00 GMT"), (200,)),
    # Year 0 is no date (the proleptic Gregorian calendar starts at 1): ignored, not a crash.
    Row(
        "ims-year-zero", get("/4k.bin", "If-Modified-Since: Mon, 01 Jan 0000 00:00:00 GMT"), (200,)
    ),
    Row(
        "ius-year-zero",
        get("/4k.bin", "If-Unmodified-Since: Sat, 01 Jan 0000 00:00:00 GMT"),
        (200,),
    ),
    Row(
        "if-range-year-zero",
        get("/4k.bin", "Range: bytes=0-0", "If-Range: Sat, 01 Jan 0000 00:00:00 GMT"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row("ims-words", get("/4k.bin", "If-Modified-Since: tomorrow"), (200,)),
    Row(
        "ims-two-dates",
        get("/4k.bin", "If-Modified-Since: {last_modified}, {last_modified}"),
        (200,),
    ),
    Row(
        "ims-repeated",
        get("/4k.bin", "If-Modified-Since: {last_modified}", "If-Modified-Since: {last_modified}"),
        (200,),
    ),
    Row(
        "ims-far-future", get("/4k.bin", "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT"), (304,)
    ),
    Row("ims-exact", get("/4k.bin", "If-Modified-Since: {last_modified}"), (304,)),
    Row("ius-garbage", get("/4k.bin", "If-Unmodified-Since: \x80\xff garbage"), (200,)),
    Row("ius-epoch", get("/4k.bin", "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT"), (412,)),
    Row("if-match-weak", get("/4k.bin", "If-Match: W/{etag}"), (412,)),
    Row(
        "if-match-strong",
        get("/4k.bin", "If-Match: {etag}"),
        (200,),
        moves_bytes=True,
        check=body_is("4k.bin"),
    ),
    Row("if-match-unterminated", get("/4k.bin", 'If-Match: "unterminated'), (412,)),
    Row("if-none-match-weak", get("/4k.bin", "If-None-Match: W/{etag}"), (304,)),
    Row("if-none-match-weak-in-list", get("/4k.bin", 'If-None-Match: W/"x", W/{etag}'), (304,)),
    Row("if-none-match-garbage", get("/4k.bin", "If-None-Match: xyz"), (200,), moves_bytes=True),
    Row(
        "if-none-match-head",
        get("/4k.bin", "If-None-Match: {etag}", method="HEAD"),
        (304,),
        head=True,
    ),
]


class _Anchors(html.parser.HTMLParser):
    """Collects what a browser would see as markup: tags, attributes, links and their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._text))
            self._href = None


PAGE_TAGS: Final = frozenset(
    {"html", "head", "meta", "title", "style", "body", "h1", "table", "tr", "th", "td", "a"}
)


def check_listing(response: Response, files: tuple[str, ...], dirs: tuple[str, ...]) -> None:
    """No name becomes markup; every link is relative, percent-encoded, and leads to its name.

    ``onerror=`` may appear in the page as text (inside an escaped name); what must not
    appear is an attribute of that name, which the parser would report.
    """
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    body = response.body.lower()
    for needle in (b"<script", b"<img", b"<svg", b'href="javascript', b"href='"):
        assert needle not in body, needle
    page = _Anchors()
    page.feed(response.body.decode("utf-8"))
    page.close()
    assert set(page.tags) <= PAGE_TAGS, set(page.tags) - PAGE_TAGS
    assert not [name for name in page.attributes if name.startswith("on")]
    shown = {}
    for href, text in page.links:
        if href == "../":
            continue
        assert re.fullmatch(r"\./[A-Za-z0-9%._~-]+/?", href), href
        assert unquote(href[2:]) == text, (href, text)
        shown[text] = href
    assert set(shown) == {*files, *(name + "/" for name in dirs)}


# -- running a row --------------------------------------------------------------------------


def _cases() -> list[object]:
    """Rows that move file bytes, over each strategy; the rest once.

    Error responses, redirects, listings and 304s are bytes built in memory and sent with one
    ``send``, whatever the strategy, so running them three times would test nothing new.
    """
    cases: list[object] = []
    for row in ROWS:
        marks = (
            [pytest.mark.skipif(not IS_ROOT, reason="mknod needs root")] if row.needs_root else []
        )
        strategies = BARE_STRATEGIES if row.moves_bytes else BARE_STRATEGIES[:1]
        cases.extend(
            pytest.param(row, name, id=f"{row.id}-{name}", marks=marks) for name in strategies
        )
    return cases


class _Replay:
    """A receive stream over bytes already read, so that :class:`RawClient` can parse them."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data, self._data = self._data, b""
        return data


async def _parse_all(data: bytes) -> list[Response]:
    reader = RawClient(cast("trio.SocketStream", _Replay(data)))
    responses = []
    while True:
        try:
            responses.append(await reader.read_response())
        except EOFError as exc:
            end = str(exc)
            break
    assert end.endswith("have b''"), end  # Nothing but whole responses.
    return responses


def check_response(response: Response, *, head: bool = False) -> None:
    """What must hold of any response, whatever the request.

    The reader takes exactly Content-Length bytes (or the chunks of a listing) as the body;
    that the framing was right shows in what comes next on the connection, which
    :func:`exchange` checks.
    """
    assert response.status in ALLOWED_STATUSES, response.status
    assert SECRET not in response.body
    assert b"root:x:0:0" not in response.body
    length = response.header("Content-Length")
    if response.status == 304:
        pass
    elif length is None:
        # Only a listing is streamed: chunked for GET, no framing fields for HEAD.
        assert response.status == 200
        assert response.header("Content-Type") == "text/html; charset=utf-8"
        assert response.header("Transfer-Encoding") == (None if head else "chunked")
    elif not head:
        assert int(length) == len(response.body)
    location = response.header("Location")
    if location is not None:
        raw = location.encode("latin-1")
        assert raw.startswith(b"/")
        assert not raw.startswith(b"//")
        assert all(0x21 <= byte <= 0x7E for byte in raw), raw
        assert b"\\" not in raw
    if response.status == 405:
        assert response.header("Allow") == "GET, HEAD"
    if response.status == 416:
        assert re.fullmatch(r"bytes \*/\d+", response.header("Content-Range") or "")


async def _validators(port: int) -> dict[bytes, bytes]:
    client = await RawClient.connect(port)
    try:
        head = await client.request("/4k.bin", method="HEAD")
    finally:
        await client.aclose()
    return {
        b"{etag}": (head.header("ETag") or "").encode(),
        b"{last_modified}": (head.header("Last-Modified") or "").encode(),
    }


async def exchange(port: int, row: Row) -> list[Response]:
    """Send the row's bytes on a new connection and read what the row expects."""
    request = row.request
    if b"{" in request:
        for key, value in (await _validators(port)).items():
            request = request.replace(key, value)
    client = await RawClient.connect(port)
    try:
        await client.send(request)
        if row.eof:
            await client.stream.send_eof()
        if row.expect == CLOSE:
            responses = await _parse_all(await client.read_to_eof())
            assert len(responses) <= 1, [r.status for r in responses]
            for response in responses:
                check_response(response)
                assert response.status >= 400
            return responses
        assert isinstance(row.expect, tuple)
        heads = row.head if isinstance(row.head, tuple) else (row.head,) * len(row.expect)
        responses = [await client.read_response(head_only=head) for head in heads]
        for response, head in zip(responses, heads, strict=True):
            check_response(response, head=head)
        assert [r.status for r in responses] == list(row.expect)
        if row.then == CLOSED:
            assert responses[-1].header("Connection") == "close"
            assert await client.read_to_eof() == b""
        else:
            # Exactly these responses, and the stream is still in step: the next one is ours.
            assert all(r.header("Connection") != "close" for r in responses)
            await client.send(get("/hello.txt", "Connection: close"))
            final = await client.read_response()
            assert (final.status, final.body) == (200, HELLO)
            assert await client.read_to_eof() == b""
        return responses
    finally:
        await client.aclose()


async def still_serves(port: int) -> None:
    client = await RawClient.connect(port)
    try:
        response = await client.request("/hello.txt")
    finally:
        await client.aclose()
    assert (response.status, response.body) == (200, HELLO)


@pytest.mark.parametrize(("row", "strategy"), _cases(), indirect=["strategy"])
async def test_hostile_row(
    nursery: trio.Nursery, root: Path, row: Row, strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One row: its responses, its checks, no error logged, the server still serves, and
    once it has stopped, it holds no descriptor (refusals close what they opened)."""
    caplog.set_level(logging.ERROR, logger="zerocopy")
    before = open_fd_count()
    server = await start_server(nursery, root=str(root), strategy=strategy, **row.options)
    with trio.fail_after(row.seconds):  # FIFOs, devices, bodies that never come: no hang
        responses = await exchange(server.port, row)
        if row.check is not None:
            row.check(responses, root)
        await still_serves(server.port)
    await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- symlinks swapped in while requests are served -------------------------------------------


@dataclass
class Swap:
    """``victim.txt`` and ``victim-dir/f.txt`` in the root, and what can replace them.

    ``victim.txt`` is a hard link to ``keep.txt`` outside the root, so that swapping it back
    in restores the same content; the replacements are symlinks to ``SECRET`` files.
    """

    root: Path
    keep: Path
    secret: Path
    outside_dir: Path
    parked_dir: Path

    def file_to_link(self) -> None:
        link = self.root / ".swap-link"
        os.symlink(self.secret, link)
        os.replace(link, self.root / "victim.txt")

    def link_to_file(self) -> None:
        temporary = self.root / ".swap-file"
        os.link(self.keep, temporary)
        os.replace(temporary, self.root / "victim.txt")

    def dir_to_link(self) -> None:
        os.rename(self.root / "victim-dir", self.parked_dir)
        os.symlink(self.outside_dir, self.root / "victim-dir")

    def link_to_dir(self) -> None:
        os.unlink(self.root / "victim-dir")
        os.rename(self.parked_dir, self.root / "victim-dir")


KEPT: Final = b"the file that belongs here\n"


@pytest.fixture
def swap(www: Path, tmp_path: Path) -> Swap:
    keep = tmp_path / "keep.txt"
    keep.write_bytes(KEPT)
    os.link(keep, www / "victim.txt")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "f.txt").write_bytes(SECRET)
    (www / "victim-dir").mkdir()
    (www / "victim-dir" / "f.txt").write_bytes(KEPT)
    return Swap(www, keep, secret, outside_dir, tmp_path / "parked")


@pytest.mark.parametrize(("follow", "refused"), [(False, 403), (True, 404)])
async def test_swapped_for_symlink_between_requests_on_one_connection(
    nursery: trio.Nursery, swap: Swap, strategy: str, follow: bool, refused: int
) -> None:
    server = await start_server(
        nursery, root=str(swap.root), strategy=strategy, follow_symlinks=follow
    )
    client = await RawClient.connect(server.port)
    with trio.fail_after(10):
        for target, to_link, back in [
            ("/victim.txt", swap.file_to_link, swap.link_to_file),
            ("/victim-dir/f.txt", swap.dir_to_link, swap.link_to_dir),
        ]:
            # Twice first, so that the open-file cache holds the descriptor when the swap comes.
            for _ in range(2):
                response = await client.request(target)
                assert (response.status, response.body) == (200, KEPT)
            to_link()
            response = await client.request(target)
            check_response(response)
            assert response.status == refused
            back()
            response = await client.request(target)
            assert (response.status, response.body) == (200, KEPT)
    await client.aclose()


@pytest.mark.parametrize(("follow", "refused"), [(False, 403), (True, 404)])
@pytest.mark.parametrize("what", ["file", "dir"])
async def test_concurrent_swapper_never_leaks(
    nursery: trio.Nursery, swap: Swap, strategy: str, follow: bool, refused: int, what: str
) -> None:
    """A thread toggles file and symlink as fast as it can while one client keeps asking.

    A thread, not a task: the server opens files synchronously, so only a thread can swap
    between its ``open``, ``readlink`` and ``fstat``, and between the cache's ``stat`` and its
    reuse of a descriptor.
    """
    server = await start_server(
        nursery, root=str(swap.root), strategy=strategy, follow_symlinks=follow
    )
    target, to_link, back = (
        ("/victim.txt", swap.file_to_link, swap.link_to_file)
        if what == "file"
        else ("/victim-dir/f.txt", swap.dir_to_link, swap.link_to_dir)
    )
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            to_link()
            back()
            swaps += 1

    seen: dict[int, int] = {}
    client = await RawClient.connect(server.port)
    try:
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.to_thread.run_sync, swapper)
            try:
                with trio.fail_after(60):
                    # Until both outcomes have been seen often enough to show that the swaps
                    # really did interleave with the requests.
                    while (
                        min(seen.get(200, 0), seen.get(refused, 0)) < 20 or sum(seen.values()) < 200
                    ):
                        response = await client.request(target)
                        check_response(response)
                        assert response.status in (200, refused, 404), response.status
                        if response.status == 200:
                            assert response.body == KEPT
                        seen[response.status] = seen.get(response.status, 0) + 1
                        assert sum(seen.values()) < 20_000, seen
            finally:
                stop.set()
    finally:
        await client.aclose()
    assert swaps > 0
