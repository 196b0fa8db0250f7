"""The pools behind the strategies: pipes for splice, buffers for read/write.

Also pins the kernel facts that ``splice.py`` relies on for pipe sizes: F_SETPIPE_SZ rounds
up to a power of two, and asking for more than ``/proc/sys/fs/pipe-max-size`` fails with
EPERM unless the process has CAP_SYS_RESOURCE (root in a container usually has not), in
which case the pool keeps the default size and splice still works, in smaller chunks.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from tests import test_transfer_conformance as conformance
from tests.test_transfer_conformance import (
    HEAD,
    MiB,
    Reader,
    open_fd_count,
    send_parts,
    sha256,
    socket_pair,
    span_of,
)
from zerocopy.transfer import BufferPool, Counters, PipePool, Splice

# The conformance module's fixtures, found by pytest under their own names.
data = conformance.data
data_path = conformance.data_path
file_fd = conformance.file_fd

CAP_SYS_RESOURCE = 24


def pipe_max_size() -> int:
    return int(Path("/proc/sys/fs/pipe-max-size").read_text())


def has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    raise AssertionError("no CapEff in /proc/self/status")


def default_pipe_size() -> int:
    read_fd, write_fd = os.pipe()
    try:
        return fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_pipe_size_above_the_cap_is_refused_with_eperm() -> None:
    if has_capability(CAP_SYS_RESOURCE):
        pytest.skip("CAP_SYS_RESOURCE lifts pipe-max-size; the EPERM path cannot be reached")
    too_big = 2 * pipe_max_size()
    read_fd, write_fd = os.pipe()
    try:
        with pytest.raises(PermissionError):
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, too_big)
    finally:
        os.close(read_fd)
        os.close(write_fd)

    pool = PipePool(size=too_big)
    pipe = pool.acquire()
    assert pipe.size == default_pipe_size()
    pool.release(pipe)
    pool.close()


async def test_splice_works_with_pipes_the_kernel_would_not_grow(file_fd: int, data: bytes) -> None:
    pool = PipePool(size=4 * pipe_max_size())
    counters = Counters()
    strategy = Splice(counters, pool)
    sender, receiver = socket_pair("tcp")
    reader = Reader(receiver)
    with sender, receiver:
        await send_parts(strategy, sender, reader, [(HEAD, span_of(file_fd, 1, 3 * MiB))])
    strategy.close()
    assert reader.hexdigest == sha256(HEAD, data[1 : 1 + 3 * MiB])
    stats = pool.statistics()
    assert (stats.created, stats.idle) == (1, 0)  # closed by strategy.close()
    # A fill and a drain per pipe-full, at least: the pipe really had the size it reported.
    expected = 4 * pipe_max_size() if has_capability(CAP_SYS_RESOURCE) else default_pipe_size()
    assert counters.syscalls["splice"] >= 2 * (3 * MiB // expected)


@pytest.mark.parametrize(("asked", "got"), [(100_000, 128 * 1024), (MiB, MiB), (4096, 4096)])
def test_pipe_size_rounds_up_to_a_power_of_two(asked: int, got: int) -> None:
    if got > pipe_max_size():
        pytest.skip("pipe-max-size is below the size under test")
    pool = PipePool(size=asked)
    pipe = pool.acquire()
    assert pipe.size == got
    pool.release(pipe)
    pool.close()


def test_pipe_pool_keeps_at_most_keep_and_closes_the_rest() -> None:
    fds = open_fd_count()
    pool = PipePool(keep=1)
    first, second = pool.acquire(), pool.acquire()
    assert first != second
    assert open_fd_count() == fds + 4
    stats = pool.statistics()
    assert (stats.idle, stats.in_use, stats.created, stats.discarded) == (0, 2, 2, 0)

    pool.release(first)
    pool.release(second)  # over ``keep``: closed
    assert open_fd_count() == fds + 2
    assert pool.acquire() is first  # reused, not created
    pool.discard(first)
    stats = pool.statistics()
    assert (stats.idle, stats.in_use, stats.created, stats.discarded) == (0, 0, 2, 1)
    assert open_fd_count() == fds

    pool.release(pool.acquire())
    pool.close()
    assert open_fd_count() == fds
    with pytest.raises(FrozenInstanceError):
        stats.idle = 1  # type: ignore[misc]


def test_buffer_pool_lends_distinct_buffers_and_keeps_at_most_keep() -> None:
    pool = BufferPool(size=4096, keep=1)
    with pool.borrow() as first, pool.borrow() as second:
        assert first is not second
        assert len(first) == len(second) == 4096
        stats = pool.statistics()
        assert (stats.free, stats.in_use, stats.allocated) == (0, 2, 2)
    stats = pool.statistics()
    assert (stats.free, stats.in_use, stats.allocated) == (1, 0, 2)
    with pool.borrow():
        assert pool.statistics().allocated == 2  # reused
    pool.clear()
    assert pool.statistics().free == 0
    with pytest.raises(FrozenInstanceError):
        stats.free = 0  # type: ignore[misc]
