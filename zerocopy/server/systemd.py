"""systemd's two small protocols: socket activation and readiness notification.

Socket activation (sd_listen_fds(3)): systemd binds the sockets of a ``.socket`` unit, starts
the service with them as descriptors 3, 4, ... and says so in ``LISTEN_FDS`` (how many) and
``LISTEN_PID`` (for which process: a variable inherited by a child is not meant for it). The
variables are removed once read, as ``sd_listen_fds(1)`` does, so that no child process takes
the sockets for its own. ``systemd-socket-activate -l ADDR CMD`` does the same from a shell.

Notification (sd_notify(3)): with ``NOTIFY_SOCKET`` set, the service sends datagrams such as
``READY=1`` to that unix socket (a name starting with ``@`` is in the abstract namespace).
A ``Type=notify`` unit counts as started only after ``READY=1``; ``RELOADING=1`` and
``STOPPING=1`` show in ``systemctl status``, and ``Type=notify-reload`` (systemd 253) needs
``MONOTONIC_USEC`` with ``RELOADING=1``. Failing to notify never stops the server: it is logged
and the server goes on. The protocol is one ``sendto``, so it is written out here rather than
taken from a package.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Final

__all__ = ["LISTEN_FDS_START", "listen_fds", "notify"]

logger = logging.getLogger("zerocopy.server")

LISTEN_FDS_START: Final = 3
"""The first descriptor systemd passes (SD_LISTEN_FDS_START)."""


def listen_fds() -> list[socket.socket]:
    """The listening sockets systemd passed to this process, or ``[]`` if it passed none.

    Reads and then removes ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES``. The sockets
    are set close-on-exec and non-blocking; the caller owns them.

    Raises:
        ValueError: The variables are malformed, or a passed descriptor is not a listening
            stream socket (a ``.socket`` unit without ``Accept=no``, or a datagram socket).
    """
    pid = os.environ.pop("LISTEN_PID", None)
    count = os.environ.pop("LISTEN_FDS", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        total = int(count)
    except ValueError:
        raise ValueError(f"malformed LISTEN_PID={pid!r} or LISTEN_FDS={count!r}") from None
    sockets: list[socket.socket] = []
    try:
        for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + total):
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
            sockets.append(sock)
            if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN
            ):
                raise ValueError(
                    f"descriptor {fd} from systemd is not a listening stream socket "
                    "(the .socket unit needs ListenStream= and Accept=no)"
                )
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ValueError(f"descriptor from systemd is unusable: {exc}") from exc
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def notify(*states: str) -> bool:
    """Send ``states`` (such as ``"READY=1"``) to systemd, if ``NOTIFY_SOCKET`` is set.

    ``RELOADING=1`` gets the ``MONOTONIC_USEC`` field that ``Type=notify-reload`` requires.

    Returns:
        Whether a datagram was sent. Never raises: a failure is logged.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    fields = list(states)
    if "RELOADING=1" in fields:
        fields.append(f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:
        logger.warning("sd_notify %s to %r failed: %s", ",".join(states), address, exc)
        return False
    return True
