"""Conformance: every transfer strategy sends the same bytes, counts them alike, and checkpoints.

The cases are parametrized over :data:`BARE`, a registry-like dict of the bare strategies (no
fallback wrapper), so that adding a strategy there adds all of its cases. Sockets are real:
an AF_UNIX ``socketpair()`` and a loopback TCP pair on port 0, because MSG_MORE and
sendfile-to-TCP take different kernel paths. The peer is a concurrent trio task that reads
the non-blocking socket and hashes what arrives.

The other ``test_transfer_*`` modules import the helpers defined here.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import socket
from dataclasses import FrozenInstanceError, dataclass, fields
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from zerocopy.span import FileSpan
from zerocopy.transfer import (
    AUTO_THRESHOLD,
    STRATEGIES,
    BufferPool,
    Counters,
    PipePool,
    ReadWrite,
    Sendfile,
    Splice,
    TransferStrategy,
    make_strategy,
    send_all,
)
from zerocopy.transfer import readwrite as readwrite_module
from zerocopy.transfer import sendfile as sendfile_module
from zerocopy.transfer import splice as splice_module

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

KiB = 1024
MiB = 1024 * KiB

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n"


# --- Strategies ----------------------------------------------------------------------------


@dataclass
class Rig:
    """A bare strategy with its counters and pools, and what the tests may expect of it.

    Attributes:
        chunk: The most one call moves: the strategy checkpoints at least this often.
        zero_copy: Whether body bytes bypass user space (sendfile, splice).
        body_call: The syscall (counter name) that puts body bytes on the socket.
    """

    name: str
    strategy: TransferStrategy
    counters: Counters
    chunk: int
    zero_copy: bool
    body_call: str
    pipes: PipePool | None = None
    buffers: BufferPool | None = None


def _sendfile(counters: Counters, send_timeout: float) -> Rig:
    strategy = Sendfile(counters, send_timeout=send_timeout)
    return Rig(
        "sendfile", strategy, counters, sendfile_module.CHUNK, zero_copy=True, body_call="sendfile"
    )


def _splice(counters: Counters, send_timeout: float) -> Rig:
    pipes = PipePool()
    strategy = Splice(counters, pipes, send_timeout=send_timeout)
    return Rig(
        "splice",
        strategy,
        counters,
        splice_module.PIPE_SIZE,
        zero_copy=True,
        body_call="splice",
        pipes=pipes,
    )


def _readwrite(counters: Counters, send_timeout: float) -> Rig:
    buffers = BufferPool()
    strategy = ReadWrite(counters, buffers, send_timeout=send_timeout)
    return Rig(
        "readwrite",
        strategy,
        counters,
        readwrite_module.CHUNK,
        zero_copy=False,
        body_call="sendmsg",
        buffers=buffers,
    )


BARE: dict[str, Callable[[Counters, float], Rig]] = {
    "sendfile": _sendfile,
    "splice": _splice,
    "readwrite": _readwrite,
}
"""Every bare strategy, by registry name. Each test parametrized over it runs for all."""


def build(name: str, *, send_timeout: float = math.inf) -> Rig:
    return BARE[name](Counters(), send_timeout)


@pytest.fixture(params=list(BARE))
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    built = build(request.param)
    yield built
    built.strategy.close()


# --- Sockets -------------------------------------------------------------------------------

SOCKET_KINDS = ["unix", "tcp"]


def socket_pair(kind: str, *, bufsize: int | None = None) -> tuple[socket.socket, socket.socket]:
    """A connected (sender, receiver) pair, both non-blocking.

    Args:
        kind: ``unix`` (socketpair) or ``tcp`` (loopback, port 0).
        bufsize: If given, the sender's SO_SNDBUF and the receiver's SO_RCVBUF, set before
            the TCP handshake so that the window scale honours them.
    """
    if kind == "unix":
        sender, receiver = socket.socketpair()
        if bufsize:
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            if bufsize:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            sender = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if bufsize:
                sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            sender.connect(listener.getsockname())
            receiver, _ = listener.accept()
        # As the server does: the head must rely on MSG_MORE, not on Nagle, to share a packet.
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sender.setblocking(False)
    receiver.setblocking(False)
    return sender, receiver


@pytest.fixture(params=SOCKET_KINDS)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = socket_pair(request.param)
    with sender, receiver:
        yield sender, receiver


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- Files ---------------------------------------------------------------------------------

FILE_SIZE = 8 * MiB + 64 * KiB
"""Big enough for an 8 MiB span that starts in the middle of the file."""


@pytest.fixture(scope="session")
def data() -> bytes:
    return random.Random(20240611).randbytes(FILE_SIZE)


def write_file(path: Path, content: bytes) -> int:
    """Write ``content`` to ``path`` and return a read-only fd (the caller closes it)."""
    path.write_bytes(content)
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@pytest.fixture(scope="session")
def data_path(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> Path:
    """The data on disk, shared: tests that change a file make their own."""
    path = tmp_path_factory.mktemp("transfer") / "data.bin"
    path.write_bytes(data)
    return path


@pytest.fixture
def file_fd(data_path: Path) -> Iterator[int]:
    fd = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def span_of(fd: int, offset: int, count: int) -> FileSpan:
    return FileSpan(fd, offset, count, os.fstat(fd).st_dev)


# --- The peer ------------------------------------------------------------------------------


class Reader:
    """The client side: reads ``sock`` until EOF in a trio task, hashing what arrives.

    Args:
        sock: The receiving end, non-blocking. Borrowed, except with ``close_after``.
        recv_size: Bytes per ``recv_into``.
        pause: Checkpoints to take after each read, so that the sender fills the socket
            and meets EAGAIN (a slow client without real sleeps).
        delay: Seconds to sleep after each read; only for tests on ``autojump_clock``.
        keep: Keep every byte, not only the hash.
        close_after: Close ``sock`` once this many bytes have arrived (the client leaves).
        on_data: Called with the running total after each read.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        recv_size: int = 4 * MiB,
        pause: int = 0,
        delay: float = 0.0,
        keep: bool = False,
        close_after: int | None = None,
        on_data: Callable[[int], None] | None = None,
    ) -> None:
        self.sock = sock
        self.sha256 = hashlib.sha256()
        self.count = 0
        self.reads = 0
        self.eof = False
        self.data = bytearray()
        self._buffer = bytearray(recv_size)
        self._pause = pause
        self._delay = delay
        self._keep = keep
        self._close_after = close_after
        self._on_data = on_data

    async def run(self) -> None:
        view = memoryview(self._buffer)
        while True:
            try:
                got = self.sock.recv_into(view)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            if got == 0:
                self.eof = True
                return
            self.reads += 1
            self.count += got
            self.sha256.update(view[:got])
            if self._keep:
                self.data += view[:got]
            if self._on_data is not None:
                self._on_data(self.count)
            if self._close_after is not None and self.count >= self._close_after:
                trio.lowlevel.notify_closing(self.sock)
                self.sock.close()
                return
            await trio.lowlevel.checkpoint()
            for _ in range(self._pause):
                await trio.lowlevel.checkpoint()
            if self._delay:
                await trio.sleep(self._delay)

    @property
    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


def sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


async def send_parts(
    strategy: TransferStrategy,
    sender: socket.socket,
    reader: Reader,
    parts: list[tuple[bytes, FileSpan]],
    *,
    trailer: bytes = b"",
    deadline: float = 10,
) -> None:
    """Send each (prefix, span) in order while ``reader`` runs, then shut the sender down.

    Checks that every ``send_span`` returns its span's count. Fails after ``deadline``
    seconds rather than hang.
    """
    with trio.fail_after(deadline):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader.run)
            for prefix, span in parts:
                assert await strategy.send_span(sender, span, prefix=prefix) == span.count
            if trailer:
                await send_all(sender, trailer, Counters())
            sender.shutdown(socket.SHUT_WR)
    assert reader.eof


# --- Byte-identical output -----------------------------------------------------------------

SIZES = [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 8 * MiB]


def test_bare_registry_covers_every_strategy() -> None:
    # A new strategy in the server's registry must get a bare entry here, so that every
    # conformance case runs for it. ``auto`` is sendfile plus read/write, both covered.
    assert set(BARE) == set(STRATEGIES) - {"auto"}
    for name, factory in BARE.items():
        built = factory(Counters(), math.inf)
        assert built.strategy.name == name
        built.strategy.close()


@pytest.mark.parametrize("offset", [0, 8191], ids=["offset0", "offset8191"])
@pytest.mark.parametrize("prefix", [b"", HEAD], ids=["bare", "prefix"])
@pytest.mark.parametrize("size", SIZES)
async def test_bytes_identical(
    rig: Rig,
    pair: tuple[socket.socket, socket.socket],
    file_fd: int,
    data: bytes,
    size: int,
    prefix: bytes,
    offset: int,
) -> None:
    sender, receiver = pair
    reader = Reader(receiver)
    span = span_of(file_fd, offset, size)

    await send_parts(rig.strategy, sender, reader, [(prefix, span)])

    assert reader.count == len(prefix) + size
    assert reader.hexdigest == sha256(prefix, data[offset : offset + size])
    stats = rig.counters.statistics()
    assert stats.body_bytes == size
    assert stats.bytes_zero_copy == (size if rig.zero_copy else 0)


async def test_multipart_spans_reuse_pipes_and_buffers(
    rig: Rig, pair: tuple[socket.socket, socket.socket], file_fd: int, data: bytes
) -> None:
    # Like a multipart/byteranges body: boundary, span, boundary, span, ..., closing boundary.
    # Ranges are out of order, overlapping and unaligned, as clients may ask.
    sender, receiver = pair
    ranges = [(0, 1), (100, 4097), (5 * MiB + 3, 3 * MiB), (7, 65537), (FILE_SIZE - 1, 1)]
    parts = [
        (b"\r\n--b%d\r\nContent-Range: bytes %d-%d\r\n\r\n" % (i, off, off + n - 1), off, n)
        for i, (off, n) in enumerate(ranges)
    ]
    trailer = b"\r\n--b--\r\n"
    reader = Reader(receiver)

    await send_parts(
        rig.strategy,
        sender,
        reader,
        [(prefix, span_of(file_fd, off, n)) for prefix, off, n in parts],
        trailer=trailer,
    )

    expected = [piece for prefix, off, n in parts for piece in (prefix, data[off : off + n])]
    assert reader.hexdigest == sha256(*expected, trailer)
    body = sum(n for _, _, n in parts)
    heads = sum(len(prefix) for prefix, _, _ in parts)
    stats = rig.counters.statistics()
    assert stats.body_bytes == body
    if rig.zero_copy:
        assert stats.bytes_zero_copy == body
        assert stats.bytes_copied_in == 0
        assert stats.bytes_copied_out == heads
        assert "preadv" not in stats.syscalls
        assert stats.syscalls[rig.name] >= len(parts)
    else:
        assert stats.bytes_zero_copy == 0
        assert stats.bytes_copied_in == body  # what preadv returned
        assert stats.bytes_copied_out == body + heads  # what sendmsg accepted
        assert stats.syscalls["preadv"] >= len(parts)
        assert not {"sendfile", "splice"} & set(stats.syscalls)
    assert stats.truncated == stats.fallbacks == 0
    if rig.pipes is not None:
        pipes = rig.pipes.statistics()
        assert (pipes.created, pipes.idle, pipes.in_use, pipes.discarded) == (1, 1, 0, 0)
    if rig.buffers is not None:
        buffers = rig.buffers.statistics()
        assert (buffers.allocated, buffers.free, buffers.in_use) == (1, 1, 0)


async def test_statistics_is_a_frozen_snapshot(
    rig: Rig, pair: tuple[socket.socket, socket.socket], file_fd: int
) -> None:
    sender, receiver = pair
    reader = Reader(receiver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run)
        await rig.strategy.send_span(sender, span_of(file_fd, 0, 5000), prefix=HEAD)
        before = rig.counters.statistics()
        await rig.strategy.send_span(sender, span_of(file_fd, 0, 7000))
        sender.shutdown(socket.SHUT_WR)

    assert before.body_bytes == 5000
    assert rig.counters.statistics().body_bytes == 12000
    syscalls = dict(before.syscalls)
    assert sum(syscalls.values()) > 0
    assert not hasattr(before, "__dict__")  # slotted
    for field in fields(before):
        with pytest.raises(FrozenInstanceError):
            setattr(before, field.name, 0)
    with pytest.raises(TypeError):
        before.syscalls["sendto"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        before.eagain["sendto"] = 0  # type: ignore[index]
    assert dict(before.syscalls) == syscalls  # later calls did not leak into the snapshot


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("size", [4096, 300 * KiB])
async def test_registry_strategies_send_identical_bytes(
    name: str,
    size: int,
    pair: tuple[socket.socket, socket.socket],
    file_fd: int,
    data: bytes,
) -> None:
    counters = Counters()
    strategy = make_strategy(name, counters)
    assert strategy.name == name
    sender, receiver = pair
    reader = Reader(receiver)
    try:
        await send_parts(strategy, sender, reader, [(HEAD, span_of(file_fd, 3, size))])
    finally:
        strategy.close()
    assert reader.hexdigest == sha256(HEAD, data[3 : 3 + size])
    stats = counters.statistics()
    assert stats.body_bytes == size
    assert stats.fallbacks == 0
    # A span without its bytes in memory goes zero-copy, except by readwrite.
    assert stats.bytes_zero_copy == (0 if name == "readwrite" else size)
    assert stats.bytes_from_memory == 0


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("size", [0, 1, 4096, AUTO_THRESHOLD, AUTO_THRESHOLD + 1])
async def test_spans_held_in_memory_go_from_memory_only_with_auto(
    name: str,
    size: int,
    pair: tuple[socket.socket, socket.socket],
    file_fd: int,
    data: bytes,
) -> None:
    # The open-file cache hands out spans that carry the file's bytes. auto sends those up to
    # its threshold in one send; sendfile and splice stay zero-copy at every size.
    counters = Counters()
    strategy = make_strategy(name, counters)
    span = FileSpan(file_fd, 0, size, os.fstat(file_fd).st_dev, data[:size])
    sender, receiver = pair
    reader = Reader(receiver)
    try:
        await send_parts(strategy, sender, reader, [(HEAD, span)])
    finally:
        strategy.close()
    assert reader.hexdigest == sha256(HEAD, data[:size])
    stats = counters.statistics()
    assert stats.body_bytes == size
    from_memory = name == "auto" and size <= AUTO_THRESHOLD
    assert stats.bytes_from_memory == (size if from_memory else 0)
    if from_memory:
        # One copy out per byte (head and body in one send), and no file syscall at all.
        assert stats.bytes_copied_out == len(HEAD) + size
        assert stats.syscalls.get("sendfile", 0) == 0
        assert stats.syscalls.get("preadv2", 0) == 0
    else:
        assert stats.bytes_zero_copy == (0 if name == "readwrite" else size)


def test_make_strategy_rejects_unknown_names() -> None:
    with pytest.raises(KeyError):
        make_strategy("mmap", Counters())


# --- A slow client: EAGAIN -----------------------------------------------------------------


@pytest.mark.parametrize("kind", SOCKET_KINDS)
async def test_slow_reader_forces_eagain(rig: Rig, kind: str, file_fd: int, data: bytes) -> None:
    # Small socket buffers, a reader that takes 4 KiB and then lets every other task run a
    # few times: the sender meets a full socket again and again. The prefix is larger than
    # the buffers, so that it too is sent in pieces (for read/write, partly in the same
    # sendmsg as the body).
    prefix = random.Random(7).randbytes(100 * KiB)
    offset, size = 4097, MiB + 7
    sender, receiver = socket_pair(kind, bufsize=16 * KiB)
    reader = Reader(receiver, recv_size=4 * KiB, pause=3)
    with sender, receiver:
        await send_parts(rig.strategy, sender, reader, [(prefix, span_of(file_fd, offset, size))])

    assert reader.hexdigest == sha256(prefix, data[offset : offset + size])
    stats = rig.counters.statistics()
    assert stats.body_bytes == size
    # EAGAIN from the call that sends the body, not only from the prefix: for splice, this is
    # pipe to full non-blocking socket failing with EAGAIN rather than blocking.
    assert stats.eagain[rig.body_call] > 0


# --- Checkpoints ---------------------------------------------------------------------------


async def test_send_span_checkpoints(
    rig: Rig, pair: tuple[socket.socket, socket.socket], file_fd: int
) -> None:
    sender, receiver = pair
    reader = Reader(receiver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run)
        with trio.testing.assert_checkpoints():
            await rig.strategy.send_span(sender, span_of(file_fd, 0, 3 * rig.chunk + 1))
        # Nothing to send is still a checkpoint, as for every trio async function.
        with trio.testing.assert_checkpoints():
            await rig.strategy.send_span(sender, span_of(file_fd, 0, 0))
        sender.shutdown(socket.SHUT_WR)
    assert reader.count == 3 * rig.chunk + 1


async def test_cancelled_before_start_sends_nothing(
    rig: Rig, pair: tuple[socket.socket, socket.socket], file_fd: int
) -> None:
    sender, receiver = pair
    reader = Reader(receiver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run)
        with trio.CancelScope() as scope:
            scope.cancel()
            await rig.strategy.send_span(sender, span_of(file_fd, 0, MiB), prefix=HEAD)
        assert scope.cancelled_caught
        sender.shutdown(socket.SHUT_WR)
    assert reader.count == 0
    stats = rig.counters.statistics()
    assert stats.body_bytes == stats.bytes_copied_in == stats.bytes_copied_out == 0
    if rig.pipes is not None:
        assert rig.pipes.statistics().created == 0


class StepMeter(trio.abc.Instrument):
    """Measures the body bytes that one task moves per step (between two of its yields)."""

    def __init__(self, task: trio.lowlevel.Task, counters: Counters) -> None:
        self.task = task
        self.counters = counters
        self.largest = 0
        self.steps = 0
        self._before = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self._before = self.counters.body_bytes

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            moved = self.counters.body_bytes - self._before
            self.steps += moved > 0
            self.largest = max(self.largest, moved)


async def test_other_tasks_run_once_per_chunk(rig: Rig, tmp_path: Path) -> None:
    # A fast client on loopback rarely fills the socket (about 4 MB of buffers here), so
    # EAGAIN alone would give other tasks a turn only every few chunks: the strategy must
    # yield after every chunk. An instrument measures what the sending task moves in each
    # step; a task that only checkpoints counts its turns. trio runs each runnable task once
    # per batch, so the ticker runs at least once between two sending steps of different
    # batches, that is, once per chunk but for the first.
    size = 64 * MiB
    content = random.Random(3).randbytes(MiB) * 64
    fd = write_file(tmp_path / "big.bin", content)
    sender, receiver = socket_pair("tcp")
    reader = Reader(receiver)
    meter = StepMeter(trio.lowlevel.current_task(), rig.counters)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.lowlevel.checkpoint()

    try:
        with sender, receiver, trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader.run)
                nursery.start_soon(ticker)
                trio.lowlevel.add_instrument(meter)
                try:
                    await rig.strategy.send_span(sender, span_of(fd, 0, size))
                finally:
                    trio.lowlevel.remove_instrument(meter)
                done = True
                sender.shutdown(socket.SHUT_WR)
    finally:
        os.close(fd)

    assert reader.hexdigest == sha256(content)
    assert 0 < meter.largest <= rig.chunk, f"{meter.largest} bytes went out in one step"
    # Strategies count a chunk when the call's checkpoint returns, in the next step, so the
    # last chunk is counted in the step that removes the instrument.
    assert meter.steps >= size // rig.chunk - 1
    assert ticks >= meter.steps - 1
