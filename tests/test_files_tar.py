"""The tar layout and the walk that plans an archive.

Headers are read back with Python's ``tarfile`` (an independent reader) and, for the layout
as a whole, GNU tar; the walk is checked against the rules of single files: what
``Root.open`` refuses is left out.
"""

from __future__ import annotations

import gc
import io
import os
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerocopy.files import Root
from zerocopy.files.tar import (
    BLOCK,
    END,
    TreeWalker,
    member_header,
    member_length,
    padding,
)

EIGHT_GIB = 8 * 1024**3


def _archive(members: list[tuple[str, bool, bytes, float]]) -> bytes:
    out = b""
    for name, is_dir, data, mtime in members:
        out += member_header(name, is_dir=is_dir, size=len(data), mtime=mtime, executable=False)
        out += data + padding(len(data))
    return out + END


def _read(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as reader:
        return reader.getmembers()


HEADER_CASES = [
    # name, is_dir, size, mtime, pax expected
    ("top/a.txt", False, 5, 1_700_000_000, False),
    ("top", True, 0, 1_700_000_000, False),
    ("t/" + "x" * 98, False, 1, 0, False),  # exactly 100 bytes
    ("t/" + "x" * 99, False, 1, 0, True),  # 101 bytes
    ("t/" + "x" * 97, True, 0, 0, False),  # 99 bytes and the directory's slash: 100
    ("t/" + "x" * 98, True, 0, 0, True),  # 101 with the slash
    ("t/ünï.txt", False, 3, 0, True),  # not ASCII
    ("t/日本語/ファイル", False, 3, 0, True),
    ("t/old", False, 1, -86_400, True),  # before 1970
    ("t/far", False, 1, 0o77777777777, False),
    ("t/farther", False, 1, 0o77777777777 + 1, True),
    ("t/fraction", False, 1, 1.75, False),
    ("t/tab\tand space", False, 1, 0, False),
]


@pytest.mark.parametrize(("name", "is_dir", "size", "mtime", "pax"), HEADER_CASES)
def test_headers_read_back(name: str, is_dir: bool, size: int, mtime: float, pax: bool) -> None:
    data = b"" if is_dir else bytes(range(size))
    header = member_header(name, is_dir=is_dir, size=size, mtime=mtime, executable=False)
    assert len(header) % BLOCK == 0
    assert (len(header) > BLOCK) is pax
    assert member_length(name, is_dir=is_dir, size=size, mtime=mtime) == len(
        header + data + padding(len(data))
    )
    (info,) = _read(_archive([(name, is_dir, data, mtime)]))
    assert info.name == name
    assert info.isdir() is is_dir
    assert info.size == size
    assert int(info.mtime) == int(mtime)
    assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root")
    assert info.mode == (0o755 if is_dir else 0o644)


def test_executable_files_keep_their_execute_bits_and_nothing_else() -> None:
    header = member_header("t/run", is_dir=False, size=0, mtime=0, executable=True)
    (info,) = _read(header + END)
    assert info.mode == 0o755


def test_sizes_of_8_gib_and_more_go_in_a_pax_record() -> None:
    # No data follows, so read the headers only: the pax record carries the size.
    for size, pax in [(EIGHT_GIB - 1, False), (EIGHT_GIB, True), (1 << 40, True)]:
        header = member_header("t/big", is_dir=False, size=size, mtime=0, executable=False)
        assert (len(header) > BLOCK) is pax
        if pax:
            assert b" size=%d\n" % size in header
        with tarfile.open(fileobj=io.BytesIO(header + bytes(10 * BLOCK)), mode="r|") as reader:
            info = reader.next()
        assert info is not None
        assert info.size == size


def test_the_padding_makes_whole_blocks() -> None:
    for size in [0, 1, 511, 512, 513, 1024, 100_000]:
        assert (size + len(padding(size))) % BLOCK == 0
        assert len(padding(size)) < BLOCK
        assert set(padding(size)) <= {0}


names = st.lists(
    st.text(
        st.characters(codec="utf-8", exclude_characters="/\x00"),
        min_size=1,
        max_size=80,
    ).filter(lambda name: name not in (".", "..")),
    min_size=1,
    max_size=4,
).map("/".join)


@given(
    name=names,
    size=st.integers(0, 2000),
    mtime=st.integers(-(10**12), 10**12),
    is_dir=st.booleans(),
)
def test_any_member_reads_back(name: str, size: int, mtime: int, is_dir: bool) -> None:
    data = b"" if is_dir else os.urandom(size)
    archive = _archive([("top/" + name, is_dir, data, mtime)])
    assert len(archive) == member_length(
        "top/" + name, is_dir=is_dir, size=len(data), mtime=mtime
    ) + len(END)
    (info,) = _read(archive)
    assert info.name == "top/" + name
    assert info.size == len(data)
    assert int(info.mtime) == mtime


def test_gnu_tar_reads_the_layout(tmp_path: Path) -> None:
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is not installed (apt-get install tar)")
    archive = _archive(
        [
            ("top", True, b"", 1_700_000_000),
            ("top/" + "n" * 150, False, b"long", 1_700_000_000),
            ("top/ünï", False, b"u" * 512, -3600),
            ("top/e", False, b"", 0),
        ]
    )
    (tmp_path / "a.tar").write_bytes(archive)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([tar, "-xf", str(tmp_path / "a.tar"), "-C", str(out)], check=True)
    assert (out / "top" / ("n" * 150)).read_bytes() == b"long"
    assert (out / "top" / "ünï").read_bytes() == b"u" * 512
    assert (out / "top" / "ünï").stat().st_mtime == -3600
    assert (out / "top" / "e").read_bytes() == b""


# -- the walk ----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp_path/root`` holding ``d``: files, nested directories, and what must be left out;
    ``tmp_path/outside`` beside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    root = tmp_path / "root"
    d = root / "d"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "empty").write_bytes(b"")
    (d / "sub" / "b.txt").write_text("bb")
    (d / "sub" / "deeper" / "c.txt").write_text("ccc")
    (d / ".git").mkdir()
    (d / ".git" / "config").write_text("x")
    (d / ".env").write_text("x")
    (d / ".well-known").mkdir()  # only exempt at the top of the root
    os.symlink(outside / "secret", d / "link-out")
    os.symlink(outside, d / "dir-out")
    os.symlink("a.txt", d / "link-in")
    os.symlink("sub", d / "dir-in")
    os.symlink("nowhere", d / "dangling")
    os.mkfifo(d / "fifo")
    with socket.socket(socket.AF_UNIX) as listener:
        cwd = os.getcwd()
        os.chdir(d)
        try:
            listener.bind("sock")
        finally:
            os.chdir(cwd)
    return root


def _walk(
    root_path: Path,
    segments: tuple[str, ...] = ("d",),
    *,
    follow: bool = False,
    dotfiles: bool = False,
    max_entries: int = 1000,
    max_bytes: int = 1 << 30,
    step: int = 3,
) -> TreeWalker:
    root = Root(str(root_path), follow_symlinks=follow)
    walker = TreeWalker(
        root,
        segments,
        name=segments[-1] if segments else "root",
        dotfiles=dotfiles,
        max_entries=max_entries,
        max_bytes=max_bytes,
    )
    try:
        while not walker.walk(step):
            pass
    finally:
        walker.close()
        root.close()
    return walker


def _paths(walker: TreeWalker) -> list[str]:
    return [walker.archive_name(member) + ("/" if member[1] else "") for member in walker.members]


def test_the_walk_takes_what_a_get_could_fetch(tree: Path) -> None:
    walker = _walk(tree)
    paths = _paths(walker)
    assert paths[0] == "d/"
    assert set(paths[1:3]) == {"d/a.txt", "d/empty"}  # its files, in directory order
    assert paths[3:] == ["d/sub/", "d/sub/b.txt", "d/sub/deeper/", "d/sub/deeper/c.txt"]
    assert walker.over is None
    assert walker.examined == 16  # every name read, listed or not


def test_an_archive_is_its_members(tree: Path) -> None:
    walker = _walk(tree)
    archive = b""
    for member in walker.members:
        _, is_dir, size, mtime, executable = member
        name = walker.archive_name(member)
        archive += member_header(name, is_dir=is_dir, size=size, mtime=mtime, executable=executable)
        if not is_dir:
            archive += (tree / Path(*walker.segments(member))).read_bytes() + padding(size)
    archive += END
    assert len(archive) == walker.length
    read = {info.name: info for info in _read(archive)}
    assert read["d/sub/deeper/c.txt"].size == 3


def test_names_no_request_can_reach_are_left_out(tree: Path) -> None:
    base = os.fsencode(tree / "d")
    for raw in (b"back\\slash", b"bad\xff", b"\xed\xa0\x80surrogate"):
        with open(base + b"/" + raw, "wb") as f:
            f.write(b"x")
    paths = _paths(_walk(tree))
    assert "d/a.txt" in paths
    assert not [path for path in paths if "\\" in path or "slash" in path or "bad" in path]


def test_dot_files_with_dotfiles_allow(tree: Path) -> None:
    paths = _paths(_walk(tree, dotfiles=True))
    assert {"d/.git/", "d/.git/config", "d/.env", "d/.well-known/"} <= set(paths)


def test_well_known_is_walked_at_the_top_of_the_root(tree: Path) -> None:
    (tree / ".well-known").mkdir()
    (tree / ".well-known" / "security.txt").write_text("x")
    (tree / ".hidden").write_text("x")
    paths = _paths(_walk(tree, ()))
    assert "root/.well-known/security.txt" in paths
    assert "root/.hidden" not in paths
    assert "root/d/.well-known/" not in paths


def test_with_follow_links_inside_are_walked_and_links_out_are_not(tree: Path) -> None:
    paths = _paths(_walk(tree, follow=True))
    assert "d/link-in" in paths
    assert "d/dir-in/" in paths
    assert "d/dir-in/b.txt" in paths
    for name in ("link-out", "dir-out/", "dir-out/secret", "dangling", "fifo", "sock"):
        assert f"d/{name}" not in paths


def test_a_link_to_an_ancestor_is_not_walked_again(tree: Path) -> None:
    os.symlink("..", tree / "d" / "sub" / "up")
    os.symlink(".", tree / "d" / "self")
    walker = _walk(tree, follow=True)
    assert walker.over is None
    paths = _paths(walker)
    assert "d/sub/up/" not in paths
    assert "d/self/" not in paths


def test_unreadable_files_are_left_out(tree: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file: faccessat cannot refuse it")
    (tree / "d" / "a.txt").chmod(0)
    assert "d/a.txt" not in _paths(_walk(tree))


def test_an_unopenable_directory_is_left_out_with_its_tree(tree: Path) -> None:
    # A directory whose path goes through a symlink is refused by Root.open without follow:
    # here the walked directory itself.
    os.symlink("d", tree / "d-link")
    walker = _walk(tree, ("d-link",))
    assert walker.members == []
    assert walker.length == len(END)


@pytest.mark.parametrize(("limit", "over"), [(5, "entries"), (16, None), (15, "entries")])
def test_the_walk_reads_at_most_max_entries(tree: Path, limit: int, over: str | None) -> None:
    walker = _walk(tree, max_entries=limit)
    assert walker.over == over
    assert walker.examined <= limit + 1
    assert walker.done


def test_the_walk_stops_past_max_bytes(tree: Path) -> None:
    full = _walk(tree).length
    assert _walk(tree, max_bytes=full).over is None
    short = _walk(tree, max_bytes=full - 1)
    assert short.over == "bytes"
    assert short.length <= full - 1


def test_the_walk_stops_at_the_first_member_past_max_bytes(tree: Path) -> None:
    # At every boundary, a directory's header or a file's: the members are exactly those that
    # fit, and the walk reads nothing after the one that did not.
    full = _walk(tree)
    ends = []
    length = 0
    for member in full.members:
        _, is_dir, size, mtime, _ = member
        length += member_length(full.archive_name(member), is_dir=is_dir, size=size, mtime=mtime)
        ends.append(length)
    assert any(member[1] for member in full.members[1:])  # directories after the first
    for index, end in enumerate(ends):
        fits = _walk(tree, max_bytes=end + len(END))
        assert fits.members[: index + 1] == full.members[: index + 1]
        short = _walk(tree, max_bytes=end + len(END) - 1)
        assert short.over == "bytes"
        assert short.members == full.members[:index]
        assert short.length == (ends[index - 1] if index else 0)


def test_the_walk_goes_in_steps(tree: Path) -> None:
    root = Root(str(tree))
    walker = TreeWalker(root, ("d",), name="d", dotfiles=False, max_entries=100, max_bytes=1 << 30)
    progress = []
    try:
        while not walker.walk(2):
            progress.append(walker.examined)
        assert walker.walk(2)  # done stays done
    finally:
        walker.close()
        root.close()
    assert all(
        later - earlier <= 2 for earlier, later in zip([0, *progress], progress, strict=False)
    )
    assert len(progress) >= 16 // 2


def test_the_walk_holds_one_directory_and_releases_it(tree: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    root = Root(str(tree))
    walker = TreeWalker(root, ("d",), name="d", dotfiles=False, max_entries=100, max_bytes=1 << 30)
    assert not walker.walk(1)
    # The root, the directory being read and scandir's duplicate of it.
    assert len(os.listdir("/proc/self/fd")) == before + 3
    walker.close()
    walker.close()  # idempotent
    assert len(os.listdir("/proc/self/fd")) == before + 1
    with pytest.raises(ValueError, match="after close"):
        walker.walk(1)
    root.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_members_are_not_tracked_by_the_garbage_collector(tree: Path) -> None:
    walker = _walk(tree)
    gc.collect()
    assert walker.members
    assert not any(gc.is_tracked(member) for member in walker.members)
