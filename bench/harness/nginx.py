"""nginx as the reference server: its configurations, its template, and how it is started.

Every benchmark that compares with nginx starts it here, from ``bench/data/peers/nginx.conf``,
in one of three configurations (:data:`CONFIGS`), so that "nginx" means the same thing in the
suite, the peer comparison and the cold-cache test.

nginx cannot listen on port 0. The harness binds port 0, closes the socket, and gives nginx
that port; if nginx then fails with "Address already in use" (another process took the port
meanwhile), it retries with a fresh one. nginx counts as ready only once its pid file holds the
pid the harness started, so a stranger on the port is never measured.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from bench.harness.names import NGINX_AIO_THREADS, NGINX_NOSENDFILE, NGINX_SENDFILE
from bench.harness.results import DATA_DIR
from bench.harness.servers import ServerStartError

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from pathlib import Path

    from bench.harness.servers import RunningServer, ServerSet

__all__ = [
    "CONFIGS",
    "TEMPLATE",
    "NginxConfig",
    "free_port",
    "nginx_binary",
    "render_template",
    "start_nginx",
]

TEMPLATE: Final = DATA_DIR / "peers" / "nginx.conf"
PORT_ATTEMPTS: Final = 5
"""The free-port dance can lose a race with another process; a few retries always suffice."""


@final
@dataclass(frozen=True, slots=True)
class NginxConfig:
    """One nginx configuration: ``sendfile on|off`` and ``aio threads|off``."""

    name: str
    sendfile: bool
    aio_threads: bool

    @property
    def settings(self) -> str:
        """The directives that differ, then the ones every configuration shares."""
        return self.settings_for(1)

    def settings_for(self, workers: int) -> str:
        """:attr:`settings` with ``worker_processes`` set to ``workers``."""
        return (
            f"worker_processes {workers}; sendfile {'on' if self.sendfile else 'off'}; "
            f"aio {'threads' if self.aio_threads else 'off'}; tcp_nopush on; tcp_nodelay on; "
            "access_log off; keepalive_requests 1000000 (bench/data/peers/nginx.conf)"
        )


CONFIGS: Final = {
    config.name: config
    for config in (
        NginxConfig(NGINX_SENDFILE, sendfile=True, aio_threads=False),
        NginxConfig(NGINX_NOSENDFILE, sendfile=False, aio_threads=False),
        NginxConfig(NGINX_AIO_THREADS, sendfile=True, aio_threads=True),
    )
}


def nginx_binary() -> str | None:
    """nginx from PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot bind 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace ``@NAME@`` placeholders; nginx's own ``$variables`` are left alone.

    Raises:
        KeyError: if a placeholder has no value, or a value is never used.
    """
    names = set(re.findall(r"@([A-Z_]+)@", template))
    if missing := names - set(values):
        raise KeyError(f"template placeholders without a value: {sorted(missing)}")
    if unused := set(values) - names:
        raise KeyError(f"values for no placeholder: {sorted(unused)}")
    return re.sub(r"@([A-Z_]+)@", lambda match: values[match[1]], template)


def start_nginx(
    servers: ServerSet,
    root: Path,
    config: NginxConfig,
    *,
    workers: int = 1,
    cpus: Collection[int] | None = None,
    name: str | None = None,
    autoindex: bool = False,
) -> RunningServer:
    """Start nginx in the foreground serving ``root``, in a prefix of its own under the set's
    work directory, and wait until it is ready.

    ``root`` and its files must be readable by nginx's unprivileged worker.

    Args:
        servers: The set that owns (and will stop) it.
        root: The directory to serve.
        config: Which configuration.
        workers: ``worker_processes``.
        cpus: Pin it to these CPUs instead of the set's CPU.
        name: For its log and prefix (default: the configuration's name).
        autoindex: List directories (``autoindex on``), for the listing case.

    Raises:
        ServerStartError: nginx is missing, exited, or was not ready in time.

    Resource handling: the server belongs to ``servers``, which stops it.
    """
    binary = nginx_binary()
    if binary is None:
        raise ServerStartError("nginx is not installed (apt-get install nginx)")
    template = TEMPLATE.read_text()
    name = name or config.name
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        prefix = servers.workdir / f"{name}.{attempt}"
        prefix.mkdir()
        prefix.chmod(0o755)
        conf = prefix / "nginx.conf"
        error_log = prefix / "error.log"
        values = {
            "PREFIX": str(prefix),
            "PORT": str(port),
            "ROOT": str(root),
            "SENDFILE": "on" if config.sendfile else "off",
            "AIO": "threads" if config.aio_threads else "off",
            "WORKERS": str(workers),
            "AUTOINDEX": "on" if autoindex else "off",
        }
        conf.write_text(render_template(template, values))
        try:
            return servers.start(
                name,
                [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(error_log)],
                port=port,
                pidfile=prefix / "nginx.pid",
                extra_logs=[error_log],
                cpus=cpus,
            )
        except ServerStartError as exc:
            if "Address already in use" not in exc.log_tail or attempt + 1 == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
