"""Root containment: open a request path so that what is opened lies under the root.

Theory of operation. Python 3.11 has no ``openat2(RESOLVE_BENEATH)``, so the check is made on
the *opened file*, after ``open``, which leaves no window for a symlink swapped in between a
check and the open:

1. ``open(root + path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC [| O_NOFOLLOW])``.
   O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; a socket
   cannot be opened at all (ENXIO: 403).
2. ``readlink("/proc/self/fd/N")`` gives the path the kernel actually resolved:

   * without ``follow_symlinks`` it must equal the requested path exactly. O_NOFOLLOW refuses
     a symlink as the last component (ELOOP: 403); this comparison refuses a symlink anywhere
     earlier in the path (403);
   * with ``follow_symlinks`` it must lie under the root's real path; a link that leads out is
     answered 404, the same as a missing file, so it reveals nothing about what lies outside
     (aiohttp CVE-2024-23334).

3. ``fstat``: only regular files and directories are served. FIFOs, sockets and devices: 403.
   This comes *after* the containment check, so that a link to ``/dev/null`` or to a FIFO
   outside the root is a 404 like any other link that leads out, not a 403 that tells them
   apart.

Three syscalls per open, whatever the depth of the path. Paths come in as segments already
decoded and checked by the HTTP layer (no ``..``, NUL or empty segments); they are checked
again here, because this layer is what keeps requests under the root and must not depend on
its caller for that: an unsafe segment is a 404, before any file-system access.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from zerocopy.files.errors import Refused, refusal

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Opened", "Root"]

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
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
        release: How to give the descriptor back; ``None`` means ``os.close``.
    """

    fd: int
    stat: os.stat_result
    path: bytes
    release: Callable[[], None] | None = None

    @property
    def is_dir(self) -> bool:
        """Whether this is a directory (otherwise it is a regular file)."""
        return stat.S_ISDIR(self.stat.st_mode)

    def close(self) -> None:
        """Close the descriptor, or return it to the cache it came from."""
        if self.release is None:
            os.close(self.fd)
        else:
            self.release()


@final
class Root:
    """The directory being served.

    Args:
        path: The directory. It is resolved once, here, to its real path.
        follow_symlinks: Serve symlinks whose target lies under the root.

    Raises:
        NotADirectoryError, FileNotFoundError, PermissionError: The root is unusable.
        RuntimeError: ``/proc/self/fd`` is not available (the containment check needs it).
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
        self.path = real
        self.follow_symlinks = follow_symlinks
        self._prefix = os.fsencode(real).rstrip(b"/")
        self._beneath = self._prefix + b"/"  # b"/" when the root is "/" itself.
        self._flags = _OPEN_FLAGS if follow_symlinks else _OPEN_FLAGS | os.O_NOFOLLOW

    def path_of(self, segments: Sequence[str]) -> bytes:
        """The absolute path that ``segments`` name, before any symlink is resolved.

        Raises:
            Refused: 404 for an unsafe segment.
        """
        return b"/".join((self._prefix, *map(_encode, segments))) or b"/"

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
            fd = os.open(wanted, self._flags)
        except OSError as exc:
            raise refusal(exc) from None
        try:
            actual = os.readlink(b"/proc/self/fd/%d" % fd)
            if self.follow_symlinks:
                if actual != self._prefix and not actual.startswith(self._beneath):
                    raise Refused(404, "symlink leads outside the root")
            elif actual != wanted:
                raise Refused(403, "symlink in path")
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise Refused(403, "not a regular file or directory")
        except OSError as exc:
            os.close(fd)
            raise refusal(exc) from None
        except BaseException:
            os.close(fd)
            raise
        return Opened(fd, info, actual)
