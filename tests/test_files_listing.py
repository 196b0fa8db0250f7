"""Directory listings: what is listed, in what order, and that no name can inject markup.

The HTML is read back with the stdlib's :class:`html.parser.HTMLParser`, an independent peer:
every link must resolve, against the directory's URL, to exactly the listed name, and every
label must show exactly that name, with its control and bidi characters escaped: the label
holds none, and Python's ``unicode_escape`` codec reads it back as the name.
"""

from __future__ import annotations

import gc
import os
import socket
import stat
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from tests.oracles import is_visible, unescape
from zerocopy.files import (
    PAGE_TAIL,
    DirectoryReader,
    Entry,
    Root,
    read_entries,
    render_head,
    render_listing,
    render_rows,
)


@dataclass
class Page(HTMLParser):
    """The links, tags and title of a rendered listing."""

    links: list[tuple[str, str]] = field(default_factory=list)  # (href, text)
    tags: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    title: str = ""
    _href: str | None = None
    _text: list[str] = field(default_factory=list)
    _in_title: bool = False

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag == "a":
            self._href = dict(attrs)["href"]
            self._text = []
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text)))
            self._href = None
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)
        if self._in_title:
            self.title += data


def parse(body: bytes) -> Page:
    page = Page()
    page.feed(body.decode("utf-8"))
    page.close()
    return page


def listing(directory: Path, *, follow: bool = False, within: Path | None = None) -> list[Entry]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return read_entries(
            fd, follow_symlinks=follow, within=None if within is None else str(within)
        )
    finally:
        os.close(fd)


def names(entries: list[Entry]) -> list[str]:
    return [entry.name + ("/" if entry.is_dir else "") for entry in entries]


HOSTILE_NAMES = [
    "<script>alert(1)<\\script>",
    "<script>",
    '"><img src=x onerror=alert(1)>',
    "'><b onmouseover=alert(1)>",
    "it's",
    "a&amp;b",
    "a&b",
    "sp ace",
    "100%",
    "%41%2F",
    "q?x=1",
    "h#frag",
    "javascript:alert(1)",
    "\\\\evil.example",
    "user@evil.example:80",
    "ünïcödé",
    "日本語",
    "emoji 😀",
    "tab\there",
    "new\nline",
    "back\\slash",
    "-",
    ".hidden",
    # Controls and bidi overrides: shown escaped, linked as they are.
    "cr\rlf\n",
    "esc\x1b[31mred",
    "bell\x07",
    "del\x7f",
    "c1 nel\x85 csi\x9b",
    "rlo \u202etxt.exe",
    "lre\u202a rle\u202b pdf\u202c lro\u202d",
    "isolates \u2066 \u2067 \u2068 \u2069",
    "marks \u200e \u200f \u061c",
    "separators \u2028 \u2029",
    "\\x0a is not a newline",
]


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    directory = tmp_path / "hostile"
    directory.mkdir()
    for index, name in enumerate(HOSTILE_NAMES):
        (directory / name).write_bytes(b"x" * index)
        (directory / f"dir {name}").mkdir()
    return directory


def test_order_is_directories_first_then_names(tmp_path: Path) -> None:
    for name in ["b.txt", "A.txt", "a.txt", "c"]:
        (tmp_path / name).write_text(name)
    for name in ["zdir", "Bdir", "adir"]:
        (tmp_path / name).mkdir()
    assert names(listing(tmp_path)) == ["Bdir/", "adir/", "zdir/", "A.txt", "a.txt", "b.txt", "c"]


def test_entries_describe_the_files(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    os.utime(tmp_path / "f", (1_000_000_000, 1_000_000_000))
    (tmp_path / "d").mkdir()
    file, directory = listing(tmp_path)[::-1]
    assert file == Entry("f", False, 5, 1_000_000_000.0)
    assert directory.name == "d"
    assert directory.is_dir
    body = render_listing([directory, file], "/x/")
    assert b"2001-09-09 01:46" in body


@pytest.mark.parametrize("path", ["/", "/sub/", "/a/b/"])
def test_every_link_is_exactly_its_name(hostile: Path, path: str) -> None:
    entries = listing(hostile)
    assert len(entries) == 2 * len(HOSTILE_NAMES)
    page = parse(render_listing(entries, path))
    links = page.links if path == "/" else page.links[1:]
    assert len(links) == len(entries)
    base = "http://example.test" + path
    for (href, text), entry in zip(links, entries, strict=True):
        shown = entry.name + ("/" if entry.is_dir else "")
        assert is_visible(text), text
        assert unescape(text) == shown
        url = urlsplit(urljoin(base, href))
        # Nothing leaked out of the path: no other host, scheme, query or fragment.
        assert (url.scheme, url.netloc, url.query, url.fragment) == ("http", "example.test", "", "")
        assert unquote(url.path, errors="strict") == path + shown


def test_no_markup_is_injected(hostile: Path) -> None:
    page = parse(render_listing(listing(hostile), '/<script>alert("t")</script>&/'))
    assert page.tags == {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "table",
        "tr",
        "th",
        "td",
        "a",
    }
    assert page.attributes == {"lang", "charset", "href", "class"}
    assert page.title == 'Index of /<script>alert("t")</script>&/'


def test_controls_are_escaped_in_labels_and_title_not_in_links() -> None:
    names = ["new\nline", "esc\x1b[2J", "c1\x9b", "rlo\u202etxt.exe", "iso\u2067x\u2069", "a\\b"]
    body = render_listing([Entry(name, False, 1, 0.0) for name in names], "/d\r\n\u202e/")
    page = parse(body)
    assert [text for _, text in page.links[1:]] == [
        "new\\nline",
        "esc\\x1b[2J",
        "c1\\x9b",
        "rlo\\u202etxt.exe",
        "iso\\u2067x\\u2069",
        "a\\\\b",
    ]
    assert [href for href, _ in page.links[1:]] == [
        "./new%0Aline",
        "./esc%1B%5B2J",
        "./c1%C2%9B",
        "./rlo%E2%80%AEtxt.exe",
        "./iso%E2%81%A7x%E2%81%A9",
        "./a%5Cb",
    ]
    assert page.title == "Index of /d\\r\\n\\u202e/"
    # No raw control or bidi character anywhere in the page but its own line breaks.
    assert is_visible(body.decode().replace("\n", ""))


@pytest.mark.parametrize(("path", "parent"), [("/", False), ("/sub/", True), ("/a/b/", True)])
def test_parent_link_except_at_the_top(tmp_path: Path, path: str, parent: bool) -> None:
    (tmp_path / "f").write_text("f")
    page = parse(render_listing(listing(tmp_path), path))
    assert (page.links[0] == ("../", "../")) is parent
    assert len(page.links) == 1 + parent


def test_empty_directory(tmp_path: Path) -> None:
    assert listing(tmp_path) == []
    assert parse(render_listing([], "/")).links == []


def test_names_that_are_not_utf8_are_left_out(tmp_path: Path) -> None:
    base = os.fsencode(tmp_path)
    for raw in [b"bad\xff.txt", b"\xc0\xae", b"\xed\xa0\x80surrogate"]:
        with open(base + b"/" + raw, "wb") as f:
            f.write(b"x")
    os.mkdir(base + b"/dir\xfe")
    (tmp_path / "good.txt").write_text("g")
    assert len(os.listdir(base)) == 5
    assert names(listing(tmp_path)) == ["good.txt"]


def test_fifos_and_sockets_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("f")
    monkeypatch.chdir(tmp_path)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("sock")
        assert stat.S_ISSOCK(os.stat(tmp_path / "sock").st_mode)
        assert names(listing(tmp_path)) == ["file"]


@dataclass
class Links:
    root: Path  # The served root.
    directory: Path  # The listed directory, inside the root.


@pytest.fixture
def links(tmp_path: Path) -> Links:
    root = tmp_path / "root"
    directory = root / "listed"
    directory.mkdir(parents=True)
    (root / "target.txt").write_bytes(b"12345678")
    (root / "target_dir").mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    (tmp_path / "outside_dir").mkdir()
    os.mkfifo(root / "fifo")
    (directory / "plain.txt").write_text("p")
    os.symlink("../target.txt", directory / "to_file")
    os.symlink("../target_dir", directory / "to_dir")
    os.symlink(root, directory / "to_root")
    os.symlink("nowhere", directory / "dangling")
    os.symlink("loop", directory / "loop")
    os.symlink("../fifo", directory / "to_fifo")
    os.symlink(tmp_path / "outside.txt", directory / "out_file")
    os.symlink("../../outside_dir", directory / "out_dir")
    os.symlink("/etc/passwd", directory / "etc_passwd")
    return Links(root, directory)


def test_symlinks_hidden_without_follow(links: Links) -> None:
    assert names(listing(links.directory)) == ["plain.txt"]
    assert names(listing(links.directory, within=links.root)) == ["plain.txt"]


def test_symlinks_shown_as_their_targets_with_follow(links: Links) -> None:
    entries = listing(links.directory, follow=True, within=links.root)
    assert names(entries) == ["to_dir/", "to_root/", "plain.txt", "to_file"]
    to_file = entries[-1]
    target = os.stat(links.root / "target.txt")
    assert (to_file.size, to_file.mtime) == (8, target.st_mtime)


def test_symlinks_out_of_the_root_are_left_out(links: Links) -> None:
    # Listing them would show the size and date of files outside the root; opening them is
    # a 404 anyway.
    root = Root(str(links.root), follow_symlinks=True)
    shown = set(names(listing(links.directory, follow=True, within=links.root)))
    for name in ["out_file", "out_dir", "etc_passwd"]:
        assert os.path.exists(links.directory / name)
        assert name not in shown
        assert name + "/" not in shown
    # And what is listed can be opened.
    for name in shown:
        root.open(["listed", name.rstrip("/")]).close()


def test_without_a_root_every_resolving_link_is_listed(links: Links) -> None:
    shown = names(listing(links.directory, follow=True))
    assert shown == [
        "out_dir/",
        "to_dir/",
        "to_root/",
        "etc_passwd",
        "out_file",
        "plain.txt",
        "to_file",
    ]


def test_file_system_root_as_within(links: Links) -> None:
    shown = names(listing(links.directory, follow=True, within=Path(links.root.anchor)))
    assert "out_file" in shown
    assert "dangling" not in shown


def test_reading_borrows_the_descriptor(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("f")
    before = len(os.listdir("/proc/self/fd"))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        first = read_entries(fd, follow_symlinks=False)
        second = read_entries(fd, follow_symlinks=True)  # The same descriptor, read again.
        os.fstat(fd)  # Still open.
    finally:
        os.close(fd)
    assert first == second
    assert names(first) == ["f"]
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("mtime", [1e17, -1e17, 2.0**70])
def test_dates_beyond_time_t_do_not_break_the_page(mtime: float) -> None:
    # tmpfs keeps 64-bit seconds, so `touch -d @100000000000000000` is a real file's date.
    body = render_listing([Entry("far", False, 1, mtime), Entry("near", False, 1, 0.0)], "/")
    page = parse(body)
    assert [text for _, text in page.links] == ["far", "near"]
    assert b"1970-01-01 00:00" in body


def test_directory_size_is_not_shown() -> None:
    body = render_listing([Entry("d", True, 4096, 0.0), Entry("f", False, 4096, 0.0)], "/")
    assert body.count(b">4096<") == 1


# -- bounds: at most `limit` entries read, in batches, and a note when the directory is cut ------


def _reader(directory: Path, limit: int) -> tuple[DirectoryReader, int]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return DirectoryReader(fd, follow_symlinks=False, limit=limit), fd


@pytest.mark.parametrize(("count", "limit", "cut"), [(12, 5, True), (5, 5, False), (4, 5, False)])
def test_reader_reads_at_most_the_limit(tmp_path: Path, count: int, limit: int, cut: bool) -> None:
    for index in range(count):
        (tmp_path / f"f{index:02d}").write_text("x")
    reader, fd = _reader(tmp_path, limit)
    try:
        assert reader.read(1000)
    finally:
        reader.close()
        os.close(fd)
    assert reader.examined == min(count, limit)
    assert len(reader.entries) == min(count, limit)
    assert reader.cut is cut
    # Whatever was read is sorted, and is some of the directory's own names.
    names = [row[0] for row in reader.entries]
    assert names == sorted(names)
    assert set(names) <= set(os.listdir(tmp_path))


def test_reader_reads_one_batch_per_call(tmp_path: Path) -> None:
    for index in range(10):
        (tmp_path / f"f{index}").write_text("x")
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "fifo")  # read, counted, not listed
    reader, fd = _reader(tmp_path, limit=100)
    try:
        progress = []
        while not reader.read(4):
            progress.append(reader.examined)
        progress.append(reader.examined)
        assert reader.read(4)  # done stays done
    finally:
        reader.close()
        os.close(fd)
    assert progress == [4, 8, 12, 12]
    assert not reader.cut
    assert [(name, is_dir) for name, is_dir, _, _ in reader.entries] == [("d", True)] + [
        (f"f{index}", False) for index in range(10)
    ]


def test_a_reader_closed_early_releases_its_directory(tmp_path: Path) -> None:
    for index in range(10):
        (tmp_path / f"f{index}").write_text("x")
    before = len(os.listdir("/proc/self/fd"))
    reader, fd = _reader(tmp_path, limit=100)
    assert not reader.read(3)  # scandir holds a duplicate of fd now
    assert len(os.listdir("/proc/self/fd")) == before + 2
    reader.close()
    reader.close()  # idempotent
    assert len(os.listdir("/proc/self/fd")) == before + 1
    with pytest.raises(ValueError, match="after close"):
        reader.read(3)  # not read again from the start
    os.close(fd)


def test_rows_are_not_tracked_by_the_garbage_collector(tmp_path: Path) -> None:
    # The entries of listings in flight must not lengthen full collections, which stall the
    # event loop (see listing.Row): plain tuples of str and numbers are untracked.
    for index in range(3):
        (tmp_path / f"f{index}").write_text("x")
    reader, fd = _reader(tmp_path, limit=100)
    try:
        reader.read(100)
    finally:
        reader.close()
        os.close(fd)
    gc.collect()
    assert reader.entries
    assert not any(gc.is_tracked(row) for row in reader.entries)


def test_read_entries_takes_a_limit(tmp_path: Path) -> None:
    for index in range(7):
        (tmp_path / f"f{index}").write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        assert len(read_entries(fd, follow_symlinks=False, limit=3)) == 3
        assert len(read_entries(fd, follow_symlinks=False)) == 7
    finally:
        os.close(fd)


def test_a_cut_listing_says_so_and_a_whole_one_does_not() -> None:
    rows = [Entry("a", False, 1, 0.0), Entry("b", False, 1, 0.0)]
    whole = render_listing(rows, "/d/")
    cut = render_listing(rows, "/d/", cut=(10_000, 2))
    assert b'class="cut"' not in whole
    assert cut.count(b'class="cut"') == 1
    assert b"more than 10,000 entries" in cut
    assert b"The 2 shown" in cut
    assert parse(cut).links == parse(whole).links  # the note links nowhere


def test_the_page_is_its_pieces() -> None:
    rows = [Entry("d", True, 0, 0.0), Entry("f", False, 3, 0.0)]
    assert (
        render_listing(rows, "/x/")
        == render_head("/x/") + render_rows(rows[:1]) + render_rows(rows[1:]) + PAGE_TAIL
    )
