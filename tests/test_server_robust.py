"""The live server, across all three strategies: what issue 11's HTTP fixes look like on the wire.

Raw sockets send the requests; the stdlib ``email`` parser reads multipart bodies, and the
expected values come from the files themselves (``os.utime``, the bytes on disk).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.helpers import RawClient
from tests.oracles import multipart_parts
from tests.test_server_faults import _start_slow_download
from zerocopy.server import Server


@pytest.fixture
async def client(server: Server) -> AsyncIterator[RawClient]:
    """A connection to the server, closed even when the test fails (before the server's
    descriptor check)."""
    connection = await RawClient.connect(server.port)
    yield connection
    await connection.aclose()


# -- Expect: 100-continue -------------------------------------------------------------------------

EXPECTING = (
    b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
)


async def test_expect_100_continue_is_answered_at_once_and_the_body_discarded(
    client: RawClient, autojump_clock: trio.abc.Clock
) -> None:
    await client.send(EXPECTING)
    start = trio.current_time()
    # The head timeout is 10 s: a server waiting for the body would answer 408 then.
    with trio.fail_after(5):
        response = await client.read_response()
    assert trio.current_time() - start < 1
    assert response.status == 200
    assert response.body == b"hello, world\n"
    assert response.header("Connection") == "close"
    # The client sends the body anyway (curl does, after waiting a second for 100 Continue).
    # The server's lingering close reads and drops it, and ends with a FIN: a close with the
    # body unread would answer it with a reset.
    await client.send(b"0123456789")
    await client.stream.send_eof()
    assert await client.read_to_eof() == b""


async def test_expect_100_continue_with_the_body_already_sent(client: RawClient) -> None:
    await client.send(EXPECTING + b"0123456789" + b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    response = await client.read_response()
    assert response.status == 200
    assert response.header("Connection") == "close"
    await client.stream.send_eof()
    # The pipelined request after the body is not answered: the connection was closing.
    assert await client.read_to_eof() == b""


async def test_unknown_expectation_gets_417(client: RawClient) -> None:
    await client.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\n\r\n")
    response = await client.read_response()
    assert response.status == 417
    assert response.header("Connection") == "close"
    assert await client.read_to_eof() == b""


# -- multipart/byteranges, byte for byte ----------------------------------------------------------


async def test_multipart_byteranges_parts_are_the_files_bytes(client: RawClient, www: Path) -> None:
    data = (www / "5m.bin").read_bytes()
    size = len(data)
    # One byte; two adjacent; across a page; over 2 MiB (more than one sendfile or splice
    # chunk); and a suffix: in the client's order, not sorted.
    spans = [(1048570, 3145740), (0, 0), (size - 7, size - 1), (1, 1), (65535, 65536)]
    header = "bytes=1048570-3145740,0-0,-7,1-1,65535-65536"
    response = await client.request("/5m.bin", headers={"Range": header})
    assert response.status == 206
    assert response.header("Content-Range") is None
    assert int(response.header("Content-Length") or -1) == len(response.body)
    content_type = (response.header("Content-Type") or "").encode()
    assert multipart_parts(content_type, response.body) == [
        (b"application/octet-stream", b"bytes %d-%d/%d" % (start, end, size), data[start : end + 1])
        for start, end in spans
    ]
    # The connection is still framed: the next response starts where the last part ended.
    assert (await client.request("/hello.txt")).body == b"hello, world\n"


# -- Last-Modified is the file's mtime ----------------------------------------------------------


async def test_last_modified_and_etag_come_from_the_files_mtime(
    client: RawClient, www: Path
) -> None:
    # RFC 9110's example date, with a fraction that Last-Modified drops.
    os.utime(www / "hello.txt", ns=(784111777_900000000, 784111777_900000000))
    info = os.stat(www / "hello.txt")
    response = await client.request("/hello.txt")
    assert response.header("Last-Modified") == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert response.header("ETag") == f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
    since = {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}
    assert (await client.request("/hello.txt", headers=since)).status == 304
    before = {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:36 GMT"}
    assert (await client.request("/hello.txt", headers=before)).status == 200
    # A new mtime is seen by the next request (no open-file cache may hide it).
    os.utime(www / "hello.txt", (1700000000, 1700000000))
    response = await client.request("/hello.txt")
    assert response.header("Last-Modified") == "Tue, 14 Nov 2023 22:13:20 GMT"


# -- ranges on an empty file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status"),
    [("-1", 200), ("0-", 200), ("0-0", 200), ("-0", 200), ("1-", 416), ("5-10", 416)],
)
async def test_ranges_on_an_empty_file(client: RawClient, spec: str, status: int) -> None:
    # nginx's answers: a range from byte 0 of an empty file cannot be written in a
    # Content-Range, so the header is ignored; one past the end is unsatisfiable.
    response = await client.request("/empty.bin", headers={"Range": f"bytes={spec}"})
    assert response.status == status
    if status == 200:
        assert response.body == b""
        assert response.header("Content-Length") == "0"
        assert response.header("Content-Range") is None
    else:
        assert response.header("Content-Range") == "bytes */0"
    assert (await client.request("/hello.txt")).status == 200


# -- listings show control and bidi characters escaped --------------------------------------------


async def test_listing_escapes_controls_and_links_to_the_real_name(
    client: RawClient, www: Path
) -> None:
    name = "new\nline \x1b[31m rlo\u202etxt.exe"
    (www / "list" / name).write_bytes(b"the real file\n")
    page = await client.request("/list/")
    assert page.status == 200
    label = b"new\\nline \\x1b[31m rlo\\u202etxt.exe"
    href = b"./new%0Aline%20%1B%5B31m%20rlo%E2%80%AEtxt.exe"
    assert b'<a href="%s">%s</a>' % (href, label) in page.body
    for raw in (b"\x1b", "\u202e".encode(), b"line \x1b"):
        assert raw not in page.body
    response = await client.request("/list/" + href[2:].decode())
    assert response.status == 200
    assert response.body == b"the real file\n"


# -- Log lines ------------------------------------------------------------------------------------

HOSTILE_NAME = "a\nb\r\x1b[31m\u202e.bin"


async def test_a_hostile_file_name_cannot_forge_a_log_line(
    server: Server, www: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The truncation error names the file: a name holding CR, LF, ESC or a bidi override
    # must come out as one line, escaped, not as a forged second line.
    path = www / HOSTILE_NAME
    path.write_bytes(os.urandom(32 * 1024 * 1024))
    quoted = "".join(f"%{byte:02X}" for byte in HOSTILE_NAME.encode())
    client, _body, length = await _start_slow_download(server, quoted)
    assert length == 32 * 1024 * 1024
    os.truncate(path, 1024 * 1024)
    with trio.fail_after(20):
        await client.read_until_closed()
    client.close()
    [message] = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert not any(char in message for char in "\n\r\x1b\u202e")
    assert "a\\nb\\r\\x1b[31m\\u202e.bin" in message
