"""Root containment: open a request path so that what is opened lies under the root.

Theory of operation. Python 3.11 has no ``openat2(RESOLVE_BENEATH)``, so the check is made on
what the path *resolved to*, before anything is opened for reading, which leaves no window for
a symlink swapped in between a check and the open:

1. ``openat(root_fd, path, O_PATH | O_CLOEXEC [| O_NOFOLLOW])``, relative to the root's held
   descriptor (see "The root itself" below). ``O_PATH`` resolves the path and
   pins the inode it found without opening it (open(2): "the file itself is not opened"): no
   driver's ``open`` runs for a device node, a FIFO does not wait for a writer, no read
   permission is needed, and a path that leads out of the root through a symlink opens
   nothing out there. With ``O_NOFOLLOW`` a final symlink is pinned as itself.
2. ``readlink("/proc/self/fd/N")`` gives the path the kernel actually resolved:

   * without ``follow_symlinks`` it must equal the requested path exactly, and ``fstat``
     must not say "symlink": a symlink anywhere in the path is refused (403), as nginx's
     ``disable_symlinks on`` refuses it;
   * with ``follow_symlinks`` it must lie under the root's real path; a link that leads out is
     answered 404, the same as a missing file, so it reveals nothing about what lies outside
     (aiohttp CVE-2024-23334).

3. ``fstat``: only regular files and directories are served. FIFOs, sockets and devices: 403.
   This check comes *after* the containment check, so that a link to ``/dev/null`` or to a
   FIFO outside the root is a 404 like any other link that leads out, not a 403 that tells
   them apart.
4. ``open("/proc/self/fd/N", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)`` reopens the very
   inode that was checked (no path is resolved again, so nothing can be swapped in), and the
   ``O_PATH`` descriptor is closed. Read permission is checked here: EACCES, 403.

Five syscalls per open, whatever the depth of the path; the open-file cache (``cache.py``)
saves them for files that are asked for again.

The root itself. The root path is opened once (``O_PATH | O_DIRECTORY``) and every request
is resolved relative to that descriptor and checked against *its* real path, so one request
never mixes two directories. The common deploy pattern makes the root a ``current`` symlink
switched atomically to ``releases/N``: :meth:`Root.check` (called by the open-file cache when
inotify reports a change on the root path, or on every request without inotify) follows the
root path again and holds the new directory from then on. Requests resolved before the switch
finish from the old release, later ones come whole from the new one. A root path swapped for a
symlink to ``/`` is, likewise, the new root: what it names is served, and containment holds
within it, but never a mixture where paths go through the new target and are checked against
the old (which would tell apart, by 403 and 404, which names exist out there). Whoever can
replace the root path decides what is served, as with nginx's ``root``.

Hard links: a hard link inside the root to a file elsewhere is the same inode, and is served
(nginx does the same). Only someone who can already write inside the root can make one.

A failed open must not tell what lies beyond a symlink either: without the rule below,
``link-out/missing`` (ENOENT: 404) and ``link-out/secret`` (opens, then refused: 403) would
tell a prober which files exist outside the root, as aiohttp CVE-2025-69226 did. So when the
open fails, the longest leading part of the path that still opens is found (by bisection: a
prefix that opens means every shorter one does) and checked as in step 2; if it went through
a symlink, or out of the root, the answer is the one a path through it gets when it opens.
Only failures pay for this, with a few ``O_PATH`` opens.

Paths come in as segments already decoded and checked by the HTTP layer (no ``..``, NUL or
empty segments); they are checked again here, because this layer is what keeps requests under
the root and must not depend on its caller for that: an unsafe segment is a 404, before any
file-system access.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from zerocopy.files.errors import Refused, refusal
from zerocopy.span import FileSpan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from zerocopy.files.cache import CachedFile

__all__ = ["Opened", "Root"]

_PATH_FLAGS: Final = os.O_PATH | os.O_CLOEXEC
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Out of descriptors: probing the path would only fail the same way.
_NO_PROBE: Final = frozenset({errno.EMFILE, errno.ENFILE})
# Segments that would step out of, or sideways in, the path being built.
_UNSAFE_SEGMENTS: Final = frozenset({"", ".", ".."})


def _encode(segment: str) -> bytes:
    """A segment as file-name bytes; raises :class:`Refused` (404) for an unsafe segment.

    Strict UTF-8: a lone surrogate (what ``surrogateescape`` would turn back into a raw byte)
    is refused, so that only names the listing shows and the HTTP layer accepts are opened.
    """
    if segment in _UNSAFE_SEGMENTS or "/" in segment or "\x00" in segment:
        raise Refused(404, f"unsafe path segment {segment!r}")
    try:
        return segment.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(404, f"path segment {segment!r} is not UTF-8") from None


@final
@dataclass(frozen=True, slots=True)
class Opened:
    """An open file or directory under the root.

    Attributes:
        fd: The open descriptor. The caller owns it and must :meth:`close` it (for a file
            from the open-file cache, that returns it to the cache).
        stat: ``fstat`` of ``fd``: the metadata of what was opened, not of what the path
            names now.
        path: The resolved absolute path, for logs.
        entry: The open-file cache entry lent out, if the cache made it; :meth:`close` gives
            it back instead of closing the descriptor.
    """

    fd: int
    stat: os.stat_result
    path: bytes
    entry: CachedFile | None = None

    def body(self) -> FileSpan:
        """The whole file, as a span that borrows :attr:`fd` (the cache entry's span, which
        may hold the bytes, when there is one)."""
        if self.entry is not None:
            return self.entry.span
        return FileSpan(self.fd, 0, self.stat.st_size, self.stat.st_dev)

    @property
    def is_dir(self) -> bool:
        """Whether this is a directory (otherwise it is a regular file)."""
        return stat.S_ISDIR(self.stat.st_mode)

    def close(self) -> None:
        """Close the descriptor, or return it to the cache it came from."""
        if self.entry is None:
            os.close(self.fd)
        else:
            self.entry.release()


@final
class Root:
    """The directory being served.

    The root is held open (an ``O_PATH`` descriptor) and every path is opened relative to it,
    so a request is resolved and checked against one directory, even while the root path is
    being switched. :meth:`check` re-resolves the root path when it may name another directory
    now: the deploy pattern, where the root is a ``current`` symlink switched atomically from
    ``releases/N`` to ``releases/N+1``. Whoever can replace the root path chooses what is
    served, as with nginx's ``root``; what the path names is served, contained, and nothing
    outside it is ever opened or told apart.

    Args:
        path: The directory (it may be, or go through, a symlink).
        follow_symlinks: Serve symlinks whose target lies under the root.

    Raises:
        NotADirectoryError, FileNotFoundError, PermissionError: The root is unusable.
        RuntimeError: ``/proc/self/fd`` is not available (the containment check needs it).

    Resource handling: the root's descriptor is closed by :meth:`close`, or replaced by
    :meth:`check`.
    """

    def __init__(self, path: str, *, follow_symlinks: bool = False) -> None:
        real = os.path.realpath(path)
        if not os.path.exists(real):
            raise FileNotFoundError(f"root directory {path!r} does not exist")
        if not os.path.isdir(real):
            raise NotADirectoryError(f"root {path!r} is not a directory")
        if not os.access(real, os.R_OK | os.X_OK):
            raise PermissionError(f"root directory {path!r} is not readable")
        if not os.path.isdir("/proc/self/fd"):
            raise RuntimeError("/proc is not mounted; root containment needs /proc/self/fd")
        self.configured = os.path.abspath(path)
        """The root path as given: what :meth:`check` resolves again."""
        self.follow_symlinks = follow_symlinks
        self._flags = _PATH_FLAGS if follow_symlinks else _PATH_FLAGS | os.O_NOFOLLOW
        self._fd = -1
        self._identity: tuple[int, int] = (0, 0)
        self.path = ""
        self._prefix = b""
        self._beneath = b"/"
        self._resolve()

    def _resolve(self) -> bool:
        """Hold the directory the root path names now; returns whether that changed.

        Raises:
            OSError: The root path cannot be opened as a directory.
        """
        fd = os.open(self.configured, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            real = os.readlink(b"/proc/self/fd/%d" % fd)
        except BaseException:
            os.close(fd)
            raise
        identity = (info.st_dev, info.st_ino)
        if identity == self._identity and real.rstrip(b"/") == self._prefix:
            os.close(fd)
            return False
        old, self._fd = self._fd, fd
        self._identity = identity
        self.path = os.fsdecode(real)
        self._prefix = real.rstrip(b"/")
        self._beneath = self._prefix + b"/"  # b"/" when the root is "/" itself.
        if old >= 0:
            os.close(old)
        return True

    def check(self) -> bool:
        """Follow the root path to what it names now, if that changed.

        Costs a ``stat`` of the root path and a ``readlink`` of the held descriptor. When the
        root path names another directory (the ``current`` symlink was switched) or the
        directory moved, the new one is held from now on; a root path that is missing or not
        a directory (mid-switch) leaves the old one in place.

        Returns:
            Whether the root changed: whatever was opened or cached under it is stale.
        """
        try:
            info = os.stat(self.configured)
            real = os.readlink(b"/proc/self/fd/%d" % self._fd)
        except OSError:
            return False
        if (info.st_dev, info.st_ino) == self._identity and real.rstrip(b"/") == self._prefix:
            return False
        try:
            return self._resolve()
        except OSError:
            return False

    def close(self) -> None:
        """Close the root's descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def path_of(self, segments: Sequence[str]) -> bytes:
        """The absolute path that ``segments`` name under the root's real path, before any
        symlink below it is resolved.

        Raises:
            Refused: 404 for an unsafe segment.
        """
        return b"/".join((self._prefix, *map(_encode, segments))) or b"/"

    def may_exist(self, segments: Sequence[str]) -> bool:
        """Whether something is at ``segments``: one ``lstat`` relative to the root, to skip
        the full :meth:`open` of names that are usually missing (precompressed sidecars).
        True is only a hint: :meth:`open` still decides. Never raises."""
        try:
            os.stat(self._relative(segments), dir_fd=self._fd, follow_symlinks=False)
        except (OSError, Refused):
            return False
        return True

    def _relative(self, segments: Sequence[str]) -> bytes:
        return b"/".join(map(_encode, segments)) or b"."

    def open(self, segments: Sequence[str]) -> Opened:
        """Open the file or directory at ``segments`` under the root.

        Args:
            segments: Decoded path segments, none empty, ``.`` or ``..``, and none holding
                ``/``, NUL or a lone surrogate; such a segment is refused with 404.

        Returns:
            The opened file or directory. The caller closes it.

        Raises:
            Refused: With the status to answer (403, 404, 500 or 503).

        Blocks: only as long as the ``open`` of a cold directory entry does; the event loop
        calls it directly, as nginx does without ``open_file_cache``.
        """
        wanted = self.path_of(segments)
        try:
            handle = os.open(self._relative(segments), self._flags, dir_fd=self._fd)
        except OSError as exc:
            raise self._refuse_failed(segments, exc) from None
        try:
            actual, info = self._describe(handle)
            escape = self._escape(actual, wanted, info)
            if escape is not None:
                raise escape
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise Refused(403, "not a regular file or directory")
            try:
                fd = os.open(b"/proc/self/fd/%d" % handle, _OPEN_FLAGS)
            except OSError as exc:
                raise refusal(exc) from None
        finally:
            os.close(handle)
        return Opened(fd, info, actual)

    def still_inside(self, fd: int, wanted: bytes, info: os.stat_result) -> bool:
        """Whether an open file is still where :meth:`open` found it, as far as containment
        goes: the kernel's current path for its descriptor passes the same check.

        A directory above the file may have been moved out of the root (and replaced by a
        symlink, so that the old path still reaches the file): the descriptor's path then
        shows where the file is now. One ``readlink``, no open. For the open-file cache.

        Args:
            fd: The open file.
            wanted: The path it was opened for (:meth:`path_of`).
            info: Its ``fstat`` from when it was opened.
        """
        try:
            actual = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            return False
        return self._escape(actual, wanted, info) is None

    @staticmethod
    def _describe(handle: int) -> tuple[bytes, os.stat_result]:
        """Where ``handle`` resolved to, and its ``fstat``; raises :class:`Refused`."""
        try:
            return os.readlink(b"/proc/self/fd/%d" % handle), os.fstat(handle)
        except OSError as exc:
            raise refusal(exc) from None

    def _escape(self, actual: bytes, wanted: bytes, info: os.stat_result) -> Refused | None:
        """The refusal for a path that went through a symlink or out of the root, if it did."""
        if self.follow_symlinks:
            if actual != self._prefix and not actual.startswith(self._beneath):
                return Refused(404, "symlink leads outside the root")
        elif actual != wanted or stat.S_ISLNK(info.st_mode):
            return Refused(403, "symlink in path")
        return None

    def _refuse_failed(self, segments: Sequence[str], exc: OSError) -> Refused:
        """The refusal for a path whose open failed with ``exc``; see the module docstring."""
        refused = refusal(exc)
        if exc.errno in _NO_PROBE:
            return refused
        # Bisect on the length of the prefix: `low` opens (0 is the root itself), and no
        # prefix longer than `high` does; the whole path, len(segments), failed. The first
        # try is the parent: most often only the last name is missing, and one open settles it.
        low, high = 0, len(segments) - 1
        middle = high
        found: tuple[int, bytes] | None = None
        try:
            while low < high:
                wanted = self.path_of(segments[:middle])
                try:
                    handle = os.open(
                        self._relative(segments[:middle]), self._flags, dir_fd=self._fd
                    )
                except OSError:
                    high = middle - 1
                else:
                    if found is not None:
                        os.close(found[0])
                    found = (handle, wanted)
                    low = middle
                middle = (low + high + 1) // 2
            if found is None:
                return refused  # The failure is in the root's own entries.
            handle, wanted = found
            try:
                actual, info = self._describe(handle)
            except Refused:
                return refused
            return self._escape(actual, wanted, info) or refused
        finally:
            if found is not None:
                os.close(found[0])
