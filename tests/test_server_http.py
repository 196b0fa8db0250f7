"""The live server over loopback, across all three strategies: bytes, keep-alive, semantics."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.conftest import SIZES, start_server
from tests.helpers import RawClient, Response, open_fd_count, sha256_file
from zerocopy.server import Server


@pytest.mark.parametrize("name", list(SIZES))
async def test_get_is_byte_identical(server: Server, www: Path, name: str) -> None:
    client = await RawClient.connect(server.port)
    response = await client.request(f"/{name}")
    assert response.status == 200
    assert response.header("Content-Length") == str(SIZES[name])
    assert response.sha256 == sha256_file(www / name)
    await client.aclose()


async def test_representation_headers(server: Server, www: Path) -> None:
    client = await RawClient.connect(server.port)
    response = await client.request("/hello.txt")
    assert response.body == b"hello, world\n"
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("Accept-Ranges") == "bytes"
    assert response.header("ETag") is not None
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', response.header("ETag") or "")
    assert response.header(
        "Last-Modified",
    ).endswith(" GMT")  # type: ignore[union-attr]
    assert response.header("Date") is not None
    assert response.header("Connection") is None  # HTTP/1.1 keep-alive is implicit
    await client.aclose()


async def test_head_has_headers_and_no_body(server: Server) -> None:
    client = await RawClient.connect(server.port)
    head = await client.request("/1m.bin", method="HEAD")
    assert head.status == 200
    assert head.header("Content-Length") == str(1 << 20)
    # The next response on the same connection must start right away: no body was sent.
    after = await client.request("/hello.txt")
    assert after.body == b"hello, world\n"
    await client.aclose()


async def test_keep_alive_serves_many_requests(server: Server, www: Path) -> None:
    client = await RawClient.connect(server.port)
    for name in ["4k.bin", "1m.bin", "empty.bin", "64k.bin", "4k.bin"]:
        response = await client.request(f"/{name}")
        assert response.sha256 == sha256_file(www / name)
    await client.aclose()


async def test_pipelined_requests_answered_in_order(server: Server, www: Path) -> None:
    names = ["64k.bin", "hello.txt", "missing", "1m.bin", "4k.bin"]
    client = await RawClient.connect(server.port)
    await client.send(b"".join(f"GET /{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for n in names))
    for name in names:
        response = await client.read_response()
        if name == "missing":
            assert response.status == 404
        else:
            assert response.status == 200
            assert response.sha256 == sha256_file(www / name)
    await client.aclose()


async def test_http10_closes_unless_keep_alive(server: Server) -> None:
    client = await RawClient.connect(server.port)
    await client.send(b"GET /hello.txt HTTP/1.0\r\n\r\n")
    response = await client.read_response()
    assert response.header("Connection") == "close"
    assert await client.read_to_eof() == b""
    await client.aclose()

    client = await RawClient.connect(server.port)
    await client.send(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    response = await client.read_response()
    assert response.header("Connection") == "keep-alive"
    await client.send(b"GET /hello.txt HTTP/1.0\r\n\r\n")
    assert (await client.read_response()).body == b"hello, world\n"
    await client.aclose()


async def test_connection_close_is_honoured(server: Server) -> None:
    client = await RawClient.connect(server.port)
    response = await client.request("/hello.txt", headers={"Connection": "close"})
    assert response.header("Connection") == "close"
    assert await client.read_to_eof() == b""
    await client.aclose()


async def _first(server: Server, target: str = "/64k.bin") -> Response:
    client = await RawClient.connect(server.port)
    response = await client.request(target)
    await client.aclose()
    return response


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"If-None-Match": "{etag}"}, 304),
        ({"If-None-Match": "W/{etag}"}, 304),
        ({"If-None-Match": '"other", {etag}'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": "{last_modified}"}, 304),
        ({"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        # IMS is ignored when INM is present (RFC 9110 §13.1.3).
        ({"If-None-Match": '"other"', "If-Modified-Since": "{last_modified}"}, 200),
        ({"If-Match": "{etag}"}, 200),
        ({"If-Match": '"other"'}, 412),
        ({"If-Match": "W/{etag}"}, 412),
        ({"If-Match": "*"}, 200),
        ({"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 412),
        ({"If-Unmodified-Since": "{last_modified}"}, 200),
        # If-Match failing wins over If-None-Match matching.
        ({"If-Match": '"other"', "If-None-Match": "{etag}"}, 412),
    ],
)
async def test_conditionals(server: Server, headers: dict[str, str], status: int) -> None:
    first = await _first(server)
    values = {"etag": first.header("ETag"), "last_modified": first.header("Last-Modified")}
    client = await RawClient.connect(server.port)
    response = await client.request(
        "/64k.bin", headers={k: v.format(**values) for k, v in headers.items()}
    )
    assert response.status == status
    if status == 304:
        assert response.body == b""
        assert response.header("ETag") == first.header("ETag")
        assert response.header("Last-Modified") == first.header("Last-Modified")
        assert response.header("Date") is not None
    if status == 200:
        assert response.body == first.body
    # The connection survives either way.
    assert (await client.request("/hello.txt")).status == 200
    await client.aclose()


async def test_single_range(server: Server, www: Path) -> None:
    data = (www / "1m.bin").read_bytes()
    client = await RawClient.connect(server.port)
    for spec, start, end in [
        ("0-0", 0, 0),
        ("100-199", 100, 199),
        ("-10", len(data) - 10, len(data) - 1),
        (f"{len(data) - 5}-", len(data) - 5, len(data) - 1),
        ("1000-99999999999", 1000, len(data) - 1),
    ]:
        response = await client.request("/1m.bin", headers={"Range": f"bytes={spec}"})
        assert response.status == 206, spec
        assert response.header("Content-Range") == f"bytes {start}-{end}/{len(data)}"
        assert response.body == data[start : end + 1]
    await client.aclose()


def _parse_multipart(response: Response) -> list[tuple[str, bytes]]:
    content_type = response.header("Content-Type") or ""
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", content_type)
    assert match, content_type
    boundary = match.group(1).encode()
    body = response.body
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    parts = []
    for chunk in body[: -len(b"\r\n--" + boundary + b"--\r\n")].split(b"--" + boundary + b"\r\n")[
        1:
    ]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields["Content-Range"], data))
        assert fields["Content-Type"] == "application/octet-stream"
    return parts


async def test_multipart_ranges(server: Server, www: Path) -> None:
    data = (www / "1m.bin").read_bytes()
    size = len(data)
    client = await RawClient.connect(server.port)
    response = await client.request("/1m.bin", headers={"Range": "bytes=0-9, 500000-500099, -3"})
    assert response.status == 206
    assert response.header("Content-Length") == str(len(response.body))
    assert _parse_multipart(response) == [
        (f"bytes 0-9/{size}", data[0:10]),
        (f"bytes 500000-500099/{size}", data[500000:500100]),
        (f"bytes {size - 3}-{size - 1}/{size}", data[-3:]),
    ]
    await client.aclose()


@pytest.mark.parametrize(
    ("range_header", "status"),
    [
        ("bytes=99999999-", 416),
        ("bytes=0-0,-0", 206),  # one satisfiable range is enough
        ("items=0-5", 200),  # unknown unit: ignored
        ("bytes=5-1", 200),  # invalid: ignored
        ("bytes=0-10,5-20", 200),  # overlapping: whole file, not a repeat
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(0, 400, 2)), 200),  # over the range cap
    ],
)
async def test_range_edge_cases(server: Server, www: Path, range_header: str, status: int) -> None:
    client = await RawClient.connect(server.port)
    response = await client.request("/64k.bin", headers={"Range": range_header})
    assert response.status == status
    if status == 416:
        assert response.header("Content-Range") == "bytes */65536"
    if status == 200:
        assert response.sha256 == sha256_file(www / "64k.bin")
    assert (await client.request("/hello.txt")).status == 200
    await client.aclose()


async def test_if_range(server: Server, www: Path) -> None:
    first = await _first(server)
    client = await RawClient.connect(server.port)
    etag = first.header("ETag") or ""
    matching = await client.request("/64k.bin", headers={"Range": "bytes=0-1", "If-Range": etag})
    assert matching.status == 206
    stale = await client.request("/64k.bin", headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert stale.status == 200
    assert stale.sha256 == sha256_file(www / "64k.bin")
    weak = await client.request("/64k.bin", headers={"Range": "bytes=0-1", "If-Range": "W/" + etag})
    assert weak.status == 200
    last_modified = first.header("Last-Modified") or ""
    dated = await client.request(
        "/64k.bin", headers={"Range": "bytes=0-1", "If-Range": last_modified}
    )
    assert dated.status == 206
    await client.aclose()


async def test_range_ignored_for_head(server: Server) -> None:
    client = await RawClient.connect(server.port)
    response = await client.request("/64k.bin", method="HEAD", headers={"Range": "bytes=0-1"})
    assert response.status == 200
    assert response.header("Content-Length") == "65536"
    await client.aclose()


async def test_directory_redirect_keeps_query_and_is_safe(server: Server) -> None:
    client = await RawClient.connect(server.port)
    response = await client.request("/sub?x=1&y=%20")
    assert response.status == 301
    assert response.header("Location") == "/sub/?x=1&y=%20"
    # Empty segments are merged before the Location is built: never "//host/...".
    response = await client.request("//sub")
    assert response.status == 301
    assert response.header("Location") == "/sub/"
    await client.aclose()


async def test_index_and_listing(server: Server) -> None:
    client = await RawClient.connect(server.port)
    index = await client.request("/sub/")
    assert index.status == 200
    assert index.body == b"<h1>sub</h1>\n"
    listing = await client.request("/list/")
    assert listing.status == 200
    assert listing.header("Content-Type") == "text/html; charset=utf-8"
    text = listing.body.decode()
    assert '<a href="./a%20dir/">a dir/</a>' in text
    assert "<img" not in text  # the hostile name is escaped
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.txt" in text
    await client.aclose()


async def test_listing_disabled(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, root=str(www), listing=False)
    client = await RawClient.connect(server.port)
    assert (await client.request("/list/")).status == 403
    assert (await client.request("/sub/")).status == 200  # index.html still served
    await client.aclose()


async def test_odd_names_are_reachable(server: Server) -> None:
    client = await RawClient.connect(server.port)
    assert (await client.request("/spaced%20name%20%2541.txt")).body == b"spaced\n"
    assert (await client.request("/%C3%BCn%C3%AF.txt")).body == b"unicode\n"
    await client.aclose()


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/missing.txt", 404),
        ("/hello.txt/", 404),
        ("/hello.txt/x", 404),
        ("/../../../../etc/passwd", 400),
        ("/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/sub/%2E%2e/../hello.txt", 400),
        ("/..%2fhello.txt", 400),
        ("/%c0%ae%c0%ae/etc/passwd", 400),
        ("/..\\hello.txt", 400),
        ("/%5c..%5chello.txt", 400),
        ("/hello.txt%00.png", 400),
        ("/%ff", 400),
        ("/" + "a" * 300, 404),
    ],
)
async def test_hostile_paths_over_raw_socket(server: Server, target: str, status: int) -> None:
    client = await RawClient.connect(server.port)
    await client.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode("latin-1"))
    response = await client.read_response()
    assert response.status == status
    assert b"root:" not in response.body
    await client.aclose()
    # The server still serves a normal request afterwards.
    assert (await _first(server, "/hello.txt")).status == 200


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    return secret


async def test_symlink_out_of_root_is_refused(
    nursery, www: Path, outside: Path, strategy: str
) -> None:
    os.symlink(outside, www / "escape.txt")
    os.symlink(outside.parent, www / "escape-dir")
    os.symlink(www / "hello.txt", www / "inside.txt")
    plain = await start_server(nursery, root=str(www), strategy=strategy)
    follow = await start_server(nursery, root=str(www), strategy=strategy, follow_symlinks=True)
    for server, expected in [
        (plain, {"escape": 403, "inside": 403}),
        (follow, {"escape": 404, "inside": 200}),
    ]:
        client = await RawClient.connect(server.port)
        escape = await client.request("/escape.txt")
        assert escape.status == expected["escape"]
        assert b"secret" not in escape.body
        escape_dir = await client.request("/escape-dir/secret.txt")
        assert escape_dir.status in (403, 404)
        assert b"secret" not in escape_dir.body
        inside = await client.request("/inside.txt")
        assert inside.status == expected["inside"]
        if inside.status == 200:
            assert inside.body == b"hello, world\n"
        await client.aclose()


async def test_fifo_does_not_hang(server: Server, www: Path) -> None:
    os.mkfifo(www / "fifo")
    with trio.fail_after(5):
        client = await RawClient.connect(server.port)
        response = await client.request("/fifo")
        assert response.status == 403
        assert (await client.request("/hello.txt")).status == 200
        await client.aclose()


@pytest.mark.parametrize(
    ("request_bytes", "status", "allow"),
    [
        (b"POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", 405, "GET, HEAD"),
        (b"DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 405, "GET, HEAD"),
        (b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 405, "GET, HEAD"),
        (b"PROPFIND / HTTP/1.1\r\nHost: t\r\n\r\n", 501, None),
    ],
)
async def test_methods(
    server: Server, request_bytes: bytes, status: int, allow: str | None
) -> None:
    client = await RawClient.connect(server.port)
    await client.send(request_bytes)
    response = await client.read_response()
    assert response.status == status
    assert response.header("Allow") == allow
    # The request was framed correctly, so the connection stays usable.
    assert (await client.request("/hello.txt")).status == 200
    await client.aclose()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n", 501),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    ],
)
async def test_bad_requests_get_an_answer_then_close(
    server: Server, request_bytes: bytes, status: int
) -> None:
    client = await RawClient.connect(server.port)
    await client.send(request_bytes)
    response = await client.read_response()
    assert response.status == status
    assert response.header("Connection") == "close"
    assert await client.read_to_eof() == b""
    await client.aclose()
    assert (await _first(server, "/hello.txt")).status == 200


async def test_no_fd_leak_after_many_connections(server: Server) -> None:
    await _first(server, "/1m.bin")  # warm up lazily created resources (pipes, open-file cache)
    before = open_fd_count()
    for _ in range(20):
        client = await RawClient.connect(server.port)
        await client.request("/1m.bin")
        await client.aclose()
    # Every server task is parked again (in accept) only once each connection has closed.
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().connections_open == 0
    assert open_fd_count() <= before


async def test_statistics_count_what_was_sent(server: Server, www: Path) -> None:
    before = server.statistics()
    client = await RawClient.connect(server.port)
    response = await client.request("/1m.bin")
    await client.aclose()
    after = server.statistics()
    assert hashlib.sha256(response.body).hexdigest() == sha256_file(www / "1m.bin")
    assert after.transfer.body_bytes - before.transfer.body_bytes == 1 << 20
    assert after.responses.get(200, 0) - before.responses.get(200, 0) == 1
    zero_copy = after.transfer.bytes_zero_copy - before.transfer.bytes_zero_copy
    assert zero_copy == (0 if server.config.strategy == "readwrite" else 1 << 20)
