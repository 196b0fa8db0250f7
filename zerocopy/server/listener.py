"""Listening sockets that hand out plain non-blocking stdlib sockets.

trio's ``SocketListener`` wraps each connection in a ``SocketStream``; the transfer strategies
need the raw socket and its fd (``os.sendfile`` and ``os.splice`` take an fd, and
``socket.sendfile`` refuses non-blocking sockets). So this listener accepts in trio's
non-blocking pattern and returns a :class:`Connection` that owns a stdlib socket.

It also enforces the connection limit: ``accept`` first takes a slot from a semaphore, so past
the limit the server simply stops accepting and the kernel's backlog holds new clients. The
slot comes back when the connection closes. When accept fails for lack of descriptors or
memory (EMFILE, ENFILE), it backs off and retries. trio's ``serve_listeners`` supplies the
rest: a task per connection, in the handler nursery.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING, Final, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Connection", "RawListener", "open_listeners"]

# From trio/_highlevel_socket.py: accept errors that concern one dead connection, not the
# listener. Linux reports errors pending on the new socket through accept() itself.
_IGNORABLE_ACCEPT_ERRNOS: Final = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPERM,
        errno.EPROTO,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
    }
)


# Out of file descriptors or kernel memory: the listener is fine, the process is full. trio's
# serve_listeners would log each one with a traceback and retry every 100 ms; we back off
# from 10 ms to 1 s and log once per episode, since the condition clears by itself when
# connections close.
_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BACKOFF_FIRST: Final = 0.01
_BACKOFF_MAX: Final = 1.0

logger = logging.getLogger("zerocopy.server")


@final
class Connection(trio.abc.AsyncResource):
    """An accepted client: a non-blocking stdlib socket with TCP_NODELAY.

    Args:
        sock: The accepted socket. The connection owns it.
        peer: The client's address, for logs.
        on_close: Called once, when the connection closes (returns the listener's slot).
    """

    def __init__(self, sock: socket.socket, peer: str, on_close: Callable[[], None]) -> None:
        self.socket = sock
        self.peer = peer
        self._on_close: Callable[[], None] | None = on_close

    def close(self) -> None:
        """Close the socket now. Idempotent."""
        if self._on_close is None:
            return
        on_close, self._on_close = self._on_close, None
        try:
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        finally:
            on_close()

    async def aclose(self) -> None:
        """Close the socket; checkpoints."""
        self.close()
        await trio.lowlevel.checkpoint()


@final
class RawListener(trio.abc.Listener[Connection]):
    """Accepts connections on a listening socket, at most ``slots`` open at a time.

    Args:
        sock: A bound, listening, non-blocking socket. The listener owns it.
        slots: Shared connection limit (one semaphore for all listeners of a server).
    """

    def __init__(self, sock: socket.socket, slots: trio.Semaphore) -> None:
        self.socket = sock
        self._slots = slots

    async def accept(self) -> Connection:
        """Wait for a free slot and a client; return the connection.

        Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), it backs off and
        retries, logging once per episode.

        Raises:
            trio.ClosedResourceError: The listener was closed.
        """
        await self._slots.acquire()
        backoff = 0.0
        try:
            while True:
                try:
                    sock, address = self.socket.accept()
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self.socket)
                except OSError as exc:
                    if exc.errno == errno.EBADF or self.socket.fileno() == -1:
                        raise trio.ClosedResourceError from exc
                    if exc.errno in _CAPACITY_ERRNOS:
                        if not backoff:
                            logger.warning(
                                "accept: %s; pausing accept until resources come back",
                                exc.strerror,
                            )
                        backoff = min(_BACKOFF_MAX, max(_BACKOFF_FIRST, backoff * 2))
                        await trio.sleep(backoff)
                    elif exc.errno not in _IGNORABLE_ACCEPT_ERRNOS:
                        raise
                else:
                    break
        except BaseException:
            self._slots.release()
            raise
        if backoff:
            logger.warning("accept: recovered")
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = address[0] if isinstance(address, tuple) else str(address)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return Connection(sock, peer, self._slots.release)

    def close(self) -> None:
        """Stop listening. Idempotent."""
        if self.socket.fileno() != -1:
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()

    async def aclose(self) -> None:
        """Stop listening; checkpoints."""
        self.close()
        await trio.lowlevel.checkpoint()


def open_listeners(bind: str, port: int, slots: trio.Semaphore) -> list[RawListener]:
    """Bind and listen on every address that ``bind`` resolves to.

    Raises:
        OSError: The address cannot be resolved or bound (EADDRINUSE, EACCES, ...).
    """
    infos = socket.getaddrinfo(
        bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
    )
    listeners: list[RawListener] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(socket.SOMAXCONN)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            listeners.append(RawListener(sock, slots))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners
