"""Directories as tar downloads, through a live server and real clients, on every strategy.

curl downloads the archive; GNU tar lists and extracts it, bsdtar and Python's ``tarfile``
read it too, and every file is compared (SHA-256) with the tree it came from. The tree holds
what an archive must carry (nested and empty directories, empty files, a file of exactly 512
bytes, names and paths over 100 bytes, UTF-8 names, a file over the 2 MiB chunk cap) and what
it must leave out (a dot directory, a symlink out of the root, a FIFO, a socket). The expected
tree is computed here with ``os.walk``, not by the server's walk.

Then the tree is changed under the archive (between the walk and the send, and while a file
is being sent), and swapped concurrently with a thread: the download is either whole and
right, or cut short (the server closes before Content-Length), never padded or wrong.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import logging
import os
import re
import shutil
import socket
import stat
import struct
import tarfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import pytest
import trio

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, open_fd_count, sha256_file
from tests.test_clients import _need, _run
from tests.test_tls import Certs
from zerocopy.cli import _server_config, parse_args
from zerocopy.files import Opened, Root
from zerocopy.files.tar import TreeWalker
from zerocopy.http import DateCache
from zerocopy.server import Server
from zerocopy.server.respond import Prepared
from zerocopy.server.tar import Archives, TarLimits

ALL_STRATEGIES: Final = ["auto", "sendfile", "splice", "readwrite"]
SECRET: Final = b"TOP SECRET, outside the root\n"
LONG_NAME: Final = "long-" + "n" * 115 + ".txt"  # 124 bytes
UTF8_NAMES: Final = ("ünïcödé.txt", "日本語")
BIG: Final = 3 * 1024 * 1024 + 5  # over the 2 MiB cap of one sendfile/splice call


@dataclass
class Tree:
    root: Path
    top: Path
    outside: Path

    def expected(self, top: Path | None = None, name: str | None = None) -> dict[str, str]:
        """Archive path -> SHA-256 of the file, or ``"dir"``: what a GET could fetch under
        ``top``, found with ``os.walk`` (dot names, symlinks and special files left out)."""
        top = top or self.top
        name = name or top.name
        found = {name + "/": "dir"}
        for current, dirs, files in os.walk(top):
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".") and not os.path.islink(os.path.join(current, d))
            ]
            relative = os.path.relpath(current, top)
            prefix = name if relative == "." else f"{name}/{relative}"
            for d in dirs:
                found[f"{prefix}/{d}/"] = "dir"
            for f in files:
                path = Path(current) / f
                if f.startswith(".") or not stat.S_ISREG(path.lstat().st_mode):
                    continue
                found[f"{prefix}/{f}"] = sha256_file(path)
        return found

    @property
    def data_bytes(self) -> int:
        return sum(
            (self.root / path).stat().st_size
            for path, digest in self.expected().items()
            if digest != "dir"
        )


def build_tree(base: Path) -> Tree:
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = base / "srv"
    top = root / "d"
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "empty-dir").mkdir()
    (top / "a.txt").write_bytes(b"hello\n")
    (top / "empty").write_bytes(b"")
    for size in (511, 512, 513):
        (top / f"block{size}").write_bytes(os.urandom(size))
    (top / "big.bin").write_bytes(os.urandom(BIG))
    (top / "run.sh").write_bytes(b"#!/bin/sh\necho run\n")
    (top / "run.sh").chmod(0o755)
    (top / LONG_NAME).write_bytes(b"a long name\n")
    (top / UTF8_NAMES[0]).write_bytes("ünïcödé\n".encode())
    (top / UTF8_NAMES[1]).mkdir()
    (top / UTF8_NAMES[1] / "ファイル.txt").write_bytes("ファイル\n".encode())
    deep = top / "sub" / "deeper" / ("p" * 60) / ("q" * 60)  # a path over 100 bytes
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_bytes(b"leaf\n")
    (top / "sub" / "b.txt").write_bytes(b"b" * 1000)
    (top / "sub" / "deeper" / "c.txt").write_bytes(os.urandom(70_000))
    # Left out: a dot directory and file, links, special files.
    (top / ".git").mkdir()
    (top / ".git" / "config").write_bytes(b"[core]\n")
    (top / ".env").write_bytes(b"KEY=secret\n")
    os.symlink(outside / "secret.txt", top / "link-out")
    os.symlink(outside, top / "dir-out")
    os.symlink("a.txt", top / "link-in")
    os.mkfifo(top / "fifo")
    with socket.socket(socket.AF_UNIX) as listener:
        cwd = os.getcwd()
        os.chdir(top)
        try:
            listener.bind("sock")
        finally:
            os.chdir(cwd)
    (root / "index-dir").mkdir()
    (root / "index-dir" / "index.html").write_bytes(b"<h1>index</h1>\n")
    (root / "root-file.txt").write_bytes(b"at the top\n")
    return Tree(root, top, outside)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return build_tree(tmp_path)


@pytest.fixture(params=ALL_STRATEGIES)
def any_strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def site(nursery: trio.Nursery, tree: Tree, any_strategy: str) -> AsyncIterator[Server]:
    before = open_fd_count()
    server = await start_server(nursery, root=str(tree.root), strategy=any_strategy)
    yield server
    await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"


def _archives(server: Server) -> Archives:
    archives = server._state.responder.archives
    assert archives is not None
    return archives


def check_extracted(directory: Path, expected: dict[str, str]) -> None:
    found: dict[str, str] = {}
    for current, dirs, files in os.walk(directory):
        relative = os.path.relpath(current, directory)
        prefix = "" if relative == "." else relative + "/"
        for d in dirs:
            found[f"{prefix}{d}/"] = "dir"
        for f in files:
            found[f"{prefix}{f}"] = sha256_file(Path(current) / f)
    assert found == expected


def check_tarfile(archive: bytes, expected: dict[str, str]) -> list[tarfile.TarInfo]:
    found: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as reader:
        members = reader.getmembers()
        for info in members:
            if info.isdir():
                found[info.name + "/"] = "dir"
            else:
                assert info.isreg(), info.name
                extracted = reader.extractfile(info)
                assert extracted is not None
                found[info.name] = hashlib.sha256(extracted.read()).hexdigest()
    assert found == expected
    return members


# -- real clients ----------------------------------------------------------------------------


async def test_curl_downloads_and_tar_extracts(site: Server, tree: Tree, tmp_path: Path) -> None:
    curl = _need("curl")
    tar = _need("tar")
    archive = tmp_path / "d.tar"
    headers = tmp_path / "headers"
    before = site.statistics().transfer
    await _run(
        curl,
        "-sS",
        "-D",
        str(headers),
        "-o",
        str(archive),
        f"http://127.0.0.1:{site.port}/d/?download=tar",
    )
    after = site.statistics().transfer
    head = headers.read_bytes()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Type: application/x-tar\r\n" in head
    assert (
        b"\r\nContent-Disposition: attachment; filename=\"d.tar\"; filename*=UTF-8''d.tar\r\n"
        in head
    )
    length = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", head).group(1))  # type: ignore[union-attr]
    assert archive.stat().st_size == length
    expected = tree.expected()

    # GNU tar: the listing shows every member and nothing else; extraction gives the tree.
    listed = await _run(tar, "-tf", str(archive))
    assert sorted(listed.stdout.decode().splitlines()) == sorted(expected)
    verbose = await _run(tar, "-tvf", str(archive))
    assert re.search(rb"-rw-r--r-- root/root +%d .* d/big\.bin\n" % BIG, verbose.stdout)
    out = tmp_path / "gnu"
    out.mkdir()
    await _run(tar, "-xf", str(archive), "-C", str(out))
    check_extracted(out, expected)
    assert os.access(out / "d" / "run.sh", os.X_OK)
    assert (out / "d" / "a.txt").stat().st_mtime == int((tree.top / "a.txt").stat().st_mtime)

    # Python's tarfile.
    check_tarfile(archive.read_bytes(), expected)

    # File data went through the strategy: zero bytes through user space with sendfile and
    # splice (the head, the tar headers and the padding are the only bytes copied out).
    data = tree.data_bytes
    copied = after.bytes_copied_out - before.bytes_copied_out
    zero_copy = after.bytes_zero_copy - before.bytes_zero_copy
    if site.config.strategy == "readwrite":
        assert zero_copy == 0
        assert copied == len(head) + length
    else:
        assert zero_copy == data
        assert copied == len(head) + length - data
    stats = site.statistics().archives
    assert (stats.walks, stats.started, stats.completed, stats.stopped) == (1, 1, 1, 0)
    assert stats.members == sum(
        1 for v in expected.values() if v != "dir" and v != hashlib.sha256(b"").hexdigest()
    )


async def test_bsdtar_extracts(site: Server, tree: Tree, tmp_path: Path) -> None:
    bsdtar = shutil.which("bsdtar")
    if bsdtar is None:
        pytest.skip("bsdtar is not installed (apt-get install libarchive-tools)")
    curl = _need("curl")
    archive = tmp_path / "d.tar"
    await _run(curl, "-sS", "-o", str(archive), f"http://127.0.0.1:{site.port}/d/?download=tar")
    listed = await _run(bsdtar, "-tf", str(archive))
    assert sorted(name.rstrip("/") for name in listed.stdout.decode().splitlines()) == sorted(
        name.rstrip("/") for name in tree.expected()
    )
    out = tmp_path / "bsd"
    out.mkdir()
    await _run(bsdtar, "-xf", str(archive), "-C", str(out))
    check_extracted(out, tree.expected())


def _stdlib_exchange(
    port: int, requests: list[tuple[str, str]]
) -> list[tuple[int, dict[str, str], bytes]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    results = []
    try:
        for method, target in requests:  # one keep-alive connection for all of them
            connection.request(method, target)
            response = connection.getresponse()
            results.append((response.status, dict(response.getheaders()), response.read()))
    finally:
        connection.close()
    return results


async def test_stdlib_client_keeps_the_connection_and_head_walks_only(
    site: Server, tree: Tree
) -> None:
    target = "/d/?download=tar"
    results = await trio.to_thread.run_sync(
        _stdlib_exchange, site.port, [("HEAD", target), ("GET", target), ("GET", "/d/a.txt")]
    )
    (head_status, head_fields, head_body), (status, fields, body), (_, _, hello) = results
    assert (head_status, status) == (200, 200)
    assert head_body == b""
    assert int(head_fields["Content-Length"]) == len(body)
    for name in ("Content-Length", "Content-Type", "Content-Disposition", "Cache-Control"):
        assert head_fields[name] == fields[name]
    assert "Accept-Ranges" not in fields
    assert "ETag" not in fields
    assert hello == b"hello\n"  # the framing held: the next response is the next request's
    check_tarfile(body, tree.expected())
    stats = site.statistics().archives
    assert (stats.walks, stats.started, stats.completed) == (2, 1, 1)  # HEAD walked, sent nothing


async def test_the_root_is_named_after_its_directory(site: Server, tree: Tree) -> None:
    client = await RawClient.connect(site.port)
    try:
        response = await client.request("/?download=tar")
    finally:
        await client.aclose()
    assert response.status == 200
    assert response.header("Content-Disposition") == (
        "attachment; filename=\"srv.tar\"; filename*=UTF-8''srv.tar"
    )
    members = check_tarfile(response.body, tree.expected(tree.root, "srv"))
    assert members[0].name == "srv"


async def test_a_root_without_a_name_is_called_root() -> None:
    root = Root("/")
    try:
        archives = Archives(
            root=root,
            dates=DateCache(),
            limiter=trio.CapacityLimiter(1),
            limits=TarLimits(),
            dotfiles=False,
        )
        assert archives.archive_name(()) == "root"
        assert archives.archive_name(("ünï",)) == "ünï"
    finally:
        root.close()


async def test_a_utf8_directory_name(site: Server, tree: Tree) -> None:
    client = await RawClient.connect(site.port)
    try:
        response = await client.request(f"/d/{quote(UTF8_NAMES[1])}/?download=tar")
    finally:
        await client.aclose()
    assert response.status == 200
    assert response.header("Content-Disposition") == (
        "attachment; filename=\"___.tar\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.tar"
    )
    check_tarfile(response.body, tree.expected(tree.top / UTF8_NAMES[1]))


async def test_tar_over_tls(
    nursery: trio.Nursery, tree: Tree, any_strategy: str, tmp_path: Path
) -> None:
    certs = Certs(tmp_path)
    server = await start_server(
        nursery,
        root=str(tree.root),
        strategy=any_strategy,
        tls_cert=str(certs.cert),
        tls_key=str(certs.key),
    )
    try:
        tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
        stream = trio.SSLStream(tcp, certs.client_context(), server_hostname="localhost")
        await stream.do_handshake()
        client = RawClient(stream)  # type: ignore[arg-type]
        try:
            response = await client.request("/d/?download=tar")
            second = await client.request("/d/a.txt")
        finally:
            await client.aclose()
        assert response.status == 200
        assert int(response.header("Content-Length") or 0) == len(response.body)
        check_tarfile(response.body, tree.expected())
        assert second.body == b"hello\n"
    finally:
        await stop_server(server)


# -- what else a tar request can get ---------------------------------------------------------


async def _exchange(
    server: Server, *requests: tuple[str, dict[str, str]], method: str = "GET"
) -> list[Any]:
    client = await RawClient.connect(server.port)
    try:
        return [await client.request(target, method, headers) for target, headers in requests]
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        ({"tar_max_files": 5}, b"holds more than 5 entries"),
        ({"tar_max_bytes": 100_000}, b"larger than 100,000 bytes"),
    ],
)
async def test_past_a_limit_is_413(
    nursery: trio.Nursery, tree: Tree, options: dict[str, int], detail: bytes
) -> None:
    server = await start_server(nursery, root=str(tree.root), **options)
    try:
        refused, after = await _exchange(server, ("/d/?download=tar", {}), ("/d/a.txt", {}))
        assert refused.status == 413
        assert refused.header("Content-Type") == "text/plain; charset=utf-8"
        assert detail in refused.body
        assert refused.header("Connection") is None  # the connection goes on
        assert after.body == b"hello\n"
        (head_refused,) = await _exchange(server, ("/d/?download=tar", {}), method="HEAD")
        assert head_refused.status == 413
        stats = server.statistics().archives
        assert (stats.walks, stats.refused, stats.started) == (2, 2, 0)
    finally:
        await stop_server(server)


async def test_the_limit_counts_names_read_not_only_members(
    nursery: trio.Nursery, tree: Tree
) -> None:
    # Every name in every directory walked (dot directories are not), listed or not.
    count = 0
    for _, dirs, files in os.walk(tree.top):
        count += len(dirs) + len(files)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    for limit, status in [(count, 200), (count - 1, 413)]:
        server = await start_server(nursery, root=str(tree.root), tar_max_files=limit)
        try:
            (response,) = await _exchange(server, ("/d/?download=tar", {}))
            assert response.status == status, (limit, count)
        finally:
            await stop_server(server)


async def test_no_tar_makes_the_query_a_query(nursery: trio.Nursery, tree: Tree) -> None:
    server = await start_server(nursery, root=str(tree.root), tar=False)
    try:
        listing, plain = await _exchange(server, ("/d/?download=tar", {}), ("/d/", {}))
    finally:
        await stop_server(server)
    for response in (listing, plain):
        assert response.status == 200
        assert response.header("Content-Type") == "text/html; charset=utf-8"
        assert b"?download=tar" not in response.body
    server = await start_server(nursery, root=str(tree.root))
    try:
        (offered,) = await _exchange(server, ("/d/", {}))
    finally:
        await stop_server(server)
    assert b'<a href="?download=tar">' in offered.body


async def test_no_listing_means_no_archive(nursery: trio.Nursery, tree: Tree) -> None:
    server = await start_server(nursery, root=str(tree.root), listing=False)
    try:
        (response,) = await _exchange(server, ("/d/?download=tar", {}))
    finally:
        await stop_server(server)
    assert response.status == 403


async def test_a_directory_with_an_index_serves_its_index(site: Server) -> None:
    (response,) = await _exchange(site, ("/index-dir/?download=tar", {}))
    assert (response.status, response.body) == (200, b"<h1>index</h1>\n")


@pytest.mark.parametrize(
    ("headers", "status"), [({"If-None-Match": "*"}, 304), ({"If-Match": '"x"'}, 412)]
)
async def test_conditionals_need_no_walk(
    site: Server, headers: dict[str, str], status: int
) -> None:
    (response,) = await _exchange(site, ("/d/?download=tar", headers))
    assert response.status == status
    assert site.statistics().archives.walks == 0


# -- the tree changes under the archive -------------------------------------------------------


def _change(tree: Tree, how: str) -> None:
    victim = tree.top / "sub" / "b.txt"
    if how == "shrink":
        victim.write_bytes(b"b" * 10)
    elif how == "grow":
        victim.write_bytes(b"GROWN" * 1000)
    elif how == "vanish":
        victim.unlink()
    elif how == "symlink-out":
        victim.unlink()
        os.symlink(tree.outside / "secret.txt", victim)
    elif how == "symlink-in":
        victim.unlink()
        (tree.top / "same-size").write_bytes(b"S" * 1000)
        os.symlink("../same-size", victim)
    elif how == "directory":
        victim.unlink()
        victim.mkdir()
    elif how == "dir-to-symlink":
        shutil.rmtree(tree.top / "sub" / "deeper")
        os.symlink(tree.outside, tree.top / "sub" / "deeper")
    else:
        raise AssertionError(how)


async def _cut_download(port: int, target: str) -> tuple[int, bytes, bool]:
    """GET ``target``; returns the announced length, the body bytes received, and whether the
    server closed the connection before the whole length."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = b""
        with trio.fail_after(20):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(1 << 16)
                assert chunk, data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK"), head
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            while len(body) < length:
                chunk = await stream.receive_some(1 << 16)
                if not chunk:
                    return length, body, True
                body += chunk
        return length, body, False
    finally:
        await stream.aclose()


@pytest.mark.parametrize(
    "how", ["shrink", "grow", "vanish", "symlink-out", "symlink-in", "directory", "dir-to-symlink"]
)
async def test_a_member_changed_after_the_walk_ends_the_connection(
    site: Server,
    tree: Tree,
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_send = Archives.send

    async def send(self: Archives, sock: Any, sender: Any, **kwargs: Any) -> int:
        _change(tree, how)  # after the walk and the head, before the members
        return await real_send(self, sock, sender, **kwargs)

    monkeypatch.setattr(Archives, "send", send)
    before = tree.expected()
    with caplog.at_level(logging.ERROR, logger="zerocopy.server"):
        length, body, cut = await _cut_download(site.port, "/d/?download=tar")
    assert cut
    assert len(body) < length
    assert SECRET not in body
    assert b"GROWN" not in body
    assert b"S" * 1000 not in body
    # What came is the start of the archive the walk planned: every member before the changed
    # one is whole and right.
    with tarfile.open(fileobj=io.BytesIO(body), mode="r|") as reader:
        try:
            for info in reader:
                if info.isreg():
                    extracted = reader.extractfile(info)
                    assert extracted is not None
                    assert hashlib.sha256(extracted.read()).hexdigest() == before[info.name]
        except tarfile.ReadError:
            pass
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1, lines
    assert "truncated while being sent" in lines[0]
    assert "connection closed" in lines[0]
    assert ("b.txt" in lines[0]) or ("deeper" in lines[0])
    stats = site.statistics().archives
    assert (stats.started, stats.completed, stats.stopped) == (1, 0, 1)


async def test_a_file_truncated_while_it_is_sent_ends_the_connection(
    site: Server, tree: Tree, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_open = Archives._open

    def opened_then_truncated(
        self: Archives, member: Any, walker: TreeWalker, prepared: Prepared, release: str
    ) -> Opened:
        opened = real_open(self, member, walker, prepared, release)
        if member[0] == "big.bin":
            os.truncate(tree.top / "big.bin", BIG // 2)  # after its size was checked
        return opened

    monkeypatch.setattr(Archives, "_open", opened_then_truncated)
    with caplog.at_level(logging.ERROR, logger="zerocopy.server"):
        length, body, cut = await _cut_download(site.port, "/d/?download=tar")
    assert cut
    big = (tree.top / "big.bin").read_bytes()
    assert len(body) < length
    # Never padded: nothing after the file's real bytes.
    index = body.find(big[:4096])
    assert index > 0
    assert body[index:] == big[: len(body) - index]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1, lines
    assert "big.bin truncated while being sent" in lines[0]
    assert site.statistics().transfer.truncated == 1


async def test_at_most_one_file_is_open_at_a_time(
    site: Server, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = Archives._open
    most = 0

    def files_open() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(tree.top)) and os.path.isfile(target):
                count += 1
        return count

    def counting(
        self: Archives, member: Any, walker: TreeWalker, prepared: Prepared, release: str
    ) -> Opened:
        nonlocal most
        opened = real_open(self, member, walker, prepared, release)
        most = max(most, files_open())
        return opened

    monkeypatch.setattr(Archives, "_open", counting)
    (response,) = await _exchange(site, ("/d/?download=tar", {}))
    assert response.status == 200
    assert most == 1


async def test_a_directory_that_cannot_be_read_is_a_500(
    site: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_walk = TreeWalker.walk
    walkers = []

    def failing(self: TreeWalker, count: int) -> bool:
        real_walk(self, 1)  # a directory is open now
        walkers.append(self)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(TreeWalker, "walk", failing)
    with caplog.at_level(logging.ERROR, logger="zerocopy.server"):
        response, after = await _exchange(site, ("/d/?download=tar", {}), ("/d/a.txt", {}))
    assert response.status == 500
    assert after.body == b"hello\n"
    (walker,) = walkers
    with pytest.raises(ValueError, match="after close"):
        real_walk(walker, 1)  # the walk's directory was closed
    assert any("Input/output error" in r.getMessage() for r in caplog.records)


@pytest.fixture
def releases(tmp_path: Path) -> tuple[Path, Callable[[str], None]]:
    """``current`` -> ``releases/1``, two releases of the same shape (same sizes, other
    bytes), and a function that switches ``current`` atomically."""
    for release in ("1", "2"):
        top = tmp_path / "releases" / release / "d"
        top.mkdir(parents=True)
        for index in range(4):
            (top / f"f{index}").write_bytes(release.encode() * 5000)
    current = tmp_path / "current"
    os.symlink("releases/1", current)

    def switch(release: str) -> None:
        link = tmp_path / "current.new"
        os.symlink(f"releases/{release}", link)
        os.replace(link, current)

    return current, switch


async def test_an_archive_comes_whole_from_one_release(
    nursery: trio.Nursery,
    releases: tuple[Path, Callable[[str], None]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    current, switch = releases
    server = await start_server(nursery, root=str(current))
    root = server._state.root
    try:
        # The root's archive is named as the root was given, whichever release it holds.
        (whole,) = await _exchange(server, ("/?download=tar", {}))
        assert 'filename="current.tar"' in (whole.header("Content-Disposition") or "")
        with tarfile.open(fileobj=io.BytesIO(whole.body)) as reader:
            assert reader.getnames()[:2] == ["current", "current/d"]
        # Switched during the walk: walked again, from the new release.
        real_walk = TreeWalker.walk
        switched = False

        def switching(self: TreeWalker, count: int) -> bool:
            nonlocal switched
            done = real_walk(self, count)
            if not switched:
                switched = True
                switch("2")
                root.check()  # what the open-file cache does when inotify reports it
            return done

        monkeypatch.setattr(TreeWalker, "walk", switching)
        (response,) = await _exchange(server, ("/d/?download=tar", {}))
        assert response.status == 200
        with tarfile.open(fileobj=io.BytesIO(response.body)) as reader:
            contents = {
                reader.extractfile(info).read()  # type: ignore[union-attr]
                for info in reader.getmembers()
                if info.isreg()
            }
        assert contents == {b"2" * 5000}
        monkeypatch.undo()

        # Switched after the walk: the archive ends rather than mix the two.
        real_send = Archives.send

        async def send(self: Archives, sock: Any, sender: Any, **kwargs: Any) -> int:
            switch("1")
            root.check()
            return await real_send(self, sock, sender, **kwargs)

        monkeypatch.setattr(Archives, "send", send)
        with caplog.at_level(logging.ERROR, logger="zerocopy.server"):
            _, body, cut = await _cut_download(server.port, "/d/?download=tar")
        assert cut
        assert b"1" * 5000 not in body
        assert any("in another release" in r.getMessage() for r in caplog.records)
    finally:
        await stop_server(server)


@dataclass
class Swapper:
    """``victim.txt`` swapped for a symlink to a secret outside the root, and back."""

    root: Path
    keep: Path
    secret: Path

    def to_link(self) -> None:
        link = self.root / "d" / ".swap-link"
        os.symlink(self.secret, link)
        os.replace(link, self.root / "d" / "victim.txt")

    def back(self) -> None:
        temporary = self.root / "d" / ".swap-file"
        os.link(self.keep, temporary)
        os.replace(temporary, self.root / "d" / "victim.txt")


KEPT: Final = b"the file that belongs here\n" * 40


@pytest.mark.parametrize("follow", [False, True])
async def test_a_file_swapped_for_a_symlink_during_walks(
    nursery: trio.Nursery,
    tree: Tree,
    any_strategy: str,
    follow: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A thread toggles file and symlink while archives are downloaded: each download is
    whole (with the file, right, or without it) or cut short; the secret never shows."""
    keep = tree.outside / "keep.txt"
    keep.write_bytes(KEPT)
    os.link(keep, tree.top / "victim.txt")
    swapper = Swapper(tree.root, keep, tree.outside / "secret.txt")
    server = await start_server(
        nursery, root=str(tree.root), strategy=any_strategy, follow_symlinks=follow
    )
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            swapper.to_link()
            swapper.back()

    outcomes = {"with": 0, "without": 0, "cut": 0}
    try:
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.to_thread.run_sync, swap)
            try:
                with trio.fail_after(90):
                    while sum(outcomes.values()) < 300 and (
                        min(outcomes["with"], outcomes["without"]) < 5
                        or sum(outcomes.values()) < 40
                    ):
                        with caplog.at_level(logging.CRITICAL, logger="zerocopy.server"):
                            _, body, cut = await _cut_download(server.port, "/d/?download=tar")
                        assert SECRET not in body
                        if cut:
                            outcomes["cut"] += 1
                            continue
                        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as reader:
                            names = reader.getnames()
                            if "d/victim.txt" in names:
                                extracted = reader.extractfile("d/victim.txt")
                                assert extracted is not None
                                assert extracted.read() == KEPT
                                outcomes["with"] += 1
                            else:
                                outcomes["without"] += 1
            finally:
                stop.set()
    finally:
        await stop_server(server)
    # Both outcomes: the swaps really did interleave with the walks.
    assert outcomes["with"] > 0, outcomes
    assert outcomes["without"] > 0, outcomes


# -- the walk stops when the client goes -------------------------------------------------------


async def test_a_gone_client_stops_the_walk(nursery: trio.Nursery, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    many = root / "many"
    many.mkdir(parents=True)
    for index in range(3000):
        (many / f"f{index:05d}").write_bytes(b"")
    server = await start_server(nursery, root=str(root))
    archives = _archives(server)
    limiter = archives.limiter
    try:
        await limiter.acquire()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.to_thread.run_sync(client.connect, ("127.0.0.1", server.port))
        client.sendall(b"GET /many/?download=tar HTTP/1.1\r\nHost: t\r\n\r\n")
        with trio.fail_after(10):
            while limiter.statistics().tasks_waiting == 0:  # noqa: ASYNC110 - no event to wait on
                await trio.sleep(0.01)
        client.close()  # a reset: SO_LINGER 0
        limiter.release()
        with trio.fail_after(10):
            while archives.statistics().stopped == 0:  # noqa: ASYNC110 - no event to wait on
                await trio.sleep(0.01)
        stats = archives.statistics()
        assert stats.batches <= 2  # the step in progress when it went, then one check
        assert (stats.walks, stats.started) == (1, 0)
    finally:
        await stop_server(server)


# -- hostile requests ----------------------------------------------------------------------------


def _is_tar(response: Any) -> None:
    assert response.header("Content-Type") == "application/x-tar"


def _is_page(response: Any) -> None:
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert b'<a href="./a.txt">a.txt</a>' in response.body


def _is_json(response: Any) -> None:
    assert response.header("Content-Type") == "application/json"


HOSTILE: Final[list[tuple[str, dict[str, str], int, Callable[[Any], None] | None]]] = [
    ("/d/?download=tar&download=zip", {}, 200, _is_tar),  # the first valid value
    ("/d/?download=zip&download=tar", {}, 200, _is_tar),
    ("/d/?download=TAR", {}, 200, _is_page),
    ("/d/?download=tar%00", {}, 200, _is_page),
    ("/d/?download%3Dtar", {}, 200, _is_page),
    ("/d?download=tar", {}, 301, None),
    ("/.git/?download=tar", {}, 404, None),
    ("/d/.git/?download=tar", {}, 404, None),
    ("/d/dir-out/?download=tar", {}, 403, None),
    ("/d/fifo/?download=tar", {}, 403, None),
    ("/d/a.txt?download=tar", {}, 200, None),  # a file: the query is nobody's business
    ("/d/../?download=tar", {}, 400, None),
    ("/d/?sort=%ff%00&order=%3Cscript%3E", {}, 200, _is_page),
    ("/d/?sort=" + "x" * 6000, {}, 200, _is_page),
    ("/d/?" + "&".join(["sort=size"] * 700), {}, 200, _is_page),
    ("/d/?format=json&format=html", {}, 200, _is_json),
    ("/d/", {"Accept": "application/json;q=" + "9" * 5000}, 200, _is_page),
    ("/d/", {"Accept": ",".join(["a/b"] * 5000) + ",application/json"}, 200, _is_page),
    ("/d/", {"Accept": "application/json," + ",".join(["a/b;q=0.1"] * 2500)}, 200, _is_json),
    ("/d/", {"Accept": "text/html;q=x, ;, /, a/, application/json;q=1.0001"}, 200, _is_page),
    ("/d/", {"Accept": "\x01/\x00"}, 400, None),  # llhttp refuses control bytes
]


@pytest.mark.parametrize(("target", "headers", "status", "check"), HOSTILE)
async def test_hostile_requests(
    nursery: trio.Nursery,
    tree: Tree,
    target: str,
    headers: dict[str, str],
    status: int,
    check: Callable[[Any], None] | None,
) -> None:
    server = await start_server(nursery, root=str(tree.root))
    try:
        response, after = await _exchange(server, (target, headers), ("/d/a.txt", {}))
        if status == 400:
            return  # the connection closes; nothing follows
        assert response.status == status
        assert SECRET not in response.body
        if check is not None:
            check(response)
        assert after.body == b"hello\n"
    except EOFError:
        assert status == 400
    finally:
        await stop_server(server)


# -- JSON and sorted listings, live ------------------------------------------------------------


async def test_json_listing_by_accept_and_by_query(site: Server, tree: Tree) -> None:
    import json

    by_accept, by_query, html = await _exchange(
        site,
        ("/d/", {"Accept": "application/json"}),
        ("/d/?format=json&sort=size&order=desc", {}),
        ("/d/", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}),
    )
    for response in (by_accept, by_query, html):
        assert response.status == 200
        assert response.header("Vary") == "Accept"
        assert response.header("Content-Security-Policy") == (
            "default-src 'none'; style-src 'unsafe-inline'"
        )
        assert response.header("Transfer-Encoding") == "chunked"
    assert by_accept.header("Content-Type") == "application/json"
    assert html.header("Content-Type") == "text/html; charset=utf-8"
    document = json.loads(by_accept.body)
    names = [entry["name"] for entry in document["entries"]]
    expected = {
        path.rstrip("/").split("/")[-1]
        for path in tree.expected()
        if path.count("/") - path.endswith("/") == 1
    }
    assert set(names) == expected
    assert document["truncated"] is False
    sized = json.loads(by_query.body)
    files = [entry for entry in sized["entries"] if entry["type"] == "file"]
    assert [entry["size"] for entry in files] == sorted(
        (entry["size"] for entry in files), reverse=True
    )
    assert sized["entries"][0]["type"] == "directory"
    (head,) = await _exchange(site, ("/d/", {"Accept": "application/json"}), method="HEAD")
    assert head.header("Content-Type") == "application/json"
    assert head.header("Vary") == "Accept"


async def test_a_cut_json_listing_is_valid_json(nursery: trio.Nursery, tree: Tree) -> None:
    import json

    server = await start_server(nursery, root=str(tree.root), max_listing_entries=3)
    try:
        (response,) = await _exchange(server, ("/d/?format=json", {}))
        client = await RawClient.connect(server.port)
        try:
            await client.send(b"GET /d/?format=json HTTP/1.0\r\n\r\n")
            old = await client.read_response()
        finally:
            await client.aclose()
    finally:
        await stop_server(server)
    for body in (response.body, old.body):
        document = json.loads(body)
        assert document["truncated"] is True
        assert len(document["entries"]) <= 3


async def test_a_304_of_a_listing_carries_vary(site: Server) -> None:
    (response,) = await _exchange(
        site, ("/d/", {"If-None-Match": "*", "Accept": "application/json"})
    )
    assert response.status == 304
    assert response.header("Vary") == "Accept"


async def test_the_served_page_is_valid_html5(site: Server) -> None:
    html5lib = pytest.importorskip("html5lib")
    for target in ("/d/", "/d/?sort=mtime&order=desc", "/"):
        (response,) = await _exchange(site, (target, {}))
        html5lib.HTMLParser(strict=True).parse(response.body.decode("utf-8"))
        assert b'<a href="?download=tar">' in response.body


# -- the command line ----------------------------------------------------------------------------


def test_the_flags_reach_the_config(tmp_path: Path) -> None:
    defaults = _server_config(parse_args(["serve", str(tmp_path)]))
    assert (defaults.tar, defaults.tar_max_files, defaults.tar_max_bytes) == (
        True,
        65_535,
        64 * 1024**3,
    )
    config = _server_config(
        parse_args(
            ["serve", str(tmp_path), "--no-tar", "--tar-max-files=7", "--tar-max-bytes=2GiB"]
        )
    )
    assert (config.tar, config.tar_max_files, config.tar_max_bytes) == (False, 7, 2 * 1024**3)
    settings = tmp_path / "zerocopy.toml"
    settings.write_text('no-tar = true\ntar-max-files = 9\ntar-max-bytes = "5MiB"\n')
    config = _server_config(parse_args(["serve", str(tmp_path), "--config", str(settings)]))
    assert (config.tar, config.tar_max_files, config.tar_max_bytes) == (False, 9, 5 * 1024**2)


@pytest.mark.parametrize("flags", [["--tar-max-files=0"], ["--tar-max-bytes=lots"]])
def test_bad_values_are_usage_errors(tmp_path: Path, flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["serve", str(tmp_path), *flags])
    assert exited.value.code == 2
