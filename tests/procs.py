"""Real ``zerocopy`` processes for tests: own session, bounded reads, and a leak check.

Each process starts in a session (and so a process group) of its own. Its stdout and stderr
are drained by threads into queues, so the child never blocks on a full pipe and every wait
for a line has a timeout. At teardown the ``procs`` fixture checks that the group is empty:
the supervisor has reaped every worker. A group that is not empty is killed and fails the
test.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import pytest

ZEROCOPY = [sys.executable, "-m", "zerocopy"]


def group_members(pgid: int) -> list[int]:
    """Processes (zombies included) whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry))
    return members


class Proc:
    """A process under test. Lines of output are kept, and can be waited for."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=env,
        )
        self.pid = self.popen.pid
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._queues: dict[str, queue.Queue[str | None]] = {
            "stdout": queue.Queue(),
            "stderr": queue.Queue(),
        }
        self._threads = [
            threading.Thread(target=self._drain, args=(name,), daemon=True)
            for name in ("stdout", "stderr")
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, name: str) -> None:
        stream = getattr(self.popen, name)
        for line in stream:
            getattr(self, name).append(line)
            self._queues[name].put(line)
        self._queues[name].put(None)

    def wait_for(
        self, pattern: str, *, stream: str = "stderr", timeout: float = 20
    ) -> re.Match[str]:
        """The next line of ``stream`` matching ``pattern`` (earlier lines are skipped)."""
        deadline = time.monotonic() + timeout
        source = self._queues[stream]
        while True:
            left = deadline - time.monotonic()
            try:
                line = source.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout} s; {stream} so far:\n"
                    + "".join(getattr(self, stream))
                ) from None
            if line is None:
                source.put(None)
                raise AssertionError(
                    f"{stream} ended without {pattern!r}:\n" + "".join(getattr(self, stream))
                )
            if match := re.search(pattern, line):
                return match

    def serving(self, timeout: float = 20) -> tuple[int, int | None]:
        """Wait for the start line; return (port, metrics port or None)."""
        match = self.wait_for(r"on http://127\.0\.0\.1:(\d+)/", stream="stdout", timeout=timeout)
        metrics = re.search(r"metrics on http://[^:]+:(\d+)/", match.string)
        return int(match.group(1)), int(metrics.group(1)) if metrics else None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        code = self.popen.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def children(self) -> list[int]:
        """The process's live children (workers), from /proc: those of every thread, since
        the thread that forked is the parent the kernel lists."""
        pids = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{self.pid}/task"):
                with (
                    contextlib.suppress(OSError),
                    open(f"/proc/{self.pid}/task/{task}/children") as file,
                ):
                    pids += [int(pid) for pid in file.read().split()]
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as file:
                    if file.read().rpartition(")")[2].split()[0] != "Z":
                        alive.append(pid)
            except OSError:
                pass
        return sorted(alive)

    def wait_children(
        self, count: int, timeout: float = 20, *, exclude: Collection[int] = ()
    ) -> list[int]:
        """Wait until ``count`` live children exist, none of them in ``exclude``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = self.children()
            if len(kids) == count and not set(kids) & set(exclude):
                return kids
            time.sleep(0.02)
        raise AssertionError(f"children {self.children()} (wanted {count}, not {exclude})")

    def teardown(self) -> list[str]:
        """Stop whatever is left; return what was wrong."""
        problems = []
        if self.popen.poll() is None:
            problems.append(f"{self.argv} still running at teardown")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (left := group_members(self.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            problems.append(f"process group {self.pid} not empty: {left}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()
        return problems


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    """Start ``zerocopy`` processes (``procs("serve", DIR, ...)``); all are checked at the end."""
    started: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None, argv: list[str] | None = None) -> Proc:
        proc = Proc(argv if argv is not None else [*ZEROCOPY, *args], env=env)
        started.append(proc)
        return proc

    yield start
    problems = [problem for proc in started for problem in proc.teardown()]
    assert not problems, problems


def get(port: int, path: str, *, timeout: float = 10) -> tuple[int, bytes]:
    """One request on a fresh connection, with ``Connection: close``."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keep_alive(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def server_pid_of(client: socket.socket, server_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server end of ``client``'s TCP connection (from /proc)."""
    local_port = client.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == local_port
            ):
                inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


def open_fds_under(pid: int, root: Path) -> list[str]:
    """Descriptors of ``pid`` that point under ``root``."""
    found = []
    real = str(root.resolve())
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target == real or target.startswith(real + "/"):
                found.append(target)
    return found
