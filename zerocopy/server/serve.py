"""The server: listeners, a task per connection, statistics, graceful shutdown.

Structure (trio's ``serve_listeners`` with a handler nursery, as hypercorn does it)::

    serve()
    └── handler nursery ── one task per connection (handle_connection)
        └── accept scope ── serve_listeners(...)  accept loops

Shutdown, started by :meth:`Server.shutdown` (the CLI calls it on SIGTERM or SIGINT):

1. the accept scope is cancelled and the listeners close: no new connections;
2. connections waiting idle for their next request are cancelled at once; the rest finish
   the response in flight, which says ``Connection: close``;
3. after ``shutdown_grace`` seconds the handler nursery is cancelled, ending what is left;
4. ``serve`` returns. A second :meth:`Server.shutdown` skips to step 3.
"""

from __future__ import annotations

import logging
import mimetypes
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, final

import trio

from zerocopy.files import CacheStatistics, OpenFileCache, Root
from zerocopy.http import DateCache
from zerocopy.server.config import (
    default_max_connections,
    default_open_file_cache,
    raise_descriptor_limit,
)
from zerocopy.server.connection import handle_connection
from zerocopy.server.listener import Connection, RawListener, open_listeners
from zerocopy.server.listing import ListingStatistics
from zerocopy.server.metrics import check_available, serve_metrics_connection
from zerocopy.server.respond import Responder
from zerocopy.server.sender import Sender
from zerocopy.transfer import Counters, TransferSettings, TransferStatistics, make_strategy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from zerocopy.server.config import ServerConfig
    from zerocopy.transfer import TransferStrategy

__all__ = ["Server", "ServerState", "ServerStatistics", "serve"]

logger = logging.getLogger("zerocopy.server")


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
    """

    connections_accepted: int
    connections_open: int
    responses: Mapping[int, int] = field(default_factory=dict)
    transfer: TransferStatistics = field(default_factory=TransferStatistics)
    files: CacheStatistics = field(default_factory=lambda: CacheStatistics(0, 0, 0, 0))
    listings: ListingStatistics = field(default_factory=ListingStatistics)


def sock_name(listener: RawListener) -> tuple[str, int]:
    """The (host, port) a listener is bound to."""
    host, port = listener.socket.getsockname()[:2]
    return str(host), int(port)


@final
class ServerState:
    """What every connection of one server shares. Mutated only on the event loop thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.root = Root(config.root, follow_symlinks=config.follow_symlinks)
        # Read the system's MIME tables now, not during the first request.
        mimetypes.init()
        self.counters = Counters()
        settings = TransferSettings(
            send_timeout=config.send_timeout,
            offload_threads=config.offload_threads,
            auto_threshold=config.auto_threshold,
        )
        self.strategy: TransferStrategy = make_strategy(config.strategy, self.counters, settings)
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
            max_listing_entries=config.max_listing_entries,
        )
        self.shutting_down = False
        self.idle_scopes: set[trio.CancelScope] = set()
        self.connections_accepted = 0
        self.connections_open = 0
        self.responses: Counter[int] = Counter()


@final
class Server:
    """A zerocopy file server.

    Args:
        config: What to serve, where, and how.

    Raises:
        OSError: The root is unusable (raised here, before anything is bound).
        KeyError: Unknown strategy name.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        raise_descriptor_limit()
        self._state = ServerState(config)
        max_connections = config.max_connections
        if max_connections is None:
            max_connections = default_max_connections(config.strategy, config.open_file_cache)
        self._slots = trio.Semaphore(max_connections)
        self._listeners: list[RawListener] = []
        self._metrics_listeners: list[RawListener] = []
        self._addresses: list[tuple[str, int]] = []
        self._metrics_port: int | None = None
        if config.metrics_port is not None:
            check_available()
        self._accept_scope = trio.CancelScope()
        self._closed = trio.Event()
        self._handlers: trio.Nursery | None = None

    def bind(self) -> None:
        """Bind and listen now, outside any trio run (the CLI reports errors this way).

        :meth:`serve` binds by itself if this was not called.

        Raises:
            OSError: The address cannot be bound (EADDRINUSE, EACCES, ...).
        """
        config = self.config
        if not self._listeners:
            self._listeners = open_listeners(config.bind, config.port, self._slots)
            self._addresses = [sock_name(listener) for listener in self._listeners]
        if config.metrics_port is not None and not self._metrics_listeners:
            # Scrapes get a few slots of their own, so a full server can still be observed.
            metrics_slots = trio.Semaphore(4)
            self._metrics_listeners = open_listeners(
                config.bind, config.metrics_port, metrics_slots
            )
            self._metrics_port = sock_name(self._metrics_listeners[0])[1]

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
        return self._metrics_port

    @property
    def root(self) -> str:
        """The real path of the served directory."""
        return self._state.root.path

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`shutdown` has been called."""
        return self._state.shutting_down

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
        )

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
        config = self.config
        try:
            self.bind()  # Inside: a failed bind still releases what the server holds.
            async with trio.open_nursery() as handlers:
                self._handlers = handlers
                with self._accept_scope:
                    # The sockets already listen, so clients queue in the backlog from here.
                    task_status.started(self)
                    async with trio.open_nursery() as accepting:
                        if self._metrics_listeners:
                            accepting.start_soon(
                                partial(
                                    trio.serve_listeners,
                                    self._handle_metrics,
                                    self._metrics_listeners,
                                    handler_nursery=handlers,
                                )
                            )
                        await trio.serve_listeners(
                            self._handle, self._listeners, handler_nursery=handlers
                        )
                # Accepting has stopped. Close the listeners now, so that new clients are
                # refused instead of waiting in the backlog; then step 2 and the grace period.
                self._close_listeners()
                for scope in list(self._state.idle_scopes):
                    scope.cancel()
                handlers.cancel_scope.deadline = trio.current_time() + config.shutdown_grace
        finally:
            self._close_listeners()
            self._state.strategy.close()
            self._state.files.close()
            self._closed.set()

    def _close_listeners(self) -> None:
        for listener in self._listeners + self._metrics_listeners:
            listener.close()

    async def wait_closed(self) -> None:
        """Wait until :meth:`serve` has returned and released everything it held."""
        await self._closed.wait()

    def shutdown(self) -> None:
        """Begin a graceful shutdown; a second call cancels what is still running."""
        state = self._state
        if state.shutting_down:
            if self._handlers is not None:
                self._handlers.cancel_scope.cancel()
            return
        state.shutting_down = True
        self._accept_scope.cancel()
        for scope in list(state.idle_scopes):
            scope.cancel()

    async def _handle_metrics(self, conn: Connection) -> None:
        await serve_metrics_connection(conn, self.statistics, self._state.dates)

    async def _handle(self, conn: Connection) -> None:
        state = self._state
        state.connections_accepted += 1
        state.connections_open += 1
        try:
            await handle_connection(conn, state)
        finally:
            state.connections_open -= 1


async def serve(
    config: ServerConfig, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``config.root`` until cancelled. See :class:`Server` for shutdown.

    Resource handling: everything the server opens (listeners, connections, pipes) is closed
    before this returns.
    """
    await Server(config).serve(task_status=task_status)
