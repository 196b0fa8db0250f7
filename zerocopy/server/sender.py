"""One connection's socket I/O: send plans, receive requests, linger before a close.

A :class:`Sender` owns what sending needs, the transfer strategy, the counters and the send
timeout, so that the connection loop and the responder need none of them.

Checkpoints: one per response. A strategy takes one after each chunk of a span (so a small
file costs exactly one); a response without a span (an error, a listing, a HEAD, a 304) takes
it here. :meth:`Sender.receive_now` never checkpoints: a request that was already waiting in the
socket is answered without a pass through the scheduler between reading it and answering it.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, final

import trio

from zerocopy.span import FileSpan
from zerocopy.transfer import PeerGone, recv, send_all, translate_errors

if TYPE_CHECKING:
    from zerocopy.http import ResponsePlan
    from zerocopy.transfer import Counters, TransferStrategy

__all__ = ["LINGER_MAX_BYTES", "LINGER_SECONDS", "RECV_SIZE", "Sender", "send_plan_parts"]

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)

RECV_SIZE: Final = 64 * 1024
LINGER_SECONDS: Final = 2.0
LINGER_MAX_BYTES: Final = 1024 * 1024


class PartSender(Protocol[_T_contra]):
    """What :func:`send_plan_parts` needs: ``Sender`` on sockets, ``TLSSender`` on channels."""

    async def send_file(self, sock: _T_contra, head: bytes, body: FileSpan, /) -> None: ...
    async def send_bytes(self, sock: _T_contra, data: bytes, /) -> None: ...


async def send_plan_parts(sender: PartSender[_T], sock: _T, plan: ResponsePlan) -> None:
    """Send a plan's head and body parts, in order.

    Small ``bytes`` parts are joined to what precedes them; each span goes out through the
    sender's strategy with the bytes before it as its prefix, so heads and boundaries share
    packets with the data.

    Raises:
        TransferError: The response is incomplete; close the connection.

    Checkpoints: once per chunk of each span, and once more for the bytes after the last
    span (or for a plan with no span at all).
    """
    prefix = plan.head
    for part in plan.body:
        if isinstance(part, FileSpan):
            await sender.send_file(sock, prefix, part)
            prefix = b""
        else:
            prefix += part
    if prefix:
        await sender.send_bytes(sock, prefix)


@final
class Sender:
    """Sends and receives on connections' sockets; shared by all connections of a server.

    Args:
        strategy: How file spans are sent.
        counters: Process-wide counters; every syscall here is counted.
        send_timeout: Seconds one wait for a full socket may last.

    Every method borrows the socket it is given: the connection closes it.
    """

    def __init__(
        self, strategy: TransferStrategy, counters: Counters, *, send_timeout: float
    ) -> None:
        self.strategy = strategy
        self.counters = counters
        self._timeout = send_timeout

    async def send_plan(self, sock: socket.socket, plan: ResponsePlan) -> None:
        """Send a plan's head and body parts, in order (see :func:`send_plan_parts`).

        Raises:
            TransferError: The response is incomplete; close the connection.
        """
        await send_plan_parts(self, sock, plan)

    async def send_file(self, sock: socket.socket, head: bytes, body: FileSpan) -> None:
        """Send a head and a non-empty span (the fast path's 200).

        Raises:
            TransferError: The response is incomplete; close the connection.
        """
        await self.strategy.send_span(sock, body, prefix=head)

    async def send_bytes(self, sock: socket.socket, data: bytes) -> None:
        """Send ``data`` (a head alone), then checkpoint.

        Raises:
            TransferError: The response is incomplete; close the connection.
        """
        with translate_errors():
            await send_all(sock, data, self.counters, send_timeout=self._timeout)
        await trio.lowlevel.checkpoint()

    def receive_now(self, sock: socket.socket) -> bytes | None:
        """What the socket holds now (``b""`` at end of stream), or ``None`` if nothing.

        Never blocks and never checkpoints.

        Raises:
            PeerGone: The socket failed (reset).
        """
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:
            self.counters.eagain["recvfrom"] += 1
            return None
        except OSError as exc:
            raise PeerGone(str(exc)) from exc
        counters = self.counters
        counters.syscalls["recvfrom"] += 1
        counters.bytes_copied_in += len(data)
        return data

    def check_peer(self, sock: socket.socket) -> None:
        """Raise PeerGone if the client has reset the connection. Never blocks, never reads:
        ``MSG_PEEK`` leaves any pipelined request where it is; a pending error (ECONNRESET,
        or EPIPE after a write met a closed socket) comes back from the call. End of file is
        not "gone": a client may half-close after its request and still read the answer.
        """
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            self.counters.eagain["recvfrom"] += 1
            return
        except OSError as exc:
            raise PeerGone(str(exc)) from exc
        self.counters.syscalls["recvfrom"] += 1

    async def receive(self, sock: socket.socket) -> bytes:
        """Wait until the socket is readable, then read (``b""`` at end of stream).

        Checkpoints: always (the wait). Bound it with a cancel scope.

        Raises:
            PeerGone: The socket failed (reset).
        """
        while True:
            await trio.lowlevel.wait_readable(sock)
            data = self.receive_now(sock)
            if data is not None:
                return data

    async def linger(self, sock: socket.socket) -> None:
        """Close our side, then read and discard until the client closes.

        Closing with unread request bytes would send RST, and an RST can destroy the response
        in the client's receive buffer before it is read; so, as nginx's lingering close
        does, read for at most :data:`LINGER_SECONDS` and :data:`LINGER_MAX_BYTES` first.
        """
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        received = 0
        with trio.move_on_after(LINGER_SECONDS):
            while received < LINGER_MAX_BYTES:
                try:
                    data = await recv(sock, RECV_SIZE, self.counters)
                except OSError:
                    return
                if not data:
                    return
                received += len(data)
