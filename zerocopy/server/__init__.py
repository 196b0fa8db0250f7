"""The trio side: listeners, the per-connection loop, timeouts, and shutdown."""

from __future__ import annotations

from zerocopy.server.config import (
    ServerConfig,
    default_max_connections,
    default_open_file_cache,
)
from zerocopy.server.serve import Server, ServerStatistics, serve

__all__ = [
    "Server",
    "ServerConfig",
    "ServerStatistics",
    "default_max_connections",
    "default_open_file_cache",
    "serve",
]
