"""HTTPS: the server's TLS context, each connection's handshake, and sending under TLS.

Theory of operation:

* ``--tls-cert`` and ``--tls-key`` are read once, at start (:func:`load_context`); the port
  then speaks only TLS. The context is the ssl module's server default (its secure cipher
  list, no compression, no renegotiation), limited to TLS 1.2 and 1.3, with ALPN
  ``http/1.1``. A client that offers only ``h2`` gets no ALPN answer (OpenSSL's
  ``SSL_TLSEXT_ERR_NOACK``): the handshake succeeds, and an HTTP/2 preface then gets 505 and
  a close, as it does on the plain port; nothing waits for a protocol we do not speak.
* The handshake (:meth:`TLSService.handshake`) runs in the connection's task, in trio's
  try/wait pattern (``zerocopy.transfer.tls``), bounded by the head timeout from accept: a
  client that opens a connection and stalls mid-handshake is dropped then. Shutdown cancels
  handshakes at once, as it cancels idle keep-alive waits. A failed handshake (plain HTTP on
  the TLS port, garbage, a truncated ClientHello, no common version) is logged at debug level
  and closes the connection; no traceback, no response.
* The data path is the non-blocking ``ssl.SSLSocket``, chosen over ``trio.SSLStream`` by
  measurement: in the same minimal server, it used 2.4 times less server CPU per 4 KiB
  response and 1.5 times less per 1 MiB one (OpenSSL writes the records to the socket
  itself; ``SSLStream`` copies them through a memory BIO and adds a pass through trio's
  machinery per call). It is also the only one of the two on which kTLS can work.
* Every strategy sends through :class:`~zerocopy.transfer.tls.TLSReadWrite` under TLS (the
  body is encrypted in user space); a TLS server builds no sendfile or splice strategy at
  all, and the start log says which path is in effect.
* Closing: a connection that ends between responses (the client closed, ``Connection:
  close``, the idle timeout, shutdown) sends close_notify if the socket takes it at once, and
  never waits for the peer's. A connection that fails mid-response is closed without it: the
  close is the only signal of an incomplete body.
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING, final

import trio

from zerocopy.logtext import safe_text
from zerocopy.server.sender import LINGER_MAX_BYTES, LINGER_SECONDS, RECV_SIZE, send_plan_parts
from zerocopy.transfer import (
    KTLSStatus,
    Offload,
    TLSChannel,
    TLSReadWrite,
    TransferError,
    ktls_status,
    translate_errors,
)

if TYPE_CHECKING:
    from zerocopy.http import ResponsePlan
    from zerocopy.server.config import ServerConfig
    from zerocopy.server.listener import Connection
    from zerocopy.span import FileSpan
    from zerocopy.transfer import Counters, TransferSettings

__all__ = ["TLSConfigError", "TLSSender", "TLSService", "load_context"]

logger = logging.getLogger("zerocopy.server")


class TLSConfigError(RuntimeError):
    """The certificate or key cannot be used; the message is one line for the CLI."""


def load_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The server's TLS context, from a PEM certificate chain and its private key.

    Raises:
        TLSConfigError: A file is missing or unreadable, is not PEM, or the key does not
            belong to the certificate; one line that names the files.
    """
    if not key:
        raise TLSConfigError("--tls-cert needs --tls-key (and the other way round)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        what = exc.reason or str(exc)
        if what == "KEY_VALUES_MISMATCH":
            detail = "the key does not match the certificate"
        elif what in ("PEM_LIB", "NO_START_LINE") or "PEM" in what:
            detail = "not a PEM certificate and key"
        else:
            detail = what.lower().replace("_", " ")
        raise TLSConfigError(f"cannot use --tls-cert {cert} / --tls-key {key}: {detail}") from exc
    except OSError as exc:
        where = exc.filename or f"{cert} / {key}"
        raise TLSConfigError(f"cannot read {where}: {exc.strerror or exc}") from exc
    return context


@final
class TLSSender:
    """The :class:`~zerocopy.server.sender.Sender` of TLS connections: the same methods, on a
    :class:`TLSChannel` instead of a socket.

    Args:
        strategy: The body path (always :class:`TLSReadWrite`), which counts what it sends.

    Every method borrows the channel: the connection closes its socket.
    """

    def __init__(self, strategy: TLSReadWrite) -> None:
        self.strategy = strategy

    async def send_plan(self, channel: TLSChannel, plan: ResponsePlan) -> None:
        """Send a plan's head and body parts, in order (see ``send_plan_parts``).

        Raises:
            TransferError: The response is incomplete; close the connection.
        """
        await send_plan_parts(self, channel, plan)

    async def send_file(self, channel: TLSChannel, head: bytes, body: FileSpan) -> None:
        """Send a head and a non-empty span (the fast path's 200).

        Raises:
            TransferError: The response is incomplete; close the connection.
        """
        await self.strategy.send_tls(channel, body, prefix=head)

    async def send_bytes(self, channel: TLSChannel, data: bytes) -> None:
        """Send ``data`` (a head alone), then checkpoint.

        Raises:
            TransferError: The response is incomplete; close the connection.
        """
        with translate_errors():
            await channel.send_all(data)
        await trio.lowlevel.checkpoint()

    def receive_now(self, channel: TLSChannel) -> bytes | None:
        """Decrypted bytes available now, ``b""`` at the end, ``None`` if none; never blocks.

        Raises:
            PeerGone: The connection failed.
        """
        return channel.receive_now(RECV_SIZE)

    def check_peer(self, channel: TLSChannel) -> None:
        """Raise PeerGone if the client has reset the connection (see ``Sender.check_peer``);
        peeks at the raw socket, so no TLS record is consumed."""
        channel.check_peer()

    async def receive(self, channel: TLSChannel) -> bytes:
        """Wait for decrypted bytes; bound it with a cancel scope.

        Raises:
            PeerGone: The connection failed.
        """
        return await channel.receive(RECV_SIZE)

    async def linger(self, channel: TLSChannel) -> None:
        """close_notify, then the lingering close of the plain server (``Sender.linger``):
        our side is shut, and what the client still sends is read and discarded, undecrypted,
        for at most :data:`LINGER_SECONDS`."""
        channel.close_notify()
        with trio.move_on_after(LINGER_SECONDS):
            await channel.drain_raw(RECV_SIZE, LINGER_MAX_BYTES)


@final
class TLSService:
    """What a TLS server's connections share: the context, the body path, the sender.

    Args:
        config: The server's configuration; ``tls_cert`` is set.
        counters: Process-wide counters.
        settings: The transfer settings (send timeout, offload threads, ``auto`` threshold).

    Raises:
        TLSConfigError: The certificate or key cannot be used.
    """

    def __init__(
        self, config: ServerConfig, counters: Counters, settings: TransferSettings
    ) -> None:
        assert config.tls_cert is not None
        self.context = load_context(config.tls_cert, config.tls_key)
        self.ktls: KTLSStatus = ktls_status()
        if self.ktls.available:
            self.context.options |= getattr(ssl, "OP_ENABLE_KTLS", 0)
        self._counters = counters
        self._send_timeout = settings.send_timeout
        memory_max = settings.auto_threshold if config.strategy == "auto" else 0
        self.strategy = TLSReadWrite(
            counters,
            send_timeout=settings.send_timeout,
            offload=Offload(counters, threads=settings.offload_threads),
            memory_max=memory_max,
        )
        self.sender = TLSSender(self.strategy)
        logger.info("%s", self.describe(config.strategy))

    def describe(self, requested: str) -> str:
        """The one start line that names the strategy in effect under TLS, and why."""
        if self.ktls.available:
            return (
                f"TLS: --strategy {requested} sends file bodies with sendfile on connections "
                "where kTLS is active, else through read/write (tls-readwrite)"
            )
        return (
            f"TLS: file bodies are encrypted in user space, so --strategy {requested} sends "
            f"through read/write (tls-readwrite: every body byte is copied into user space and "
            f"out again); kTLS unavailable: {self.ktls.reason}"
        )

    @property
    def strategy_name(self) -> str:
        """The effective strategy's name."""
        return "ktls-sendfile" if self.ktls.available else self.strategy.name

    async def handshake(
        self, conn: Connection, deadline: float, idle_scopes: set[trio.CancelScope]
    ) -> TLSChannel | None:
        """Wrap ``conn``'s socket and complete the handshake by ``deadline``.

        Args:
            conn: The accepted connection. Its ``socket`` is replaced by the wrapped one, which
                the connection then owns and closes.
            deadline: When to give up (accept time plus the head timeout).
            idle_scopes: The server's cancellable waits: shutdown ends a handshake at once.

        Returns:
            The channel, or ``None`` when the handshake failed or timed out (logged at debug
            level; the caller closes the connection).
        """
        try:
            wrapped = self.context.wrap_socket(
                conn.socket, server_side=True, do_handshake_on_connect=False
            )
        except OSError as exc:
            logger.debug("%s: TLS: cannot start: %s", conn.peer, exc)
            return None
        conn.socket = wrapped
        channel = TLSChannel(wrapped, self._counters, send_timeout=self._send_timeout)
        with trio.CancelScope(deadline=deadline) as scope:
            idle_scopes.add(scope)
            try:
                await channel.handshake()
            except (TransferError, OSError) as exc:
                logger.debug("%s: TLS handshake failed: %s", conn.peer, safe_text(str(exc)))
                return None
            finally:
                idle_scopes.discard(scope)
        if scope.cancelled_caught:
            logger.debug("%s: TLS handshake not finished in time; closed", conn.peer)
            return None
        return channel

    def close(self) -> None:
        """Release the body path's buffers (at server shutdown)."""
        self.strategy.close()
