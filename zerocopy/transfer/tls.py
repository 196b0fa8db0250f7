"""TLS: a connection's encrypted I/O, the body path under TLS, and kTLS detection.

Theory of operation:

* A TLS connection is a non-blocking :class:`ssl.SSLSocket` driven in trio's pattern: try the
  call; on ``SSLWantReadError`` wait until the socket is readable, on ``SSLWantWriteError``
  until it is writable; try again with the same arguments (OpenSSL requires the same buffer
  after a WANT_WRITE; CPython sets ``SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER``, so a new view of
  the same bytes is fine). Either error can come from either direction: a read may have to
  write (a key update), a write may have to read.
* OpenSSL reads and writes the socket itself (a socket BIO): one ``SSL_write`` encrypts into
  OpenSSL's own buffer and writes one ``write()`` per TLS record (at most 16 KiB of
  plaintext). The counters count the library calls, under ``ssl_write`` and ``ssl_read``,
  not the ``write()``/``read()`` syscalls under them: ``strace`` shows about one syscall per
  16 KiB record.
* **The body passes through user space.** With user-space TLS the file's bytes must be read
  into our memory to be encrypted, so sendfile and splice cannot be used, whatever
  ``--strategy`` says: :class:`TLSReadWrite` reads each chunk with ``preadv`` into a pooled
  buffer (or takes the bytes the open-file cache holds, for ``auto``) and encrypts it with
  ``SSL_write``. ``bytes_copied_in`` counts the read, ``bytes_copied_out`` the plaintext
  handed to ``SSL_write`` (the ciphertext written is larger by the record overhead, 22 bytes
  per record with TLS 1.3 and AES-GCM, which is not counted), ``bytes_zero_copy`` stays 0.
* **Plaintext never reaches a TLS socket through sendfile or splice, by construction.** A
  :class:`TLSChannel` is not a socket and has no ``fileno()``, so no strategy of the registry
  can be handed one (mypy rejects it, and at run time there is no descriptor to pass); a TLS
  server builds no registry strategy at all (``zerocopy.server.tls``), only
  :class:`TLSReadWrite`, whose ``send_span`` refuses a plain socket. The one way to the
  descriptor is :meth:`TLSChannel.ktls_fd`, which raises unless the kernel encrypts that
  socket's writes (kTLS).
* **kTLS.** With kernel TLS, OpenSSL hands the session keys to the kernel after the handshake
  (``setsockopt(TCP_ULP, "tls")``, then ``SOL_TLS``/``TLS_TX``), and the kernel encrypts
  whatever is written to the socket, ``sendfile`` included. It needs Python's
  ``ssl.OP_ENABLE_KTLS`` (3.12+), OpenSSL built with kTLS, and a kernel with
  ``CONFIG_TLS``. :func:`ktls_status` reports whether this process could have it, and why
  not. Even then, each connection is asked after its handshake whether its writes are really
  offloaded (``uses_ktls_for_send``, or ``getsockopt(SOL_TLS, TLS_TX)``); only then may
  sendfile run on it.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import trio

from zerocopy.transfer.errors import FileTruncated, PeerGone, TransferError, translate_errors
from zerocopy.transfer.readwrite import BufferPool
from zerocopy.transfer.sockio import wait_writable

if TYPE_CHECKING:
    from collections.abc import Callable

    from zerocopy.span import FileSpan
    from zerocopy.transfer.counters import Counters
    from zerocopy.transfer.offload import Offload

__all__ = ["TLS_RECORD", "KTLSStatus", "TLSChannel", "TLSReadWrite", "ktls_status"]

# Linux <linux/tls.h>, <netinet/tcp.h>: not all of them are in Python 3.11's socket module.
_SOL_TLS: Final = 282
_TLS_TX: Final = 1
_TCP_ULP: Final = getattr(socket, "TCP_ULP", 31)
_TLS_STAT: Final = "/proc/net/tls_stat"

TLS_RECORD: Final = 16 * 1024
"""The most plaintext one TLS record carries (RFC 8446 §5.1)."""
KTLS_CHUNK: Final = 2 * 1024 * 1024
"""Bytes per sendfile call on a kTLS socket: the plain sendfile's cap (nginx's 2 MiB)."""


@final
@dataclass(frozen=True, slots=True)
class KTLSStatus:
    """Whether kernel TLS could carry this process's TLS sockets.

    Attributes:
        available: Python, OpenSSL and the kernel all offer it.
        reason: Why not (every missing piece, ``"; "``-separated), or what was found.
    """

    available: bool
    reason: str


def _kernel_tls() -> str | None:
    """``None`` if the kernel has the TLS upper-layer protocol, else why not.

    ``/proc/net/tls_stat`` exists once the ``tls`` module is loaded; otherwise the test is
    the one OpenSSL makes, ``setsockopt(TCP_ULP, "tls")`` on a connected TCP socket, which
    also loads the module on demand. ENOENT: the kernel was built without ``CONFIG_TLS``.
    """
    if os.path.exists(_TLS_STAT):
        return None
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            accepted, _ = listener.accept()
            accepted.close()
            try:
                client.setsockopt(socket.IPPROTO_TCP, _TCP_ULP, b"tls")
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                if exc.errno == errno.ENOENT:
                    return f"the kernel has no TLS support (CONFIG_TLS; TCP_ULP 'tls': {name})"
                return f"the kernel refused TCP_ULP 'tls' ({name})"
    except OSError as exc:
        return f"could not test the kernel for TLS: {exc}"
    finally:
        listener.close()
    return None


def ktls_status() -> KTLSStatus:
    """Detect kernel TLS honestly: what Python, OpenSSL and the kernel say, not a guess.

    Never raises; opens and closes one loopback connection when ``/proc/net/tls_stat`` is
    absent.
    """
    missing = []
    if not hasattr(ssl, "OP_ENABLE_KTLS"):
        missing.append("this Python has no ssl.OP_ENABLE_KTLS (Python 3.12+ has it)")
    kernel = _kernel_tls()
    if kernel is not None:
        missing.append(kernel)
    if missing:
        return KTLSStatus(False, "; ".join(missing))
    return KTLSStatus(
        True,
        f"ssl.OP_ENABLE_KTLS and the kernel's TLS are present ({ssl.OPENSSL_VERSION}); each "
        "connection is checked after its handshake",
    )


def _uses_ktls_for_send(sock: ssl.SSLSocket) -> bool:
    """Whether the kernel encrypts what is written to this socket."""
    sslobj: Any = getattr(sock, "_sslobj", None)
    query = getattr(sslobj, "uses_ktls_for_send", None)
    if query is not None:
        return bool(query())
    if not hasattr(ssl, "OP_ENABLE_KTLS"):
        return False
    try:
        sock.getsockopt(_SOL_TLS, _TLS_TX, 64)
    except OSError:
        return False
    return True


@final
class TLSChannel:
    """One TLS connection's encrypted I/O, in trio's non-blocking pattern, counted.

    Args:
        sock: A non-blocking socket wrapped for the server side, its handshake not done.
            Borrowed: the connection closes it.
        counters: Process-wide counters.
        send_timeout: Seconds one wait for the socket to drain may last.

    It is deliberately not a socket: it has no ``fileno()``, so it cannot be passed to a
    zero-copy strategy (see the module docstring).
    """

    __slots__ = ("_counters", "_sock", "_timeout", "ktls_send")

    def __init__(
        self, sock: ssl.SSLSocket, counters: Counters, *, send_timeout: float = math.inf
    ) -> None:
        self._sock = sock
        self._counters = counters
        self._timeout = send_timeout
        self.ktls_send = False
        """Whether the kernel encrypts this socket's writes; known after the handshake."""

    async def _retry(self, name: str, call: Callable[..., Any], *args: Any) -> Any:
        """Run ``call(*args)`` until OpenSSL wants nothing more; count it under ``name``.

        Raises:
            PeerGone: A TLS error (an alert from the peer, a bad record, a handshake that is
                not TLS): the connection cannot go on.
            OSError: From the socket, untranslated.
            SendTimeout: A wait for writability lasted the send timeout.

        Checkpoints: only when it waits. Writes wait at most the send timeout at a time.
        """
        counters = self._counters
        sock = self._sock
        while True:
            try:
                result = call(*args)
            except ssl.SSLWantReadError:
                counters.eagain[name] += 1
                await trio.lowlevel.wait_readable(sock)
            except ssl.SSLWantWriteError:
                counters.eagain[name] += 1
                await wait_writable(sock, self._timeout)
            except ssl.SSLError as exc:
                raise PeerGone(f"TLS: {exc}") from exc
            else:
                counters.syscalls[name] += 1
                return result

    async def handshake(self) -> None:
        """Complete the server side of the handshake. Bound it with a cancel scope.

        Raises:
            PeerGone: The client's bytes were not an acceptable TLS handshake (plain HTTP,
                garbage, no common version or cipher), or it closed mid-handshake.
            OSError: The socket failed (reset).
            SendTimeout: The client stopped reading.
        """
        await self._retry("ssl_handshake", self._sock.do_handshake)
        self.ktls_send = _uses_ktls_for_send(self._sock)

    def receive_now(self, size: int) -> bytes | None:
        """Decrypted bytes available now (``b""`` at end of stream), or ``None`` if none.

        Never blocks and never checkpoints. A read that needs to write first (a key update on
        a full socket) also returns ``None``: the next wait for readability retries it, and
        a read never waits on writability for long (the peer is reading our responses).

        Raises:
            PeerGone: The connection failed (reset, or a TLS alert or protocol error).
        """
        try:
            data = self._sock.recv(size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            self._counters.eagain["ssl_read"] += 1
            return None
        except OSError as exc:  # ssl.SSLError is an OSError
            raise PeerGone(str(exc)) from exc
        counters = self._counters
        counters.syscalls["ssl_read"] += 1
        counters.bytes_copied_in += len(data)
        return data

    async def receive(self, size: int) -> bytes:
        """Wait for decrypted bytes (``b""`` at end of stream).

        Checkpoints: always (the wait). Bound it with a cancel scope.

        Raises:
            PeerGone: The connection failed.
        """
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            data = self.receive_now(size)
            if data is not None:
                return data

    async def send_all(self, data: bytes | memoryview) -> None:
        """Encrypt and send every byte of ``data``.

        Raises:
            PeerGone: A TLS error.
            OSError: Untranslated; callers sit inside ``translate_errors``.
            SendTimeout: The client stopped reading.

        Checkpoints: only while it waits for the socket.
        """
        view = memoryview(data)
        sock = self._sock
        counters = self._counters
        while view:
            # SSL_write takes all of it, or raises WANT_* with the progress kept inside
            # OpenSSL: the retry passes the same bytes again.
            sent: int = await self._retry("ssl_write", sock.send, view)
            counters.bytes_copied_out += sent
            view = view[sent:]

    def check_peer(self) -> None:
        """Raise PeerGone if the peer has reset the connection; never blocks, consumes
        nothing: a ``MSG_PEEK`` on the raw socket, beneath TLS."""
        try:
            socket.socket.recv(self._sock, 1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError as exc:
            raise PeerGone(str(exc)) from exc

    def close_notify(self) -> bool:
        """Send the close_notify alert if the socket takes it now; never waits.

        Returns whether it went out. The peer's own close_notify is not awaited: RFC 8446
        §6.1 lets the closing side close without it.
        """
        try:
            self._sock.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            # WANT_READ after the first SSL_shutdown: ours was sent, the peer's is pending.
            return isinstance(exc, ssl.SSLWantReadError)
        except (OSError, ValueError):
            return False
        return True

    async def drain_raw(self, size: int, most: int) -> None:
        """Shut our sending side, then read and discard what arrives, undecrypted, until the
        peer closes or ``most`` bytes came (the lingering close). Bound it with a cancel scope.

        Checkpoints: always.
        """
        sock = self._sock
        try:
            # The base class's calls: below TLS, on the TCP stream itself.
            socket.socket.shutdown(sock, socket.SHUT_WR)
        except OSError:
            await trio.lowlevel.checkpoint()
            return
        received = 0
        while received < most:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = socket.socket.recv(sock, size)
            except BlockingIOError:
                continue
            except OSError:
                return
            self._counters.syscalls["recvfrom"] += 1
            self._counters.bytes_copied_in += len(data)
            if not data:
                return
            received += len(data)

    async def ktls_sendfile(self, fd: int, offset: int, count: int) -> int:
        """``os.sendfile`` of at most ``count`` bytes; the kernel encrypts them (kTLS only).

        Raises:
            TransferError: kTLS is not active on this socket (nothing is sent).
            OSError: Untranslated.
        """
        out = self.ktls_fd()
        while True:
            try:
                sent = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                self._counters.eagain["sendfile"] += 1
                await wait_writable(self._sock, self._timeout)
            else:
                self._counters.syscalls["sendfile"] += 1
                return sent

    def ktls_fd(self) -> int:
        """The descriptor, for sendfile: only when the kernel encrypts this socket's writes.

        Raises:
            TransferError: kTLS is not active, so a zero-copy call would send plaintext.
        """
        if not self.ktls_send:
            raise TransferError("refused: sendfile on a TLS socket without kTLS sends plaintext")
        return self._sock.fileno()


@final
class TLSReadWrite:
    """The body path of a TLS server: every strategy becomes this one (see the module
    docstring).

    Args:
        counters: Process-wide counters.
        pool: Where read buffers come from.
        send_timeout: Seconds one wait for the socket may last.
        offload: Reads what is not cached in worker threads; ``None``: on the event loop.
        memory_max: The longest span sent from the open-file cache's memory (``auto``); 0:
            always read.
    """

    name: Final = "tls-readwrite"

    def __init__(
        self,
        counters: Counters,
        pool: BufferPool | None = None,
        *,
        send_timeout: float = math.inf,
        offload: Offload,
        memory_max: int = 0,
    ) -> None:
        self._counters = counters
        # Chunks of whole records: 16 records per SSL_write, as the plain read/write's 256 KiB.
        self._pool = pool or BufferPool(16 * TLS_RECORD)
        self._timeout = send_timeout
        self._offload = offload
        self.memory_max = memory_max

    def way(self, span: FileSpan) -> str:
        """See :meth:`~zerocopy.transfer.base.TransferStrategy.way`: every body goes this way
        under TLS, from memory or read."""
        return self.name

    async def send_span(self, sock: socket.socket, span: FileSpan, *, prefix: bytes = b"") -> int:
        """Refuse: a plain socket is never sent a file here (see the module docstring).

        Raises:
            TransferError: Always, before anything is sent.
        """
        raise TransferError("a TLS server sends file spans only through a TLSChannel")

    async def send_tls(self, channel: TLSChannel, span: FileSpan, *, prefix: bytes = b"") -> int:
        """Send ``prefix``, then the span, encrypted; returns ``span.count``.

        Raises:
            FileTruncated: The file ended before ``span.count`` bytes.
            PeerGone, SendTimeout, TransferError: The response is incomplete; close.

        Checkpoints: once after each chunk, as the plain strategies do; once in all for a
        body from memory, or none.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        counters = self._counters
        with translate_errors():
            data = span.data
            if data is not None and span.count <= self.memory_max:
                await channel.send_all(prefix + data)
                counters.body_bytes += span.count
                counters.bytes_from_memory += span.count
            elif span.count and channel.ktls_send:
                await self._send_ktls(channel, span, prefix)
                return span.count  # checkpointed after its last chunk
            elif span.count:
                await self._send_chunks(channel, span, prefix)
                return span.count  # checkpointed after its last chunk
            elif prefix:
                await channel.send_all(prefix)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return span.count

    async def _send_ktls(self, channel: TLSChannel, span: FileSpan, prefix: bytes) -> None:
        """kTLS: the head through SSL_write, the body by sendfile, encrypted by the kernel.
        Runs only where the kernel has TLS (not on a kernel without ``CONFIG_TLS``)."""
        counters = self._counters
        if prefix:
            await channel.send_all(prefix)
        offset, remaining = span.offset, span.count
        while remaining:
            sent = await channel.ktls_sendfile(span.fd, offset, min(remaining, KTLS_CHUNK))
            if sent == 0:
                counters.truncated += 1
                raise FileTruncated(offset, remaining)
            counters.body_bytes += sent
            counters.bytes_zero_copy += sent
            offset += sent
            remaining -= sent
            await trio.lowlevel.checkpoint()

    async def _send_chunks(self, channel: TLSChannel, span: FileSpan, prefix: bytes) -> None:
        counters = self._counters
        offset, remaining = span.offset, span.count
        with self._pool.borrow() as buffer:
            view = memoryview(buffer)
            head = prefix
            while remaining:
                got = await self._offload.read(span.fd, view[: min(remaining, len(view))], offset)
                if got == 0:
                    counters.truncated += 1
                    if head:
                        await channel.send_all(head)
                    raise FileTruncated(offset, remaining)
                counters.bytes_copied_in += got
                # The head shares the first records with the body: one SSL_write.
                await channel.send_all(head + view[:got] if head else view[:got])
                counters.body_bytes += got
                head = b""
                offset += got
                remaining -= got
                await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Drop the pool's buffers."""
        self._pool.clear()
