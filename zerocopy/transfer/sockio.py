"""Socket syscalls in trio's non-blocking pattern, counted.

The calls here follow ``trio/_socket.py``'s ``_nonblocking_helper`` with one difference:

1. try the syscall on the non-blocking socket;
2. on success, return at once: **no** checkpoint per syscall;
3. on EAGAIN, ``wait_writable`` (or ``wait_readable``), which is itself a checkpoint, and try
   again until the call succeeds.

trio's own sockets yield after every successful call. A file server's response is a handful
of syscalls, and a pass through the scheduler costs more than all of them, so the checkpoint
moves up a level: the transfer strategies take one after every chunk (``base.py``), and the
connection loop one per response. trio asks for at least one checkpoint per operation, and a
response is one; a large body still yields between chunks, so one fast client on a loopback
socket that never fills cannot starve the rest. :func:`recv` keeps trio's full pattern for the
callers that do not take a checkpoint of their own (the metrics port, the lingering close).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from zerocopy.transfer.errors import SendTimeout

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from zerocopy.transfer.counters import Counters

__all__ = ["recv", "retry_writable", "send_all", "wait_writable"]


async def wait_writable(sock: socket.socket, send_timeout: float) -> None:
    """Wait until ``sock`` can take more bytes, for at most ``send_timeout`` seconds.

    This is the send progress timeout: it starts over at every wait, so it bounds the time
    between two writes the kernel accepted, not the whole transfer (nginx's ``send_timeout``).
    That is why it is a parameter and not a ``fail_after`` around the caller: a scope around
    the transfer would bound the transfer's total duration, and a 4 GiB download on a slow
    link must not be cut while it makes progress.

    Raises:
        SendTimeout: The socket stayed full for ``send_timeout`` seconds.
    """
    with trio.move_on_after(send_timeout):
        await trio.lowlevel.wait_writable(sock)
        return
    raise SendTimeout(f"no progress for {send_timeout:g} s")


async def retry_writable(
    sock: socket.socket,
    counters: Counters,
    name: str,
    send_timeout: float,
    call: Callable[..., int],
    *args: Any,
) -> int:
    """Run ``call(*args)`` until it does not raise BlockingIOError; return its result.

    Args:
        sock: The socket whose writability unblocks the call.
        counters: Where the call is counted, under ``name``.
        name: The kernel syscall name, for the counters.
        send_timeout: The progress timeout for each wait (see :func:`wait_writable`).
        call: A non-blocking syscall wrapper, such as ``os.sendfile``.
        *args: Its arguments.

    Raises:
        SendTimeout: A wait for the socket lasted ``send_timeout`` seconds.

    Checkpoints: only when the first attempt fails with EAGAIN (the wait is one); the caller
    takes the checkpoint that a call which succeeds at once does not.
    """
    try:
        result = call(*args)
    except BlockingIOError:
        pass
    else:
        counters.syscalls[name] += 1
        return result
    while True:
        counters.eagain[name] += 1
        await wait_writable(sock, send_timeout)
        try:
            result = call(*args)
        except BlockingIOError:
            continue
        counters.syscalls[name] += 1
        return result


async def send_all(
    sock: socket.socket,
    data: bytes | memoryview,
    counters: Counters,
    flags: int = 0,
    *,
    send_timeout: float = math.inf,
) -> None:
    """Send every byte of ``data``; ``flags`` such as ``MSG_MORE`` apply to each call.

    Raises:
        OSError: From the socket, untranslated; callers sit inside ``translate_errors``.

    Checkpoints: only while it waits for the socket (see :func:`retry_writable`).
    """
    view = memoryview(data)
    while view:
        sent = await retry_writable(sock, counters, "sendto", send_timeout, sock.send, view, flags)
        counters.bytes_copied_out += sent
        view = view[sent:]


async def recv(sock: socket.socket, size: int, counters: Counters) -> bytes:
    """Read at most ``size`` bytes; ``b""`` at end of file.

    Checkpoints: exactly once, as trio's ``_nonblocking_helper`` does: after a first attempt
    that succeeds, or in the wait after one that did not.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        data = sock.recv(size)
    except BlockingIOError:
        pass
    else:
        counters.syscalls["recvfrom"] += 1
        counters.bytes_copied_in += len(data)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return data
    while True:
        counters.eagain["recvfrom"] += 1
        await trio.lowlevel.wait_readable(sock)
        try:
            data = sock.recv(size)
        except BlockingIOError:
            continue
        counters.syscalls["recvfrom"] += 1
        counters.bytes_copied_in += len(data)
        return data
