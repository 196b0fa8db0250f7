"""A directory tree as a POSIX tar archive: its layout as bytes, and the walk that plans it.

The layout (POSIX.1-2001 pax interchange format, which GNU tar, bsdtar and Python's
``tarfile`` all read):

* Each member is a 512-byte ustar header, then its data, padded with zeros to a multiple of
  512 bytes. The archive ends with two zero blocks. It is not padded further to a 10,240-byte
  record, which the readers named above do not need (GNU tar writes such records for tape
  drives).
* A member whose name does not fit the ustar header (over 100 bytes, or not ASCII), whose
  size does not fit its 11 octal digits (8 GiB and more), or whose mtime does not (before 1970,
  after 2242) is preceded by a pax extended header (typeflag ``x``) carrying ``path``,
  ``size`` or ``mtime``; the ustar fields then hold an ASCII stand-in (readers that know pax
  ignore them). The ustar ``prefix`` field is not used: one rule for long names is enough.
* Owners are written as git archive writes them: uid and gid 0, ``root``; modes are ``0755``
  for directories and executable files and ``0644`` for the rest, so neither the server's
  accounts nor setuid bits travel in the archive.
* Every header is a function of the member's name, type, size and mtime alone
  (:func:`member_header`), so the archive's length is known before a byte is sent
  (:func:`member_length`), and the header is made again when the member is sent, instead of
  being held.

The walk (:class:`TreeWalker`) applies the rules of single files to every path, so that the
archive holds exactly what a GET could fetch one by one:

* Each directory is opened with :meth:`Root.open <zerocopy.files.Root.open>`, so containment
  holds as for a request (a directory that the root does not reach, or that cannot be read, is
  left out with everything in it). Its names are read with ``scandir``: its files follow it
  in the directory's own order (GNU tar's default), and its subdirectories come after them,
  by name, each followed by its own tree.
* Names starting with a dot are left out unless dot files are served (``.well-known`` at the
  top of the root excepted, as for requests); names that are not UTF-8, or hold a backslash,
  are left out (no request can name them: the HTTP layer refuses both).
* Symlinks are left out unless the server follows them; then each is opened with
  ``Root.open`` (which refuses links that lead out of the root) and described by what it
  leads to. A directory reached twice on one path (a link to an ancestor, a bind mount) is
  not walked again.
* Regular files the server may not read (``faccessat``) are left out, as their GET would be
  refused; FIFOs, sockets and devices are left out.
* The walk is bounded: it reads at most ``max_entries`` names (listed or not), and stops as
  soon as the archive would exceed ``max_bytes``; either is reported in :attr:`TreeWalker.over`.
  It reads a given number of names per call, so that its caller can run each step in a
  worker thread and stop between them. It holds one directory open at a time.

Members are held as plain tuples of a relative path and numbers (:data:`Member`), which the
garbage collector stops tracking, about 150 bytes each: 65,535 of them are about 10 MB.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Final, final

from zerocopy.files.dotfiles import hidden_name
from zerocopy.files.errors import Refused

if TYPE_CHECKING:
    from collections.abc import Iterator

    from zerocopy.files.root import Opened, Root

__all__ = [
    "BLOCK",
    "END",
    "MAX_ARCHIVE_BYTES",
    "MAX_ARCHIVE_ENTRIES",
    "Member",
    "TreeWalker",
    "member_header",
    "member_length",
    "padding",
]

MAX_ARCHIVE_ENTRIES: Final = 65_535
"""Names one archive's walk may read (``--tar-max-files``): the entry count of a classic ZIP
archive, the format that "download this folder" features served for decades within that bound.
A source tree such as CPython's (about 5,000 files) fits thirteen times over; the walk holds
about 150 bytes per member while the archive is sent, so about 10 MB at the limit."""
MAX_ARCHIVE_BYTES: Final = 64 * 1024**3
"""The largest archive (``--tar-max-bytes``): 64 GiB. The bytes cost what a single file's
cost (zero copies, one file open at a time), so the limit is not there to save CPU, as
Seafile's 100 MB limit on folder downloads is (it builds a zip first); it catches the archive
of a whole volume asked for by mistake (a root of ``/srv``), which at 1 Gbit/s would hold a
connection for over nine minutes per 64 GiB."""
BLOCK: Final = 512
END: Final = bytes(2 * BLOCK)
"""The end of an archive: two zero blocks."""
_MAX_OCTAL_11: Final = 0o77777777777
"""The largest number that 11 octal digits hold (size and mtime fields): 8 GiB - 1."""
_ZERO_BLOCK: Final = bytes(BLOCK)

Member = tuple[str, bool, int, float, bool]
"""One archive member: (path relative to the walked directory, ``""`` for that directory
itself; is a directory; size in bytes, 0 for a directory; mtime; executable)."""


def padding(size: int) -> bytes:
    """The zeros after ``size`` bytes of data, up to the next 512-byte boundary."""
    return _ZERO_BLOCK[: -size % BLOCK]


def _octal(value: int, width: int) -> bytes:
    """A numeric field: ``width - 1`` octal digits and a NUL."""
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: str) -> bytes:
    """One ``"%d %s=%s\\n"`` record, whose length counts its own digits."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode("ascii") + body


def _ustar(name: bytes, mode: int, size: int, mtime: int, kind: bytes) -> bytes:
    header = bytearray(BLOCK)
    header[0:100] = name[:100].ljust(100, b"\0")
    header[100:108] = _octal(mode, 8)
    header[108:116] = _octal(0, 8)  # uid
    header[116:124] = _octal(0, 8)  # gid
    header[124:136] = _octal(size, 12)
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    header[156:157] = kind
    header[257:265] = b"ustar\x0000"
    header[265:269] = b"root"  # uname
    header[297:301] = b"root"  # gname
    header[329:337] = _octal(0, 8)  # devmajor
    header[337:345] = _octal(0, 8)  # devminor
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _fallback(name: str) -> bytes:
    """An ASCII stand-in for a name that a pax ``path`` record carries."""
    return "".join(c if " " <= c <= "~" else "_" for c in name).encode("ascii")[:100]


def member_header(name: str, *, is_dir: bool, size: int, mtime: float, executable: bool) -> bytes:
    """The header blocks of one member: a pax extended header when needed, then ustar.

    Args:
        name: The member's path in the archive, ``/``-separated, with no trailing ``/`` (one is
            added for a directory).
        is_dir: A directory (typeflag ``5``, no data) or a regular file (``0``).
        size: The file's length (0 for a directory).
        mtime: Its modification time (whole seconds are kept).
        executable: A file with an execute bit: mode ``0755`` instead of ``0644``.
    """
    if is_dir:
        name += "/"
        size = 0
    encoded = name.encode("utf-8")
    seconds = int(mtime)
    records = []
    long_name = len(encoded) > 100 or not encoded.isascii()
    if long_name:
        records.append(_pax_record("path", name))
    if size > _MAX_OCTAL_11:
        records.append(_pax_record("size", str(size)))
    if not 0 <= seconds <= _MAX_OCTAL_11:
        records.append(_pax_record("mtime", str(seconds)))
    mode = 0o755 if is_dir or executable else 0o644
    header = _ustar(
        _fallback(name) if long_name else encoded,
        mode,
        size if size <= _MAX_OCTAL_11 else 0,
        min(max(seconds, 0), _MAX_OCTAL_11),
        b"5" if is_dir else b"0",
    )
    if not records:
        return header
    extended = b"".join(records)
    pax = _ustar(b"././@PaxHeader", 0o644, len(extended), 0, b"x")
    return pax + extended + padding(len(extended)) + header


def member_length(name: str, *, is_dir: bool, size: int, mtime: float) -> int:
    """Bytes the member takes in the archive: its headers, its data and the data's padding."""
    header = len(member_header(name, is_dir=is_dir, size=size, mtime=mtime, executable=False))
    return header if is_dir else header + size + (-size % BLOCK)


# A linked list of the directories on the current path, by (st_dev, st_ino): a directory met
# again below itself is not walked twice.
_Chain = tuple[tuple[int, int], "_Chain | None"]


def _on_chain(identity: tuple[int, int], chain: _Chain | None) -> bool:
    while chain is not None:
        if chain[0] == identity:
            return True
        chain = chain[1]
    return False


@final
class TreeWalker:
    """Walks a directory tree under the root and plans its tar archive, a step at a time.

    Args:
        root: The root; every directory (and, when symlinks are followed, every link) is
            opened through it.
        segments: The directory to walk, as path segments under the root.
        name: The archive's top directory (the walked directory's name); every member's
            path starts with it.
        dotfiles: Include names that start with a dot (else ``.well-known`` only, at the top
            of the root).
        max_entries: The most names to read, listed or not.
        max_bytes: The largest archive to plan.

    Attributes:
        members: The archive's members so far, in order.
        length: The archive's length so far, its end included once :attr:`done`.
        examined: Names read so far.
        over: ``"entries"`` or ``"bytes"`` when the tree is past a limit (the walk stops).
        done: The walk is finished (or stopped by a limit).

    Resource handling: the directory being read (an :class:`~zerocopy.files.Opened` and its
    ``scandir`` iterator) is closed when it is read through, and by :meth:`close`, which the
    caller must call when it stops early (idempotent).

    Blocks: :meth:`walk` does disk I/O; the server calls it in a worker thread. Calls must not
    overlap.
    """

    def __init__(
        self,
        root: Root,
        segments: tuple[str, ...],
        *,
        name: str,
        dotfiles: bool,
        max_entries: int,
        max_bytes: int,
    ) -> None:
        self._root = root
        self._base = segments
        self._name = name
        self._dotfiles = dotfiles
        self._follow = root.follow_symlinks
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._pending: list[tuple[str, _Chain | None]] = [("", None)]
        # The directory being read: it, its scandir iterator, its path, its chain.
        self._current: tuple[Opened, Iterator[os.DirEntry[str]], str, _Chain] | None = None
        self._subdirectories: list[tuple[str, _Chain | None]] = []
        self._closed = False
        self.members: list[Member] = []
        self.length = 0
        self.examined = 0
        self.over: str | None = None
        self.done = False

    def archive_name(self, member: Member) -> str:
        """The member's path in the archive: the top directory's name, then its own path."""
        relative = member[0]
        return f"{self._name}/{relative}" if relative else self._name

    def segments(self, member: Member) -> tuple[str, ...]:
        """The member's path segments under the root (for ``Root.open``)."""
        relative = member[0]
        return (*self._base, *relative.split("/")) if relative else self._base

    def walk(self, count: int) -> bool:
        """Read up to ``count`` more names; returns :attr:`done`.

        Raises:
            OSError: A directory could not be read after it was opened (EIO). Entries that
                vanish, and directories that cannot be opened, are left out, not raised.
        """
        if self.done:
            return True
        if self._closed:
            raise ValueError("TreeWalker.walk() after close()")
        budget = count
        while budget > 0:
            if self._current is None:
                if not self._open_next():
                    self._finish()
                    return True
                if self.done:
                    return True  # Its own header was past the limit.
                if self._current is None:
                    continue  # That directory was left out.
            opened, scan, relative, chain = self._current
            top = not relative and not self._base
            for item in scan:
                budget -= 1
                self.examined += 1
                if self.examined > self._max_entries:
                    self._stop("entries")
                    return True
                self._add(opened.fd, item, relative, chain, top)
                if self.over is not None:
                    return True
                if budget <= 0:
                    break
            else:
                self._close_current()
                # Subdirectories in name order, after the files of their parent.
                self._subdirectories.sort(reverse=True)
                self._pending.extend(self._subdirectories)
                self._subdirectories = []
        return False

    def _open_next(self) -> bool:
        """Open the next directory to read; ``False`` when none is left. A directory that is
        refused leaves :attr:`_current` ``None``."""
        if not self._pending:
            return False
        relative, chain = self._pending.pop()
        segments = (*self._base, *relative.split("/")) if relative else self._base
        try:
            opened = self._root.open(segments)
        except Refused:
            return True
        try:
            info = opened.stat
            identity = (info.st_dev, info.st_ino)
            if not opened.is_dir or _on_chain(identity, chain):
                opened.close()
                return True
            scan = os.scandir(opened.fd)
        except BaseException:
            opened.close()
            raise
        self._current = (opened, scan, relative, (identity, chain))
        self._plan((relative, True, 0, info.st_mtime, True))
        return True

    def _add(
        self, fd: int, item: os.DirEntry[str], relative: str, chain: _Chain, top: bool
    ) -> None:
        name = item.name
        if not self._dotfiles and hidden_name(name, top=top):
            return
        if "\\" in name:
            return  # The HTTP layer refuses a backslash in a path (400): no GET reaches it.
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # Undecodable bytes, held as surrogates.
            return
        path = f"{relative}/{name}" if relative else name
        try:
            if item.is_symlink():
                if not self._follow:
                    return
                info = self._resolve(path)
                if info is None:
                    return
            else:
                info = item.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and not os.access(
                    name, os.R_OK, dir_fd=fd, follow_symlinks=False
                ):
                    return
        except OSError:
            return  # Vanished.
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            self._subdirectories.append((path, chain))
        elif stat.S_ISREG(mode):
            self._plan((path, False, info.st_size, info.st_mtime, bool(mode & 0o111)))

    def _resolve(self, path: str) -> os.stat_result | None:
        """What a symlink leads to, opened as a request would open it; ``None`` if refused."""
        try:
            opened = self._root.open((*self._base, *path.split("/")))
        except Refused:
            return None
        opened.close()
        return opened.stat

    def _plan(self, member: Member) -> None:
        _, is_dir, size, mtime, _ = member
        length = member_length(self.archive_name(member), is_dir=is_dir, size=size, mtime=mtime)
        if self.length + length + len(END) > self._max_bytes:
            self._stop("bytes")
            return
        self.members.append(member)
        self.length += length

    def _stop(self, limit: str) -> None:
        self.over = limit
        self.done = True
        self.close()

    def _finish(self) -> None:
        self.done = True
        self.length += len(END)
        self.close()

    def _close_current(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            opened, scan, _, _ = current
            scan.close()  # type: ignore[attr-defined]
            opened.close()

    def close(self) -> None:
        """Close the directory being read, if any. Idempotent."""
        self._closed = True
        self._close_current()
