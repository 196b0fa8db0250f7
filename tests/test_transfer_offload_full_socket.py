"""An offloaded ``sendfile`` that meets a full socket (``sendfile.py``'s BlockingIOError branch).

A chunk whose pages are not cached runs ``sendfile`` in a worker thread. The socket stays
non-blocking, so when it is full the thread's call fails with EAGAIN at once instead of
holding the thread until the client reads: the strategy counts it, waits for the socket on
the event loop, and probes again. Here the client does not read at first, and the test evicts
the file's pages at every scheduling pass, so each chunk's probe misses and the call goes to a
thread while the socket is still full. Then the client reads, and every byte must arrive.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from typing import TYPE_CHECKING

import pytest
import trio
import trio.lowlevel

from tests.test_transfer_conformance import Reader, sha256, socket_pair, span_of
from zerocopy.transfer import Counters, Offload, Sendfile

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1 << 20
SIZE = 8 * MiB + 5


def _evict(fd: int) -> bool:
    """Drop the file's unreferenced pages from the page cache; whether its first page left."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
    except BlockingIOError:
        return True
    return False


@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_offloaded_sendfile_meets_a_full_socket(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spy, not a fake: every call goes to the kernel; it notes an EAGAIN met in a worker
    # thread, which the counters cannot tell from one met on the event loop.
    in_thread_eagain = 0
    real_sendfile = os.sendfile

    def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        nonlocal in_thread_eagain
        try:
            return real_sendfile(out_fd, in_fd, offset, count)
        except BlockingIOError:
            if threading.current_thread() is not threading.main_thread():
                in_thread_eagain += 1
            raise

    monkeypatch.setattr(os, "sendfile", sendfile)
    data = random.Random(11).randbytes(SIZE)
    path = tmp_path / "cold.bin"
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())  # dirty pages cannot be dropped
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    counters = Counters()
    strategy = Sendfile(counters, offload=Offload(counters, threads=2), send_timeout=30.0)
    sender, receiver = socket_pair(kind, bufsize=64 * 1024)
    reader = Reader(receiver)
    try:
        if not _evict(fd):
            pytest.skip("posix_fadvise(DONTNEED) did not evict the file on this file system")
        head = b"HTTP/1.1 200 OK\r\n\r\n"
        with sender, receiver, trio.fail_after(30):
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    await strategy.send_span(sender, span_of(fd, 0, SIZE), prefix=head)
                    sender.shutdown(socket.SHUT_WR)  # the reader sees the end

                nursery.start_soon(send)
                # Nobody reads yet: keep the pages out of the cache until an offloaded call
                # has found the socket full.
                while in_thread_eagain == 0:
                    _evict(fd)
                    await trio.lowlevel.checkpoint()
                nursery.start_soon(reader.run)
    finally:
        os.close(fd)
        strategy.close()
    assert reader.hexdigest == sha256(head, data)
    assert counters.offloaded >= 2
    assert in_thread_eagain >= 1
    assert counters.eagain["sendfile"] >= in_thread_eagain  # each one counted
    assert counters.body_bytes == SIZE
