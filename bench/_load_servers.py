"""Starting, checking and stopping the servers under test.

Theory of operation:

- Every server runs in a session of its own (``start_new_session``), so its process group id
  is the pid the harness started, nginx's worker joins the master's group, and the harness can
  both sum the group's CPU time (``_load_proc``) and signal the whole group at the end.
- Pinning is ``taskset -c CPU`` in front of the argv: taskset execs, so the pid is the server's
  own, and children (nginx's worker, threads) inherit the affinity.
- A server announces its port on its output (zerocopy, ``http.server`` and the peer launchers
  in ``bench/peers/`` all print ``http://127.0.0.1:PORT/``), which the harness reads from a log
  file, never a pipe, so a chatty server can never block on a full pipe. nginx cannot listen
  on port 0, so the harness binds port 0 itself, closes the socket and hands that port to
  nginx; if another process takes it in between, nginx fails with EADDRINUSE and the harness
  retries with a new port, a bounded number of times.
- Stopping sends SIGTERM to the group, waits a bounded grace, then SIGKILLs whatever is left.
  ``ServerSet`` is a context manager that does this for every server it started, also on
  Ctrl-C and on errors.
- Before any measurement, ``verify_file`` fetches each file once and requires a 200, the
  right Content-Length, and the right bytes: a misconfigured peer answering 404 quickly would
  otherwise look like the fastest server in the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Self, final

from bench._load_proc import (
    CLOCK_TICKS,
    CpuTimes,
    cpu_times,
    group_cpu_seconds,
    group_involuntary_switches,
    group_pids,
    ksoftirqd_pid,
    pid_cpu_seconds,
)
from bench._load_wrk import WrkResult, run_wrk, wrk_command

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

__all__ = [
    "URL_RE",
    "DocFile",
    "Measurement",
    "RunningServer",
    "ServerSet",
    "ServerStartError",
    "VerificationError",
    "free_port",
    "make_docroot",
    "measure",
    "nginx_binary",
    "nginx_version",
    "render_template",
    "taskset_prefix",
    "verify_file",
    "zerocopy_argv",
]

URL_RE: Final = re.compile(r"http://127\.0\.0\.1:(?P<port>[0-9]+)/")
"""How every announcing server says where it listens."""

START_TIMEOUT_S: Final = 30.0
"""Python servers import a lot on a busy machine; none needs more than a few seconds here."""

STOP_GRACE_S: Final = 10.0
"""zerocopy's own --shutdown-grace default is 10 s; with no requests in flight it stops at once."""

_POLL_S: Final = 0.05


class ServerStartError(RuntimeError):
    """A server exited or did not become ready; ``log_tail`` has the end of its output."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(f"{message}\n{log_tail}".rstrip())
        self.log_tail = log_tail


class VerificationError(RuntimeError):
    """A server answered, but not with the file it was asked for."""


def taskset_prefix(cpu: int | None) -> list[str]:
    """``["taskset", "-c", CPU]``, or nothing when not pinning."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


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


@final
@dataclass(frozen=True, slots=True)
class DocFile:
    """One file of the document root, by its size label (``4KiB``)."""

    label: str
    size: int
    sha256: str

    @property
    def path(self) -> str:
        """The URL path: ``/4KiB.bin``."""
        return f"/{self.label}.bin"


def make_docroot(root: Path, sizes: Mapping[str, int]) -> dict[str, DocFile]:
    """Write one random file per size into ``root``, readable by nginx's unprivileged worker.

    The files are read back once, so every measurement starts with a hot page cache.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    files = {}
    for label, size in sizes.items():
        path = root / f"{label}.bin"
        digest = hashlib.sha256()
        with path.open("wb") as out:
            remaining = size
            while remaining:
                chunk = os.urandom(min(remaining, 1 << 20))
                out.write(chunk)
                digest.update(chunk)
                remaining -= len(chunk)
        path.chmod(0o644)
        with path.open("rb") as warm:
            while warm.read(1 << 20):
                pass
        files[label] = DocFile(label=label, size=size, sha256=digest.hexdigest())
    return files


def verify_file(port: int, doc: DocFile, *, timeout_s: float = 30.0) -> str:
    """GET ``doc`` once and check status, Content-Length and bytes.

    Returns:
        A short description for the run log, e.g. ``"200, HTTP/1.1, Content-Length 4096"``.

    Raises:
        VerificationError: on any mismatch or connection failure.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", doc.path)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise VerificationError(f"GET {doc.path} failed: {exc!r}") from exc
    finally:
        conn.close()
    length = response.getheader("Content-Length")
    problems = []
    if response.status != 200:
        problems.append(f"status {response.status} {response.reason}")
    if length != str(doc.size):
        problems.append(f"Content-Length {length!r}, expected {doc.size}")
    if hashlib.sha256(body).hexdigest() != doc.sha256:
        problems.append(f"body of {len(body)} bytes differs from the file")
    if problems:
        raise VerificationError(f"GET {doc.path}: " + "; ".join(problems))
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(response.version, str(response.version))
    return f"{response.status}, {version}, Content-Length {length}"


@final
@dataclass(slots=True)
class RunningServer:
    """A started server: its pid (= process group id), port and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    extra_logs: tuple[Path, ...] = ()
    stopped: bool = field(default=False)

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self, lines: int = 20) -> str:
        return _tail((self.log, *self.extra_logs), lines)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the group, wait up to ``grace_s``, then SIGKILL what is left. Idempotent."""
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
    with contextlib.suppress(ProcessLookupError):
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


@final
class ServerSet:
    """Starts servers and guarantees they are all stopped when the ``with`` block ends."""

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

        Raises:
            ServerStartError: if it exits or is not ready in time (it is stopped first).
        """
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*taskset_prefix(self.cpu), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=self.workdir,
                start_new_session=True,
            )
        server = RunningServer(
            name=name, proc=proc, port=port or 0, log=log, extra_logs=tuple(extra_logs)
        )
        self.servers.append(server)
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                server.stop()
                raise ServerStartError(
                    f"{name} exited with status {proc.returncode} before it was ready",
                    server.log_tail(),
                )
            if server.port == 0:
                match = URL_RE.search(log.read_text(errors="replace"))
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


def _pidfile_matches(pidfile: Path | None, pid: int) -> bool:
    if pidfile is None:
        return True
    try:
        return pidfile.read_text().strip() == str(pid)
    except OSError:
        return False


def nginx_binary() -> str | None:
    """nginx from PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def nginx_version(binary: str) -> str:
    """``nginx/1.22.1`` (nginx prints its version on stderr)."""
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


def zerocopy_argv(root: Path, strategy: str) -> list[str]:
    """The server as the benchmark sees it: ``python -m zerocopy serve DIR --port 0``."""
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
    ]


@final
@dataclass(frozen=True, slots=True)
class Measurement:
    """One wrk run against one server, with what the server's CPU did meanwhile."""

    wrk: WrkResult
    server_cpu_s: float
    involuntary_switches: int
    """How often the server's threads were preempted during the run."""
    pinned_cpu: CpuTimes | None = None
    """The server CPU's counters over the run, when the server is pinned."""
    ksoftirqd_s: float = 0.0
    """CPU time of the pinned CPU's ksoftirqd thread over the run: softirq work (loopback TCP)
    that the kernel deferred to it instead of running it on the way out of a syscall."""

    @property
    def cpu_per_req_us(self) -> float:
        return self.server_cpu_s / self.wrk.requests * 1e6 if self.wrk.requests else math.nan

    @property
    def cpu_irq_per_req_us(self) -> float:
        """Server CPU plus the pinned CPU's irq and softirq time (including its ksoftirqd
        thread), per request: the fuller cost, since loopback TCP processing in softirq is
        charged to no process, or to ksoftirqd (pinned runs only)."""
        if self.pinned_cpu is None or not self.wrk.requests:
            return math.nan
        irq_s = self.pinned_cpu.irq_ticks / CLOCK_TICKS + self.ksoftirqd_s
        return (self.server_cpu_s + irq_s) / self.wrk.requests * 1e6

    def _pct(self, ticks: float) -> float:
        if self.pinned_cpu is None or self.pinned_cpu.total_ticks <= 0:
            return math.nan
        return 100.0 * ticks / self.pinned_cpu.total_ticks

    @property
    def pinned_cpu_other_pct(self) -> float:
        """Share of the run's wall time that the server's CPU gave to other processes or to
        the hypervisor (steal): what the server competed with. High means a disturbed run."""
        if self.pinned_cpu is None:
            return math.nan
        mine_s = self.server_cpu_s + self.ksoftirqd_s
        other = self.pinned_cpu.task_ticks - mine_s * CLOCK_TICKS
        return self._pct(max(0.0, other) + self.pinned_cpu.steal_ticks)

    @property
    def pinned_cpu_irq_pct(self) -> float:
        """Share of the run that the server's CPU spent in interrupts and softirqs (ksoftirqd
        included): mostly the loopback TCP processing of the benchmark's own traffic."""
        if self.pinned_cpu is None:
            return math.nan
        return self._pct(self.pinned_cpu.irq_ticks + self.ksoftirqd_s * CLOCK_TICKS)

    @property
    def pinned_cpu_steal_pct(self) -> float:
        return self._pct(self.pinned_cpu.steal_ticks if self.pinned_cpu else math.nan)


def measure(
    server: RunningServer,
    doc: DocFile,
    *,
    connections: int,
    duration_s: int,
    threads: int,
    wrk_timeout_s: int,
    wrk_cpu: int | None,
    server_cpu: int | None,
) -> Measurement:
    """One wrk run against ``server`` for ``doc``, bracketed by the group's CPU time.

    Raises:
        WrkError: wrk failed.
        ServerStartError: the server died during the run.
    """
    argv = wrk_command(
        server.url(doc.path),
        connections=connections,
        duration_s=duration_s,
        threads=threads,
        timeout_s=wrk_timeout_s,
        cpu=wrk_cpu,
    )
    softirqd = ksoftirqd_pid(server_cpu) if server_cpu is not None else None
    switches = group_involuntary_switches(server.pgid)
    core = cpu_times(server_cpu) if server_cpu is not None else None
    softirqd_before = pid_cpu_seconds(softirqd) if softirqd is not None else 0.0
    before = group_cpu_seconds(server.pgid)
    # wrk stops itself after the duration; the bound only guards against a hung wrk.
    result = run_wrk(argv, timeout_s=duration_s + wrk_timeout_s + 30)
    after = group_cpu_seconds(server.pgid)
    softirqd_s = (pid_cpu_seconds(softirqd) - softirqd_before) if softirqd is not None else 0.0
    core_delta = cpu_times(server_cpu) - core if server_cpu is not None and core else None
    switches = group_involuntary_switches(server.pgid) - switches
    if server.proc.poll() is not None:
        raise ServerStartError(
            f"{server.name} exited with status {server.proc.returncode} during a run",
            server.log_tail(),
        )
    return Measurement(result, after - before, switches, core_delta, softirqd_s)
