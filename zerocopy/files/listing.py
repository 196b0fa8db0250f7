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
"""

from __future__ import annotations

import html
import os
import stat
import time
from dataclasses import dataclass
from typing import Final, final
from urllib.parse import quote

from zerocopy.logtext import safe_text

__all__ = ["Entry", "read_entries", "render_listing"]

_PAGE_HEAD: Final = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>Index of {title}</title>\n"
    "<style>body{{font-family:sans-serif}}td{{padding:0 1em 0 0}}"
    "td.size{{text-align:right}}</style>\n"
    "</head>\n<body>\n<h1>Index of {title}</h1>\n<table>\n"
    "<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
)
_PAGE_TAIL: Final = "</table>\n</body>\n</html>\n"


@final
@dataclass(frozen=True, slots=True)
class Entry:
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


def read_entries(fd: int, *, follow_symlinks: bool, within: str | None = None) -> list[Entry]:
    """Read a directory's entries, sorted: directories first, then by name.

    Args:
        fd: An open directory. Borrowed: ``scandir`` works on a duplicate, the caller closes it.
        follow_symlinks: List symlinks (described by their targets) instead of hiding them.
        within: The root's real path (``Root.path``). With ``follow_symlinks``, a link whose
            target does not lie under it is left out. ``None`` lists every link that resolves.

    Returns:
        Regular files and directories, with symlinks as described above.

    Blocks: on disk I/O for a cold directory; the server calls it in a worker thread.
    """
    beneath = None if within is None else os.fsencode(within).rstrip(b"/") + b"/"
    entries = []
    with os.scandir(fd) as scan:
        for item in scan:
            name = item.name
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # Undecodable bytes, held as surrogates.
                continue
            try:
                if not item.is_symlink():
                    info = item.stat(follow_symlinks=False)
                elif not follow_symlinks:
                    continue
                elif beneath is None:
                    info = item.stat(follow_symlinks=True)
                else:
                    found = _link_target(fd, name, beneath)
                    if found is None:
                        continue
                    info = found
            except OSError:
                continue  # Vanished, or a dangling link.
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                continue
            entries.append(Entry(name, stat.S_ISDIR(info.st_mode), info.st_size, info.st_mtime))
    entries.sort(key=lambda e: (not e.is_dir, e.name))
    return entries


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


def render_listing(entries: list[Entry], path: str) -> bytes:
    """Render entries as an HTML page.

    Args:
        entries: What :func:`read_entries` returned.
        path: The decoded URL path of the directory, ending with ``/``: the title, and whether
            to offer ``../`` (not at ``/``).

    Returns:
        The page, UTF-8. Each link is ``./`` and the percent-encoded name, so that no name can
        be read as a scheme (``javascript:``), a query or a fragment. Each label is the name
        with its controls escaped (see the module docstring).
    """
    title = html.escape(safe_text(path))
    rows = [_PAGE_HEAD.format(title=title)]
    if path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>\n')
    for entry in entries:
        slash = "/" if entry.is_dir else ""
        href = html.escape(quote(entry.name, safe="") + slash)
        label = html.escape(safe_text(entry.name) + slash)
        size = "-" if entry.is_dir else str(entry.size)
        when = _when(entry.mtime)
        rows.append(
            f'<tr><td><a href="./{href}">{label}</a></td>'
            f'<td class="size">{size}</td><td>{when}</td></tr>\n'
        )
    rows.append(_PAGE_TAIL)
    return "".join(rows).encode("utf-8")
