"""HTML directory listings.

Every name is HTML-escaped for display and percent-encoded for its link, so a file called
``<script>`` or ``a"b`` or ``?x=1`` is shown and linked as itself.

What a name shows is made visible first, as ``ls -b`` does: control characters (C0, DEL, C1)
and bidi controls (U+202A-U+202E, U+2066-U+2069 and the bidi marks) are written as escapes
(``\\n``, ``\\x1b``, ``\\u202e``), and a backslash as ``\\\\``, by
:func:`zerocopy.logtext.safe_text`. So a name cannot break the page's lines, drive a terminal
when the page is read as text, or, with U+202E (RIGHT-TO-LEFT OVERRIDE) before ``txt.exe``,
pass for ``exe.txt``. The link still carries the real name, percent-encoded, so it opens the
file. The title (the request path) is shown the same way.

Names that are not valid UTF-8 cannot be requested (the HTTP layer refuses such paths), so they
are left out. Symlinks are listed only when the server follows them, and then only when they
lead somewhere under the root, as :meth:`Root.open <zerocopy.files.Root.open>` checks it: the
link is opened with ``O_PATH`` (which neither opens a device nor waits on a FIFO),
``/proc/self/fd`` names what it resolved to, and ``fstat`` of that descriptor describes it. A
link that leads out is left out rather than shown with the size and date of a file outside the
root (aiohttp CVE-2024-42367 served such targets). FIFOs, sockets, devices and dangling links
are left out too: they would only be refused.

Bounds. A directory may hold millions of names, and a listing must cost the same whatever it
holds: :class:`DirectoryReader` reads at most ``limit`` directory entries (listed or not), one
batch per call, so that its caller can run each batch in a worker thread and stop between
batches. The entries read are the first in the directory's own order (hash order on ext4),
then sorted; Caddy's ``browse`` does the same with its default limit of 10,000
(``file_limit``). A directory holding more is cut, and the page says so
(:func:`render_head` with ``cut``). Sorting the whole directory to show its alphabetically
first entries would read every name, which is the unbounded cost this avoids.

The page is rendered in pieces, so that it can be streamed: :func:`render_head`, then
:func:`render_rows` for each batch of entries, then :data:`PAGE_TAIL`.
"""

from __future__ import annotations

import html
import os
import stat
import time
from typing import TYPE_CHECKING, Final, NamedTuple, final
from urllib.parse import quote

from zerocopy.logtext import safe_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "MAX_LISTING_ENTRIES",
    "PAGE_TAIL",
    "DirectoryReader",
    "Entry",
    "Row",
    "read_entries",
    "render_head",
    "render_listing",
    "render_rows",
]

MAX_LISTING_ENTRIES: Final = 10_000
"""The most directory entries one listing reads. Caddy's ``browse`` reads 10,000
(``defaultDirEntryLimit``); GitHub's file view stops at 1,000. At about 300 bytes a row that is
a 3 MB page, which a browser still shows at once, and about 30 ms of rendering in a worker
thread; beyond that, a page is no way to find a file."""

_PAGE_HEAD: Final = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>Index of {title}</title>\n"
    "<style>body{{font-family:sans-serif}}td{{padding:0 1em 0 0}}"
    "td.size{{text-align:right}}</style>\n"
    "</head>\n<body>\n<h1>Index of {title}</h1>\n{note}<table>\n"
    "<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
)
_NOTE: Final = (
    '<p class="cut">Only part of this directory is listed: it holds more than {limit:,} '
    "entries, the most this server reads for one listing. The {shown:,} shown are among those "
    "it read first, in the directory's own order, not the first by name; the others can still "
    "be fetched by name.</p>\n"
)
_PARENT: Final = '<tr><td><a href="../">../</a></td><td></td><td></td></tr>\n'
PAGE_TAIL: Final = b"</table>\n</body>\n</html>\n"
"""The end of every listing page."""


@final
class Entry(NamedTuple):
    """One listed name.

    Attributes:
        name: The file name, valid UTF-8.
        is_dir: A directory (or, when symlinks are followed, a link to one).
        size: ``st_size`` of the file (or of the link's target).
        mtime: ``st_mtime`` of the same.
    """

    name: str
    is_dir: bool
    size: int
    mtime: float


Row = tuple[str, bool, int, float]
"""An :class:`Entry` as a plain tuple, as :class:`DirectoryReader` holds it. The garbage
collector stops tracking a plain tuple of strings and numbers after its first pass (not a
``NamedTuple``, nor a dataclass), so the entries of listings in flight do not lengthen full
collections. Those run in whichever thread allocates, holding the GIL, and so stall the event
loop: with dataclasses, eight listings of 10,000 entries made collections of 20 to 40 ms."""


def _sort_key(row: Row) -> tuple[bool, str]:
    return (not row[1], row[0])


@final
class DirectoryReader:
    """Reads an open directory's entries, a batch at a time, at most ``limit`` of them.

    Args:
        fd: An open directory. Borrowed: ``scandir`` works on a duplicate of it (which it
            rewinds and closes), and the caller closes ``fd`` after :meth:`close`.
        follow_symlinks: List symlinks (described by their targets) instead of hiding them.
        within: The root's real path (``Root.path``). With ``follow_symlinks``, a link whose
            target does not lie under it is left out. ``None`` lists every link that resolves.
        limit: The most directory entries to read, listed or not. One more is looked at, to
            tell whether the directory holds more (:attr:`cut`).
        hidden: Names not listed though read (dot files, when they are not served): a
            function of the name.

    Attributes:
        entries: What was read and is listed, as :data:`Row` tuples: regular files and
            directories, with symlinks as described above; sorted (directories first, then by
            name) once :attr:`done`.
        examined: Directory entries read so far, listed or not.
        cut: The directory holds more than ``limit`` entries (known once :attr:`done`).
        done: Every entry, or ``limit`` of them, has been read.

    Resource handling: the ``scandir`` iterator (a duplicate descriptor) is closed when the
    reading is done, or by :meth:`close`, which the caller must call when it stops early
    (idempotent).

    Blocks: :meth:`read` does disk I/O on a cold directory; the server calls it in a worker
    thread. Calls must not overlap.
    """

    def __init__(
        self,
        fd: int,
        *,
        follow_symlinks: bool,
        within: str | None = None,
        limit: int,
        hidden: Callable[[str], bool] | None = None,
    ) -> None:
        self._fd = fd
        self._hidden = hidden
        self._follow = follow_symlinks
        self._beneath = None if within is None else os.fsencode(within).rstrip(b"/") + b"/"
        self._limit = limit
        self._scan: Iterator[os.DirEntry[str]] | None = None
        self._closed = False
        self.entries: list[Row] = []
        self.examined = 0
        self.cut = False
        self.done = False

    def read(self, count: int) -> bool:
        """Read up to ``count`` more directory entries; returns :attr:`done`.

        When the reading ends, the entries are sorted and the directory is closed.

        Raises:
            OSError: The directory could not be read (EIO, ...). Entries that vanish or cannot
                be described are skipped, not raised.
        """
        if self.done:
            return True
        if self._closed:
            raise ValueError("DirectoryReader.read() after close()")
        if self._scan is None:
            self._scan = os.scandir(self._fd)
        scan = self._scan
        add = self.entries.append
        for _ in range(min(count, self._limit - self.examined)):
            item = next(scan, None)
            if item is None:
                break
            self.examined += 1
            entry = self._describe(item)
            if entry is not None:
                add(entry)
        else:
            if self.examined < self._limit:
                return False  # ``count`` read; more to come.
            self.cut = next(scan, None) is not None
        self.done = True
        self.close()
        self.entries.sort(key=_sort_key)
        return True

    def close(self) -> None:
        """Close the directory stream (the borrowed ``fd`` stays open). Idempotent."""
        self._closed = True
        scan, self._scan = self._scan, None
        if scan is not None:
            scan.close()  # type: ignore[attr-defined]

    def _describe(self, item: os.DirEntry[str]) -> Row | None:
        """The row for ``item``, or ``None`` when it is not listed."""
        name = item.name
        if self._hidden is not None and self._hidden(name):
            return None
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # Undecodable bytes, held as surrogates.
            return None
        try:
            if not item.is_symlink():
                info = item.stat(follow_symlinks=False)
            elif not self._follow:
                return None
            elif self._beneath is None:
                info = item.stat(follow_symlinks=True)
            else:
                found = _link_target(self._fd, name, self._beneath)
                if found is None:
                    return None
                info = found
        except OSError:
            return None  # Vanished, or a dangling link.
        mode = info.st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            return None
        return (name, stat.S_ISDIR(mode), info.st_size, info.st_mtime)


def read_entries(
    fd: int, *, follow_symlinks: bool, within: str | None = None, limit: int | None = None
) -> list[Entry]:
    """Read a directory's entries at once, sorted: directories first, then by name.

    Args:
        fd: An open directory. Borrowed: the caller closes it.
        follow_symlinks: As for :class:`DirectoryReader`.
        within: As for :class:`DirectoryReader`.
        limit: The most directory entries to read; ``None``: all of them.

    Returns:
        Regular files and directories, with symlinks as :class:`DirectoryReader` lists them.

    Blocks: on disk I/O for a cold directory, and for as long as the directory is large; the
    server reads in batches instead (:class:`DirectoryReader`).
    """
    reader = DirectoryReader(
        fd, follow_symlinks=follow_symlinks, within=within, limit=limit or (1 << 62)
    )
    try:
        reader.read(1 << 62)
    finally:
        reader.close()
    return [Entry(*row) for row in reader.entries]


def _link_target(dir_fd: int, name: str, beneath: bytes) -> os.stat_result | None:
    """``fstat`` of what the link ``name`` leads to, or ``None`` if that is outside ``beneath``.

    Raises:
        OSError: The link dangles, loops, or vanished.
    """
    fd = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        actual = os.readlink(b"/proc/self/fd/%d" % fd)
        if actual + b"/" != beneath and not actual.startswith(beneath):
            return None
        return os.fstat(fd)
    finally:
        os.close(fd)


def _when(mtime: float) -> str:
    # time_t and struct tm have limits that some file systems do not (tmpfs keeps 64-bit
    # seconds): a date beyond them is not worth a 500 for the whole listing.
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
    except (OverflowError, OSError, ValueError):
        return "-"


def render_head(path: str, *, cut: tuple[int, int] | None = None) -> bytes:
    """The start of a listing page: title, heading, the note of a cut, the table's head, and
    the ``../`` row (except at ``/``).

    Args:
        path: The decoded URL path of the directory, ending with ``/``.
        cut: ``(limit, shown)`` when the directory holds more than ``limit`` entries and only
            ``shown`` are listed; the page then says so.
    """
    title = html.escape(safe_text(path))
    note = "" if cut is None else _NOTE.format(limit=cut[0], shown=cut[1])
    head = _PAGE_HEAD.format(title=title, note=note)
    if path != "/":
        head += _PARENT
    return head.encode("utf-8")


def render_rows(entries: Iterable[Row]) -> bytes:
    """One table row per entry (:class:`Entry` or :data:`Row`).

    Each link is ``./`` and the percent-encoded name, so that no name can be read as a scheme
    (``javascript:``), a query or a fragment. Each label is the name with its controls escaped
    (see the module docstring).
    """
    rows = []
    for name, is_dir, size, mtime in entries:
        slash = "/" if is_dir else ""
        href = html.escape(quote(name, safe="") + slash)
        label = html.escape(safe_text(name) + slash)
        shown = "-" if is_dir else str(size)
        rows.append(
            f'<tr><td><a href="./{href}">{label}</a></td>'
            f'<td class="size">{shown}</td><td>{_when(mtime)}</td></tr>\n'
        )
    return "".join(rows).encode("utf-8")


def render_listing(
    entries: Iterable[Row], path: str, *, cut: tuple[int, int] | None = None
) -> bytes:
    """Render a whole page: :func:`render_head`, :func:`render_rows`, :data:`PAGE_TAIL`.

    Args:
        entries: What :func:`read_entries` returned.
        path: The decoded URL path of the directory, ending with ``/``: the title, and whether
            to offer ``../`` (not at ``/``).
        cut: As for :func:`render_head`.

    Returns:
        The page, UTF-8.
    """
    return render_head(path, cut=cut) + render_rows(entries) + PAGE_TAIL
