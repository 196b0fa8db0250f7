"""An open-file cache: reuse the descriptor of a file that has not changed.

Theory of operation. Opening a file safely costs six syscalls (``open`` with ``O_PATH``,
``readlink`` of ``/proc/self/fd/N``, ``fstat``, the reopen through ``/proc/self/fd/N`` and two
``close``; see ``root.py``). For a hot small file that is most of the work of a request.
Like nginx's ``open_file_cache``, this cache keeps the descriptor open between requests;
unlike nginx's, which trusts an entry for ``open_file_cache_valid`` (60 s) without looking, it
revalidates on every hit with two syscalls:

* ``stat`` of the path: same device, inode, size, mtime, ctime and mode means the path still
  names the very file that was opened, unchanged. ctime covers chmod, a new hard link and
  rename, so a file made unreadable is not served from the cache.
* ``readlink`` of ``/proc/self/fd/N`` (:meth:`Root.still_inside`): the kernel's current path
  for the descriptor must still pass the containment check. ``stat`` alone would miss a
  directory above the file that was moved out of the root and replaced by a symlink to its
  new place: the path would still reach the same, unchanged file, now outside the root.
* anything else, or an error: the entry is dropped and the path is opened afresh through
  :meth:`Root.open`, with all of its checks.

The path is stat'ed without following a final symlink when the root does not follow them, so
a file replaced by a symlink is a miss, and :meth:`Root.open` refuses it.

Descriptors are shared: sendfile, splice and preadv all take explicit offsets, so concurrent
responses do not disturb each other. Each entry counts its borrowers; an evicted entry is
closed when its last borrower gives it back. Only regular files are cached. Entries unused for
``inactive`` seconds are closed at the next lookup, so a deleted file does not keep its disk
space pinned for long while the server is in use, and at most ``max_entries`` descriptors
are held.
"""

from __future__ import annotations

import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from zerocopy.files.root import Opened

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from zerocopy.files.root import Root

__all__ = ["CacheStatistics", "OpenFileCache"]


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        info.st_mode,
    )


@final
class _Entry:
    __slots__ = ("borrowers", "evicted", "identity", "last_used", "opened", "wanted")

    def __init__(self, opened: Opened, wanted: bytes, now: float) -> None:
        self.opened = opened
        self.wanted = wanted
        self.identity = _identity(opened.stat)
        self.borrowers = 0
        self.evicted = False
        self.last_used = now


@final
@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """Attributes: entries held, hits, misses, and descriptors closed by eviction."""

    entries: int
    hits: int
    misses: int
    evictions: int


@final
class OpenFileCache:
    """Opens files through a :class:`Root`, reusing unchanged descriptors.

    Args:
        root: Where files are opened and checked.
        max_entries: Most descriptors held; 0 disables the cache.
        inactive: Seconds after which an unused entry is closed.
        clock: A monotonic clock, for tests.
    """

    def __init__(
        self,
        root: Root,
        *,
        max_entries: int = 256,
        inactive: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self._max = max_entries
        self._inactive = inactive
        self._clock = clock
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def open(self, segments: Sequence[str]) -> Opened:
        """Like :meth:`Root.open`; the returned file's ``close()`` gives it back to the cache.

        Raises:
            Refused: As :meth:`Root.open` does.
        """
        if self._max <= 0:
            return self.root.open(segments)
        key = tuple(segments)
        entry = self._entries.get(key)
        if entry is not None:
            try:
                info = os.stat(entry.wanted, follow_symlinks=self.root.follow_symlinks)
            except OSError:
                info = None
            if (
                info is not None
                and _identity(info) == entry.identity
                and self.root.still_inside(entry.opened, entry.wanted)
            ):
                self._hits += 1
                entry.borrowers += 1
                entry.last_used = self._clock()
                self._entries.move_to_end(key)
                self._trim(entry.last_used)
                return self._lend(entry)
            self._evict(key, entry)
        self._misses += 1
        opened = self.root.open(segments)
        if not stat.S_ISREG(opened.stat.st_mode):
            return opened
        now = self._clock()
        entry = _Entry(opened, self.root.path_of(segments), now)
        entry.borrowers = 1
        self._entries[key] = entry
        self._trim(now)
        return self._lend(entry)

    def _lend(self, entry: _Entry) -> Opened:
        opened = entry.opened
        return Opened(opened.fd, opened.stat, opened.path, lambda: self._give_back(entry))

    def _give_back(self, entry: _Entry) -> None:
        entry.borrowers -= 1
        if entry.evicted and entry.borrowers == 0:
            os.close(entry.opened.fd)

    def _evict(self, key: tuple[str, ...], entry: _Entry) -> None:
        del self._entries[key]
        self._evictions += 1
        entry.evicted = True
        if entry.borrowers == 0:
            os.close(entry.opened.fd)

    def _trim(self, now: float) -> None:
        while len(self._entries) > self._max:
            key, entry = next(iter(self._entries.items()))
            self._evict(key, entry)
        # Least recently used first: stop at the first entry used within `inactive` seconds.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry.last_used < self._inactive:
                break
            self._evict(key, entry)

    def statistics(self) -> CacheStatistics:
        """Return the cache's counts."""
        return CacheStatistics(len(self._entries), self._hits, self._misses, self._evictions)

    def clear(self) -> None:
        """Drop every entry (borrowed descriptors close when given back)."""
        for key, entry in list(self._entries.items()):
            self._evict(key, entry)
