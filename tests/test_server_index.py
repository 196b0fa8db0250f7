"""``index.html``: served when it is a readable regular file, refused as any file is, skipped
for a listing when it is missing or a directory; and every descriptor opened to decide that is
closed, whichever way the response goes (with a span, without one, or not at all).

The tests run as root, which reads any file whatever its mode; so "refused" is a symlink (the
server refuses every symlink by default) or a FIFO, never a ``chmod``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, Response, open_fd_count
from tests.test_files_listing import parse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from zerocopy.server import Server

INDEX = b"<h1>index</h1>\n"


async def get(server: Server, target: str, method: str = "GET", **headers: str) -> RawClient:
    client = await RawClient.connect(server.port)
    await client.send(
        (
            f"{method} {target} HTTP/1.1\r\nHost: t\r\n"
            + "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        ).encode()
    )
    return client


async def fetch(server: Server, target: str, method: str = "GET", **headers: str) -> Response:
    client = await get(server, target, method, **headers)
    try:
        return await client.read_response(head_only=method == "HEAD")
    finally:
        await client.aclose()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "plain").mkdir()
    (root / "plain" / "index.html").write_bytes(INDEX)
    (root / "empty").mkdir()
    (root / "empty" / "index.html").write_bytes(b"")
    (root / "dir-index").mkdir()
    (root / "dir-index" / "index.html").mkdir()
    (root / "dir-index" / "index.html" / "inside.txt").write_text("i")
    (root / "dir-index" / "other.txt").write_text("o")
    (root / "link-index").mkdir()
    (root / "link-index" / "real.html").write_bytes(INDEX)
    os.symlink("real.html", root / "link-index" / "index.html")
    (root / "out-index").mkdir()
    (tmp_path / "secret.html").write_text("secret")
    os.symlink(tmp_path / "secret.html", root / "out-index" / "index.html")
    (root / "out-index" / "shown.txt").write_text("s")
    (root / "fifo-index").mkdir()
    os.mkfifo(root / "fifo-index" / "index.html")
    (root / "no-index").mkdir()
    (root / "no-index" / "a.txt").write_text("a")
    return root


@pytest.fixture
async def server(nursery: trio.Nursery, tree: Path) -> AsyncIterator[Server]:
    before = open_fd_count()
    server = await start_server(nursery, root=str(tree))
    yield server
    await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"


async def test_an_index_is_served_for_its_directory(server: Server) -> None:
    response = await fetch(server, "/plain/")
    assert (response.status, response.body) == (200, INDEX)
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert response.header("ETag") is not None


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/link-index/", 403),  # a symlink, and symlinks are refused
        ("/fifo-index/", 403),  # not a regular file; never opened, so it cannot hang
    ],
)
async def test_a_refused_index_refuses_the_directory(
    server: Server, target: str, status: int
) -> None:
    # As nginx: an index that exists but cannot be served is an error, not a cue to list
    # what is next to it.
    response = await fetch(server, target)
    assert response.status == status
    assert b"<table>" not in response.body
    assert server.statistics().listings.started == 0


async def test_an_index_leading_out_of_the_root_is_as_missing(
    nursery: trio.Nursery, tree: Path
) -> None:
    # With --follow-symlinks, a link out of the root is a 404, the same as a missing file:
    # the directory is listed, and the link is not in the listing.
    server = await start_server(nursery, root=str(tree), follow_symlinks=True)
    try:
        listing = await fetch(server, "/out-index/")
        served = await fetch(server, "/link-index/")  # a link that stays inside is served
    finally:
        await stop_server(server)
    assert listing.status == 200
    assert [text for _, text in parse(listing.body).links] == ["../", "shown.txt"]
    assert b"secret" not in listing.body
    assert (served.status, served.body) == (200, INDEX)


async def test_an_index_that_is_a_directory_lists_its_parent(server: Server) -> None:
    response = await fetch(server, "/dir-index/")
    assert response.status == 200
    assert [text for _, text in parse(response.body).links] == ["../", "index.html/", "other.txt"]


@pytest.mark.parametrize(
    ("target", "method", "headers", "status"),
    [
        ("/empty/", "GET", {}, 200),  # an empty index: a head and no body
        ("/plain/", "HEAD", {}, 200),
        ("/plain/", "GET", {"If_None_Match": "*"}, 304),
        ("/plain/", "GET", {"If_Match": '"nope"'}, 412),
        ("/plain/", "GET", {"Range": "bytes=99-"}, 416),
        ("/dir-index/", "HEAD", {}, 200),  # a listing's HEAD: two directories opened
        ("/dir-index/", "GET", {"If_None_Match": "*"}, 304),
        ("/fifo-index/", "GET", {}, 403),
    ],
)
async def test_responses_without_a_span_close_what_they_opened(
    server: Server, target: str, method: str, headers: dict[str, str], status: int
) -> None:
    # Each of these opens the directory and its index (or tries to), then sends a head, or a
    # head and bytes from memory, but nothing from a file. Whatever was opened is closed or
    # given back to the open-file cache: many of them leave the descriptor count as one did.
    client = await get(server, target, method, **headers)
    try:
        first = await client.read_response(head_only=method == "HEAD")
        assert first.status == status
        # Counted when the server is idle: it closes what it opened after the response went
        # out, and the client may read the response before that.
        await trio.testing.wait_all_tasks_blocked()
        baseline = open_fd_count()
        lines = [f"{method} {target} HTTP/1.1", "Host: t"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        for _ in range(50):
            await client.send(request)
            again = await client.read_response(head_only=method == "HEAD")
            assert again.status == status
        await trio.testing.wait_all_tasks_blocked()
        assert open_fd_count() == baseline
    finally:
        await client.aclose()


async def test_a_missing_index_is_looked_for_without_the_open_file_cache(server: Server) -> None:
    # A cache miss adds an inotify watch on the directory and removes it again; in a
    # directory of 200,000 names the kernel takes about 8 ms for each, on the event loop.
    # So the probe for a missing index.html goes to the root directly: listing the
    # directory costs the cache nothing. An index that exists is cached as any file is.
    before = server.statistics().files
    for _ in range(3):
        assert (await fetch(server, "/no-index/")).status == 200
        assert (await fetch(server, "/no-index/", "HEAD")).status == 200
    after = server.statistics().files
    # The directory itself is opened through the cache (and not kept: it is no file).
    assert after.misses - before.misses == 6
    assert after.entries == before.entries
    for _ in range(3):
        assert (await fetch(server, "/plain/", If_None_Match='"x"')).body == INDEX
    cached = server.statistics().files
    assert cached.entries == after.entries + 1
    assert cached.hits - after.hits >= 2
