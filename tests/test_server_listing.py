"""Directory listings, streamed: bounded, cancellable, framed, and conditional like nginx's.

Two levels. :class:`~zerocopy.server.listing.Listings` is driven directly on a socket pair,
where the test holds the listings' thread limiter and so decides exactly when each batch may
run: what a listing does after its client went, or when it is cancelled, is then exact, not a
race. Live tests check the same through a server and a raw client: framing (chunked for 1.1,
close-delimited for 1.0), HEAD that reads nothing, the cut and its note, conditionals.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, open_fd_count
from tests.test_files_listing import parse
from zerocopy.files import DirectoryReader, Root, read_entries, render_listing
from zerocopy.server.listing import BATCH, Listings
from zerocopy.server.sender import Sender
from zerocopy.transfer import Counters, PeerGone, TransferError, make_strategy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from zerocopy.server import Server


def make_entries(directory: Path, count: int) -> Path:
    directory.mkdir()
    for index in range(count):
        (directory / f"f{index:05d}").write_bytes(b"x" * (index % 7))
    return directory


def decode_chunks(data: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether it ended with the last chunk."""
    chunks: list[bytes] = []
    while data:
        size_line, sep, data = data.partition(b"\r\n")
        assert sep, "truncated chunk-size line"
        size = int(size_line, 16)
        if size == 0:
            assert data == b"\r\n"
            return chunks, True
        assert data[size : size + 2] == b"\r\n"
        chunks.append(data[:size])
        data = data[size + 2 :]
    return chunks, False


class Rig:
    """A :class:`Listings` with a small batch, a socket pair and a reader of its far end."""

    def __init__(self, directory: Path, *, batch: int = 4, max_entries: int = 10_000) -> None:
        self.directory = directory
        self.root = Root(str(directory))
        self.listings = Listings(max_entries=max_entries, root=self.root, batch=batch)
        counters = Counters()
        self.strategy = make_strategy("readwrite", counters)
        self.sender = Sender(self.strategy, counters, send_timeout=30.0)
        self.server, self.client = socket.socketpair()
        self.server.setblocking(False)
        self.client.setblocking(False)
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    async def stream(self, framing: str = "chunked") -> int:
        return await self.listings.stream(
            self.server,
            self.sender,
            fd=self.fd,
            path="/d/",
            framing=framing,  # type: ignore[arg-type]
        )

    async def read_all(self) -> bytes:
        data = bytearray()
        while True:
            await trio.lowlevel.wait_readable(self.client)
            try:
                chunk = self.client.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return bytes(data)
            data += chunk

    def reset_client(self) -> None:
        """Close the client's end unread, after the server sent it the response head: the
        server's end then sees ECONNRESET, as with a TCP client that leaves without reading
        (for TCP, the client's kernel answers what arrives after its close with a reset)."""
        self.server.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        trio.lowlevel.notify_closing(self.client)
        self.client.close()

    def close(self) -> None:
        for sock in (self.server, self.client):
            if sock.fileno() != -1:
                trio.lowlevel.notify_closing(sock)
                sock.close()
        os.close(self.fd)
        self.root.close()
        self.strategy.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    built = Rig(make_entries(tmp_path / "d", 50))
    yield built
    built.close()


# -- the stream -------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "close"])
async def test_the_streamed_page_is_the_whole_page(rig: Rig, framing: str) -> None:
    fds = open_fd_count()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.stream, framing)
        await trio.testing.wait_all_tasks_blocked()
        received = b""
        with trio.fail_after(10):
            while len(received) < 100 or not received.endswith((b"</html>\n", b"0\r\n\r\n")):
                await trio.lowlevel.wait_readable(rig.client)
                received += rig.client.recv(1 << 20)
    entries = read_entries(rig.fd, follow_symlinks=False)
    expected = render_listing(entries, "/d/")
    if framing == "chunked":
        chunks, ended = decode_chunks(received)
        assert ended
        # One chunk per batch of rows (the first carries the page's head, the last its tail).
        assert len(chunks) == -(-50 // 4) + 1
        assert b"".join(chunks) == expected
    else:
        assert received == expected
    stats = rig.listings.statistics()
    assert (stats.started, stats.completed, stats.stopped, stats.cut) == (1, 1, 0, 0)
    assert stats.entries_read == 50
    assert open_fd_count() == fds  # the directory stream is closed


async def test_a_gone_client_stops_the_listing_within_one_batch(rig: Rig) -> None:
    # The test holds the only listing thread: the stream checks the client (still there),
    # then waits for the thread. The client resets meanwhile. The batch in progress when the
    # client went is the last one read: nothing of the other 46 entries is.
    limiter = rig.listings.limiter
    await limiter.acquire()
    errors: list[BaseException] = []

    async def stream() -> None:
        try:
            await rig.stream()
        except PeerGone as exc:
            errors.append(exc)

    fds = open_fd_count()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream)
        await trio.testing.wait_all_tasks_blocked()
        assert limiter.statistics().tasks_waiting == 1
        rig.reset_client()
        limiter.release()
    assert len(errors) == 1
    stats = rig.listings.statistics()
    assert (stats.started, stats.completed, stats.stopped) == (1, 0, 1)
    assert stats.entries_read == 4
    assert stats.batches == 1
    assert open_fd_count() == fds - 1  # the client's end; the directory stream is closed


async def test_a_half_closed_client_still_gets_the_page(rig: Rig) -> None:
    # End of file is not "gone": the client may have shut down its sending side only.
    rig.client.shutdown(socket.SHUT_WR)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.stream)
        with trio.fail_after(10):
            received = b""
            while not received.endswith(b"0\r\n\r\n"):
                await trio.lowlevel.wait_readable(rig.client)
                received += rig.client.recv(1 << 20)
    assert decode_chunks(received)[1]
    assert rig.listings.statistics().completed == 1


async def test_cancellation_waits_for_the_batch_in_progress_only(rig: Rig) -> None:
    # Shutdown cancels a listing: it ends once the batch in its thread is done, and reads no
    # other batch.
    limiter = rig.listings.limiter
    await limiter.acquire()
    fds = open_fd_count()
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def stream() -> None:
            with scope:
                await rig.stream()

        nursery.start_soon(stream)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        limiter.release()
    stats = rig.listings.statistics()
    assert (stats.completed, stats.stopped) == (0, 1)
    assert stats.entries_read <= 4
    assert open_fd_count() == fds


async def test_listings_take_one_thread_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # However many listings run, they use the listings' own thread(s), never more: the
    # offload threads and trio's default pool stay free for everything else.
    busy = 0
    most = 0
    real_read = DirectoryReader.read

    def read(self: DirectoryReader, count: int) -> bool:
        nonlocal busy, most
        busy += 1  # in a worker thread: a race here would show as a higher count
        most = max(most, busy)
        try:
            return real_read(self, count)
        finally:
            busy -= 1

    monkeypatch.setattr(DirectoryReader, "read", read)
    rigs = [Rig(make_entries(tmp_path / f"d{index}", 40), batch=2) for index in range(4)]
    listings = rigs[0].listings
    assert listings.limiter.total_tokens == 1

    async def list_then_close(each: Rig) -> None:
        await each.stream()
        each.server.shutdown(socket.SHUT_WR)

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for each in rigs:
                    each.listings = listings  # one server: one Listings
                    nursery.start_soon(list_then_close, each)
                    nursery.start_soon(each.read_all)
    finally:
        for each in rigs:
            each.close()
    assert most == 1
    stats = listings.statistics()
    assert (stats.completed, stats.entries_read) == (4, 4 * 40)


async def test_a_directory_that_fails_mid_listing_ends_the_body_unfinished(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = DirectoryReader.read
    calls = 0

    def failing(self: DirectoryReader, count: int) -> bool:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self, count)

    monkeypatch.setattr(DirectoryReader, "read", failing)
    fds = open_fd_count()
    with pytest.raises(TransferError, match="Input/output error"):
        await rig.stream()
    assert open_fd_count() == fds  # the directory stream is closed
    rig.server.shutdown(socket.SHUT_WR)
    received = await rig.read_all()
    assert received == b""  # nothing was rendered yet: no chunk, and never the last one
    assert rig.listings.statistics().stopped == 1


# -- live: through a server --------------------------------------------------------------------


async def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until ``condition()`` holds. For what a server does after a worker thread
    returns, which no event announces; polls every 10 ms, and fails after ``seconds``."""
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError(f"not true within {seconds} s")


@pytest.fixture
async def site(nursery: trio.Nursery, www: Path) -> AsyncIterator[Server]:
    make_entries(www / "many", 12)
    before = open_fd_count()
    server = await start_server(nursery, root=str(www), max_listing_entries=5)
    yield server
    await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"


async def test_a_listing_is_chunked_and_the_connection_goes_on(site: Server) -> None:
    client = await RawClient.connect(site.port)
    try:
        first = await client.request("/list/")
        assert first.status == 200
        assert first.header("Transfer-Encoding") == "chunked"
        assert first.header("Content-Length") is None
        assert first.header("Connection") is None
        assert first.header("ETag") is None
        assert first.header("Last-Modified") is None
        assert first.header("Cache-Control") == "no-cache"
        assert [text for _, text in parse(first.body).links] == [
            "../",
            "a dir/",
            '<img src=x onerror="alert(1)">.txt',
            "b.txt",
        ]
        # The connection is still in step: the next response is the next request's.
        second = await client.request("/hello.txt")
        assert second.body == b"hello, world\n"
    finally:
        await client.aclose()


async def test_http10_gets_a_listing_delimited_by_the_close(site: Server) -> None:
    client = await RawClient.connect(site.port)
    try:
        await client.send(b"GET /list/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = await client.read_response()  # no framing: read to the end of the stream
    finally:
        await client.aclose()
    assert response.status == 200
    assert response.header("Connection") == "close"
    assert response.header("Transfer-Encoding") is None
    assert response.body.endswith(b"</html>\n")
    assert len(parse(response.body).links) == 4


async def test_head_of_a_listing_reads_nothing(site: Server) -> None:
    client = await RawClient.connect(site.port)
    try:
        head = await client.request("/many/", method="HEAD")
        after = await client.request("/hello.txt")  # nothing was sent after the head
    finally:
        await client.aclose()
    assert head.status == 200
    assert head.header("Content-Type") == "text/html; charset=utf-8"
    assert head.header("Content-Length") is None
    assert head.header("Transfer-Encoding") is None
    assert after.body == b"hello, world\n"
    stats = site.statistics().listings
    assert (stats.started, stats.entries_read, stats.batches) == (0, 0, 0)


async def test_a_directory_over_the_limit_is_cut_with_a_note(site: Server, www: Path) -> None:
    client = await RawClient.connect(site.port)
    try:
        response = await client.request("/many/")
    finally:
        await client.aclose()
    page = parse(response.body)
    shown = [href.removeprefix("./") for href, _ in page.links[1:]]
    assert len(shown) == 5
    assert set(shown) < set(os.listdir(www / "many"))
    assert shown == sorted(shown)
    assert b"more than 5 entries" in response.body
    await trio.testing.wait_all_tasks_blocked()  # the stream counts after its last send
    stats = site.statistics().listings
    assert (stats.started, stats.completed, stats.cut, stats.entries_read) == (1, 1, 1, 5)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    ("field", "status"),
    [
        ('If-Match: "nope"', 412),
        ("If-None-Match: *", 304),
        ("If-Match: *", 200),
        ('If-None-Match: "nope"', 200),
        ("If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT", 200),
    ],
)
async def test_conditionals_on_a_listing(
    site: Server, method: str, field: str, status: int
) -> None:
    # RFC 9110 §13.1.1-2 and nginx: a listing exists, so `*` matches, and has no entity-tag,
    # so no tag does. A 412 or 304 reads nothing.
    name, _, value = field.partition(": ")
    client = await RawClient.connect(site.port)
    try:
        response = await client.request("/list/", method, {name: value})
        after = await client.request("/hello.txt")
    finally:
        await client.aclose()
    assert response.status == status
    assert after.body == b"hello, world\n"
    started = site.statistics().listings.started
    assert started == (1 if (status, method) == (200, "GET") else 0)
    if status == 304:
        assert response.header("Cache-Control") == "no-cache"


async def test_a_client_that_goes_stops_its_listing(nursery: trio.Nursery, tmp_path: Path) -> None:
    # A client that reads the head and resets: the listing of 8 batches stops within one or
    # two batches of the reset (the batch in progress, and at most one begun before the
    # reset reached the server), and nothing keeps running for it.
    make_entries(tmp_path / "big", 8 * BATCH)
    server = await start_server(nursery, root=str(tmp_path))
    try:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.setblocking(False)
        client.send(b"GET /big/ HTTP/1.1\r\nHost: t\r\n\r\n")
        received = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received:
                await trio.lowlevel.wait_readable(client)
                received += client.recv(100)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        trio.lowlevel.notify_closing(client)
        client.close()
        await eventually(lambda: server.statistics().listings.stopped > 0)
        stats = server.statistics().listings
        assert (stats.started, stats.completed, stats.stopped) == (1, 0, 1)
        assert stats.entries_read <= 2 * BATCH
    finally:
        await stop_server(server)
