"""Start a zerocopy server in its own process group, pinned to one CPU; always stop it.

The server is the command line the README documents: ``python -m zerocopy serve DIR --port 0
--metrics-port 0 --strategy S``. Its one ready line on stdout gives both ports. The process is
the leader of a new process group, so that stopping it stops everything it started: SIGINT to
the group (the server's graceful stop), then SIGKILL if it has not exited within a few
seconds. :func:`running_server` is a context manager, so a server never outlives the harness,
on an error or on Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = [
    "ServerInfo",
    "listening_ports",
    "parse_listening_ports",
    "parse_ready_line",
    "running_server",
    "stop_group",
]

READY_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 5.0
_READY = re.compile(r"serving .*? on (?P<url>http://[^/\s]+/)")
_STRATEGY = re.compile(r"\(strategy (?P<strategy>[\w-]+)\)")
_METRICS = re.compile(r"metrics on (?P<metrics>http://\S+/metrics)")
_PORT = re.compile(r":(\d+)/")


@final
@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A running server.

    Attributes:
        pid: The server process, also its process group.
        port: The HTTP port on 127.0.0.1.
        metrics_port: The Prometheus port, or ``None``.
        strategy: The strategy the server announced.
        command: The command line that started it.
        metrics_announced: Whether the ready line named the metrics port (else it was found
            among the server's listening sockets).
    """

    pid: int
    port: int
    metrics_port: int | None
    strategy: str
    command: tuple[str, ...]
    metrics_announced: bool = True


def parse_ready_line(line: str) -> tuple[int, int | None, str]:
    """Return ``(port, metrics_port, strategy)`` from the server's ready line.

    Raises:
        ValueError: The line is not a ready line.
    """
    match = _READY.search(line)
    strategy = _STRATEGY.search(line)
    if match is None or strategy is None:
        raise ValueError(f"not a zerocopy ready line: {line!r}")
    port = _PORT.search(match["url"])
    if port is None:
        raise ValueError(f"no port in {match['url']!r}")
    metrics_url = _METRICS.search(line)
    metrics = _PORT.search(metrics_url["metrics"]) if metrics_url else None
    return int(port[1]), int(metrics[1]) if metrics else None, strategy["strategy"]


def parse_listening_ports(proc_net_tcp: str, inodes: set[int]) -> set[int]:
    """Ports in LISTEN state (``0A``) owned by one of ``inodes``, from ``/proc/PID/net/tcp``."""
    ports = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":
            continue
        if int(fields[9]) in inodes:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its socket fds matched in /proc/net/tcp*)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            ports |= parse_listening_ports(f.read(), inodes)
    return ports


def stop_group(pgid: int, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGINT the process group, wait, then SIGKILL what is left. Never raises."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGINT)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)


def _command(root: str, strategy: str, cpu: int | None, extra: Sequence[str]) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "zerocopy",
        "serve",
        root,
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--metrics-port",
        "0",
        "--strategy",
        strategy,
        "--log-level",
        "warning",
        *extra,
    ]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    return command


@contextlib.contextmanager
def running_server(
    root: str,
    strategy: str,
    *,
    cpu: int | None = None,
    extra: Sequence[str] = (),
    log_path: str | None = None,
) -> Iterator[ServerInfo]:
    """Run a server for the duration of the ``with`` block.

    Args:
        root: The directory to serve.
        strategy: ``--strategy``.
        cpu: Pin the server to this CPU (``taskset``, else ``sched_setaffinity``), or None.
        extra: More command-line flags.
        log_path: Where the server's stderr goes (default: discarded).

    Raises:
        RuntimeError: The server exited or did not announce itself in time.

    Resource handling: the server's process group is stopped when the block exits, however
    it exits.
    """
    command = _command(root, strategy, cpu, extra)
    with contextlib.ExitStack() as stack:
        stderr = stack.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        try:
            if cpu is not None and command[0] != "taskset":
                os.sched_setaffinity(process.pid, {cpu})
            line = _read_ready_line(process)
            port, metrics_port, announced = parse_ready_line(line)
            metrics_announced = metrics_port is not None
            if metrics_port is None:
                # The ready line should name the metrics port; if it does not, the metrics
                # port is the server's other listening port.
                others = listening_ports(process.pid) - {port}
                if len(others) == 1:
                    metrics_port = others.pop()
            yield ServerInfo(
                process.pid, port, metrics_port, announced, tuple(command), metrics_announced
            )
        finally:
            stop_group(process.pid, process)
            if process.stdout is not None:
                process.stdout.close()


def _read_ready_line(process: subprocess.Popen[bytes]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"server did not announce itself in {READY_TIMEOUT:g} s")
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"server exited (status {process.wait()}) before it was ready")
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode(errors="replace")
