"""The open-file cache reuses a descriptor only while the path still names the same file.

Every coherence case runs in both modes: ``inotify`` (the kernel reports changes) and
``always`` (``stat`` and ``readlink`` on every hit). Each change is made immediately before
the next lookup, many times over, as a deploy script would make it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import open_fd_count
from zerocopy.files import OpenFileCache, Refused, Root
from zerocopy.files import cache as cache_module
from zerocopy.files.watch import Watcher

MODES = ["inotify", "always"]
ROUNDS = 40


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"first")
    (root / "b.txt").write_bytes(b"bee")
    (tmp_path / "outside.txt").write_bytes(b"secret")
    return root


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_cache(mode: str) -> Iterator[Callable[..., OpenFileCache]]:
    """Builds caches in the test's mode, and closes them all (and checks for leaks) after."""
    made: list[OpenFileCache] = []
    before = open_fd_count()

    def make(root: Path, **options: object) -> OpenFileCache:
        follow = bool(options.pop("follow_symlinks", False))
        options.setdefault("revalidate", mode)
        cache = OpenFileCache(Root(str(root), follow_symlinks=follow), **options)  # type: ignore[arg-type]
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()
        cache.root.close()
    assert open_fd_count() <= before, "descriptors leaked"


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def _replace_by_rename(path: Path, data: bytes) -> None:
    fresh = path.with_name("fresh")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def _read(cache: OpenFileCache, *segments: str) -> tuple[int, bytes]:
    opened = cache.open(segments)
    try:
        return opened.fd, os.pread(opened.fd, 100, 0)
    finally:
        opened.close()


def test_hit_reuses_the_descriptor(tree: Path, make_cache) -> None:
    cache = make_cache(tree)
    fd1, data1 = _read(cache, "a.txt")
    fd2, data2 = _read(cache, "a.txt")
    assert (fd1, data1) == (fd2, data2) == (fd1, b"first")
    assert cache.statistics().hits == 1
    assert cache.statistics().misses == 1


def test_inotify_mode_costs_no_syscall_on_the_file_per_hit(tree: Path, monkeypatch) -> None:
    # In inotify mode a hit must not stat the path: the file can be made unreachable by
    # permissions without an event only by a change we would see, so a stat here would be
    # the per-hit cost this mode exists to avoid. An audit of os.stat shows it is not called.
    cache = OpenFileCache(Root(str(tree)))
    try:
        assert cache.mode == "inotify"
        _read(cache, "a.txt")
        calls: list[object] = []
        real_stat = os.stat

        def counting_stat(*args: object, **kwargs: object) -> os.stat_result:
            calls.append(args)
            return real_stat(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "stat", counting_stat)
        for _ in range(10):
            _read(cache, "a.txt")
        monkeypatch.undo()
        assert calls == []
        assert cache.statistics().hits == 10
    finally:
        cache.close()


CHANGES: dict[str, Callable[[Path, int], object]] = {
    "rewritten": lambda p, i: p.write_bytes(b"v%d" % i),
    "appended": lambda p, i: _append(p, b"+"),
    "truncated": lambda p, i: os.truncate(p, i % 3),
    "touched": lambda p, i: os.utime(p, ns=(0, 12345 + i)),
    "chmod": lambda p, i: os.chmod(p, 0o600 if i % 2 else 0o644),
    "replaced-by-rename": lambda p, i: _replace_by_rename(p, b"r%d" % i),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_just_made_is_seen_by_the_next_lookup(tree: Path, make_cache, change) -> None:
    cache = make_cache(tree)
    path = tree / "a.txt"
    for i in range(ROUNDS):
        _read(cache, "a.txt")
        _read(cache, "a.txt")  # a hit, so the next lookup would be one too
        CHANGES[change](path, i)
        opened = cache.open(("a.txt",))
        try:
            assert os.pread(opened.fd, 100, 0) == path.read_bytes()
            info = os.fstat(opened.fd)
            now = os.stat(path)
            assert (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode) == (
                now.st_ino,
                now.st_size,
                now.st_mtime_ns,
                now.st_mode,
            )
            # The entry's metadata is what it would be if opened afresh.
            assert opened.stat.st_mtime_ns == now.st_mtime_ns
            assert opened.stat.st_size == now.st_size
            assert opened.stat.st_mode == now.st_mode
        finally:
            opened.close()


def test_a_deleted_file_is_gone_at_once(tree: Path, make_cache) -> None:
    cache = make_cache(tree)
    path = tree / "a.txt"
    for i in range(ROUNDS):
        path.write_bytes(b"x%d" % i)
        _read(cache, "a.txt")
        _read(cache, "a.txt")
        path.unlink()
        with pytest.raises(Refused) as info:
            cache.open(("a.txt",))
        assert info.value.status_hint == 404


def test_a_file_swapped_for_a_symlink_is_refused(tree: Path, make_cache) -> None:
    cache = make_cache(tree)
    path = tree / "a.txt"
    for _ in range(ROUNDS):
        _read(cache, "a.txt")
        _read(cache, "a.txt")
        path.unlink()
        path.symlink_to(tree.parent / "outside.txt")
        with pytest.raises(Refused) as info:
            cache.open(("a.txt",))
        assert info.value.status_hint == 403
        path.unlink()
        path.write_bytes(b"first")


@pytest.mark.parametrize("follow", [False, True])
def test_a_directory_moved_out_of_the_root_is_not_served_from_the_cache(
    tmp_path: Path, make_cache, follow: bool
) -> None:
    root = tmp_path / "root"
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.txt").write_bytes(b"private now")
    outside = tmp_path / "outside"
    cache = make_cache(root, follow_symlinks=follow)
    for _ in range(ROUNDS):
        _read(cache, "d", "e", "f.txt")
        _read(cache, "d", "e", "f.txt")
        # The directory leaves the root; a symlink in its place still reaches the same file.
        os.rename(root / "d", outside)
        (root / "d").symlink_to(outside)
        with pytest.raises(Refused) as info:
            cache.open(("d", "e", "f.txt"))
        assert info.value.status_hint == (404 if follow else 403)
        (root / "d").unlink()
        os.rename(outside, root / "d")


def test_a_directory_moved_away_and_another_put_in_its_place(tmp_path: Path, make_cache) -> None:
    # The deploy pattern one level down: build a new directory, then swap it in by rename.
    root = tmp_path / "root"
    (root / "site").mkdir(parents=True)
    (root / "site" / "app.js").write_bytes(b"v0")
    cache = make_cache(root)
    for i in range(1, ROUNDS):
        _read(cache, "site", "app.js")
        _read(cache, "site", "app.js")
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        (fresh / "app.js").write_bytes(b"v%d" % i)
        os.rename(root / "site", tmp_path / "old")
        os.rename(fresh, root / "site")
        os.remove(tmp_path / "old" / "app.js")
        os.rmdir(tmp_path / "old")
        assert _read(cache, "site", "app.js")[1] == b"v%d" % i


def test_a_directory_made_unreadable_is_seen(tmp_path: Path, make_cache) -> None:
    # chmod of a directory on the path is an IN_ATTRIB on the directory itself.
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_bytes(b"x")
    cache = make_cache(root)
    _read(cache, "d", "f.txt")
    misses = cache.statistics().misses
    os.chmod(root / "d", 0o700)
    _read(cache, "d", "f.txt")
    if cache.mode == "inotify":
        assert cache.statistics().misses == misses + 1
    os.chmod(root / "d", 0o755)


def test_eviction_waits_for_borrowers(tree: Path, make_cache) -> None:
    cache = make_cache(tree, max_entries=1)
    held = cache.open(("a.txt",))
    _read(cache, "b.txt")  # evicts a.txt while it is borrowed
    assert os.pread(held.fd, 100, 0) == b"first"  # still open
    held.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(held.fd)  # closed once given back
    assert cache.statistics().entries == 1


def test_a_change_while_borrowed_closes_after_the_borrower(tree: Path, make_cache) -> None:
    cache = make_cache(tree)
    held = cache.open(("a.txt",))
    (tree / "a.txt").write_bytes(b"second")
    assert _read(cache, "a.txt")[1] == b"second"
    assert os.pread(held.fd, 100, 0) == b"second"  # same inode, rewritten in place
    held.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(held.fd)


def test_inactive_entries_are_closed(tree: Path, make_cache) -> None:
    clock = FakeClock()
    cache = make_cache(tree, inactive=20.0, clock=clock)
    _read(cache, "a.txt")
    clock.now += 30
    _read(cache, "b.txt")
    assert cache.statistics().entries == 1
    assert cache.statistics().evictions == 1


def test_disabled_cache_opens_every_time(tree: Path, make_cache) -> None:
    cache = make_cache(tree, max_entries=0)
    before = open_fd_count()
    _read(cache, "a.txt")
    _read(cache, "a.txt")
    assert cache.statistics().hits == 0
    assert open_fd_count() == before


def test_directories_are_not_cached_and_nothing_leaks(tree: Path, make_cache) -> None:
    (tree / "d").mkdir()
    cache = make_cache(tree)
    before = open_fd_count()
    for _ in range(5):
        cache.open(("d",)).close()
        _read(cache, "a.txt")
        with pytest.raises(Refused):
            cache.open(("missing",))
    assert cache.statistics().entries == 1
    cache.clear()
    assert open_fd_count() == before
    assert cache.statistics().watches == 0


def test_watches_are_shared_and_released(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    for name in ("x", "y"):
        (root / "a" / "b" / name).write_bytes(b"1")
    (root / "top").write_bytes(b"1")
    cache = OpenFileCache(Root(str(root)))
    try:
        _read(cache, "a", "b", "x")
        _read(cache, "a", "b", "y")
        _read(cache, "top")
        assert cache.statistics().watches == 3  # root, a, a/b: one each however many files
        (root / "a" / "b" / "x").write_bytes(b"2")
        _read(cache, "top")  # drains the event: x's entry goes, y's stays
        assert cache.statistics().entries == 2
        assert cache.statistics().invalidations == 1
        cache.clear()
        assert cache.statistics().watches == 0
    finally:
        cache.close()


def test_queue_overflow_drops_everything(tree: Path) -> None:
    cache = OpenFileCache(Root(str(tree)))
    try:
        _read(cache, "a.txt")
        _read(cache, "b.txt")
        limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        if limit > 200_000:
            pytest.skip(f"max_queued_events is {limit}: too many events to overflow quickly")
        # Identical events in a row are merged in the queue: alternate two files.
        for i in range(limit + 10):
            os.utime(tree / ("a.txt", "b.txt")[i % 2], ns=(i, i))
        _fd, data = _read(cache, "b.txt")
        assert data == b"bee"
        stats = cache.statistics()
        assert stats.overflows == 1
        assert stats.misses == 3
        assert stats.entries == 1
        assert cache.mode == "inotify"  # and it keeps going, with fresh watches
    finally:
        cache.close()


class _BrokenWatcher(Watcher):
    def read(self) -> list[Any]:
        raise OSError(errno.EIO, "injected")


def test_a_failed_inotify_read_falls_back_to_revalidation(tree: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "Watcher", _BrokenWatcher)
    cache = OpenFileCache(Root(str(tree)))
    try:
        _read(cache, "a.txt")
        (tree / "a.txt").write_bytes(b"second")
        assert _read(cache, "a.txt")[1] == b"second"
        assert cache.mode == "always"
        assert cache.statistics().watches == 0
        (tree / "a.txt").write_bytes(b"third")
        assert _read(cache, "a.txt")[1] == b"third"
    finally:
        cache.close()


class _NoInotify:
    def __init__(self) -> None:
        raise OSError(errno.EMFILE, "Too many open files")


def test_without_inotify_every_hit_is_revalidated(tree: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(cache_module, "Watcher", _NoInotify)
    cache = OpenFileCache(Root(str(tree)))
    try:
        assert cache.mode == "always"
        assert "inotify unavailable" in caplog.text
        _read(cache, "a.txt")
        (tree / "a.txt").write_bytes(b"second")
        assert _read(cache, "a.txt")[1] == b"second"
    finally:
        cache.close()


def test_an_entry_through_a_symlink_is_revalidated(tmp_path: Path) -> None:
    # With follow_symlinks, a file reached through a link depends on the link's target,
    # which no watch covers: such an entry is checked on every hit.
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f").write_bytes(b"one")
    (root / "link").symlink_to(root / "real")
    cache = OpenFileCache(Root(str(root), follow_symlinks=True))
    try:
        assert _read(cache, "link", "f")[1] == b"one"
        (root / "other").mkdir()
        (root / "other" / "f").write_bytes(b"two")
        (root / "link2").symlink_to(root / "other")
        os.replace(root / "link2", root / "link")
        assert _read(cache, "link", "f")[1] == b"two"
    finally:
        cache.close()


def test_small_files_are_kept_in_memory_within_the_limit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name, size in [("a", 100), ("b", 100), ("big", 5000)]:
        (root / name).write_bytes(bytes([len(name)]) * size)
    cache = OpenFileCache(Root(str(root)), keep_data_below=1000, memory_limit=150)
    try:
        assert cache.open(("a",)).body().data == b"\x01" * 100
        assert cache.open(("b",)).body().data is None  # over the memory limit
        assert cache.open(("big",)).body().data is None  # over the size limit
        stats = cache.statistics()
        assert (stats.memory_bytes, stats.memory_limit, stats.memory_read_bytes) == (100, 150, 100)
        (root / "a").write_bytes(b"\x02" * 10)
        opened = cache.open(("a",))
        assert opened.body().data == b"\x02" * 10  # the old bytes went with the old entry
        assert cache.statistics().memory_bytes == 10
        opened.close()
    finally:
        cache.close()
    assert cache.statistics().memory_bytes == 0


def _switch(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` atomically, as deploy tools do (symlink, then rename)."""
    staged = link.with_name(link.name + ".new")
    staged.symlink_to(target)
    os.replace(staged, link)


def test_the_deploy_switch_is_seen_by_the_next_lookup(tmp_path: Path, make_cache) -> None:
    # The root is a `current` symlink switched between releases; the next lookup after a
    # switch is served from the new release, cache or no cache.
    releases = tmp_path / "releases"
    for n in range(2):
        (releases / str(n) / "js").mkdir(parents=True)
        (releases / str(n) / "js" / "app.js").write_bytes(b"release %d" % n)
    current = tmp_path / "current"
    current.symlink_to(releases / "0")
    cache = make_cache(current)
    for i in range(ROUNDS):
        expected = b"release %d" % (i % 2)
        assert _read(cache, "js", "app.js")[1] == expected
        assert _read(cache, "js", "app.js")[1] == expected
        _switch(current, releases / str((i + 1) % 2))
        assert _read(cache, "js", "app.js")[1] == b"release %d" % ((i + 1) % 2)
        assert cache.root.path == str(releases / str((i + 1) % 2))
