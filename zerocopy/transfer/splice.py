"""splice: file to pipe, pipe to socket. No CPU copy; the pipe holds page references.

Theory of operation:

* Each chunk is two steps. ``splice(file, pipe_w, n, offset)`` fills the empty pipe with
  references to page-cache pages; then ``splice(pipe_r, sock, k)`` is repeated until the pipe
  is empty again. The pipe is always drained before the next fill, so the fill never waits
  on a full pipe.
* Flags: the fill passes none (the pipe is empty, so it cannot wait on the pipe). The drain
  passes SPLICE_F_NONBLOCK, which makes the *pipe* side non-blocking; the socket is
  non-blocking by its own O_NONBLOCK (the kernel turns it into MSG_DONTWAIT), so a full
  socket gives EAGAIN, with or without the flag, and we ``wait_writable``. Both pipe ends
  are O_NONBLOCK as well, so not even a fill can sleep on the pipe.
  SPLICE_F_MORE on every drain but the last becomes MSG_MORE. SPLICE_F_MOVE is a no-op in
  modern kernels and is not passed.
* A chunk is one pipe-full. Pipes are sized with F_SETPIPE_SZ to :data:`PIPE_SIZE` (1 MiB),
  the default ``/proc/sys/fs/pipe-max-size``. Past that cap (unless the process has
  CAP_SYS_RESOURCE, which root in a container usually lacks), or past the per-user pipe quota
  (``pipe-user-pages-soft``), the call fails with EPERM and the pipe quietly keeps its
  default size (64 KiB, less past the quota). The size is read back with F_GETPIPE_SZ, so a
  refused resize only makes chunks smaller.
* errno review: as for sendfile. EINVAL, ENOSYS or EOPNOTSUPP on the first fill means the file
  system cannot splice (TransferUnsupported); a fill returning 0 before the count means the
  file was truncated (FileTruncated); EPIPE or ECONNRESET on a drain means the client left.
* Pipes: one per in-flight transfer, borrowed from a :class:`PipePool`. A pipe goes back to
  the pool only when it is known to be empty. After any error or cancellation that may have
  left bytes in it, it is closed instead: a reused dirty pipe would send one file's bytes in
  another response.
* The pipe is taken *before* the prefix (the response head) goes out. When ``pipe2`` fails for
  lack of descriptors (EMFILE, ENFILE) the strategy raises ResourcesExhausted with nothing
  sent, and the fallback sends head and body by read/write: a shortage never produces a 200
  head followed by a close.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.transfer.base import StrategyBase
from zerocopy.transfer.errors import (
    EXHAUSTED_ERRNOS,
    UNSUPPORTED_ERRNOS,
    FileTruncated,
    ResourcesExhausted,
    TransferError,
    TransferUnsupported,
)
from zerocopy.transfer.sockio import retry_writable, send_all

if TYPE_CHECKING:
    from zerocopy.span import FileSpan
    from zerocopy.transfer.counters import Counters
    from zerocopy.transfer.offload import Offload

__all__ = ["PIPE_SIZE", "PipePool", "Splice"]

PIPE_SIZE: Final = 1024 * 1024
# fcntl.F_SETPIPE_SZ exists since Python 3.10 on Linux.
_F_SETPIPE_SZ: Final = fcntl.F_SETPIPE_SZ
_F_GETPIPE_SZ: Final = fcntl.F_GETPIPE_SZ


@final
@dataclass(frozen=True, slots=True)
class Pipe:
    """Both ends of a pipe and its capacity in bytes."""

    read_fd: int
    write_fd: int
    size: int

    def close(self) -> None:
        """Close both ends."""
        os.close(self.read_fd)
        os.close(self.write_fd)


@final
@dataclass(frozen=True, slots=True)
class PipeStatistics:
    """Attributes: idle pipes kept, pipes lent out, pipes created, and pipes discarded dirty."""

    idle: int
    in_use: int
    created: int
    discarded: int


@final
class PipePool:
    """Clean pipes, reused across transfers.

    Args:
        size: Requested capacity (F_SETPIPE_SZ); the kernel may refuse, leaving 64 KiB.
        keep: Most idle pipes to retain (each holds two fds and up to ``size`` of kernel memory
            while in use).
    """

    def __init__(self, size: int = PIPE_SIZE, keep: int = 32) -> None:
        self._size = size
        self._keep = keep
        self._idle: list[Pipe] = []
        self._in_use = 0
        self._created = 0
        self._discarded = 0

    def acquire(self) -> Pipe:
        """Take an empty pipe. The caller must :meth:`release` or :meth:`discard` it."""
        self._in_use += 1
        if self._idle:
            return self._idle.pop()
        try:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except BaseException:
            self._in_use -= 1
            raise
        # EPERM past pipe-max-size or the per-user quota: keep the default size.
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, self._size)
        self._created += 1
        return Pipe(read_fd, write_fd, fcntl.fcntl(write_fd, _F_GETPIPE_SZ))

    def release(self, pipe: Pipe) -> None:
        """Return a pipe that is known to be empty."""
        self._in_use -= 1
        if len(self._idle) < self._keep:
            self._idle.append(pipe)
        else:
            pipe.close()

    def discard(self, pipe: Pipe) -> None:
        """Close a pipe that may still hold bytes."""
        self._in_use -= 1
        self._discarded += 1
        pipe.close()

    def statistics(self) -> PipeStatistics:
        """Return the pool's counts."""
        return PipeStatistics(len(self._idle), self._in_use, self._created, self._discarded)

    def close(self) -> None:
        """Close the idle pipes."""
        while self._idle:
            self._idle.pop().close()


@final
class Splice(StrategyBase):
    """file → pipe → socket with ``os.splice``. See the module docstring.

    Args:
        counters: Process-wide counters.
        pipes: Where pipes come from.
        send_timeout: Seconds one wait for the socket may last (see ``sockio.wait_writable``).
        offload: Runs fills whose pages are not cached in worker threads (``offload.py``);
            ``None``: every call runs on the event loop.
    """

    name: Final = "splice"

    def __init__(
        self,
        counters: Counters,
        pipes: PipePool | None = None,
        *,
        send_timeout: float = math.inf,
        offload: Offload | None = None,
    ) -> None:
        super().__init__(counters, send_timeout=send_timeout, offload=offload)
        self.pipes = pipes or PipePool()

    async def _send(self, sock: socket.socket, span: FileSpan, prefix: bytes) -> None:
        try:
            pipe = self.pipes.acquire()
        except OSError as exc:
            if exc.errno in EXHAUSTED_ERRNOS:
                raise ResourcesExhausted("pipe", exc.errno) from exc
            raise
        clean = False
        try:
            if prefix:
                await send_all(
                    sock, prefix, self._counters, socket.MSG_MORE, send_timeout=self._timeout
                )
            await self._send_through(sock, span, pipe)
            clean = True
        finally:
            # Only a transfer that finished drains the pipe. Any exception, including
            # Cancelled between a fill and its drain, may leave bytes behind.
            if clean:
                self.pipes.release(pipe)
            else:
                self.pipes.discard(pipe)

    async def _send_through(self, sock: socket.socket, span: FileSpan, pipe: Pipe) -> None:
        counters = self._counters
        offload = self._offload
        out = sock.fileno()
        offset, remaining = span.offset, span.count
        while remaining:
            count = min(remaining, pipe.size)
            try:
                if offload.cached(span.fd, offset, count, span.warmth):
                    filled = os.splice(span.fd, pipe.write_fd, count, offset_src=offset)
                else:
                    # The fill is the call that reads the disk; the drain stays on the loop.
                    filled = await offload.run(os.splice, span.fd, pipe.write_fd, count, offset)
            except OSError as exc:
                if exc.errno in UNSUPPORTED_ERRNOS and offset == span.offset:
                    raise TransferUnsupported("splice", exc.errno) from exc
                raise
            counters.syscalls["splice"] += 1
            if filled == 0:
                counters.truncated += 1
                raise FileTruncated(offset, remaining)
            offset += filled
            remaining -= filled
            more = os.SPLICE_F_MORE if remaining else 0
            while filled:
                moved = await retry_writable(
                    sock, counters, "splice", self._timeout, os.splice,
                    pipe.read_fd, out, filled, None, None, os.SPLICE_F_NONBLOCK | more,
                )  # fmt: skip
                if moved == 0:  # pragma: no cover - the kernel never returns 0 with data queued
                    raise TransferError("splice to socket moved nothing")
                filled -= moved
                counters.body_bytes += moved
                counters.bytes_zero_copy += moved
            await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close the idle pipes."""
        self.pipes.close()
