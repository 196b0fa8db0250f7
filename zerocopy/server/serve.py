"""The server: listeners, a task per connection, statistics, graceful shutdown.

Structure (trio's ``serve_listeners`` with a handler nursery, as hypercorn does it)::

    serve()
    ├── metrics nursery ── MetricsPort.serve (if --metrics-port): /metrics, /-/health
    └── handler nursery ── one task per connection (handle_connection)
        └── accept scope ── serve_listeners(...)  accept loops

Shutdown, started by :meth:`Server.shutdown` (the CLI calls it on SIGTERM or SIGINT):

1. the accept scope is cancelled and the listeners close: no new connections (a listening
   socket that a supervisor or systemd also holds stays open there, and its backlog goes to
   the processes that still accept); ``/-/health`` answers 503 from here on;
2. one scheduler pass later, the server is marked as shutting down: every response from now
   on says ``Connection: close``. (The pass lets connections that the last accepts handed out
   start, so that they read their first request instead of being taken for idle ones.)
3. connections waiting idle for their next request get :data:`IDLE_DRAIN` seconds to send one
   (answered, with ``Connection: close``), then are closed; a client that keeps its connection
   busy never sees it closed under a request it has already sent. The rest finish the response
   in flight;
4. ``shutdown_grace`` seconds after step 1 the handler nursery is cancelled, ending what is
   left;
5. ``serve`` returns. A second :meth:`Server.shutdown` skips to step 4.
"""

from __future__ import annotations

import logging
import mimetypes
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.files import CacheStatistics, OpenFileCache, Root
from zerocopy.http import (
    CODING_SUFFIXES,
    DateCache,
    HTTPError,
    ResponseHeaders,
    parse_header_rule,
    parse_target,
)
from zerocopy.server.accesslog import AccessLog, AccessLogStatistics
from zerocopy.server.auth import Authenticator, load_auth_file
from zerocopy.server.config import (
    default_max_connections,
    default_open_file_cache,
    raise_descriptor_limit,
)
from zerocopy.server.connection import handle_connection
from zerocopy.server.listener import Connection, RawListener, bind_sockets
from zerocopy.server.listing import ListingStatistics
from zerocopy.server.metrics import MetricsPort, check_available, render_metrics
from zerocopy.server.respond import ContentPolicy, Responder
from zerocopy.server.sender import Sender
from zerocopy.server.tar import ArchiveStatistics, TarLimits
from zerocopy.server.tls import TLSService
from zerocopy.transfer import Counters, TransferSettings, TransferStatistics, make_strategy

if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping, Sequence

    from zerocopy.server.config import ServerConfig
    from zerocopy.transfer import TransferStrategy

__all__ = [
    "Server",
    "ServerState",
    "ServerStatistics",
    "check_tls_and_realm",
    "content_policy",
    "serve",
]

logger = logging.getLogger("zerocopy.server")

IDLE_DRAIN: Final = 0.5
"""Seconds an idle keep-alive connection gets, once shutdown starts, to send one more request.

HTTP/1.1 has no way to tell a client "send nothing more" but closing, and a close that
crosses a request in flight loses that request. Clients that keep a connection busy send
their next request within microseconds of the last response; half a second covers them, and
a reload or stop is not held up for longer than that by connections nobody uses."""


@final
@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """A snapshot of what the server has done.

    Attributes:
        connections_accepted: Connections accepted since start.
        connections_open: Connections open now.
        responses: Responses sent, by status.
        transfer: The transfer layer's counters.
        files: The open-file cache's counts.
        listings: The directory listings' counts.
        access_log: The access log's counts (zeros when it is off).
        archives: The tar downloads' counts (all zero with ``--no-tar``).
    """

    connections_accepted: int
    connections_open: int
    responses: Mapping[int, int] = field(default_factory=dict)
    transfer: TransferStatistics = field(default_factory=TransferStatistics)
    files: CacheStatistics = field(default_factory=lambda: CacheStatistics(0, 0, 0, 0))
    listings: ListingStatistics = field(default_factory=ListingStatistics)
    access_log: AccessLogStatistics = field(default_factory=AccessLogStatistics)
    archives: ArchiveStatistics = field(default_factory=ArchiveStatistics)


def sock_name(listener: RawListener) -> tuple[str, int]:
    """The (host, port) a listener is bound to."""
    host, port = listener.socket.getsockname()[:2]
    return str(host), int(port)


def _page(option: str, path: str | None) -> tuple[str, ...] | None:
    """The segments of a page under the root named by ``--not-found`` or ``--spa``.

    Raises:
        ValueError: Not a path that a request could name.
    """
    if path is None:
        return None
    try:
        target = parse_target(b"/" + path.lstrip("/").encode("utf-8"))
    except (HTTPError, UnicodeEncodeError):
        raise ValueError(f"{option} {path!r}: not a path under the root") from None
    if not target.segments or target.trailing_slash:
        raise ValueError(f"{option} {path!r}: must name a file under the root")
    return target.segments


def check_tls_and_realm(tls_cert: str | None, tls_key: str | None, realm: str) -> None:
    """Refuse a certificate without its key (or the reverse), and a realm that cannot be written
    into the 401's ``WWW-Authenticate`` field.

    Raises:
        ValueError: One line, for the CLI or a reload's log.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if not realm.isprintable():
        raise ValueError("--auth-realm cannot contain control characters")


def content_policy(config: ServerConfig) -> ContentPolicy:
    """What the configuration says is served beside the files. Every path that accepts a
    configuration (start, a worker, a reload) calls it, so it also runs
    :func:`check_tls_and_realm`.

    Raises:
        ValueError: A header value, rule, page, TLS pair or realm that cannot be used (one
            line, for the CLI).
    """
    check_tls_and_realm(config.tls_cert, config.tls_key, config.auth_realm)
    unknown = set(config.precompressed) - set(CODING_SUFFIXES)
    if unknown:
        raise ValueError(f"--precompressed: unknown coding {sorted(unknown)[0]!r}")
    headers = ResponseHeaders(
        cache_control=config.cache_control,
        rules=[parse_header_rule(rule) for rule in config.headers],
        nosniff=config.nosniff,
        cors=config.cors,
    )
    return ContentPolicy(
        precompressed=tuple(config.precompressed),
        headers=headers,
        dotfiles=config.dotfiles,
        not_found=_page("--not-found", config.not_found),
        spa=_page("--spa", config.spa),
    )


@final
class ServerState:
    """What every connection of one server shares. Mutated only on the event loop thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        policy = content_policy(config)  # before anything is opened: it may refuse the config
        try:
            self._build(config, policy)
        except BaseException:
            self.close()  # What was opened before the failure.
            raise
        self.shutting_down = False
        # Set once idle connections have had their IDLE_DRAIN seconds: from then on a
        # connection that goes idle closes at once instead of waiting for another request.
        self.drain_over = False
        self.idle_scopes: set[trio.CancelScope] = set()
        self.connections_accepted = 0
        self.connections_open = 0
        self.responses: Counter[int] = Counter()

    def _build(self, config: ServerConfig, policy: ContentPolicy) -> None:
        self.root = Root(config.root, follow_symlinks=config.follow_symlinks)
        # Read the system's MIME tables now, not during the first request.
        mimetypes.init()
        self.counters = Counters()
        settings = TransferSettings(
            send_timeout=config.send_timeout,
            offload_threads=config.offload_threads,
            auto_threshold=config.auto_threshold,
        )
        # TLS: no sendfile or splice strategy exists in the process (zerocopy.server.tls).
        self.tls = None if config.tls_cert is None else TLSService(config, self.counters, settings)
        self.strategy: TransferStrategy = (
            make_strategy(config.strategy, self.counters, settings)
            if self.tls is None
            else self.tls.strategy
        )
        self.sender = Sender(self.strategy, self.counters, send_timeout=config.send_timeout)
        cache_size = config.open_file_cache
        self.files = OpenFileCache(
            self.root,
            max_entries=default_open_file_cache() if cache_size is None else cache_size,
            revalidate=config.open_file_cache_revalidate,
            keep_data_below=self.strategy.memory_max if config.memory_cache else 0,
            memory_limit=config.memory_cache,
        )
        self.dates = DateCache()
        self.responder = Responder(
            self.files,
            config.limits,
            self.dates,
            listing=config.listing,
            policy=policy,
            max_listing_entries=config.max_listing_entries,
            tar=TarLimits(config.tar_max_files, config.tar_max_bytes) if config.tar else None,
        )
        self.auth = None
        if config.auth_file is not None:
            self.auth = Authenticator(load_auth_file(config.auth_file), config.auth_realm)
            if self.tls is None:
                logger.warning(
                    "basic authentication without TLS: passwords cross the network readable "
                    "by anyone on the path (add --tls-cert and --tls-key)"
                )
        self.access_log: AccessLog | None = None
        if config.access_log is not None:
            self.access_log = AccessLog(
                config.access_log,
                log_format=config.access_log_format,
                counters=self.counters,
                strategy=self.strategy,
            )

    def close(self) -> None:
        """Release what the state holds: the strategy's pools, the open-file cache, the
        root's descriptor, the access log. Safe on a state whose construction failed."""
        for name in ("strategy", "files", "root", "access_log"):
            held = getattr(self, name, None)
            if held is not None:
                held.close()


@final
class Server:
    """A zerocopy file server.

    Args:
        config: What to serve, where, and how.
        sockets: Listening sockets to serve on instead of binding ``config.bind`` and
            ``config.port`` (from systemd socket activation, or a supervisor). The server owns
            these descriptors and closes them when it stops.

    Raises:
        OSError: The root is unusable (raised here, before anything is bound).
        KeyError: Unknown strategy name.
        MetricsUnavailable: Metrics are on but prometheus-client is missing.
    """

    def __init__(self, config: ServerConfig, *, sockets: Sequence[socket.socket] = ()) -> None:
        self.config = config
        raise_descriptor_limit()
        self._state = ServerState(config)
        max_connections = config.max_connections
        if max_connections is None:
            max_connections = default_max_connections(config.strategy, config.open_file_cache)
        self._slots = trio.Semaphore(max_connections)
        self._sockets = list(sockets)
        self._listeners: list[RawListener] = []
        self._metrics: MetricsPort | None = None
        self._addresses: list[tuple[str, int]] = []
        if config.metrics_port is not None:
            check_available()
        self._accept_scope = trio.CancelScope()
        self._stopping = False
        self._closed = trio.Event()
        self._handlers: trio.Nursery | None = None
        self._no_connections = trio.Event()

    def bind(self) -> None:
        """Bind and listen now, outside any trio run (the CLI reports errors this way).

        :meth:`serve` binds by itself if this was not called.

        Raises:
            OSError: The address cannot be bound (EADDRINUSE, EACCES, ...).
        """
        config = self.config
        if not self._listeners:
            sockets = self._sockets or bind_sockets(config.bind, config.port)
            self._sockets = []
            self._listeners = [RawListener(sock, self._slots) for sock in sockets]
            self._addresses = [sock_name(listener) for listener in self._listeners]
        if config.metrics_port is not None and self._metrics is None:
            self._metrics = MetricsPort(
                bind_sockets(config.metrics_bind, config.metrics_port),
                self._render_metrics,
                lambda: not self._stopping,
            )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs; known once bound, and still after shutdown."""
        return list(self._addresses)

    @property
    def port(self) -> int:
        """The first bound port."""
        return self.addresses[0][1]

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port, if metrics are on."""
        return None if self._metrics is None else self._metrics.port

    @property
    def strategy_name(self) -> str:
        """The strategy in effect: the configured one, or the TLS body path."""
        tls = self._state.tls
        return self.config.strategy if tls is None else tls.strategy_name

    @property
    def root(self) -> str:
        """The real path of the served directory."""
        return self._state.root.path

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`shutdown` has been called."""
        return self._stopping

    def statistics(self) -> ServerStatistics:
        """Return a snapshot of the server's counters."""
        state = self._state
        return ServerStatistics(
            connections_accepted=state.connections_accepted,
            connections_open=state.connections_open,
            responses=MappingProxyType(dict(state.responses)),
            transfer=state.counters.statistics(),
            files=state.files.statistics(),
            listings=state.responder.listings.statistics(),
            access_log=(
                state.access_log.statistics() if state.access_log else AccessLogStatistics()
            ),
            archives=(
                ArchiveStatistics()
                if state.responder.archives is None
                else state.responder.archives.statistics()
            ),
        )

    async def _render_metrics(self) -> bytes:
        return render_metrics(self.statistics())

    def reopen_logs(self) -> None:
        """Reopen the log files this server writes (SIGUSR1, logrotate's convention).

        The access log reopens its file in its writer thread, at once. Called on the event
        loop; never blocks.
        """
        if self._state.access_log is not None:
            self._state.access_log.reopen()

    def write_logs_now(self) -> None:
        """Write buffered log lines from the calling thread, for a process that is about to
        end without unwinding (see ``stopping.py``)."""
        if self._state.access_log is not None:
            self._state.access_log.write_now()

    async def serve(
        self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, serve until shut down, and return when every connection has ended.

        Args:
            task_status: Receives this server once the listeners are bound, for
                ``nursery.start``.

        Raises:
            OSError: Binding failed (EADDRINUSE, EACCES, ...).
        """
        try:
            self.bind()  # Inside: a failed bind still releases what the server holds.
            async with trio.open_nursery() as metrics:
                if self._metrics is not None:
                    await metrics.start(self._metrics.serve)
                if self._state.access_log is not None:
                    await metrics.start(self._state.access_log.run)
                await self._serve_files(task_status)
                metrics.cancel_scope.cancel()
        finally:
            self._close_listeners()
            self._state.close()
            self._closed.set()

    async def _serve_files(self, task_status: trio.TaskStatus[Server]) -> None:
        config = self.config
        async with trio.open_nursery() as handlers:
            self._handlers = handlers
            with self._accept_scope:
                # The sockets already listen, so clients queue in the backlog from here.
                task_status.started(self)
                await trio.serve_listeners(self._handle, self._listeners, handler_nursery=handlers)
            # Accepting has stopped. Close the listeners now, so that new clients are refused
            # (or, on a shared socket, go to a process that still accepts) instead of waiting
            # in our backlog.
            handlers.cancel_scope.deadline = trio.current_time() + config.shutdown_grace
            self._close_listeners()
            await trio.lowlevel.checkpoint()
            self._state.shutting_down = True
            handlers.start_soon(self._close_idle, min(IDLE_DRAIN, config.shutdown_grace))

    async def _close_idle(self, delay: float) -> None:
        if self._state.connections_open:
            with trio.move_on_after(delay):
                await self._no_connections.wait()
        self._state.drain_over = True
        for scope in list(self._state.idle_scopes):
            scope.cancel()

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()

    async def wait_closed(self) -> None:
        """Wait until :meth:`serve` has returned and released everything it held."""
        await self._closed.wait()

    def shutdown(self) -> None:
        """Begin a graceful shutdown; a second call cancels what is still running."""
        if self._stopping:
            if self._handlers is not None:
                self._handlers.cancel_scope.cancel()
            return
        self._stopping = True
        self._accept_scope.cancel()

    async def _handle(self, conn: Connection) -> None:
        state = self._state
        state.connections_accepted += 1
        state.connections_open += 1
        try:
            await handle_connection(conn, state)
        finally:
            state.connections_open -= 1
            if not state.connections_open and self._stopping:
                self._no_connections.set()


async def serve(
    config: ServerConfig, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``config.root`` until cancelled. See :class:`Server` for shutdown.

    Resource handling: everything the server opens (listeners, connections, pipes) is closed
    before this returns.
    """
    await Server(config).serve(task_status=task_status)
