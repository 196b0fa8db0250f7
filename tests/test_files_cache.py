"""The open-file cache reuses a descriptor only while the path still names the same file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import open_fd_count
from zerocopy.files import OpenFileCache, Refused, Root


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


def _replace_by_rename(path: Path, data: bytes) -> None:
    fresh = path.with_name("fresh")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def _read(cache: OpenFileCache, name: str) -> tuple[int, bytes]:
    opened = cache.open((name,))
    try:
        return opened.fd, os.pread(opened.fd, 100, 0)
    finally:
        opened.close()


def test_hit_reuses_the_descriptor(tree: Path) -> None:
    cache = OpenFileCache(Root(str(tree)))
    fd1, data1 = _read(cache, "a.txt")
    fd2, data2 = _read(cache, "a.txt")
    assert (fd1, data1) == (fd2, data2) == (fd1, b"first")
    assert cache.statistics().hits == 1
    assert cache.statistics().misses == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: p.write_bytes(b"second"), id="rewritten"),
        pytest.param(lambda p: os.utime(p, ns=(0, 12345)), id="touched"),
        pytest.param(lambda p: os.chmod(p, 0o600), id="chmod"),
        pytest.param(lambda p: _replace_by_rename(p, b"second"), id="replaced-by-rename"),
    ],
)
def test_a_changed_file_is_reopened(tree: Path, change) -> None:
    cache = OpenFileCache(Root(str(tree)))
    _read(cache, "a.txt")
    change(tree / "a.txt")
    _fd, data = _read(cache, "a.txt")
    assert data == (tree / "a.txt").read_bytes()
    assert cache.statistics().misses == 2


def test_a_file_swapped_for_a_symlink_is_refused(tree: Path) -> None:
    cache = OpenFileCache(Root(str(tree)))
    _read(cache, "a.txt")
    (tree / "a.txt").unlink()
    (tree / "a.txt").symlink_to(tree.parent / "outside.txt")
    with pytest.raises(Refused) as info:
        cache.open(("a.txt",))
    assert info.value.status_hint == 403


def test_a_deleted_file_is_gone(tree: Path) -> None:
    cache = OpenFileCache(Root(str(tree)))
    _read(cache, "a.txt")
    (tree / "a.txt").unlink()
    with pytest.raises(Refused) as info:
        cache.open(("a.txt",))
    assert info.value.status_hint == 404


def test_eviction_waits_for_borrowers(tree: Path) -> None:
    cache = OpenFileCache(Root(str(tree)), max_entries=1)
    held = cache.open(("a.txt",))
    _read(cache, "b.txt")  # evicts a.txt while it is borrowed
    assert os.pread(held.fd, 100, 0) == b"first"  # still open
    held.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(held.fd)  # closed once given back
    assert cache.statistics().entries == 1


def test_inactive_entries_are_closed(tree: Path) -> None:
    clock = FakeClock()
    cache = OpenFileCache(Root(str(tree)), inactive=20.0, clock=clock)
    _read(cache, "a.txt")
    clock.now += 30
    _read(cache, "b.txt")
    assert cache.statistics().entries == 1
    assert cache.statistics().evictions == 1


def test_disabled_cache_opens_every_time(tree: Path) -> None:
    cache = OpenFileCache(Root(str(tree)), max_entries=0)
    before = open_fd_count()
    _read(cache, "a.txt")
    _read(cache, "a.txt")
    assert cache.statistics().hits == 0
    assert open_fd_count() == before


def test_directories_are_not_cached_and_nothing_leaks(tree: Path) -> None:
    (tree / "d").mkdir()
    cache = OpenFileCache(Root(str(tree)))
    before = open_fd_count()
    for _ in range(5):
        cache.open(("d",)).close()
        _read(cache, "a.txt")
        with pytest.raises(Refused):
            cache.open(("missing",))
    assert cache.statistics().entries == 1
    cache.clear()
    assert open_fd_count() == before


def test_a_directory_moved_out_of_the_root_is_not_served_from_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_bytes(b"private now")
    outside = tmp_path / "outside"
    for follow in (False, True):
        cache = OpenFileCache(Root(str(root), follow_symlinks=follow))
        opened = cache.open(("d", "f.txt"))
        opened.close()
        # The directory leaves the root; a symlink in its place still reaches the same file.
        os.rename(root / "d", outside)
        (root / "d").symlink_to(outside)
        with pytest.raises(Refused) as info:
            cache.open(("d", "f.txt"))
        assert info.value.status_hint == (404 if follow else 403)
        cache.clear()
        (root / "d").unlink()
        os.rename(outside, root / "d")
