"""Property-based hostile input against a live server, with an audit of every file it opens.

Hypothesis generates request-targets (raw printable strings full of ``%``-escapes, dots,
slashes and backslashes; and paths built from segments that mix names in the root, names
outside it and traversal tokens) and conditional and range headers with random content. For
every request the server must answer with a status from :data:`ALLOWED`, frame the response
correctly, send nothing from outside the root, and **open nothing outside the root**.

The last is checked with an audit hook (PEP 578): the ``open`` event fires for ``os.open`` and
``open()`` with the path, before the call, in whatever thread makes it. While an example runs,
every path opened is recorded, then judged by :func:`check_opens`.

How it runs. The server runs once per test function, in the test's trio run; Hypothesis runs
in a worker thread (``trio.to_thread``) and hands each example back to the trio thread with
``trio.from_thread.run``, so that one server and one keep-alive connection serve every example
(a new connection only after the server closes one). The profile (``ci``: 10 000 examples, or
``dev``: 300) comes from ``conftest.py``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import socket
import stat
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import start_server
from tests.helpers import RawClient, Response

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

SECRET: Final = b"TOP SECRET, outside the root\n"
ALLOWED: Final = frozenset({200, 206, 301, 304, 400, 403, 404, 405, 412, 414, 416, 431, 501, 505})


# -- the audit hook ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenEvent:
    """One ``open`` audit event: the path as given, the flags, and for a ``/proc/self/fd/N``
    path what that descriptor resolved to when the event fired (the descriptor is open then:
    the event comes before the syscall)."""

    path: bytes | int
    flags: int
    proc_target: bytes | None
    thread: str


class OpenAudit:
    """Records ``open`` events while :attr:`active`. Installed once: hooks cannot be removed."""

    def __init__(self) -> None:
        self.active = False
        self.events: list[OpenEvent] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event != "open":
            return
        path, _mode, flags = args
        if isinstance(path, str | os.PathLike):
            path = os.fsencode(path)
        proc_target = None
        if isinstance(path, bytes) and path.startswith(b"/proc/self/fd/"):
            try:
                proc_target = os.readlink(path)
            except OSError:
                proc_target = b"<unreadable>"
        name = threading.current_thread().name
        self.events.append(
            OpenEvent(path, flags if isinstance(flags, int) else 0, proc_target, name)
        )

    @contextmanager
    def record(self) -> Iterator[list[OpenEvent]]:
        """Record while the block runs; yields the list the events go to."""
        self.events = []
        self.active = True
        try:
            yield self.events
        finally:
            self.active = False


_AUDIT: OpenAudit | None = None


@pytest.fixture(scope="module")
def audit() -> OpenAudit:
    global _AUDIT  # One hook per process: it cannot be removed, only made inactive.
    if _AUDIT is None:
        _AUDIT = OpenAudit()
        sys.addaudithook(_AUDIT)
    return _AUDIT


def _under(path: bytes, root: bytes) -> bool:
    return path == root or path.startswith(root + b"/")


def check_opens(events: list[OpenEvent], root: bytes) -> None:
    """Every open stays inside ``root`` (its real path).

    * ``/proc/self/fd/N``: reopening a descriptor; what it resolved to must be under the root.
    * An absolute path opened for reading: the path must be a plain one under the root (no
      ``.`` or ``..`` segments, no doubled slashes) and must *resolve* under it, symlinks
      followed.
    * An absolute path opened with ``O_PATH``: plain and under the root. ``O_PATH`` opens
      nothing (open(2): "the file itself is not opened"); it may resolve out through a link,
      which is how the server finds out that it must refuse.
    * A relative path with ``O_PATH``: resolved against a directory descriptor (``dir_fd``,
      which the event does not carry): the root's, in ``Root.open``, or a listed directory's,
      looking at a symlink in it. It must be plain (no ``.``, ``..`` or doubled slashes), so it
      stays lexically inside that directory; where it resolves to is checked by the server,
      and whatever is then read goes through ``/proc/self/fd/N`` (the first rule).
    """
    for event in events:
        path = event.path
        assert isinstance(path, bytes), event  # never an fdopen of some descriptor
        if event.proc_target is not None:
            assert _under(event.proc_target, root), event
            continue
        path_only = bool(event.flags & os.O_PATH)
        if not path.startswith(b"/"):
            # Relative to a directory descriptor (the event does not carry it): the root's
            # (Root.open) or a listed directory's. O_PATH only, and lexically inside it.
            assert path_only, event
            assert os.path.normpath(path) == path or path == b".", event
            assert b".." not in path.split(b"/"), event
            continue
        assert _under(path, root), event
        assert os.path.normpath(path) == path, event
        if not path_only:
            assert _under(os.path.realpath(path), root), event


# -- the document root ------------------------------------------------------------------------


@dataclass
class Tree:
    root: Path
    files: dict[str, bytes]  # path under the root -> content, for every regular file

    @property
    def real(self) -> bytes:
        return os.fsencode(os.path.realpath(self.root))


NAMES_INSIDE: Final = (
    "hello.txt",
    "4k.bin",
    "empty.bin",
    "sub",
    "index.html",
    "list",
    "a dir",
    "b.txt",
    "ünï.txt",
    "%2e%2e",
    "names",
    "<svg onload=alert(1)>",
    "dir\r\nSet-Cookie: x=1",
    "escape.txt",
    "escape-dir",
    "inside.txt",
    "inside-dir",
    "dangling",
    "loop",
    "escape-dev",
    "fifo",
    "sock",
)
NAMES_OUTSIDE: Final = ("secret.txt", "outside", "etc", "passwd", "tmp", "www", "proc", "self")
TRAVERSAL: Final = (
    "..",
    ".",
    "",
    "%2e%2e",
    "%2E%2e",
    "%2e%2E",
    ".%2e",
    "%2e.",
    "%252e%252e",
    "%c0%ae%c0%ae",
    "%e0%80%ae",
    "%c0%af",
    "..%2f",
    "..%2F..",
    "..%5c",
    "..%5C",
    "..\\",
    "\\",
    "%00",
    "%ff",
    "%80",
    "..;",
    "%2f",
    "%2F%2F",
    "~",
)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """A small root (no file over 4 KiB, so that every body can be compared) full of traps."""
    www = tmp_path / "www"
    www.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (outside / "secret.txt").write_bytes(SECRET)
    os.mkfifo(outside / "fifo")
    files = {
        "hello.txt": b"hello, world\n",
        "4k.bin": os.urandom(4096),
        "empty.bin": b"",
        "sub/index.html": b"<h1>sub</h1>\n",
        "list/b.txt": b"b",
        "ünï.txt": b"unicode\n",
        "%2e%2e": b"a file literally named %2e%2e\n",
        "names/<svg onload=alert(1)>": b"x",
    }
    for name, content in files.items():
        (www / name).parent.mkdir(parents=True, exist_ok=True)
        (www / name).write_bytes(content)
    (www / "list" / "a dir").mkdir()
    (www / "dir\r\nSet-Cookie: x=1").mkdir()
    os.symlink(tmp_path / "secret.txt", www / "escape.txt")
    os.symlink(outside, www / "escape-dir")
    os.symlink("hello.txt", www / "inside.txt")
    os.symlink("sub", www / "inside-dir")
    os.symlink("nowhere", www / "dangling")
    os.symlink("loop", www / "loop")
    os.symlink("/dev/zero", www / "escape-dev")
    os.mkfifo(www / "fifo")
    with socket.socket(socket.AF_UNIX) as listener:
        cwd = os.getcwd()
        os.chdir(www)  # sun_path is short; tmp_path may not be.
        try:
            listener.bind("sock")
        finally:
            os.chdir(cwd)
    if os.geteuid() == 0:
        os.mknod(www / "dev-zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    return Tree(www, files)


# -- strategies -------------------------------------------------------------------------------
#
# Generating an example costs Hypothesis more than the two requests it makes: about 20 µs per
# choice it draws, and a list of tokens is a few choices per element, where a string of any
# length is one. So the strategies below are mostly strings over an alphabet in which
# private-use characters stand for whole tokens (:func:`token_text`), and integers decoded
# into several fields: 10 000 examples then take seconds, not minutes.

# Printable ASCII but the space: what may appear in a request-target without changing the
# request line (llhttp refuses some of it, which the server must answer with 400).
PRINTABLE: Final = "".join(chr(c) for c in range(0x21, 0x7F))
# Header values: printable ASCII and spaces, never CR or LF (they would end the field).
VALUE_CHARS: Final = " " + PRINTABLE


def token_text(tokens: Sequence[str], extra: str = "", *, max_size: int) -> st.SearchStrategy[str]:
    """Strings made of ``tokens`` and of the characters in ``extra``, drawn as one string."""
    table = {chr(0xE000 + index): token for index, token in enumerate(tokens)}
    assert not set(extra) & set(table)
    return st.text("".join(table) + extra, max_size=max_size).map(
        lambda drawn: "".join(table.get(c, c) for c in drawn)
    )


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """Draw from each strategy in proportion to its weight. (``st.one_of`` picks its branches
    evenly, and drops a branch given twice, so it cannot weigh them.)"""
    return st.sampled_from([s for s, weight in choices for _ in range(weight)]).flatmap(
        lambda chosen: chosen
    )


def spellings(name: str) -> list[str]:
    """``name`` as a client could spell it: quoted as usual, every byte escaped (upper or
    lower case hex), or raw when it is printable ASCII."""
    spelt = {
        quote(name, safe=""),
        "".join(f"%{b:02X}" for b in name.encode()),
        "".join(f"%{b:02x}" for b in name.encode()),
    }
    if all(c in PRINTABLE for c in name):
        spelt.add(name)
    return sorted(spelt)


def path_spellings(path: str) -> list[str]:
    """Every spelling of a path, segment by segment."""
    return ["/".join(parts) for parts in itertools.product(*map(spellings, path.split("/")))]


# Paths of what is in the tree (and a few that are not): what reaches files, listings,
# redirects and refusals. Directories count twice: without their slash, they are what gets
# redirected.
TREE_PATHS: Final = (
    "",
    "hello.txt",
    "4k.bin",
    "empty.bin",
    "sub",
    "sub/index.html",
    "list",
    "list/b.txt",
    "list/a dir",
    "ünï.txt",
    "%2e%2e",
    "names",
    "names/<svg onload=alert(1)>",
    "dir\r\nSet-Cookie: x=1",
    "escape.txt",
    "escape-dir",
    "escape-dir/secret.txt",
    "escape-dir/missing.txt",
    "inside.txt",
    "inside-dir",
    "inside-dir/index.html",
    "dangling",
    "loop",
    "escape-dev",
    "fifo",
    "sock",
    "dev-zero",
    "missing.txt",
    "hello.txt/x",
)
DIRECTORIES: Final = ("sub", "list", "list/a dir", "names", "dir\r\nSet-Cookie: x=1", "inside-dir")
suffixes = st.sampled_from(["", "", "/", "?", "?x=1", "?%0d%0a", "#frag", "?a=%&b=//evil.com"])
tree_targets = st.builds(
    lambda path, suffix: "/" + path + suffix,
    # One spelling of each path, chosen at random per example: the sampled list would be
    # dominated by the paths with the most spellings.
    st.sampled_from([path_spellings(path) for path in TREE_PATHS + DIRECTORIES]).flatmap(
        st.sampled_from
    ),
    suffixes,
)
SEGMENT_TOKENS: Final = (
    *[spelt for name in NAMES_INSIDE for spelt in spellings(name)],
    *NAMES_OUTSIDE,
    *[token for token in TRAVERSAL if token],
)
segment_targets = st.builds(
    lambda prefix, path, suffix: prefix + path + suffix,
    st.sampled_from(["/", "/", "/", "//", "http://x/", "HTTP://evil.com//", "/sub/"]),
    token_text(SEGMENT_TOKENS, "/", max_size=10),
    suffixes,
)
raw_targets = st.builds(
    lambda prefix, rest: prefix + rest,
    # With one over the target limit (414).
    st.sampled_from(
        ["/", "/", "/", "//", "http://x/", "https://x", "", "*", "\\", "/" + "a" * 9000]
    ),
    token_text(("%2", "%25", "//", *TRAVERSAL), PRINTABLE, max_size=24),
).filter(bool)
targets: st.SearchStrategy[str] = weighted(
    (tree_targets, 4), (segment_targets, 2), (raw_targets, 2)
)
methods = st.sampled_from(["GET"] * 8 + ["HEAD"] * 2 + ["POST", "BREW"])


def _tags(etags: list[str]) -> st.SearchStrategy[str]:
    """Entity-tag lists: the file's tags, strong and weak, ``*``, and pieces of tags."""
    pieces = (*etags, *("W/" + tag for tag in etags), "*", '"x"', 'W/"x"', ", ", '"', "W/")
    return token_text(pieces, ' ,"Wx', max_size=6)


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
# Field ranges for IMF-fixdates, each a little past what is valid.
_DATE_FIELDS: Final = (7, 41, 12, 10_000, 31, 71, 71)


def _imf_date(number: int) -> str:
    """One integer decoded into the seven fields of an IMF-fixdate, valid or not."""
    fields = []
    for size in _DATE_FIELDS:
        number, field = divmod(number, size)
        fields.append(field)
    day, mday, month, year, hour, minute, second = fields
    return (
        f"{_DAYS[day]}, {mday:02d} {_MONTHS[month]} {year:04d} "
        f"{hour:02d}:{minute:02d}:{second:02d} GMT"
    )


def _dates(last_modified: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(last_modified),
        st.integers(0, math.prod(_DATE_FIELDS) - 1).map(_imf_date),
        st.text(VALUE_CHARS, max_size=40),
    )


BEYOND_64_BITS: Final = str(1 << 64)
# Range specs around the sizes in the tree (0, 1, 13 and 4096 bytes), past 64 bits, and
# malformed.
RANGE_SPECS: Final = (
    "0-0",
    "0-",
    "-1",
    "-0",
    "1-1",
    "0-4095",
    "4095-",
    "4096-",
    "4000-4200",
    "12-",
    "13-",
    "-13",
    "100-199",
    "5-1",
    "0-" + BEYOND_64_BITS,
    BEYOND_64_BITS + "-",
    "-" + BEYOND_64_BITS,
    "0-" + "9" * 30,
    " 1-2 ",
    "",
    "-",
    "1",
    "1-2-3",
    "a-b",
)


def _listed_specs(number: int) -> str:
    """One to three specs from :data:`RANGE_SPECS`, decoded from one integer."""
    number, count = divmod(number, 3)
    specs = []
    for _ in range(count + 1):
        number, index = divmod(number, len(RANGE_SPECS))
        specs.append(RANGE_SPECS[index])
    return ",".join(specs)


def _numeric_spec(number: int) -> str:
    """``a-b``, ``a-`` or ``-b`` with numbers up to 5000, decoded from one integer."""
    number, form = divmod(number, 3)
    first, last = divmod(number, 5001)
    return (f"{first}-{last}", f"{first}-", f"-{last}")[form]


def _around_the_cap(number: int) -> str:
    """Around the cap of 64 ranges: 60 to 70 ranges ``stride`` bytes apart, each ``width``
    long (so disjoint or overlapping), decoded from one integer."""
    number, count = divmod(number, 11)
    stride, width = divmod(number, 40)
    return ",".join(f"{i * (stride + 1)}-{i * (stride + 1) + width}" for i in range(count + 60))


range_values = weighted(
    (
        st.builds(
            lambda unit, specs: unit + "=" + specs,
            st.sampled_from(["bytes"] * 6 + ["Bytes", " bytes ", "items"]),
            weighted(
                (st.integers(0, 3 * len(RANGE_SPECS) ** 3 - 1).map(_listed_specs), 3),
                (st.integers(0, 3 * 5001 * 5001 - 1).map(_numeric_spec), 2),
                (st.integers(0, 11 * 40 * 40 - 1).map(_around_the_cap), 1),
                # Past the end of every file here: unsatisfiable, so 416 is reached in every
                # run (an empty file's ranges from byte 0 are ignored, 200, since nginx does so).
                (st.integers(10**6, 10**12).map(lambda start: f"{start}-"), 1),
                (st.text("0123456789-, ", max_size=12), 1),
            ),
        ),
        4,
    ),
    (st.text(VALUE_CHARS, max_size=30), 1),
)


def header_sets(etags: list[str], dates: list[str]) -> st.SearchStrategy[dict[str, str]]:
    """Ranges (perhaps with If-Range), a cache's revalidation, preconditions, or any mix."""
    tags = _tags(etags)
    when = _dates(dates)
    conditionals = {
        "If-Match": tags,
        "If-None-Match": tags,
        "If-Modified-Since": when,
        "If-Unmodified-Since": when,
    }
    if_range = st.one_of(tags, when)
    ranges = st.fixed_dictionaries({"Range": range_values}, optional={"If-Range": if_range})
    revalidation = st.fixed_dictionaries(
        {}, optional={"If-None-Match": tags, "If-Modified-Since": when}
    )
    preconditions = st.fixed_dictionaries({}, optional=conditionals)
    everything = st.fixed_dictionaries(
        {}, optional={"Range": range_values, "If-Range": if_range, **conditionals}
    )
    return weighted((ranges, 3), (revalidation, 1), (preconditions, 1), (everything, 1))


# -- the client side of one example ------------------------------------------------------------


class Prober:
    """One keep-alive connection, reopened only after the server closes it; checks every
    response against the invariants."""

    def __init__(self, port: int, tree: Tree, audit: OpenAudit) -> None:
        self.port = port
        self.tree = tree
        self.audit = audit
        self.root = tree.real
        self.client: RawClient | None = None
        self.statuses: dict[int, int] = {}
        self.bodies = set(tree.files.values())
        self.reopened = 0  # /proc/self/fd/N opens seen: proof that the audit sees the server

    async def request(self, method: str, target: bytes, headers: dict[str, str]) -> Response:
        lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: t"]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
        data = b"\r\n".join(lines) + b"\r\n\r\n"
        with self.audit.record() as opened:
            if self.client is None:
                self.client = await RawClient.connect(self.port)
            client = self.client
            await client.send(data)
            response = await client.read_response(head_only=method == "HEAD")
        check_opens(opened, self.root)
        self.reopened += sum(event.proc_target is not None for event in opened)
        self.check(response, method)
        if response.header("Connection") == "close":
            self.client = None
            rest = await client.read_to_eof()
            await client.aclose()
            if method == "HEAD" and rest:
                # A request line or head that did not parse: the server cannot know that it
                # was a HEAD, so the error page follows, framed by its Content-Length.
                assert response.status in (400, 414, 431, 501, 505), response.status
                assert len(rest) == int(response.header("Content-Length") or -1)
            else:
                assert rest == b""  # nothing after the last response
        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        return response

    def check(self, response: Response, method: str) -> None:
        status = response.status
        assert status in ALLOWED, status
        assert SECRET not in response.body
        kind = response.header("Content-Type") or ""
        length = response.header("Content-Length")
        if status == 304:
            pass
        elif length is None:
            # Only a listing is streamed: chunked for GET, no framing fields for HEAD.
            assert (status, kind) == (200, "text/html; charset=utf-8")
            chunked = "chunked" if method == "GET" else None
            assert response.header("Transfer-Encoding") == chunked
        elif method != "HEAD":
            assert int(length) == len(response.body)
        if method == "HEAD":
            return
        if status == 200 and response.body.startswith(b"<!DOCTYPE html>"):
            assert kind == "text/html; charset=utf-8"
            assert b"<script" not in response.body.lower()
        elif status == 200:
            assert response.body in self.bodies  # the whole of some file under the root
        elif status == 206 and kind.startswith("multipart/byteranges"):
            assert response.body.count(b"\r\nContent-Range: bytes ") >= 2
        elif status == 206:
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.header("Content-Range") or "")
            assert match, response.header("Content-Range")
            start, end, size = map(int, match.groups())
            assert len(response.body) == end - start + 1
            assert any(
                len(body) == size and body[start : end + 1] == response.body for body in self.bodies
            )
        elif status == 301:
            location = (response.header("Location") or "").encode("latin-1")
            assert location.startswith(b"/")
            assert not location.startswith(b"//")
            assert all(0x21 <= byte <= 0x7E for byte in location), location
            assert b"\\" not in location
        elif status == 405:
            assert response.header("Allow") == "GET, HEAD"
        elif status == 416:
            assert re.fullmatch(r"bytes \*/\d+", response.header("Content-Range") or "")

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


async def validators(prober: Prober, names: list[str]) -> tuple[list[str], list[str]]:
    etags, dates = [], []
    for name in names:
        response = await prober.request("HEAD", b"/" + quote(name).encode(), {})
        assert response.status == 200
        etags.append(response.header("ETag") or "")
        dates.append(response.header("Last-Modified") or "")
    return etags, dates


async def _serve(nursery: trio.Nursery, tree: Tree, audit: OpenAudit, **options: object) -> Prober:
    server = await start_server(nursery, root=str(tree.root), **options)
    prober = Prober(server.port, tree, audit)
    # Warm up outside the audit, in case something is read lazily on first use (MIME tables).
    client = await RawClient.connect(server.port)
    assert (await client.request("/hello.txt")).status == 200
    await client.aclose()
    return prober


# -- the properties ------------------------------------------------------------------------------


async def test_generated_targets(
    nursery: trio.Nursery, tree: Tree, audit: OpenAudit, caplog: pytest.LogCaptureFixture
) -> None:
    """Any target: an allowed status, valid framing, nothing opened outside the root.

    Each target goes to two servers on the same root, one that refuses symlinks (sendfile)
    and one that follows those that stay inside (readwrite): generating an example costs
    Hypothesis more than the requests do.
    """
    caplog.set_level(logging.ERROR, logger="zerocopy")
    plain = await _serve(nursery, tree, audit, strategy="sendfile")
    follow = await _serve(nursery, tree, audit, strategy="readwrite", follow_symlinks=True)
    count = 0

    async def both(method: str, target: bytes) -> None:
        await plain.request(method, target, {})
        await follow.request(method, target, {})

    @given(method=methods, target=targets)
    def example(method: str, target: str) -> None:
        nonlocal count
        count += 1
        trio.from_thread.run(both, method, target.encode("utf-8"))

    try:
        await trio.to_thread.run_sync(example)
    finally:
        await plain.aclose()
        await follow.aclose()
    # The whole budget ran: the profile asks for 10 000 examples in CI, 300 otherwise.
    assert count >= settings().max_examples, count
    # The targets reach every kind of answer, not only 400s. Refusals come from links when
    # they are not followed; when they are, only from FIFOs, sockets and loops.
    assert {200, 301, 400, 403, 404} <= set(plain.statuses), plain.statuses
    assert {200, 301, 400, 404} <= set(follow.statuses), follow.statuses
    assert plain.reopened > 0
    assert follow.reopened > 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_generated_headers(
    nursery: trio.Nursery, tree: Tree, audit: OpenAudit, caplog: pytest.LogCaptureFixture
) -> None:
    """Any conditional and range headers on files: an allowed status and correct bodies."""
    caplog.set_level(logging.ERROR, logger="zerocopy")
    prober = await _serve(nursery, tree, audit, strategy="splice")
    names = ["hello.txt", "4k.bin", "empty.bin", "sub/index.html"]
    etags, dates = await validators(prober, names)
    files = st.sampled_from(names).map(lambda name: "/" + quote(name))
    count = 0

    @given(
        method=st.sampled_from(["GET", "GET", "GET", "HEAD"]),
        target=files,
        headers=header_sets(etags, dates),
    )
    def example(method: str, target: str, headers: dict[str, str]) -> None:
        nonlocal count
        count += 1
        trio.from_thread.run(prober.request, method, target.encode("utf-8"), headers)

    try:
        await trio.to_thread.run_sync(example)
    finally:
        await prober.aclose()
    # The whole budget ran: the profile asks for 10 000 examples in CI, 300 otherwise.
    assert count >= settings().max_examples, count
    assert {200, 206, 304, 412, 416} <= set(prober.statuses), prober.statuses
    assert prober.reopened > 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
