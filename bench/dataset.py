"""The files the benchmarks serve, page-cache control for the cold-cache cases, and the check
that a server really serves them.

Files are written once per run with a 1 MiB random block repeated, then fsynced, so that their
pages are clean: ``POSIX_FADV_DONTNEED`` drops only clean pages. The suite's live in a
temporary directory on a disk-backed file system (``/var/tmp`` by default): on tmpfs the "page
cache" is the file itself and cannot be evicted, which :func:`is_cached` reveals and the report
records.

The load and peer benchmarks serve a document root of their own (:func:`make_docroot`), read
back once so that the page cache is hot throughout, and readable by nginx's unprivileged
worker. Before any measurement, :func:`verify_file` fetches each file once and requires a 200,
the right Content-Length and the right bytes: a misconfigured peer answering 404 quickly would
otherwise look like the fastest server in the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from bench.plan import MiB

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from pathlib import Path

    from bench.plan import Case

__all__ = [
    "DocFile",
    "VerificationError",
    "data_directory",
    "evict",
    "filesystem_type",
    "is_cached",
    "make_docroot",
    "verify_file",
    "write_file",
    "write_files",
]


def write_file(path: str | Path, size: int, block: bytes | None = None) -> None:
    """Write ``size`` bytes to ``path``: ``block`` (default: 1 MiB of random bytes) repeated,
    then fsynced, so that the pages are clean and can be evicted."""
    if block is None:
        block = os.urandom(MiB)
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            chunk = block[: min(remaining, len(block))]
            f.write(chunk)
            remaining -= len(chunk)
        f.flush()
        os.fsync(f.fileno())


def write_files(root: str, cases: Iterable[Case]) -> None:
    """Create one file per case under ``root``."""
    block = os.urandom(MiB)
    for case in cases:
        write_file(os.path.join(root, case.filename), case.size, block)


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


# -- the load and peer benchmarks' document root ---------------------------------------------


class VerificationError(RuntimeError):
    """A server answered, but not with the file it was asked for."""


@final
@dataclass(frozen=True, slots=True)
class DocFile:
    """One file of the document root, by its size label (``4KiB``)."""

    label: str
    size: int
    sha256: str

    @property
    def path(self) -> str:
        """The URL path: ``/4KiB.bin``."""
        return f"/{self.label}.bin"


def make_docroot(root: Path, sizes: Mapping[str, int]) -> dict[str, DocFile]:
    """Write one file per size into ``root``, readable by nginx's unprivileged worker.

    The files are read back once (for their digest), so every measurement starts with a hot
    page cache.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    files = {}
    for label, size in sizes.items():
        path = root / f"{label}.bin"
        write_file(path, size)
        path.chmod(0o644)
        digest = hashlib.sha256()
        with path.open("rb") as warm:
            while chunk := warm.read(MiB):
                digest.update(chunk)
        files[label] = DocFile(label=label, size=size, sha256=digest.hexdigest())
    return files


def verify_file(port: int, doc: DocFile, *, timeout_s: float = 30.0) -> str:
    """GET ``doc`` once from ``127.0.0.1:port`` and check status, Content-Length and bytes.

    Returns:
        A short description for the run log, e.g. ``"200, HTTP/1.1, Content-Length 4096"``.

    Raises:
        VerificationError: on any mismatch or connection failure.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", doc.path)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise VerificationError(f"GET {doc.path} failed: {exc!r}") from exc
    finally:
        conn.close()
    length = response.getheader("Content-Length")
    problems = []
    if response.status != 200:
        problems.append(f"status {response.status} {response.reason}")
    if length != str(doc.size):
        problems.append(f"Content-Length {length!r}, expected {doc.size}")
    if hashlib.sha256(body).hexdigest() != doc.sha256:
        problems.append(f"body of {len(body)} bytes differs from the file")
    if problems:
        raise VerificationError(f"GET {doc.path}: " + "; ".join(problems))
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(response.version, str(response.version))
    return f"{response.status}, {version}, Content-Length {length}"
