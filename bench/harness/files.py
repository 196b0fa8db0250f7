"""The files the benchmarks serve, page-cache control for the cold-cache cases, and the check
that a server really serves them.

Files are written once per run with a 1 MiB random block repeated, then fsynced, so that their
pages are clean: ``POSIX_FADV_DONTNEED`` drops only clean pages. The suite's live in a
temporary directory on a disk-backed file system (``/var/tmp`` by default): on tmpfs the "page
cache" is the file itself and cannot be evicted, which :func:`is_cached` reveals and the report
records.

The load and peer benchmarks serve a document root of their own (:func:`make_docroot`, and
:func:`make_many_files` for the many-small-files workload), read back once so that the page
cache is hot throughout. Every directory and file here is readable by nginx's unprivileged
worker. Before any measurement, :func:`verify_file` fetches a file and requires a 200, the
right Content-Length and the right bytes: a misconfigured peer answering 404 quickly would
otherwise look like the fastest server in the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from bench.harness.sizes import MiB

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = [
    "DocFile",
    "VerificationError",
    "data_directory",
    "evict",
    "filesystem_type",
    "is_cached",
    "make_big_directory",
    "make_docroot",
    "make_many_files",
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
    os.chmod(path, 0o644)


def write_files(root: str, files: Mapping[str, int]) -> None:
    """Create each file (name → size) under ``root``, sharing one random block."""
    block = os.urandom(MiB)
    for name, size in files.items():
        write_file(os.path.join(root, name), size, block)


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (clean pages only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def is_cached(path: str, offset: int = 0) -> bool | None:
    """Whether the page at ``offset`` is in the page cache; ``None`` if the kernel cannot say.

    A read with ``RWF_NOWAIT`` fails with EAGAIN instead of waiting for the disk (it also
    starts readahead, so call it once per eviction at most). It reads one byte.
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
    os.chmod(path, 0o755)  # nginx's worker runs unprivileged
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
    """One file of a document root: a label (``4KiB``), its size, digest and relative name."""

    label: str
    size: int
    sha256: str
    name: str

    @property
    def path(self) -> str:
        """The URL path: ``/4KiB.bin``."""
        return f"/{self.name}"


def _doc(root: Path, relative: str, label: str) -> DocFile:
    """Read a file back once, for its digest: its pages are then hot in the page cache."""
    path = root / relative
    digest = hashlib.sha256()
    with path.open("rb") as warm:
        while chunk := warm.read(MiB):
            digest.update(chunk)
    return DocFile(label=label, size=path.stat().st_size, sha256=digest.hexdigest(), name=relative)


def make_docroot(root: Path, sizes: Mapping[str, int]) -> dict[str, DocFile]:
    """Write one file per size label into ``root`` (``4KiB.bin``), hot in the page cache."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    block = os.urandom(MiB)
    files = {}
    for label, size in sizes.items():
        write_file(root / f"{label}.bin", size, block)
        files[label] = _doc(root, f"{label}.bin", label)
    return files


MANY_DIR: Final = "many"
"""Where :func:`make_many_files` puts its tree, under the document root."""
MANY_PER_DIR: Final = 100
"""Files per directory: a web build's asset folders hold tens to hundreds of files."""


def many_files_path(index: int) -> str:
    """The relative path of file ``index`` of :func:`make_many_files`: ``many/07/0712.bin``.

    ``bench/data/wrk/random_path.lua`` builds the same paths, so the two must agree.
    """
    return f"{MANY_DIR}/{index // MANY_PER_DIR:02d}/{index:04d}.bin"


def make_many_files(
    root: Path, count: int, size_min: int, size_max: int, *, seed: int = 0
) -> list[DocFile]:
    """Write ``count`` files of ``size_min`` to ``size_max`` bytes (uniform, seeded) into
    ``root/many/NN/``, hot in the page cache; return them in index order."""
    rng = random.Random(seed)
    block = os.urandom(size_max)
    docs = []
    for index in range(count):
        relative = many_files_path(index)
        path = root / relative
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            path.parent.chmod(0o755)
            path.parent.parent.chmod(0o755)
        size = rng.randint(size_min, size_max)
        with path.open("wb") as f:
            f.write(block[:size])
        path.chmod(0o644)
        docs.append(_doc(root, relative, relative))
    return docs


BIG_DIR_NAME_WIDTH: Final = 24
"""Padding in each entry's name: with it, a listing row is about 300 bytes in both zerocopy's
and nginx's HTML, so 200,000 entries make a page of about 60 MB."""


def make_big_directory(directory: Path, entries: int) -> int:
    """Fill ``directory`` with ``entries`` empty files (``entry-000123-xxx....dat``).

    Kept between runs: a marker file, written last, says the directory is complete, and a
    directory with it is left as it is. Returns the number of entries.
    """
    marker = directory.parent / f".{directory.name}-{entries}-complete"
    if marker.exists() and directory.is_dir():
        return entries
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    pad = "x" * BIG_DIR_NAME_WIDTH
    for index in range(entries):
        # Opened and closed at once: an empty file costs one inode and one directory entry.
        os.close(
            os.open(directory / f"entry-{index:06d}-{pad}.dat", os.O_CREAT | os.O_WRONLY, 0o644)
        )
    marker.touch()
    return entries


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
