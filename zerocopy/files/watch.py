"""inotify, reduced to what the open-file cache needs: watch directories, and drain events
without blocking.

``inotify_simple`` (a thin ctypes wrapper on PyPI) makes the inotify instance, adds and removes
watches, and parses events; it is chosen over hand-written ctypes because those few lines are
exactly what it is, kept up to date by someone else. The hot path does not use its ``read``,
which builds a ``c_int`` and may ``poll``: :meth:`Watcher.pending` is one ``ioctl(FIONREAD)``
into a preallocated buffer, about half a microsecond, and the common answer is "nothing".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import termios
from typing import TYPE_CHECKING, Final

from inotify_simple import INotify, flags, parse_events

if TYPE_CHECKING:
    from inotify_simple import Event

__all__ = ["DIRECTORY_EVENTS", "IGNORED", "OVERFLOW", "SELF_EVENTS", "Watcher"]

DIRECTORY_EVENTS: Final = (
    flags.ATTRIB
    | flags.MODIFY
    | flags.CLOSE_WRITE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE
    | flags.CREATE
    | flags.MOVE_SELF
    | flags.DELETE_SELF
)
"""What is watched on each directory: any change to a name in it, to the file a name refers to
(content, size, mode, times, links), or to the directory itself."""
SELF_EVENTS: Final = flags.MOVE_SELF | flags.DELETE_SELF | flags.IGNORED | flags.UNMOUNT
"""Events that concern the watched directory itself; its watch is gone or no longer names the
path it was added for."""
OVERFLOW: Final = flags.Q_OVERFLOW
IGNORED: Final = flags.IGNORED
# Only directories, and a final symlink is not followed: a watch never lands outside the path
# it was asked for.
_ADD_FLAGS: Final = DIRECTORY_EVENTS | flags.ONLYDIR | flags.DONT_FOLLOW
_ROOT_FLAGS: Final = DIRECTORY_EVENTS | flags.ONLYDIR


class Watcher:
    """One inotify instance, non-blocking.

    Raises:
        OSError: inotify is unavailable (ENOSYS, EMFILE for instances, ...).
    """

    def __init__(self) -> None:
        self._inotify = INotify(nonblocking=True)
        self._fd = self._inotify.fileno()
        self._available = bytearray(4)

    def add(self, path: bytes) -> int:
        """Watch the directory at ``path``; return its watch descriptor.

        The same directory (inode) always gets the same descriptor.

        Raises:
            OSError: ENOENT, ENOTDIR (not a directory, or a symlink), EACCES, ENOSPC (out of
                watches: ``/proc/sys/fs/inotify/max_user_watches``).
        """
        return int(self._inotify.add_watch(path, _ADD_FLAGS))

    def add_root(self, path: bytes) -> int:
        """Watch a directory on the root path, following symlinks to it (the kernel follows
        them when it resolves the root path too); return its watch descriptor.

        Raises:
            OSError: As :meth:`add`.
        """
        return int(self._inotify.add_watch(path, _ROOT_FLAGS))

    def remove(self, wd: int) -> None:
        """Stop watching; a descriptor the kernel already dropped is ignored."""
        with contextlib.suppress(OSError):
            self._inotify.rm_watch(wd)

    def pending(self) -> bool:
        """Whether events are waiting. One ``ioctl``; never blocks."""
        fcntl.ioctl(self._fd, termios.FIONREAD, self._available)
        return self._available != b"\0\0\0\0"

    def read(self) -> list[Event]:
        """The events waiting now (possibly none). Never blocks.

        Raises:
            OSError: The inotify descriptor failed.
        """
        try:
            data = os.read(self._fd, max(4096, int.from_bytes(self._available, sys.byteorder)))
        except BlockingIOError:
            return []
        return list(parse_events(data))

    def close(self) -> None:
        """Close the instance; every watch goes with it."""
        self._inotify.close()
