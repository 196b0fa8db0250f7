"""WithFallback: zero-copy where the file system can, read/write where it cannot or where a
pipe cannot be had, and memory for small spans whose bytes are held (auto).

The primary strategies here are fakes (small classes implementing the protocol), so that the
routing is tested apart from the kernel; the fallback is the real read/write strategy on a
real socket. One case uses a real unsupported file: procfs files built by ``seq_file`` (such
as ``/proc/self/cmdline``) have no ``splice_read``, so sendfile and splice fail on them with
EINVAL, while ``preadv`` reads them. (On this machine memfd, tmpfs and ``/sys`` files all
splice fine, so they are no use here.)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import socket
from typing import TYPE_CHECKING, final

import pytest
import trio

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
from zerocopy.span import FileSpan
from zerocopy.transfer import (
    STRATEGIES,
    Counters,
    Memory,
    ReadWrite,
    ResourcesExhausted,
    Sendfile,
    Splice,
    TransferStrategy,
    TransferUnsupported,
    WithFallback,
    make_strategy,
    send_all,
    translate_errors,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# The conformance module's fixtures, found by pytest under their own names.
rig = conformance.rig
data = conformance.data
data_path = conformance.data_path
file_fd = conformance.file_fd

THRESHOLD = 64 * 1024


@final
class Refusing:
    """A zero-copy strategy on a file system that cannot: the prefix goes out, then it gives up.

    That is what Sendfile and Splice do when the first call fails with EINVAL, ENOSYS or
    EOPNOTSUPP (see ``TransferStrategy.send_span``).
    """

    name = "sendfile"
    memory_max = 0

    def __init__(self, counters: Counters) -> None:
        self.calls = 0
        self.closed = False
        self._counters = counters

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        self.calls += 1
        with translate_errors():
            await send_all(sock, prefix, self._counters, socket.MSG_MORE)
        raise TransferUnsupported("sendfile", errno.EOPNOTSUPP)

    def way(self, span: FileSpan) -> str:
        return self.name

    def close(self) -> None:
        self.closed = True


@final
class Recording:
    """Passes spans to a real strategy, noting their lengths."""

    def __init__(self, inner: TransferStrategy) -> None:
        self.inner = inner
        self.name = inner.name
        self.memory_max = inner.memory_max
        self.counts: list[int] = []
        self.closed = False

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        self.counts.append(span.count)
        return await self.inner.send_span(sock, span, prefix=prefix)

    def way(self, span: FileSpan) -> str:
        return self.inner.way(span)

    def close(self) -> None:
        self.closed = True
        self.inner.close()


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "zerocopy.transfer" and record.levelno == logging.WARNING
    ]


async def test_unsupported_device_falls_back_once_and_is_remembered(
    file_fd: int, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zerocopy.transfer")
    counters = Counters()
    primary = Refusing(counters)
    fallback = Recording(ReadWrite(counters))
    strategy = WithFallback("sendfile", primary, fallback, counters)
    dev = os.fstat(file_fd).st_dev
    sender, receiver = socket_pair("unix")
    reader = Reader(receiver)
    sent: list[bytes] = []

    async def send(prefix: bytes, span: FileSpan) -> None:
        assert await strategy.send_span(sender, span, prefix=prefix) == span.count
        sent.extend((prefix, data[span.offset : span.offset + span.count]))

    with sender, receiver, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader.run)

            # The first span on the device: the primary sends the prefix and gives up, the
            # fallback sends the whole span, and the device is logged.
            await send(HEAD, FileSpan(file_fd, 10, 300_000, dev))
            assert (primary.calls, fallback.counts, counters.fallbacks) == (1, [300_000], 1)
            assert len(warnings_from(caplog)) == 1
            assert f"{dev:#x}" in warnings_from(caplog)[0].getMessage()

            # The device is remembered: the primary is not tried again, nothing more is
            # logged, and the span (with its prefix) still counts as a fallback.
            await send(b"\r\n--sep\r\n\r\n", FileSpan(file_fd, 5, 70_000, dev))
            assert (primary.calls, fallback.counts, counters.fallbacks) == (1, [300_000, 70_000], 2)
            assert len(warnings_from(caplog)) == 1

            # Another device is tried, and logged, on its own.
            await send(b"\r\n--sep\r\n\r\n", FileSpan(file_fd, 0, 100_000, dev + 1))
            assert (primary.calls, counters.fallbacks) == (2, 3)
            assert len(warnings_from(caplog)) == 2

            sender.shutdown(socket.SHUT_WR)

    assert reader.hexdigest == sha256(*sent)
    assert counters.body_bytes == 470_000
    strategy.close()
    assert primary.closed
    assert fallback.closed


async def test_memory_routes_only_spans_that_hold_their_bytes(
    file_fd: int, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zerocopy.transfer")
    counters = Counters()
    primary = Recording(Sendfile(counters))
    fallback = Recording(ReadWrite(counters))
    memory = Recording(Memory(counters, memory_max=THRESHOLD))
    strategy = WithFallback("auto", primary, fallback, counters, memory=memory)
    assert strategy.memory_max == THRESHOLD
    dev = os.fstat(file_fd).st_dev

    def held(count: int) -> FileSpan:
        return FileSpan(file_fd, 7, count, dev, data[7 : 7 + count])

    spans = [
        held(0),
        held(1),
        held(THRESHOLD),
        held(THRESHOLD + 1),  # too long to go from memory
        span_of(file_fd, 7, 3),  # bytes not held
    ]
    sender, receiver = socket_pair("tcp")
    reader = Reader(receiver)
    with sender, receiver:
        await send_parts(strategy, sender, reader, [(HEAD, span) for span in spans])
    strategy.close()

    assert reader.hexdigest == sha256(*(HEAD + data[7 : 7 + span.count] for span in spans))
    assert memory.counts == [0, 1, THRESHOLD]
    assert primary.counts == [THRESHOLD + 1, 3]
    assert fallback.counts == []
    assert counters.fallbacks == 0
    assert counters.bytes_from_memory == THRESHOLD + 1
    assert warnings_from(caplog) == []


@contextlib.contextmanager
def out_of_descriptors() -> Iterator[None]:
    """RLIMIT_NOFILE at the lowest free descriptor number: the next fd, pipe2's included,
    fails with EMFILE. Only for code that allocates no descriptor it needs to succeed."""
    used = {int(name) for name in os.listdir("/proc/self/fd")}
    lowest = next(fd for fd in range(len(used) + 1) if fd not in used)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_splice_out_of_descriptors_falls_back_before_the_head(
    file_fd: int, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # Without a pipe, splice must give up before the head goes out, and read/write send the
    # whole response: never a 200 head followed by a close.
    caplog.set_level(logging.WARNING, logger="zerocopy.transfer")
    counters = Counters()
    splice = Splice(counters)
    bare_sender, bare_receiver = socket_pair("unix")
    with bare_sender, bare_receiver:
        with out_of_descriptors(), pytest.raises(ResourcesExhausted):
            await splice.send_span(bare_sender, span_of(file_fd, 0, 10), prefix=HEAD)
        assert counters.syscalls == {}  # nothing at all was sent

    strategy = WithFallback("splice", splice, ReadWrite(counters), counters)
    sender, receiver = socket_pair("unix")
    reader = Reader(receiver)
    parts = [(HEAD, span_of(file_fd, 0, 100_000)), (b"--", span_of(file_fd, 5, 9))]
    with sender, receiver, out_of_descriptors():
        await send_parts(strategy, sender, reader, parts)
    strategy.close()
    assert reader.hexdigest == sha256(HEAD, data[:100_000], b"--", data[5:14])
    assert counters.fallbacks == 2
    assert counters.bytes_zero_copy == 0
    assert len(warnings_from(caplog)) == 1  # logged once per episode


# --- A real file system that cannot splice -------------------------------------------------

PROC_FILE = "/proc/self/cmdline"


def proc_file_span() -> tuple[FileSpan, bytes]:
    """An fd on a procfs file, the span of its whole content, and that content.

    procfs reports ``st_size`` 0, so the count comes from reading it first, as a server
    that trusted ``st_size`` never would; what matters here is the errno on the first call.
    """
    with open(PROC_FILE, "rb") as file:
        content = file.read()
    fd = os.open(PROC_FILE, os.O_RDONLY | os.O_CLOEXEC)
    return FileSpan(fd, 0, len(content), os.fstat(fd).st_dev), content


def require_einval_from_proc() -> None:
    """Skip unless this kernel refuses sendfile from the procfs file with EINVAL."""
    span, _ = proc_file_span()
    sender, receiver = socket.socketpair()
    try:
        os.sendfile(sender.fileno(), span.fd, 0, span.count)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return
        raise
    finally:
        os.close(span.fd)
        sender.close()
        receiver.close()
    pytest.skip(f"sendfile from {PROC_FILE} works on this kernel; no unsupported file to test")


async def test_bare_strategy_on_procfs(rig: Rig) -> None:
    # Zero-copy strategies give up after the prefix and before any byte of the span, so that
    # the fallback can send the span alone; read/write simply reads the file.
    require_einval_from_proc()
    span, content = proc_file_span()
    sender, receiver = socket_pair("unix")
    reader = Reader(receiver)
    try:
        with sender, receiver:
            if rig.zero_copy:
                with pytest.RaisesGroup(TransferUnsupported) as caught:
                    await send_parts(rig.strategy, sender, reader, [(HEAD, span)])
                error = caught.value.exceptions[0]
                assert isinstance(error, TransferUnsupported)
                assert (error.call, error.errno) == (rig.name, errno.EINVAL)
                sender.close()
                with trio.fail_after(10):
                    await reader.run()
                assert reader.hexdigest == sha256(HEAD)
                assert rig.counters.body_bytes == 0
            else:
                await send_parts(rig.strategy, sender, reader, [(HEAD, span)])
                assert reader.hexdigest == sha256(HEAD, content)
    finally:
        os.close(span.fd)
    if rig.pipes is not None:
        assert rig.pipes.statistics().in_use == 0


@pytest.mark.parametrize("name", list(STRATEGIES))
async def test_registry_strategy_on_procfs(
    name: str, tmp_path: Path, data_path: Path, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # What the server does with a file on such a file system: correct bytes every time, one
    # warning, and the next span (procfs again) goes straight to read/write; a regular file
    # on another device still goes by zero-copy.
    require_einval_from_proc()
    caplog.set_level(logging.WARNING, logger="zerocopy.transfer")
    counters = Counters()
    strategy = make_strategy(name, counters)
    span, content = proc_file_span()
    fd = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC)
    regular = span_of(fd, 0, 2 * THRESHOLD)
    assert regular.dev != span.dev
    sender, receiver = socket_pair("unix")
    reader = Reader(receiver)
    try:
        with sender, receiver:
            await send_parts(
                strategy, sender, reader, [(HEAD, span), (b"--", span), (b"", regular)]
            )
    finally:
        os.close(span.fd)
        os.close(fd)
        strategy.close()

    assert reader.hexdigest == sha256(HEAD, content, b"--", content, data[: 2 * THRESHOLD])
    # Every wrapper tries zero-copy on a span whose bytes are not held, and falls back;
    # readwrite has nothing to fall back from.
    tries_zero_copy = name != "readwrite"
    assert counters.fallbacks == (2 if tries_zero_copy else 0)
    assert len(warnings_from(caplog)) == (1 if tries_zero_copy else 0)
    assert counters.bytes_zero_copy == (0 if name == "readwrite" else 2 * THRESHOLD)
