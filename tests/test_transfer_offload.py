"""Cold page cache: chunks that would block on the disk run in worker threads, bytes intact."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import pytest

from tests import test_transfer_conformance as conformance
from zerocopy.transfer import Counters, Offload, ReadWrite, Sendfile, Splice

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from zerocopy.transfer import TransferStrategy

MiB = 1024 * 1024
SIZE = 6 * MiB + 123


def _build(name: str, counters: Counters, threads: int) -> TransferStrategy:
    offload = Offload(counters, threads=threads)
    if name == "sendfile":
        return Sendfile(counters, offload=offload)
    if name == "splice":
        return Splice(counters, offload=offload)
    return ReadWrite(counters, offload=offload)


def _cold_file(path: Path) -> tuple[int, bytes]:
    data = random.Random(7).randbytes(SIZE)
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # dirty pages cannot be dropped
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
    except BlockingIOError:
        return fd, data
    os.close(fd)
    pytest.skip("posix_fadvise(DONTNEED) did not evict the file on this file system")


async def _send(strategy: TransferStrategy, fd: int) -> str:
    sender, receiver = conformance.socket_pair("tcp")
    with sender, receiver:
        reader = conformance.Reader(receiver)
        span = conformance.span_of(fd, 0, SIZE)
        await conformance.send_parts(strategy, sender, reader, [(b"", span)], deadline=30)
        return reader.hexdigest


@pytest.mark.parametrize("name", ["sendfile", "splice", "readwrite"])
@pytest.mark.parametrize(
    ("case", "threads"),
    [("cold", 2), ("hot", 2), ("cold", 0)],
    ids=["cold-offloaded", "hot-stays-on-the-loop", "offload-disabled"],
)
async def test_offload(tmp_path: Path, name: str, case: str, threads: int) -> None:
    fd, data = _cold_file(tmp_path / "data.bin")
    if case == "hot":
        os.pread(fd, SIZE, 0)  # now every page is cached
    counters = Counters()
    strategy = _build(name, counters, threads=threads)
    try:
        assert await _send(strategy, fd) == conformance.sha256(data)  # bytes intact, always
    finally:
        strategy.close()
        os.close(fd)
    if threads == 0:  # never probes, never offloads
        assert counters.offloaded == 0
        assert counters.syscalls["preadv2"] == counters.eagain["preadv2"] == 0
    elif case == "cold":  # the probe (or the RWF_NOWAIT read) saw the miss, and a thread read
        assert counters.offloaded >= 1
        assert counters.eagain["preadv2"] >= 1
    else:  # probed (or read) without waiting, and stayed on the loop
        assert counters.offloaded == 0
        assert counters.syscalls["preadv2"] >= 1


def _zero_before_eof(real: Callable[..., int]) -> Callable[..., int]:
    """``os.preadv`` as Linux 5.9 and 5.10 can behave: an RWF_NOWAIT read of pages that are not
    cached returns 0, as if at end of file, instead of failing with EAGAIN (lighttpd's source
    works around it). Blocking reads are real."""

    def preadv(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        if flags & os.RWF_NOWAIT:
            return 0
        return real(fd, buffers, offset, flags)

    return preadv


@pytest.mark.parametrize("name", ["sendfile", "splice", "readwrite"])
async def test_a_zero_from_the_probe_means_not_cached(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 0 from the page-cache probe is never taken for end of file (which would end the
    # transfer as truncated) nor for "cached" (which would block the loop): the chunk goes to a
    # thread, where the real read finds the data.
    fd, data = _cold_file(tmp_path / "data.bin")
    monkeypatch.setattr(os, "preadv", _zero_before_eof(os.preadv))
    counters = Counters()
    strategy = _build(name, counters, threads=2)
    try:
        assert await _send(strategy, fd) == conformance.sha256(data)
    finally:
        strategy.close()
        os.close(fd)
    assert counters.truncated == 0
    assert counters.offloaded >= SIZE // (2 * MiB)  # every chunk went to a thread
