"""Server configuration: one frozen value, built by the CLI or by tests."""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import final

from zerocopy.http import Limits
from zerocopy.transfer import DEFAULT_THREADS

__all__ = ["ServerConfig", "default_max_connections", "default_open_file_cache"]


def default_max_connections() -> int:
    """Half the soft RLIMIT_NOFILE, less headroom.

    A busy connection holds its socket, the open file, and with splice a pipe (two fds); an
    idle one holds only its socket. Half the limit leaves room for the files, and the headroom
    covers listeners, logs and worker threads. Past the limit, accept pauses.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(8, (soft - 64) // 2)


def default_open_file_cache() -> int:
    """256 descriptors (nginx examples use ``open_file_cache max=1000``), at most 1/8 of
    the soft RLIMIT_NOFILE, so the cache never crowds out connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return min(256, soft // 8)


@final
@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``serve`` needs.

    Attributes:
        root: Directory to serve.
        bind: Address to listen on (a host name, IPv4 or IPv6 literal).
        port: TCP port; 0 picks a free one.
        strategy: Transfer strategy name (see ``zerocopy.transfer.STRATEGIES``).
        listing: Answer a directory without index.html with a listing (else 403).
        follow_symlinks: Serve symlinks that stay inside the root.
        limits: Request limits.
        head_timeout: Seconds to receive a whole request head, from its first byte (and for the
            first request, from accept). Trickled bytes do not extend it. nginx's
            ``client_header_timeout`` is 60 s; slowloris needs it shorter.
        idle_timeout: Seconds a keep-alive connection may wait for its next request (nginx's
            ``keepalive_timeout`` is 75 s; Apache's ``KeepAliveTimeout`` 5 s).
        send_timeout: Seconds without the kernel accepting a byte before the connection is
            dropped; measured between writes, like nginx's ``send_timeout`` (60 s).
        shutdown_grace: Seconds in-flight responses get to finish after SIGTERM or SIGINT.
        max_connections: Concurrent connections; past it, accept waits.
        access_log: Log one line per response (Common Log Format) to the
            ``zerocopy.access`` logger.
        metrics_port: Serve Prometheus metrics and ``/-/health`` on this port (on
            ``metrics_bind``); ``None``: off.
        open_file_cache: Most file descriptors kept open for reuse (0: off); see
            ``zerocopy.files.cache``.
        offload_threads: Worker threads for file chunks that are not in the page cache
            (0: read on the event loop, which then blocks on the disk); see
            ``zerocopy.transfer.offload``.
        metrics_bind: Address of the metrics port: loopback unless told otherwise, since
            the counters describe traffic and the port needs no exposure to be scraped
            locally.
    """

    root: str
    bind: str = "127.0.0.1"
    port: int = 8000
    strategy: str = "auto"
    listing: bool = True
    follow_symlinks: bool = False
    limits: Limits = field(default_factory=Limits)
    head_timeout: float = 10.0
    idle_timeout: float = 15.0
    send_timeout: float = 30.0
    shutdown_grace: float = 10.0
    max_connections: int = field(default_factory=default_max_connections)
    access_log: bool = False
    metrics_port: int | None = None
    open_file_cache: int = field(default_factory=default_open_file_cache)
    offload_threads: int = DEFAULT_THREADS
    metrics_bind: str = "127.0.0.1"
