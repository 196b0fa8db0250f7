"""The files the benchmark serves, and page-cache control for the cold-cache case.

Files are written once per run with a 1 MiB random block repeated, then fsynced, so that their
pages are clean: ``POSIX_FADV_DONTNEED`` drops only clean pages. They live in a temporary
directory on a disk-backed file system (``/var/tmp`` by default): on tmpfs the "page cache" is
the file itself and cannot be evicted, which :func:`is_cached` reveals and the report records.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

from bench.plan import MiB

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from bench.plan import Case

__all__ = ["data_directory", "evict", "filesystem_type", "is_cached", "write_files"]


def write_files(root: str, cases: Iterable[Case]) -> None:
    """Create one file per case under ``root``."""
    block = os.urandom(MiB)
    for case in cases:
        path = os.path.join(root, case.filename)
        with open(path, "wb") as f:
            remaining = case.size
            while remaining:
                chunk = block[: min(remaining, len(block))]
                f.write(chunk)
                remaining -= len(chunk)
            f.flush()
            os.fsync(f.fileno())


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (clean pages only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def is_cached(path: str, offset: int = 0) -> bool | None:
    """Whether the page at ``offset`` is in the page cache; ``None`` if the kernel cannot say.

    A read with ``RWF_NOWAIT`` fails with EAGAIN instead of waiting for the disk
    (DESIGN-NOTES, "The kernel side"). It reads one byte, which does not bring a page in.
    """
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], offset, flag)
    except BlockingIOError:
        return False
    except OSError:
        return None
    finally:
        os.close(fd)
    return True


def filesystem_type(path: str) -> str:
    """The type of the file system holding ``path`` (``ext4``, ``tmpfs``), from /proc/mounts."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            mount_point = fields[1].replace("\\040", " ")
            inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, fields[2]
    return kind


@contextlib.contextmanager
def data_directory(parent: str | None = None) -> Iterator[str]:
    """A temporary directory on disk, removed afterwards."""
    if parent is None:
        parent = "/var/tmp" if os.path.isdir("/var/tmp") else None
    path = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
