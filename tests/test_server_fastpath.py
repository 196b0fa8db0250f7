"""The fast path, seen from a client: a cached file answers exactly as a freshly opened one
would, and every change on disk made before a request is seen by that request.

Each change is made immediately before the request that must see it, many times over, the
way a deploy script writes files and then a browser reloads. The server runs with every
strategy (``auto`` included, which sends small cached files from memory) and with both
open-file cache modes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, Response, open_fd_count, sha256_file
from zerocopy.server import Server

ROUNDS = 25
STRATEGIES = ["auto", "sendfile", "splice", "readwrite"]


@pytest.fixture(params=STRATEGIES)
def any_strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["inotify", "always"])
def revalidate(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def site(
    nursery: trio.Nursery, tmp_path: Path, any_strategy: str, revalidate: str
) -> AsyncIterator[tuple[Server, Path]]:
    root = tmp_path / "site"
    (root / "assets" / "js").mkdir(parents=True)
    (root / "assets" / "js" / "app.js").write_bytes(b"console.log(0);\n")
    (root / "index.html").write_bytes(b"<h1>0</h1>\n")
    before = open_fd_count()
    server = await start_server(
        nursery, root=str(root), strategy=any_strategy, open_file_cache_revalidate=revalidate
    )
    yield server, root
    await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"


def _without_date(response: Response) -> list[tuple[str, str]]:
    return [(name, value) for name, value in response.headers if name != "Date"]


async def _get(client: RawClient, target: str, method: str = "GET") -> Response:
    with trio.fail_after(10):
        return await client.request(target, method)


async def test_a_cached_response_is_the_same_as_a_fresh_one(site) -> None:
    server, root = site
    client = await RawClient.connect(server.port)
    for target, path in [
        ("/assets/js/app.js", root / "assets/js/app.js"),
        ("/", root / "index.html"),
    ]:
        for method in ("GET", "HEAD"):
            first = await _get(client, target, method)  # opens the file (slow path)
            hits = server.statistics().files.hits
            second = await _get(client, target, method)  # from the cache entry (fast path)
            assert server.statistics().files.hits == hits + 1
            assert (second.status, _without_date(second)) == (first.status, _without_date(first))
            assert second.body == first.body == (b"" if method == "HEAD" else path.read_bytes())
    await client.aclose()


def _rewrite(path: Path, i: int) -> None:
    path.write_bytes(b"console.log(%d);\n" % i)


def _replace_by_rename(path: Path, i: int) -> None:
    fresh = path.with_name(".fresh")
    fresh.write_bytes(b"/* v%d */\n" % i * (i % 5 + 1))
    os.replace(fresh, path)


def _append(path: Path, i: int) -> None:
    with path.open("ab") as file:
        file.write(b"//%d\n" % i)


def _touch(path: Path, i: int) -> None:
    os.utime(path, ns=(0, (1_600_000_000 + i) * 1_000_000_000))


CHANGES: dict[str, Callable[[Path, int], None]] = {
    "rewritten": _rewrite,
    "replaced-by-rename": _replace_by_rename,
    "appended": _append,
    "touched": _touch,
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_change_made_just_before_a_request_is_seen(site, change: str) -> None:
    server, root = site
    path = root / "assets" / "js" / "app.js"
    client = await RawClient.connect(server.port)
    for i in range(ROUNDS):
        await _get(client, "/assets/js/app.js")
        old = await _get(client, "/assets/js/app.js")
        CHANGES[change](path, i)
        new = await _get(client, "/assets/js/app.js")
        assert new.status == 200
        assert new.sha256 == sha256_file(path)
        assert new.header("Content-Length") == str(path.stat().st_size)
        if change == "touched":
            assert new.header("Last-Modified") != old.header("Last-Modified") or i == 0
        if new.body != old.body or change == "touched":
            assert new.header("ETag") != old.header("ETag")
    await client.aclose()


async def test_a_deleted_file_is_404_at_once(site) -> None:
    server, root = site
    path = root / "assets" / "js" / "app.js"
    client = await RawClient.connect(server.port)
    for i in range(ROUNDS):
        path.write_bytes(b"v%d" % i)
        assert (await _get(client, "/assets/js/app.js")).body == b"v%d" % i
        assert (await _get(client, "/assets/js/app.js")).body == b"v%d" % i
        path.unlink()
        assert (await _get(client, "/assets/js/app.js")).status == 404
    await client.aclose()


async def test_a_file_made_unreadable_is_refused_at_once(site) -> None:
    server, root = site
    path = root / "assets" / "js" / "app.js"
    client = await RawClient.connect(server.port)
    for _ in range(ROUNDS):
        await _get(client, "/assets/js/app.js")
        await _get(client, "/assets/js/app.js")
        misses = server.statistics().files.misses
        os.chmod(path, 0o000)
        response = await _get(client, "/assets/js/app.js")
        # Root reads anything; anyone else is refused. Either way the file was opened anew.
        assert response.status == (200 if os.geteuid() == 0 else 403)
        assert server.statistics().files.misses > misses
        os.chmod(path, 0o644)
    await client.aclose()


async def test_a_directory_swapped_for_a_symlink_out_is_refused_at_once(site) -> None:
    server, root = site
    outside = root.parent / "outside"
    client = await RawClient.connect(server.port)
    for _ in range(ROUNDS):
        assert (await _get(client, "/assets/js/app.js")).status == 200
        assert (await _get(client, "/assets/js/app.js")).status == 200
        # The directory leaves the root; a symlink in its place still reaches the same file.
        os.rename(root / "assets", outside)
        (root / "assets").symlink_to(outside)
        assert (await _get(client, "/assets/js/app.js")).status == 403
        (root / "assets").unlink()
        os.rename(outside, root / "assets")
    await client.aclose()


async def test_a_directory_moved_out_of_the_root_is_gone_at_once(site) -> None:
    server, root = site
    client = await RawClient.connect(server.port)
    for _ in range(ROUNDS):
        assert (await _get(client, "/assets/js/app.js")).status == 200
        assert (await _get(client, "/assets/js/app.js")).status == 200
        os.rename(root / "assets", root.parent / "moved")
        assert (await _get(client, "/assets/js/app.js")).status == 404
        os.rename(root.parent / "moved", root / "assets")
    await client.aclose()


async def test_a_release_swapped_in_by_rename_is_served_whole(site) -> None:
    # The deploy pattern one level down: build the new tree beside it, then rename it in.
    server, root = site
    client = await RawClient.connect(server.port)
    for i in range(1, ROUNDS):
        await _get(client, "/assets/js/app.js")
        await _get(client, "/assets/js/app.js")
        staged = root.parent / f"staged{i}"
        (staged / "js").mkdir(parents=True)
        (staged / "js" / "app.js").write_bytes(b"release %d\n" % i)
        os.rename(root / "assets", root.parent / f"old{i}")
        os.rename(staged, root / "assets")
        assert (await _get(client, "/assets/js/app.js")).body == b"release %d\n" % i
    await client.aclose()


async def test_small_files_go_from_memory_only_with_auto(site, any_strategy: str) -> None:
    server, root = site
    client = await RawClient.connect(server.port)
    for _ in range(5):
        response = await _get(client, "/assets/js/app.js")
        assert response.body == (root / "assets/js/app.js").read_bytes()
    await client.aclose()
    stats = server.statistics()
    size = (root / "assets/js/app.js").stat().st_size
    if any_strategy == "auto":
        # Read into memory once, then every response's body came from there.
        assert stats.files.memory_read_bytes == size
        assert stats.files.memory_bytes == size
        assert stats.transfer.bytes_from_memory >= 4 * size
        assert stats.transfer.bytes_zero_copy == 0
    else:
        assert stats.files.memory_bytes == 0
        assert stats.transfer.bytes_from_memory == 0
        zero_copy = stats.transfer.bytes_zero_copy
        assert zero_copy == (0 if any_strategy == "readwrite" else 5 * size)


async def test_the_deploy_switch_under_load_serves_whole_releases(
    nursery: trio.Nursery, tmp_path: Path, any_strategy: str, revalidate: str
) -> None:
    # Clients fetch without pause while `current` flips between two releases. Every response
    # is whole and from one release or the other; after the last switch, the new one.
    releases = tmp_path / "releases"
    names = ["index.html", "app.js", "big.bin"]
    for n in range(2):
        (releases / str(n)).mkdir(parents=True)
        for name in names:
            size = 300_000 if name == "big.bin" else 40 + n
            (releases / str(n) / name).write_bytes(os.urandom(size))
    expected = {name: {sha256_file(releases / str(n) / name) for n in range(2)} for name in names}
    current = tmp_path / "current"
    current.symlink_to(releases / "0")
    server = await start_server(
        nursery, root=str(current), strategy=any_strategy, open_file_cache_revalidate=revalidate
    )
    stop = trio.Event()
    responses = 0

    async def fetch() -> None:
        nonlocal responses
        client = await RawClient.connect(server.port)
        while not stop.is_set():
            for name in names:
                response = await _get(client, "/" + name)
                assert response.status == 200
                assert response.sha256 in expected[name]
                responses += 1
        await client.aclose()

    async with trio.open_nursery() as clients:
        for _ in range(4):
            clients.start_soon(fetch)
        for i in range(31):
            await trio.sleep(0.01)
            staged = tmp_path / "current.new"
            staged.symlink_to(releases / str((i + 1) % 2))
            os.replace(staged, current)
        stop.set()
    assert responses > 30
    final = releases / "1"  # 31 switches: release 1
    client = await RawClient.connect(server.port)
    for name in names:
        assert (await _get(client, "/" + name)).sha256 == sha256_file(final / name)
    await client.aclose()
    await stop_server(server)
