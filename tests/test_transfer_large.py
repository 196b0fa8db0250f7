"""A file just over 2 GiB, sent by every strategy over loopback TCP and compared by SHA-256.

The kernel moves at most 0x7ffff000 bytes per sendfile or splice call (MAX_RW_COUNT), and
2**31 is where a 32-bit offset would wrap. The file is sparse (``ftruncate``), with a few
non-zero marks around both boundaries and at the ends, so that a strategy that loses, repeats
or shifts a chunk there sends a different hash. The expected hash is computed from the marks,
not by reading the file back, so that it does not share a code path with what it checks.

Runtime on the project machine (2 cores, loopback): about 3-4 s per strategy, mostly hashing
on both sides, plus about 1.5 s for the expected hash.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import pytest

from tests import test_transfer_conformance as conformance
from tests.test_transfer_conformance import (
    HEAD,
    Reader,
    Rig,
    send_parts,
    sha256,
    socket_pair,
    span_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

rig = conformance.rig

GiB = 1024 * 1024 * 1024
MAX_RW_COUNT = 0x7FFFF000
"""INT_MAX rounded down to a page: the most one read, write, sendfile or splice moves."""

SIZE = 2 * GiB + 4097
MARKS = [0, 4095, MAX_RW_COUNT - 1, MAX_RW_COUNT, MAX_RW_COUNT + 1, 2**31 - 1, 2**31, SIZE - 1]


def mark(offset: int) -> bytes:
    """Eight bytes that say where they are (cut short at the end of the file)."""
    return offset.to_bytes(8, "big").replace(b"\0", b"\xff")[: SIZE - offset]


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("large") / "sparse.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, SIZE)
        for offset in MARKS:
            os.pwrite(fd, mark(offset), offset)
        yield path
        # 2 GiB of page cache (zero pages for the holes): give it back.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
        path.unlink()


def expected_sha256(prefix: bytes, offset: int, count: int) -> str:
    """The hash of ``prefix`` plus bytes ``[offset, offset + count)`` of the sparse file."""
    content = {}
    for start in MARKS:
        for i, byte in enumerate(mark(start)):
            content[start + i] = byte
    digest = hashlib.sha256(prefix)
    step = 16 * 1024 * 1024
    zeros = bytes(step)
    for start in range(offset, offset + count, step):
        end = min(start + step, offset + count)
        marks = {at: byte for at, byte in content.items() if start <= at < end}
        if not marks:
            digest.update(zeros[: end - start])
            continue
        chunk = bytearray(end - start)
        for at, byte in marks.items():
            chunk[at - start] = byte
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def whole_file_sha256() -> str:
    return expected_sha256(HEAD, 0, SIZE)


def test_one_call_moves_at_most_max_rw_count(sparse: Path) -> None:
    # The kernel fact behind the chunking: even asked for more, one call stops at
    # MAX_RW_COUNT. (No strategy asks for that much: their chunks are MiBs.)
    fd = os.open(sparse, os.O_RDONLY | os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        assert os.sendfile(null, fd, 0, SIZE) == MAX_RW_COUNT
    finally:
        os.close(fd)
        os.close(null)


async def test_file_over_2_gib(rig: Rig, sparse: Path, whole_file_sha256: str) -> None:
    fd = os.open(sparse, os.O_RDONLY | os.O_CLOEXEC)
    sender, receiver = socket_pair("tcp")
    reader = Reader(receiver)
    try:
        with sender, receiver:
            await send_parts(
                rig.strategy, sender, reader, [(HEAD, span_of(fd, 0, SIZE))], deadline=600
            )
    finally:
        os.close(fd)
    assert reader.count == len(HEAD) + SIZE
    assert reader.hexdigest == whole_file_sha256
    stats = rig.counters.statistics()
    assert stats.body_bytes == SIZE
    assert stats.bytes_zero_copy == (SIZE if rig.zero_copy else 0)


async def test_span_across_both_boundaries(rig: Rig, sparse: Path) -> None:
    # An unaligned range request that starts below MAX_RW_COUNT and ends at the end of the
    # file, past 2**31: offsets above 32 bits in every call.
    offset = MAX_RW_COUNT - 12345
    count = SIZE - offset
    fd = os.open(sparse, os.O_RDONLY | os.O_CLOEXEC)
    sender, receiver = socket_pair("unix")
    reader = Reader(receiver)
    try:
        with sender, receiver:
            await send_parts(rig.strategy, sender, reader, [(b"--", span_of(fd, offset, count))])
    finally:
        os.close(fd)
    assert reader.hexdigest == expected_sha256(b"--", offset, count)
    assert reader.hexdigest != sha256(b"--", bytes(count))  # the marks are in it
