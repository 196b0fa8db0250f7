"""The names every benchmark and the report share: strategies, peer candidates, nginx configs.

A zerocopy strategy is named as ``--strategy`` spells it; as a peer candidate it is
``zerocopy-<strategy>``. nginx runs in three configurations, each a candidate of its own.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACCESS_LOG_CANDIDATE",
    "AIOHTTP",
    "BASELINE_STRATEGY",
    "DEFAULT_CANDIDATE",
    "HTTP_SERVER",
    "MANY_FILES",
    "NGINX_AIO_THREADS",
    "NGINX_BASELINES",
    "NGINX_NOSENDFILE",
    "NGINX_SENDFILE",
    "PEER_CANDIDATES",
    "PERF_PATHS",
    "STRATEGIES",
    "TLS_SERVER",
    "UVICORN_STARLETTE",
    "ZEROCOPY_CANDIDATES",
    "zerocopy_candidate",
]

STRATEGIES: Final = ("auto", "sendfile", "splice", "readwrite")
"""Every ``--strategy``, in the order of every table: the default users run first."""

BASELINE_STRATEGY: Final = "readwrite"
"""What the zero-copy strategies are compared with (ratios "vs readwrite")."""


def zerocopy_candidate(strategy: str) -> str:
    """``"auto"`` → ``"zerocopy-auto"``: a strategy as a peer candidate."""
    return f"zerocopy-{strategy}"


TLS_SERVER: Final = f"{STRATEGIES[0]}-tls"
"""The suite's TLS server: the default strategy with ``--tls-cert/--tls-key``."""

ZEROCOPY_CANDIDATES: Final = tuple(zerocopy_candidate(strategy) for strategy in STRATEGIES)
DEFAULT_CANDIDATE: Final = zerocopy_candidate(STRATEGIES[0])

NGINX_SENDFILE: Final = "nginx-sendfile"
"""nginx with ``sendfile on`` (and ``aio off``)."""
NGINX_NOSENDFILE: Final = "nginx-nosendfile"
"""nginx with ``sendfile off``: read/write through its own buffers."""
NGINX_AIO_THREADS: Final = "nginx-aio-threads"
"""nginx with ``sendfile on; aio threads``: blocking file reads go to a thread pool."""
NGINX_BASELINES: Final = (NGINX_SENDFILE, NGINX_NOSENDFILE)
"""The two configurations that together make "nginx at its best" for the peer ratios."""

MANY_FILES: Final = "many-files"
"""The workload label of the peer comparison's random GETs over many small files."""

AIOHTTP: Final = "aiohttp"
UVICORN_STARLETTE: Final = "uvicorn-starlette"
HTTP_SERVER: Final = "http.server"

ACCESS_LOG_CANDIDATE: Final = "zerocopy-auto-log"
"""``auto`` with the access log on (combined format, to a file): its cost against
``zerocopy-auto``, alternated in the same run."""

PEER_CANDIDATES: Final = (
    *ZEROCOPY_CANDIDATES,
    ACCESS_LOG_CANDIDATE,
    *NGINX_BASELINES,
    AIOHTTP,
    UVICORN_STARLETTE,
    HTTP_SERVER,
)
"""Every candidate of ``make bench-peers``, in measuring order."""

PERF_PATHS: Final = {
    "tcp_sendmsg": "TCP send (every strategy)",
    "tcp_write_xmit": "TCP transmit, under the send",
    "_raw_spin_unlock_irqrestore": "where interrupts are re-enabled (what ran with them off)",
    "splice_to_socket": "pipe → socket (sendfile and splice)",
    "filemap_splice_read": "file → pipe (sendfile and splice)",
    "filemap_read": "page cache → user (preadv, and the 1-byte probes)",
    "net_rx_action": "loopback receive softirq (the client's TCP receive, on the server's CPU)",
    "do_epoll_wait": "epoll_wait",
}
"""Kernel functions whose share of a perf recording, callees included, tells the strategies
apart; the suite records them and the report names them."""
