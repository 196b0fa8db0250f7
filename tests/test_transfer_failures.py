"""Failure paths: truncated files, clients that leave, cancellation, send timeouts.

Every case runs for every bare strategy (see ``test_transfer_conformance.BARE``). Each one
checks that the transfer ends (``fail_after``, never a hang), with the documented error, and
that nothing leaks: open fds are counted before and after, and a splice pipe that may hold
bytes is closed, never returned to the pool. Timeouts run on ``autojump_clock``, so nothing
really sleeps: a task blocked in ``wait_writable`` on a full socket counts as blocked.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import pytest
import trio

from tests import test_transfer_conformance as conformance
from tests.test_transfer_conformance import (
    HEAD,
    SOCKET_KINDS,
    KiB,
    MiB,
    Reader,
    Rig,
    build,
    open_fd_count,
    send_parts,
    sha256,
    socket_pair,
    span_of,
    write_file,
)
from zerocopy.transfer import FileTruncated, PeerGone, SendTimeout

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# The conformance module's fixtures, found by pytest under their own names.
rig = conformance.rig
data = conformance.data
data_path = conformance.data_path
file_fd = conformance.file_fd


def assert_pipe_discarded(rig: Rig, *, created: int = 1) -> None:
    if rig.pipes is not None:
        stats = rig.pipes.statistics()
        assert (stats.created, stats.discarded, stats.idle, stats.in_use) == (created, 1, 0, 0)


async def assert_still_correct(rig: Rig, data_path: Path, data: bytes) -> None:
    """After a failure, the same strategy sends a span correctly on a fresh socket."""
    fd = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC)
    sender, receiver = socket_pair("unix")
    reader = Reader(receiver)
    try:
        with sender, receiver:
            await send_parts(rig.strategy, sender, reader, [(HEAD, span_of(fd, 5, 3 * MiB))])
    finally:
        os.close(fd)
    assert reader.hexdigest == sha256(HEAD, data[5 : 5 + 3 * MiB])
    if rig.pipes is not None:
        stats = rig.pipes.statistics()
        # A new pipe, not the discarded one; this one is clean and goes back to the pool.
        assert (stats.created, stats.discarded, stats.idle, stats.in_use) == (2, 1, 1, 0)


# --- Truncation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "sent"), [(0, 100_000), (99_000, 1000), (200_000, 0)])
async def test_span_longer_than_file(
    rig: Rig,
    tmp_path: Path,
    data: bytes,
    data_path: Path,
    offset: int,
    sent: int,
) -> None:
    # The file has 100 000 bytes; each span asks for 100 000 more than there are.
    fd = write_file(tmp_path / "short.bin", data[:100_000])
    span = span_of(fd, offset, sent + 100_000)
    sender, receiver = socket_pair("unix")
    reader = Reader(receiver)
    fds = open_fd_count()
    try:
        with sender, receiver:
            with pytest.RaisesGroup(FileTruncated) as caught:
                await send_parts(rig.strategy, sender, reader, [(HEAD, span)])
            assert open_fd_count() == fds
            sender.close()  # The connection closes after a failed body; the client sees EOF.
            with trio.fail_after(10):
                await reader.run()
    finally:
        os.close(fd)

    error = caught.value.exceptions[0]
    assert isinstance(error, FileTruncated)
    assert (error.offset, error.missing) == (offset + sent, 100_000)
    assert reader.hexdigest == sha256(HEAD, data[offset : offset + sent])
    stats = rig.counters.statistics()
    assert stats.truncated == 1
    assert stats.body_bytes == sent
    assert_pipe_discarded(rig)
    await assert_still_correct(rig, data_path, data)


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_file_truncated_while_sending(
    rig: Rig, kind: str, tmp_path: Path, data: bytes, data_path: Path
) -> None:
    # The client truncates the file as soon as the first bytes arrive, to an unaligned size
    # well past what the sender can have queued by then (socket buffers and one pipe-full).
    path = tmp_path / "shrinking.bin"
    fd = write_file(path, data[: 8 * MiB])
    new_size = 2 * MiB + 12345

    def truncate_once(received: int) -> None:
        if os.fstat(fd).st_size != new_size:
            os.truncate(path, new_size)

    sender, receiver = socket_pair(kind, bufsize=64 * KiB)
    reader = Reader(receiver, recv_size=16 * KiB, keep=True, on_data=truncate_once)
    fds = open_fd_count()
    try:
        with sender, receiver:
            with pytest.RaisesGroup(FileTruncated) as caught:
                await send_parts(rig.strategy, sender, reader, [(HEAD, span_of(fd, 0, 8 * MiB))])
            assert open_fd_count() == fds
            sender.close()
            with trio.fail_after(10):
                await reader.run()
    finally:
        os.close(fd)

    error = caught.value.exceptions[0]
    assert isinstance(error, FileTruncated)
    stopped_at = error.offset
    assert stopped_at >= new_size
    assert error.missing == 8 * MiB - stopped_at
    assert reader.count == len(HEAD) + stopped_at == len(HEAD) + rig.counters.body_bytes
    # Up to the new size the bytes are the file's. Bytes past it left before the truncation
    # (or, for splice, sat in the pipe as references to pages the truncation zeroed).
    assert reader.data[: len(HEAD) + new_size] == HEAD + data[:new_size]
    assert rig.counters.truncated == 1
    assert_pipe_discarded(rig)
    await assert_still_correct(rig, data_path, data)


# --- The client leaves ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_peer_gone(rig: Rig, kind: str, file_fd: int, data: bytes, data_path: Path) -> None:
    # Small buffers, so that most of the 8 MiB is still to send when the client closes.
    sender, receiver = socket_pair(kind, bufsize=64 * KiB)
    reader = Reader(receiver, recv_size=16 * KiB, close_after=64 * KiB, keep=True)
    fds = open_fd_count()
    with sender, receiver:
        with pytest.RaisesGroup(PeerGone):
            await send_parts(rig.strategy, sender, reader, [(HEAD, span_of(file_fd, 0, 8 * MiB))])
        assert open_fd_count() == fds - 1  # the client's socket, closed by the reader

    assert reader.data[: 64 * KiB] == (HEAD + data)[: 64 * KiB]
    assert 0 < rig.counters.body_bytes < 8 * MiB
    assert_pipe_discarded(rig)
    await assert_still_correct(rig, data_path, data)


# --- Cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_cancelled_mid_transfer(
    rig: Rig,
    kind: str,
    file_fd: int,
    data: bytes,
    data_path: Path,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The client stalls; a deadline cancels the transfer while it waits for the full socket
    # (for splice, with a pipe that holds bytes). Afterwards the client reads what was queued:
    # exactly what the counters say the kernel accepted, and nothing else.
    offset = 3
    sender, receiver = socket_pair(kind, bufsize=64 * KiB)
    reader = Reader(receiver)
    go = trio.Event()

    async def stalled_client() -> None:
        await go.wait()
        await reader.run()

    fds = open_fd_count()
    with sender, receiver, trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stalled_client)
            with trio.move_on_after(5) as scope:
                await rig.strategy.send_span(sender, span_of(file_fd, offset, 8 * MiB), prefix=HEAD)
            assert scope.cancelled_caught
            assert trio.current_time() == pytest.approx(5)
            assert open_fd_count() == fds
            sender.shutdown(socket.SHUT_WR)
            go.set()

    sent = rig.counters.body_bytes
    assert 0 < sent < 8 * MiB
    assert reader.hexdigest == sha256(HEAD, data[offset : offset + sent])
    assert_pipe_discarded(rig)
    if rig.buffers is not None:
        assert rig.buffers.statistics().in_use == 0
    await assert_still_correct(rig, data_path, data)


# --- Send timeout --------------------------------------------------------------------------


@pytest.fixture
def timed(rig: Rig) -> Iterator[Rig]:
    """The same strategy as ``rig``, with a 5 s send timeout."""
    built = build(rig.name, send_timeout=5.0)
    yield built
    built.strategy.close()


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_send_timeout(
    timed: Rig,
    kind: str,
    file_fd: int,
    data: bytes,
    data_path: Path,
    autojump_clock: trio.testing.MockClock,
) -> None:
    sender, receiver = socket_pair(kind, bufsize=64 * KiB)
    fds = open_fd_count()
    with sender, receiver, trio.fail_after(60), pytest.raises(SendTimeout):
        # Nobody reads: the socket fills, and no byte goes out for 5 s.
        await timed.strategy.send_span(sender, span_of(file_fd, 0, 8 * MiB), prefix=HEAD)
    assert trio.current_time() == pytest.approx(5)
    assert open_fd_count() == fds - 2
    assert 0 < timed.counters.body_bytes < 8 * MiB
    assert_pipe_discarded(timed)
    await assert_still_correct(timed, data_path, data)


async def test_send_timeout_bounds_each_wait_not_the_transfer(
    timed: Rig, file_fd: int, data: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    # A slow client that drains its socket every 3 s never leaves the sender waiting 5 s, so
    # a transfer that lasts minutes completes: the timeout is nginx's send_timeout, between
    # two successful writes, not a bound on the whole body. (The client must drain, not sip:
    # an AF_UNIX socket polls writable only once its queue is down to a quarter of SO_SNDBUF.)
    sender, receiver = socket_pair("unix", bufsize=16 * KiB)
    reader = Reader(receiver, recv_size=MiB, delay=3.0)
    with sender, receiver:
        await send_parts(
            timed.strategy, sender, reader, [(HEAD, span_of(file_fd, 0, MiB))], deadline=3600
        )
    assert reader.hexdigest == sha256(HEAD, data[:MiB])
    assert trio.current_time() > 6 * 5  # far longer than one timeout
