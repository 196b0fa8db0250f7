"""Server configuration: one frozen value, built by the CLI or by tests."""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import Final, Literal, final

from zerocopy.files import MAX_LISTING_ENTRIES
from zerocopy.files.tar import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES
from zerocopy.http import Limits
from zerocopy.transfer import AUTO_THRESHOLD, DEFAULT_THREADS

__all__ = [
    "ServerConfig",
    "default_max_connections",
    "default_open_file_cache",
    "raise_descriptor_limit",
]

_HEADROOM: Final = 64
"""Descriptors kept for listeners, logs, the inotify instance and worker threads."""
_CACHE_MAX: Final = 16384


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit, and return it.

    The soft limit stays at 1024 on most systems only for programs that use ``select()``; a
    server on epoll should raise it itself (Go's runtime and systemd's advice do the same).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open", "rb") as file:
                target = int(file.read())
        except (OSError, ValueError):
            target = soft
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft
        return target
    return soft


def _soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def default_open_file_cache() -> int:
    """A quarter of the soft RLIMIT_NOFILE, at most 16,384 descriptors.

    With inotify, a hit costs no syscall on the file, so the cache is sized to hold a whole
    web build or download area rather than nginx's example ``open_file_cache max=1000``; the
    quarter leaves the rest of the descriptors to connections.
    """
    return max(0, min(_CACHE_MAX, _soft_limit() // 4))


def default_max_connections(strategy: str = "auto", open_file_cache: int | None = None) -> int:
    """Connections that fit in the soft RLIMIT_NOFILE beside the open-file cache.

    A busy connection holds its socket and, when its file is not cached, the file; with
    splice it also holds a pipe (two more). So each connection is counted at 2 descriptors,
    or 4 with splice, after the cache's share and some headroom. Past the limit, accept
    pauses. Should descriptors still run out, a request gets 503, and a splice transfer falls
    back to read/write before its head goes out.
    """
    cache = default_open_file_cache() if open_file_cache is None else open_file_cache
    per_connection = 4 if strategy == "splice" else 2
    return max(8, (_soft_limit() - _HEADROOM - cache) // per_connection)


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
        max_connections: Concurrent connections; past it, accept waits. ``None``: as many as
            RLIMIT_NOFILE allows (:func:`default_max_connections`), computed at start.
        access_log: Write one line per response to this file (``-``: standard error);
            ``None``: off. See ``zerocopy.server.accesslog``.
        access_log_format: ``combined`` (the Combined Log Format and three fields) or
            ``json`` (one object per line).
        metrics_port: Serve Prometheus metrics and ``/-/health`` on this port (on
            ``metrics_bind``); ``None``: off.
        open_file_cache: Most file descriptors kept open for reuse (0: off); ``None``:
            :func:`default_open_file_cache`, computed at start. See ``zerocopy.files.cache``.
        open_file_cache_revalidate: ``inotify`` (the kernel reports changes, every hit costs
            one ``ioctl``) or ``always`` (``stat`` and ``readlink`` on every hit, for file
            systems where inotify cannot see changes, such as some network mounts).
        memory_cache: Most bytes of small files the open-file cache keeps in memory, for
            ``auto`` to send them in one ``send`` (0: none).
        auto_threshold: The largest file ``auto`` sends from memory.
        offload_threads: Worker threads for file chunks that are not in the page cache
            (0: read on the event loop, which then blocks on the disk); see
            ``zerocopy.transfer.offload``.
        metrics_bind: Address of the metrics port: loopback unless told otherwise, since
            the counters describe traffic and the port needs no exposure to be scraped
            locally.
        precompressed: Codings served from precompressed sidecars (``x.js.br``, ``x.js.zst``,
            ``x.js.gz``), in order of preference; empty: none.
        cache_control: The default ``Cache-Control`` of file responses, or ``None``.
        headers: ``PATTERN: Name: value`` rules that add fields to the files whose path or
            name matches (``zerocopy.http.headers``).
        nosniff: Send ``X-Content-Type-Options: nosniff`` on every response.
        cors: The origin allowed by CORS (``*`` or one origin), or ``None``: off.
        dotfiles: Serve names starting with a dot (default: 404, hidden from listings;
            ``/.well-known/`` is served either way).
        not_found: A page under the root (``/404.html``) sent with every 404 for a missing
            path, or ``None``.
        spa: A page under the root (``/index.html``) sent with 200 for a missing path whose
            last segment has no dot, or ``None``.
        tls_cert: PEM certificate chain: serve HTTPS on ``port`` instead of HTTP
            (``zerocopy.server.tls``); ``None``: plain HTTP.
        tls_key: PEM private key of ``tls_cert``, read at start.
        auth_file: Require HTTP basic authentication for every request; one ``user:hash`` per
            line (``zerocopy.server.auth``); ``None``: no authentication.
        auth_realm: The realm named in the 401 challenge.
        max_listing_entries: The most directory entries one listing reads; a directory that
            holds more is listed in part, with a note (see ``zerocopy.files.listing``).
        tar: Offer listed directories as tar downloads (``?download=tar``; see
            ``zerocopy.server.tar``).
        tar_max_files: The most names one archive's walk reads (past it: 413).
        tar_max_bytes: The largest archive (past it: 413).
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
    max_connections: int | None = None
    access_log: str | None = None
    access_log_format: Literal["combined", "json"] = "combined"
    metrics_port: int | None = None
    open_file_cache: int | None = None
    offload_threads: int = DEFAULT_THREADS
    open_file_cache_revalidate: Literal["inotify", "always"] = "inotify"
    memory_cache: int = 32 * 1024 * 1024
    auto_threshold: int = AUTO_THRESHOLD
    metrics_bind: str = "127.0.0.1"
    precompressed: tuple[str, ...] = ("br", "zstd", "gzip")
    cache_control: str | None = None
    headers: tuple[str, ...] = ()
    nosniff: bool = True
    cors: str | None = None
    dotfiles: bool = False
    not_found: str | None = None
    spa: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    auth_file: str | None = None
    auth_realm: str = "zerocopy"
    max_listing_entries: int = MAX_LISTING_ENTRIES
    tar: bool = True
    tar_max_files: int = MAX_ARCHIVE_ENTRIES
    tar_max_bytes: int = MAX_ARCHIVE_BYTES
