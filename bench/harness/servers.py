"""The servers under test: each in a process group of its own, pinned to one CPU, always stopped.

Theory of operation:

- Every server runs in a session of its own (``start_new_session``), so its process group id
  is the pid the harness started, a worker it forks (nginx's) joins that group, and the harness
  can both sum the group's CPU time (:mod:`bench.harness.procfs`) and signal the whole group at the
  end. Terminal signals (Ctrl-C) go to the harness alone, which then stops the servers.
- Pinning is ``taskset -c CPU`` in front of the argv: taskset execs, so the pid is the server's
  own, and children (nginx's worker, threads) inherit the affinity. Without taskset the harness
  sets the affinity itself right after the start (``sched_setaffinity``).
- A server announces its port on its output: zerocopy's ready line (``zerocopy 0.1.0: serving
  DIR on http://127.0.0.1:PORT/ (strategy S); metrics on http://127.0.0.1:M/metrics``),
  ``http.server`` and the peer launchers in ``bench/data/peers/`` all print
  ``http://127.0.0.1:PORT/``. The harness reads it from a log file (stdout and stderr both),
  never from a pipe, so a chatty server can never block on a full pipe, and the log is there
  afterwards to explain a failure. A server that cannot listen on port 0 (nginx) is given a
  port and a pid file instead, and counts as ready once the pid file holds its pid and the
  port accepts connections.
- Stopping sends SIGTERM to the group (zerocopy's graceful stop: with no request in flight it
  exits at once), waits a bounded grace, then SIGKILLs whatever is left, until no process of
  the group remains. :class:`ServerSet` and :func:`running_server` are context managers that do
  this for every server they started, on errors and on Ctrl-C included; within
  :func:`signals_raise_keyboard_interrupt`, SIGTERM and SIGHUP count as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self, final

from bench.harness.procfs import group_pids

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping, Sequence
    from types import FrameType, TracebackType

__all__ = [
    "COUNTERS_FLAGS",
    "URL_RE",
    "RunningServer",
    "ServerInfo",
    "ServerSet",
    "ServerStartError",
    "listening_ports",
    "parse_listening_ports",
    "parse_ready_line",
    "running_server",
    "signals_raise_keyboard_interrupt",
    "start_zerocopy",
    "taskset_prefix",
    "zerocopy_argv",
]

URL_RE: Final = re.compile(r"https?://127\.0\.0\.1:(?P<port>[0-9]+)/")
"""How every announcing server says where it listens (zerocopy with TLS says https)."""

START_TIMEOUT_S: Final = 30.0
"""Python servers import a lot on a busy machine; none needs more than a few seconds here."""

STOP_GRACE_S: Final = 10.0
"""zerocopy's own --shutdown-grace default is 10 s; with no requests in flight it stops at once."""

COUNTERS_FLAGS: Final = ("--metrics-port", "0", "--log-level", "warning")
"""How the suite and the hardening benchmarks run zerocopy: counters on a port of their own."""

_POLL_S: Final = 0.05
_READY = re.compile(r"serving .*? on (?P<url>https?://[^/\s]+/)")
_STRATEGY = re.compile(r"\(strategy (?P<strategy>[\w-]+)\)")
_METRICS = re.compile(r"metrics on (?P<metrics>http://\S+/metrics)")
_PORT = re.compile(r":(\d+)/")


class ServerStartError(RuntimeError):
    """A server exited or did not become ready; ``log_tail`` has the end of its output."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(f"{message}\n{log_tail}".rstrip())
        self.log_tail = log_tail


def taskset_prefix(cpu: int | Collection[int] | None) -> list[str]:
    """``["taskset", "-c", "CPU[,CPU...]"]``, or nothing when not pinning."""
    if cpu is None:
        return []
    cpus = [cpu] if isinstance(cpu, int) else sorted(cpu)
    return ["taskset", "-c", ",".join(map(str, cpus))]


# -- any server ----------------------------------------------------------------------------


@final
@dataclass(slots=True)
class RunningServer:
    """A started server: its pid (= process group id), port, command and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    command: tuple[str, ...]
    extra_logs: tuple[Path, ...] = ()
    stopped: bool = field(default=False)

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        """Everything the server has printed so far, up to its last complete line."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[: text.rfind("\n") + 1]

    def log_tail(self, lines: int = 20) -> str:
        return _tail((self.log, *self.extra_logs), lines)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the group, wait up to ``grace_s``, then SIGKILL what is left. Idempotent.

        Never raises for a server that is already gone.
        """
        if self.stopped:
            return
        self.stopped = True
        _signal_group(self.pgid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.pgid, signal.SIGKILL)
            self.proc.wait(grace_s)
        # A worker may outlive its master for a moment; nothing of the group may survive.
        deadline = time.monotonic() + grace_s
        while group_pids(self.pgid) and time.monotonic() < deadline:
            _signal_group(self.pgid, signal.SIGKILL)
            time.sleep(_POLL_S)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _tail(paths: Sequence[Path], lines: int) -> str:
    out = []
    for path in paths:
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                out.append(f"--- {path.name}:")
                out.extend(text)
    return "\n".join(out)


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _pidfile_matches(pidfile: Path | None, pid: int) -> bool:
    if pidfile is None:
        return True
    try:
        return pidfile.read_text().strip() == str(pid)
    except OSError:
        return False


@final
class ServerSet:
    """Starts servers and guarantees they are all stopped when the ``with`` block ends.

    Args:
        workdir: where each server's log (``NAME.log``) goes; the servers' working directory.
        cpu: the CPU every server is pinned to, or None.
    """

    def __init__(self, workdir: Path, *, cpu: int | None) -> None:
        self.workdir = workdir
        self.cpu = cpu
        self.servers: list[RunningServer] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        """Stop every server started here (each stops at once: no request is in flight)."""
        for server in self.servers:
            server.stop()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        pidfile: Path | None = None,
        extra_logs: Sequence[Path] = (),
        timeout_s: float = START_TIMEOUT_S,
        cpus: Collection[int] | None = None,
    ) -> RunningServer:
        """Start one server, pinned, and wait until it accepts connections.

        Args:
            name: for log file names and messages.
            argv: the command, without the taskset prefix.
            env: the environment (default: this process's).
            port: a port chosen by the harness (nginx); None means the server announces its
                port with ``URL_RE`` on its output.
            pidfile: with ``port``, a file the server writes once it has bound its sockets;
                it must hold the started pid (so a stranger on the port is never mistaken
                for the server).
            extra_logs: further files whose tail explains a failure (nginx's error.log).
            timeout_s: bound on the wait.
            cpus: pin this server to these CPUs instead of the set's CPU (a server with
                several workers).

        Returns:
            The server, ready. It polls for readiness; it does not checkpoint (it is sync).

        Raises:
            ServerStartError: if it exits or is not ready in time (it is stopped first).

        Resource handling: the server belongs to this set from the moment it is started, so
        the set stops it even when this call raises.
        """
        log = self.workdir / f"{name}.log"
        pin: Collection[int] | None = (
            cpus if cpus is not None else (None if self.cpu is None else (self.cpu,))
        )
        taskset = pin is not None and shutil.which("taskset") is not None
        command = (*taskset_prefix(pin if taskset else None), *argv)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=self.workdir,
                start_new_session=True,
            )
        server = RunningServer(
            name=name,
            proc=proc,
            port=port or 0,
            log=log,
            command=command,
            extra_logs=tuple(extra_logs),
        )
        self.servers.append(server)
        if pin is not None and not taskset:
            # Threads and children started from now on inherit the affinity.
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(proc.pid, set(pin))
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                server.stop()
                raise ServerStartError(
                    f"{name} exited with status {proc.returncode} before it was ready",
                    server.log_tail(),
                )
            if server.port == 0:
                match = URL_RE.search(server.output())
                if match is not None:
                    server.port = int(match["port"])
            if server.port and _pidfile_matches(pidfile, proc.pid) and _can_connect(server.port):
                return server
            if time.monotonic() > deadline:
                server.stop()
                raise ServerStartError(
                    f"{name} was not ready within {timeout_s:g} s", server.log_tail()
                )
            time.sleep(_POLL_S)


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, delivered like Ctrl-C so that every ``finally`` runs."""


@contextlib.contextmanager
def signals_raise_keyboard_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt, as SIGINT does.

    So ``kill`` or a closed terminal stops the servers as Ctrl-C does. The previous handlers
    are restored on exit.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- zerocopy ------------------------------------------------------------------------------


def zerocopy_argv(root: str | Path, strategy: str, *extra: str) -> list[str]:
    """The server as the README documents it: ``python -m zerocopy serve DIR --port 0``.

    Bound to 127.0.0.1; no metrics port and the default log level unless ``extra`` says so.
    """
    return [
        sys.executable,
        "-m",
        "zerocopy",
        "serve",
        str(root),
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--strategy",
        strategy,
        *extra,
    ]


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


@final
@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A running zerocopy server and what its ready line announced.

    Attributes:
        server: The process.
        metrics_port: The Prometheus port, or ``None``.
        strategy: The strategy the server announced.
        metrics_announced: Whether the ready line named the metrics port (else it was found
            among the server's listening sockets).
    """

    server: RunningServer
    metrics_port: int | None
    strategy: str
    metrics_announced: bool = True

    @property
    def pid(self) -> int:
        """The server process, also its process group."""
        return self.server.pgid

    @property
    def port(self) -> int:
        """The HTTP port on 127.0.0.1."""
        return self.server.port

    @property
    def command(self) -> tuple[str, ...]:
        """The command line that started it (taskset included)."""
        return self.server.command


def start_zerocopy(
    servers: ServerSet,
    root: str | Path,
    strategy: str,
    *,
    name: str | None = None,
    extra: Sequence[str] = (),
) -> ServerInfo:
    """Start a zerocopy server with its counters (``--metrics-port 0``) and read its ready line.

    Only warnings are logged (``--log-level warning``), so the log stays short.

    Args:
        servers: The set that owns (and will stop) the server.
        root: The directory to serve.
        strategy: ``--strategy``.
        name: The log's name (default ``zerocopy-STRATEGY``).
        extra: More command-line flags.

    Raises:
        ServerStartError: The server exited, did not announce itself in time, or announced
            itself with something that is not a zerocopy ready line.
    """
    argv = zerocopy_argv(root, strategy, *COUNTERS_FLAGS, *extra)
    server = servers.start(name or f"zerocopy-{strategy}", argv)
    line = next((ln for ln in server.output().splitlines() if _READY.search(ln)), "")
    try:
        port, metrics_port, announced = parse_ready_line(line)
    except ValueError as exc:
        raise ServerStartError(str(exc), server.log_tail()) from exc
    metrics_announced = metrics_port is not None
    if metrics_port is None:
        # The ready line should name the metrics port; if it does not, the metrics port is
        # the server's other listening port.
        others = listening_ports(server.pgid) - {port}
        if len(others) == 1:
            metrics_port = others.pop()
    return ServerInfo(server, metrics_port, announced, metrics_announced)


@contextlib.contextmanager
def running_server(
    root: str | Path,
    strategy: str,
    *,
    cpu: int | None = None,
    extra: Sequence[str] = (),
) -> Iterator[ServerInfo]:
    """Run one zerocopy server for the duration of the ``with`` block.

    Args:
        root: The directory to serve.
        strategy: ``--strategy``.
        cpu: Pin the server to this CPU, or None.
        extra: More command-line flags.

    Raises:
        ServerStartError: The server exited or did not announce itself in time.

    Resource handling: the server's process group is stopped when the block exits, however
    it exits; its log lives in a temporary directory removed afterwards.
    """
    with (
        tempfile.TemporaryDirectory(prefix="zerocopy-server-") as logs,
        ServerSet(Path(logs), cpu=cpu) as servers,
    ):
        yield start_zerocopy(servers, root, strategy, extra=extra)
