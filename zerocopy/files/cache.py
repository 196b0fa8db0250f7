"""An open-file cache: reuse the descriptor (and, for small files, the bytes) of a file that
has not changed, with nginx's default guarantee that every change on disk is seen at once.

Theory of operation. Opening a file safely costs six syscalls (``open`` with ``O_PATH``,
``readlink`` of ``/proc/self/fd/N``, ``fstat``, the reopen through ``/proc/self/fd/N`` and two
``close``; see ``root.py``). For a hot small file that is most of the work of a request, so,
like nginx's ``open_file_cache``, this cache keeps the descriptor open between requests.
nginx then trusts an entry for ``open_file_cache_valid`` (60 s) without looking. This cache
keeps the guarantee of nginx's *default*, which opens the file on every request: a change that
completed before a request arrived is seen by that request. Two ways to know:

* **inotify (the default).** Before a file is opened and cached, every directory from the
  root down to the file's own gets a watch (``watch.py``), top down, so that any change after
  the open is reported: to the file's name (rewritten, truncated, ``chmod``, ``utime``,
  replaced by rename, deleted, created anew) or to any directory on its path (renamed, moved
  out of the root, deleted, replaced by a symlink: all are events on the parent's watch, or
  ``IN_MOVE_SELF`` / ``IN_DELETE_SELF`` on the directory's own). The kernel queues the event
  before the syscall that made the change returns. Before an entry is served, the inotify
  descriptor is drained without blocking: one ``ioctl(FIONREAD)``, which nearly always says
  "nothing", where revalidation would cost a ``stat`` of the path plus a ``readlink``. Each
  event drops the entries at or below the name it concerns. ``IN_Q_OVERFLOW`` (events were
  lost) or a read error drops every entry; a failed read also turns inotify off for good.
* **Per-hit revalidation** (``--open-file-cache-revalidate always``, where inotify is
  unavailable, or for an entry that could not be watched or whose path went through a
  symlink): on every hit, ``stat`` of the path must show the same device, inode, size,
  mtime, ctime and mode, and ``readlink`` of the descriptor must still pass the containment
  check (:meth:`Root.still_inside`: a directory above the file may have been moved out of the
  root and replaced by a symlink). inotify cannot see changes made through another hard link
  in an unwatched directory, writes through a shared ``mmap``, or changes on some network file
  systems; this mode sees all but the ``mmap`` case.

Anything else, or an error, drops the entry and the path is opened afresh through
:meth:`Root.open`, with all of its checks.

Descriptors are shared: sendfile, splice and preadv all take explicit offsets, so concurrent
responses do not disturb each other. Each entry counts its borrowers; a dropped entry is
closed when its last borrower gives it back. Only regular files are cached. At most
``max_entries`` descriptors are held, least recently used first out; entries unused for
``inactive`` seconds are closed at the next miss (or at a hit, at most once a second).

Small files: with ``keep_data_below`` set (the ``auto`` strategy sends such files from
memory), the cache also reads a file of at most that many bytes once, when its pages are in
the page cache, and keeps the bytes with the entry, within ``memory_limit`` bytes in all. The
bytes are dropped with the entry, so they are as fresh as the entry is.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, final

from zerocopy.files.root import Opened
from zerocopy.files.watch import IGNORED, OVERFLOW, SELF_EVENTS, Watcher
from zerocopy.logtext import safe_text
from zerocopy.span import FileSpan, Warmth

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from zerocopy.files.root import Root

__all__ = ["REVALIDATE_MODES", "CacheStatistics", "CachedFile", "OpenFileCache"]

logger = logging.getLogger("zerocopy.files")

REVALIDATE_MODES: Final = ("inotify", "always")
_FILL_RETRY: Final = 1.0
"""Seconds before a small file whose pages were not cached is read into memory again."""
_TRIM_EVERY: Final = 1.0
"""Seconds between checks for inactive entries on the hit path."""


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
class _Watch:
    """One watched directory, and the cache entries that depend on each name in it."""

    __slots__ = ("names", "paths", "users", "wd")

    def __init__(self, wd: int) -> None:
        self.wd = wd
        self.paths: set[bytes] = set()
        self.names: dict[str, set[CachedFile]] = {}
        self.users = 0


@final
class CachedFile:
    """A cached, open regular file under the root.

    Attributes:
        key: The path segments it was opened for.
        fd: The open descriptor; -1 once closed. Borrowers must not use it after
            :meth:`release`.
        stat: ``fstat`` of the descriptor when it was opened.
        path: The resolved absolute path, for logs.
        span: The whole file as a :class:`FileSpan`, with its bytes when they are in memory.
        valid: False once the entry was dropped: it must not be served again.
        memo: What the caller derives from the file and keeps with it, dropped with the entry
            (the server keeps the response head's fields); ``None`` until set.
    """

    __slots__ = (
        "_fill_after",
        "_identity",
        "_last_used",
        "_registered",
        "_revalidate",
        "_wanted",
        "borrowers",
        "fd",
        "key",
        "memo",
        "path",
        "span",
        "stat",
        "valid",
    )

    def __init__(
        self, key: tuple[str, ...], opened: Opened, wanted: bytes, now: float, revalidate: bool
    ) -> None:
        info = opened.stat
        self.key = key
        self.fd = opened.fd
        self.stat = info
        self.path = opened.path
        self.span = FileSpan(opened.fd, 0, info.st_size, info.st_dev, None, Warmth())
        self.valid = True
        self.memo: object | None = None
        self.borrowers = 0
        self._wanted = wanted
        self._identity = _identity(info)
        self._revalidate = revalidate
        self._registered: list[tuple[_Watch, str]] = []
        self._last_used = now
        self._fill_after = 0.0

    def release(self) -> None:
        """Give back a borrowed descriptor; the last borrower of a dropped entry closes it."""
        self.borrowers -= 1
        if not self.valid and self.borrowers == 0:
            self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@final
@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """A snapshot of the open-file cache.

    Attributes:
        entries: Entries held.
        hits: Lookups served from an entry.
        misses: Lookups that opened the path.
        evictions: Entries dropped: changed on disk, least recently used, or inactive.
        invalidations: Entries dropped because inotify reported a change.
        overflows: Times the inotify queue overflowed and every entry was dropped.
        watches: Directories watched now.
        memory_bytes: Bytes of small files held in memory now.
        memory_limit: The most that may be held.
        memory_read_bytes: Bytes read into memory since start (one copy into user space each).
        mode: ``inotify`` or ``always`` (per-hit revalidation).
    """

    entries: int
    hits: int
    misses: int
    evictions: int
    invalidations: int = 0
    overflows: int = 0
    watches: int = 0
    memory_bytes: int = 0
    memory_limit: int = 0
    memory_read_bytes: int = 0
    mode: str = "always"


@final
class OpenFileCache:
    """Opens files through a :class:`Root`, reusing unchanged descriptors.

    Args:
        root: Where files are opened and checked.
        max_entries: Most descriptors held; 0 disables the cache.
        inactive: Seconds after which an unused entry is closed.
        clock: A monotonic clock, for tests.
        revalidate: ``inotify`` (changes reported by the kernel; per-hit revalidation where
            that is unavailable) or ``always`` (``stat`` and ``readlink`` on every hit).
        keep_data_below: Keep the bytes of files up to this size in memory (0: never).
        memory_limit: Most bytes of file data kept in memory, in all.

    Resource handling: the cache owns its descriptors and its inotify instance;
    :meth:`close` releases them (borrowed descriptors close when given back).
    """

    def __init__(
        self,
        root: Root,
        *,
        max_entries: int = 256,
        inactive: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        revalidate: Literal["inotify", "always"] = "inotify",
        keep_data_below: int = 0,
        memory_limit: int = 32 * 1024 * 1024,
    ) -> None:
        self.root = root
        self._max = max_entries
        self._inactive = inactive
        self._clock = clock
        self._keep_data_below = keep_data_below
        self._memory_limit = memory_limit
        self._entries: OrderedDict[tuple[str, ...], CachedFile] = OrderedDict()
        self._watcher: Watcher | None = None
        self._watches: dict[int, _Watch] = {}
        self._by_path: dict[bytes, _Watch] = {}
        self._root_names: dict[int, set[str]] = {}
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._invalidations = 0
        self._overflows = 0
        self._memory = 0
        self._memory_read = 0
        self._next_trim = 0.0
        if revalidate == "inotify" and max_entries > 0:
            try:
                self._watcher = Watcher()
            except OSError as exc:
                logger.warning(
                    "inotify unavailable (%s): the open-file cache revalidates every hit", exc
                )
            else:
                self._watch_root()

    @property
    def mode(self) -> str:
        """``inotify`` while changes are reported by the kernel, else ``always``."""
        return "inotify" if self._watcher is not None else "always"

    # -- lookups ------------------------------------------------------------------------

    def fresh(self, entry: CachedFile, *, synced: bool = False) -> bool:
        """Whether ``entry`` may be served now, as it is: nothing reported or found changed.

        Drains pending inotify events first (one ``ioctl``; without inotify, checks the root
        path), unless ``synced``: the caller did so for this request already. For an entry
        that inotify does not cover, revalidates it (``stat`` and ``readlink``). Counts a hit
        when true. Never blocks.
        """
        if not synced:
            watcher = self._watcher
            if watcher is not None:
                if watcher.pending():
                    self._drain()
            elif self.root.check():
                self.clear()
        if not entry.valid:
            return False
        if entry._revalidate and not self._unchanged(entry):
            self._drop(entry)
            self._evictions += 1
            return False
        self._hits += 1
        now = self._clock()
        entry._last_used = now
        self._entries.move_to_end(entry.key)
        if entry.span.data is None and entry.stat.st_size <= self._keep_data_below:
            self._fill(entry, now)
        if now >= self._next_trim:
            self._trim(now)
        return True

    def open(self, segments: Sequence[str], *, related: Sequence[str] = ()) -> Opened:
        """Like :meth:`Root.open`; the returned file's ``close()`` gives it back to the cache.

        Args:
            segments: The path, as for :meth:`Root.open`.
            related: Other names in the file's directory whose creation, change or removal
                also drops the entry (its precompressed sidecars, which the server decides
                about once per entry).

        Raises:
            Refused: As :meth:`Root.open` does.
        """
        entry = self.get(segments)
        if entry is not None:
            entry.borrowers += 1
            return Opened(entry.fd, entry.stat, entry.path, entry)
        if self._max <= 0:
            self.root.check()
            return self.root.open(segments)
        key = tuple(segments)
        self._misses += 1
        if self._watcher is None:
            if self.root.check():
                self.clear()
        elif self._watcher.pending():
            self._drain()  # So that the watches reused below still name what they did.
        watches = self._watch_path(key)
        try:
            opened = self.root.open(segments)
        except BaseException:
            self._unwatch(watches)
            raise
        if not stat.S_ISREG(opened.stat.st_mode):
            self._unwatch(watches)
            return opened
        wanted = self.root.path_of(segments)
        now = self._clock()
        # An entry reached through a symlink (only with follow_symlinks) depends on paths that
        # are not watched: it is revalidated on every hit.
        revalidate = watches is None or opened.path != wanted
        entry = CachedFile(key, opened, wanted, now, revalidate)
        if watches is not None:
            for watch, name in zip(watches, key, strict=True):
                watch.names.setdefault(name, set()).add(entry)
                entry._registered.append((watch, name))
            if watches:
                directory = watches[-1]
                for name in related:
                    directory.names.setdefault(name, set()).add(entry)
                    directory.users += 1
                    entry._registered.append((directory, name))
        self._entries[key] = entry
        if opened.stat.st_size <= self._keep_data_below:
            self._fill(entry, now)
        self._trim(now)
        entry.borrowers += 1
        return Opened(entry.fd, entry.stat, entry.path, entry)

    def get(self, segments: Sequence[str], *, synced: bool = False) -> CachedFile | None:
        """The fresh entry for ``segments``, or ``None`` (see :meth:`fresh`). Never opens."""
        entry = self._entries.get(tuple(segments))
        if entry is None or not self.fresh(entry, synced=synced):
            return None
        return entry

    # -- statistics and shutdown ----------------------------------------------------------

    def statistics(self) -> CacheStatistics:
        """Return the cache's counts."""
        return CacheStatistics(
            entries=len(self._entries),
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            invalidations=self._invalidations,
            overflows=self._overflows,
            watches=len(self._watches),
            memory_bytes=self._memory,
            memory_limit=self._memory_limit if self._keep_data_below else 0,
            memory_read_bytes=self._memory_read,
            mode=self.mode,
        )

    def clear(self) -> None:
        """Drop every entry (borrowed descriptors close when given back)."""
        for entry in list(self._entries.values()):
            self._drop(entry)

    def close(self) -> None:
        """Drop every entry and close the inotify instance (the root stays open)."""
        self.clear()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._watches.clear()
        self._by_path.clear()
        self._root_names.clear()

    # -- revalidation -----------------------------------------------------------------------

    def _unchanged(self, entry: CachedFile) -> bool:
        """Per-hit revalidation: the path names the same, unchanged file, still inside."""
        try:
            info = os.stat(entry._wanted, follow_symlinks=self.root.follow_symlinks)
        except OSError:
            return False
        return _identity(info) == entry._identity and self.root.still_inside(
            entry.fd, entry._wanted, entry.stat
        )

    # -- inotify ------------------------------------------------------------------------------

    def _watch_root(self) -> None:
        """Watch every name the root path goes through, as given and as resolved.

        For ``/srv/site/current`` -> ``releases/5`` that is ``srv`` in ``/``, ``site`` in
        ``/srv``, ``current`` and ``releases`` in ``/srv/site``, and ``5`` in
        ``/srv/site/releases``; and the root directory itself (moved or deleted). A change to
        any of them may switch the root (:meth:`Root.check`).
        """
        watcher = self._watcher
        assert watcher is not None
        for wd in self._root_names:
            if wd not in self._watches:
                watcher.remove(wd)
        self._root_names.clear()
        chain: list[tuple[str, str]] = [(self.root.path, "")]
        for path in {self.root.configured, self.root.path}:
            while path != "/":
                parent, name = os.path.split(path)
                chain.append((parent, name))
                path = parent
        for directory, name in chain:
            try:
                wd = watcher.add_root(os.fsencode(directory))
            except OSError as exc:
                logger.warning(
                    "cannot watch %s (%s): a switch of the root path there is seen only "
                    "after a restart",
                    safe_text(directory),
                    exc,
                )
                continue
            self._root_names.setdefault(wd, set()).add(name)

    def _root_changed(self) -> None:
        """Something on the root path changed: follow it, and drop everything if it moved."""
        if self.root.check():
            logger.info("root is now %s", safe_text(self.root.path))
            self.clear()
            if self._watcher is not None:
                self._watch_root()

    def _watch_path(self, key: tuple[str, ...]) -> list[_Watch] | None:
        """Watch the root and every directory down to the one holding ``key``, top down.

        Returns the watches, one per segment of ``key`` (the directory that holds it), each
        counted as used once more; ``None`` (and nothing held) when inotify is off or any
        directory cannot be watched, for example because it is missing or a symlink.
        """
        watcher = self._watcher
        if watcher is None:
            return None
        held: list[_Watch] = []
        directory = self.root.path_of(())
        for depth in range(len(key)):
            if depth:
                directory = self.root.path_of(key[:depth])
            watch = self._by_path.get(directory)
            if watch is None:
                try:
                    wd = watcher.add(directory)
                except OSError:
                    # Missing, not a directory, a symlink, or out of watches: this path is
                    # revalidated on every hit instead (Root.open reports what is wrong).
                    self._unwatch(held)
                    return None
                watch = self._watches.get(wd)
                if watch is None:
                    watch = self._watches[wd] = _Watch(wd)
                watch.paths.add(directory)
                self._by_path[directory] = watch
            watch.users += 1
            held.append(watch)
        return held

    def _unwatch(self, watches: list[_Watch] | None) -> None:
        """Undo one use of each watch; a watch no entry uses any more is removed."""
        if not watches:
            return
        for watch in watches:
            watch.users -= 1
            if watch.users == 0:
                self._forget(watch)
                if self._watcher is not None and watch.wd not in self._root_names:
                    self._watcher.remove(watch.wd)

    def _forget(self, watch: _Watch) -> None:
        if self._watches.get(watch.wd) is watch:
            del self._watches[watch.wd]
        for path in watch.paths:
            if self._by_path.get(path) is watch:
                del self._by_path[path]

    def _drain(self) -> None:
        """Apply every pending event: drop the entries it concerns."""
        watcher = self._watcher
        assert watcher is not None
        root_changed = False
        try:
            while events := watcher.read():
                for event in events:
                    names = self._root_names.get(event.wd)
                    if names is not None and (
                        event.name in names or (event.mask & SELF_EVENTS and "" in names)
                    ):
                        root_changed = True
                    if event.mask & OVERFLOW:
                        self._overflows += 1
                        logger.warning(
                            "inotify queue overflowed: dropping the open-file cache "
                            "(raise /proc/sys/fs/inotify/max_queued_events if it recurs)"
                        )
                        self.clear()
                        root_changed = True
                        continue
                    watch = self._watches.get(event.wd)
                    if watch is None:
                        continue  # A watch already removed; its IN_IGNORED arrives late.
                    if event.mask & SELF_EVENTS or not event.name:
                        # The directory itself moved, went, or changed its own mode: every
                        # entry below it.
                        doomed = [entry for users in watch.names.values() for entry in users]
                        if event.mask & IGNORED:  # The kernel dropped the watch.
                            self._forget(watch)
                    else:
                        doomed = list(watch.names.get(event.name, ()))
                    for entry in doomed:
                        self._invalidations += 1
                        self._drop(entry)
                if not watcher.pending():
                    break
            if root_changed:
                self._root_changed()
        except OSError as exc:
            logger.error(
                "inotify read failed (%s): dropping the open-file cache, revalidating every "
                "hit from now on",
                exc,
            )
            self._watcher = None
            watcher.close()
            self._watches.clear()
            self._by_path.clear()
            self._root_names.clear()
            for entry in list(self._entries.values()):
                entry._registered.clear()
                self._drop(entry)

    # -- entries --------------------------------------------------------------------------------

    def _drop(self, entry: CachedFile) -> None:
        """Remove an entry: never served again, closed once its borrowers are done."""
        if not entry.valid:
            return
        entry.valid = False
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        if entry.span.data is not None:
            self._memory -= entry.stat.st_size
        registered, entry._registered = entry._registered, []
        for watch, name in registered:
            users = watch.names.get(name)
            if users is not None:
                users.discard(entry)
                if not users:
                    del watch.names[name]
        self._unwatch([watch for watch, _ in registered])
        if entry.borrowers == 0:
            entry._close()

    def _fill(self, entry: CachedFile, now: float) -> None:
        """Read a small file into memory, if its pages are cached and the budget allows."""
        size = entry.stat.st_size
        if now < entry._fill_after or self._memory + size > self._memory_limit:
            return
        buffer = bytearray(size)
        try:
            got = os.preadv(entry.fd, [buffer], 0, os.RWF_NOWAIT) if size else 0
        except OSError:
            got = -1  # Not cached (EAGAIN), or no RWF_NOWAIT here: try again later.
        if got != size:
            # A short read is a file that changed under us (an event will say so) or pages
            # not all cached; 0 may mean "not cached" (Linux 5.9/5.10). Try again later.
            entry._fill_after = now + _FILL_RETRY
            return
        data = bytes(buffer)
        self._memory += size
        self._memory_read += size
        entry.span = FileSpan(entry.fd, 0, size, entry.stat.st_dev, data, entry.span.warmth)

    def _trim(self, now: float) -> None:
        self._next_trim = now + _TRIM_EVERY
        entries = self._entries
        while len(entries) > self._max:
            self._evictions += 1
            self._drop(next(iter(entries.values())))
        # Least recently used first: stop at the first entry used within `inactive` seconds.
        while entries:
            entry = next(iter(entries.values()))
            if now - entry._last_used < self._inactive:
                break
            self._evictions += 1
            self._drop(entry)
