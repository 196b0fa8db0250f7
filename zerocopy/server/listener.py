"""Listening sockets that hand out plain non-blocking stdlib sockets.

trio's ``SocketListener`` wraps each connection in a ``SocketStream``; the transfer strategies
need the raw socket and its fd (``os.sendfile`` and ``os.splice`` take an fd, and
``socket.sendfile`` refuses non-blocking sockets). So this listener accepts in trio's
non-blocking pattern and returns a :class:`Connection` that owns a stdlib socket.

It also enforces the connection limit: ``accept`` first takes a slot from a semaphore, so past
the limit the server simply stops accepting and the kernel's backlog holds new clients. The
slot comes back when the connection closes. No accept error ends the accept loop, only a
closed listener or cancellation does (the errno review is below). trio's ``serve_listeners``
supplies the rest: a task per connection, in the handler nursery.

The sockets are bound here (:func:`bind_sockets`, with ``SO_REUSEPORT`` siblings for worker
processes) or come from elsewhere: a supervisor or systemd that owns them and passes them down.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "Connection",
    "RawListener",
    "Slots",
    "bind_siblings",
    "bind_sockets",
]

# Accept errors, reviewed against trio's src/trio/_highlevel_socket.py (its "Accept error
# handling" literature review, which lists what POSIX, Linux, the BSDs and Windows document):
#
# * One dead connection, not the listener. Linux reports an error that is pending on the new
#   socket through accept() itself, so nearly any socket errno can come back: retry at once.
#   This is trio's `_ignorable_accept_errno_names`, in full; names a platform lacks are skipped.
# * The process or the system is full (EMFILE, ENFILE, ENOBUFS, ENOMEM). trio raises these and
#   its serve_listeners logs each with a traceback and retries every 100 ms. We back off from
#   10 ms to 1 s and log once per episode, since the condition clears when connections close.
# * The listener was closed (EBADF, or our fileno is -1): ClosedResourceError, which ends the
#   accept loop. That, and cancellation, are the only ways it ends.
# * Anything else (EINVAL after someone shut the socket down, EFAULT, errnos no review has
#   seen) is unexpected: it is logged, with the same backoff, and accept retries. A server that
#   stops accepting because of one odd errno is down while looking up, which is worse than a
#   log line a second.
_IGNORABLE_ACCEPT_ERRNO_NAMES: Final = (
    "EPERM",  # Linux: a firewall rule refused the connection
    "ECONNABORTED",  # BSDs: an early close or reset
    "EPROTO",
    "ENETDOWN",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
    "ENOSR",
    "ESOCKTNOSUPPORT",
    "EPROTONOSUPPORT",
    "ETIMEDOUT",
    "ECONNRESET",
)
_IGNORABLE_ACCEPT_ERRNOS: Final = frozenset(
    getattr(errno, name) for name in _IGNORABLE_ACCEPT_ERRNO_NAMES if hasattr(errno, name)
)
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


class Slots(Protocol):
    """What a listener takes a slot from before each accept: a :class:`trio.Semaphore`, or
    anything with its ``acquire``/``release`` (the metrics port evicts idle clients)."""

    async def acquire(self) -> None: ...

    def release(self) -> None: ...


@final
class RawListener(trio.abc.Listener[Connection]):
    """Accepts connections on a listening socket, at most ``slots`` open at a time.

    Args:
        sock: A bound, listening, non-blocking socket. The listener owns it: closing the
            listener closes this descriptor (a socket shared with other processes, as under a
            supervisor or systemd, stays open in them).
        slots: Shared connection limit (one semaphore for all listeners of a server).
    """

    def __init__(self, sock: socket.socket, slots: Slots) -> None:
        self.socket = sock
        self._slots = slots

    async def accept(self) -> Connection:
        """Wait for a free slot and a client; return the connection.

        No accept error ends this wait except a closed listener: errors of one connection
        are retried at once, and a full process (EMFILE, ENFILE, ENOBUFS, ENOMEM) or an
        unexpected errno backs off from 10 ms to 1 s and retries, logging once per episode.

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
                    if exc.errno in _IGNORABLE_ACCEPT_ERRNOS:
                        await trio.lowlevel.checkpoint()
                        continue
                    if not backoff:
                        if exc.errno in _CAPACITY_ERRNOS:
                            logger.warning(
                                "accept: %s; pausing accept until resources come back",
                                exc.strerror,
                            )
                        else:
                            logger.error(
                                "accept: unexpected error %s (%s); retrying with backoff",
                                errno.errorcode.get(exc.errno or 0, exc.errno),
                                exc.strerror,
                            )
                    backoff = min(_BACKOFF_MAX, max(_BACKOFF_FIRST, backoff * 2))
                    await trio.sleep(backoff)
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
        peer = address[0] if isinstance(address, tuple) else str(address) or "unix"
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


def bind_sockets(bind: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bind and listen on every address that ``bind`` resolves to.

    Args:
        bind: Host name or address literal.
        port: TCP port; 0 picks a free one (per address).
        reuse_port: Set ``SO_REUSEPORT``, so that further sockets bound to the same address
            (by :func:`bind_siblings`) share the port and the kernel spreads connections
            across them.

    Returns:
        Non-blocking listening sockets. The caller owns them.

    Raises:
        OSError: The address cannot be resolved or bound (EADDRINUSE, EACCES, ...).
    """
    infos = socket.getaddrinfo(
        bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
    )
    addresses: list[tuple[int, int, int, Any]] = []
    for family, kind, proto, _, address in infos:
        if (family, kind, proto, address) not in addresses:
            addresses.append((family, kind, proto, address))
    return _bind_all(addresses, reuse_port=reuse_port)


def bind_siblings(sockets: Sequence[socket.socket]) -> list[socket.socket]:
    """New ``SO_REUSEPORT`` sockets bound to the same addresses as ``sockets``.

    Raises:
        OSError: The kernel refused (for example, ``sockets`` lack ``SO_REUSEPORT``).
    """
    return _bind_all(
        [(sock.family, sock.type, sock.proto, sock.getsockname()) for sock in sockets],
        reuse_port=True,
    )


def _bind_all(
    addresses: Sequence[tuple[int, int, int, Any]], *, reuse_port: bool
) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in addresses:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
