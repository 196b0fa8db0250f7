"""Where sending from memory stops paying: the measurement behind ``zerocopy tune``.

Theory of operation. For a small file that the open-file cache holds in memory, ``auto`` sends
head and body in one ``send``: one syscall, and one copy of the body from user space into the
socket. ``sendfile`` sends the head with ``MSG_MORE``, probes the page cache and hands the
file's pages to TCP: two or three syscalls and no copy. The syscalls cost the same at every
size; the copy grows with the size. So below some size memory is cheaper, above it sendfile
is, and where that size lies depends on the CPU, the kernel and the Python build: lighttpd
hard-codes 16 KiB, and this project's default was measured once, on one machine.

The measurement:

- two real servers (``zerocopy serve``, one process each): **memory** is
  ``--strategy auto --auto-threshold <largest size>``, which sends every test file from memory;
  **sendfile** is ``--strategy sendfile``. The server CPU and the load get one CPU each where
  the process may use two;
- a closed-loop load at each size (wrk when it is installed, else the project's own keep-alive
  client, :func:`zerocopy.tune.client.run_load`) for one short window per candidate, size and
  round; within a round the two candidates take turns, and the order flips from one size and
  one round to the next (A B, B A, ...), so drift on a busy machine falls on both;
- the server's CPU time over each window (``/proc/PID/task/*/schedstat``, every thread, in
  nanoseconds) divided by the responses the load received: server CPU per request;
- per size, the median over rounds of the per-round ratio sendfile / memory: above 1, memory is
  cheaper. The crossover is where the ratio falls to 1, interpolated on a log scale between the
  last size where memory wins and the first where sendfile does (:func:`find_crossover`).

Everything that decides (the order, the statistics, the crossover) is pure and works on the
:class:`Server` and :class:`Load` protocols, so it is tested with fakes; the processes and the
load generators are at the bottom of this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, Self, final

import trio

from zerocopy.tune.client import run_load
from zerocopy.tune.sizes import format_size

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

__all__ = [
    "CANDIDATES",
    "ClientLoad",
    "Crossover",
    "Load",
    "Server",
    "ServerProcess",
    "SizeFigures",
    "Window",
    "WrkLoad",
    "find_crossover",
    "measure",
    "order",
    "process_cpu_seconds",
    "summarise",
]

MEMORY: Final = "memory"
SENDFILE: Final = "sendfile"
CANDIDATES: Final = (MEMORY, SENDFILE)
START_TIMEOUT: Final = 30.0
"""Seconds for a server to print its ready line (a busy machine imports slowly)."""
STOP_TIMEOUT: Final = 10.0


# -- what is measured, and what it means (pure) -------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Window:
    """One load window against one candidate at one size."""

    candidate: str
    size: int
    round: int
    requests: int
    cpu_s: float
    """Server CPU seconds over the window, every thread."""
    seconds: float
    """Wall-clock length of the window."""

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else math.nan

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan


@final
@dataclass(frozen=True, slots=True)
class SizeFigures:
    """One size: medians over rounds of server CPU per request, and of sendfile / memory."""

    size: int
    memory_us: float
    sendfile_us: float
    ratio: float
    """Median of the per-round ratios sendfile / memory: above 1, memory is cheaper."""
    rounds: int


@final
@dataclass(frozen=True, slots=True)
class Crossover:
    """The measured threshold.

    Attributes:
        threshold: The largest file to send from memory, in bytes (a multiple of 1 KiB).
        verdict: ``between`` (the crossover lies between two measured sizes), ``above`` (memory
            was cheaper at every size: the threshold is the largest size measured), or
            ``below`` (sendfile was no dearer even at the smallest size: 0, never from memory).
        notes: Anything a reader should know: a size where the order flipped back (noise).
    """

    threshold: int
    verdict: str
    notes: tuple[str, ...] = ()


def order(round_: int, size_index: int) -> tuple[str, str]:
    """The candidates' order in one (round, size) step: A B, then B A, alternating both ways."""
    return CANDIDATES if (round_ + size_index) % 2 == 0 else CANDIDATES[::-1]


def summarise(windows: Sequence[Window]) -> list[SizeFigures]:
    """Per size, in size order: medians over rounds, and the median per-round ratio.

    A round that lacks either candidate, or has a window without requests, gives no ratio.
    """
    by_size: dict[int, dict[int, dict[str, Window]]] = {}
    for window in windows:
        by_size.setdefault(window.size, {}).setdefault(window.round, {})[window.candidate] = window
    figures = []
    for size in sorted(by_size):
        rounds = by_size[size]
        ratios = []
        per_candidate: dict[str, list[float]] = {MEMORY: [], SENDFILE: []}
        for pair in rounds.values():
            for name, window in pair.items():
                if window.requests:
                    per_candidate[name].append(window.cpu_per_request_us)
            memory, sendfile = pair.get(MEMORY), pair.get(SENDFILE)
            if memory and sendfile and memory.requests and sendfile.requests and memory.cpu_s > 0:
                ratios.append(sendfile.cpu_per_request_us / memory.cpu_per_request_us)
        if not ratios:
            continue
        figures.append(
            SizeFigures(
                size=size,
                memory_us=statistics.median(per_candidate[MEMORY]),
                sendfile_us=statistics.median(per_candidate[SENDFILE]),
                ratio=statistics.median(ratios),
                rounds=len(ratios),
            )
        )
    return figures


def _round_down_kib(size: float) -> int:
    return int(size // 1024) * 1024


def find_crossover(figures: Sequence[SizeFigures]) -> Crossover:
    """Where sendfile becomes no dearer than memory, from :func:`summarise`'s figures.

    The first size whose ratio is at most 1 ends the range where memory wins. Between it and
    the size before, the crossover is interpolated linearly in ``log2(size)``, where the ratio
    falls to 1, and rounded down to a whole KiB. A later size at which memory wins again is
    noise (the machine was busier then), named in ``notes`` and otherwise ignored.

    Raises:
        ValueError: No figures.
    """
    if not figures:
        raise ValueError("nothing was measured")
    ordered = sorted(figures, key=lambda figure: figure.size)
    first = next((i for i, figure in enumerate(ordered) if figure.ratio <= 1.0), None)
    if first is None:
        largest = ordered[-1].size
        return Crossover(
            largest,
            "above",
            (
                f"memory was cheaper at every size measured; the threshold is the largest, "
                f"{format_size(largest)} (measure larger sizes with --sizes to find more)",
            ),
        )
    notes = tuple(
        f"memory was cheaper again at {format_size(figure.size)} ({figure.ratio:.2f}): noise; "
        "a longer --duration or a quieter machine gives a cleaner curve"
        for figure in ordered[first + 1 :]
        if figure.ratio > 1.0
    )
    if first == 0:
        return Crossover(0, "below", notes)
    low, high = ordered[first - 1], ordered[first]
    share = (low.ratio - 1.0) / (low.ratio - high.ratio)
    log_size = math.log2(low.size) + share * (math.log2(high.size) - math.log2(low.size))
    threshold = max(low.size, _round_down_kib(2**log_size))
    return Crossover(threshold, "between", notes)


class Server(Protocol):
    """A server under test: where it listens, and how much CPU it has used."""

    @property
    def port(self) -> int: ...

    def cpu_seconds(self) -> float: ...


class Load(Protocol):
    """A load generator: GETs of one path for about ``seconds``."""

    description: str

    def window(self, seconds: float) -> float:
        """The window it will really run for ``seconds`` asked (wrk runs whole seconds)."""
        ...

    def run(self, port: int, path: str, seconds: float) -> int:
        """Load ``http://127.0.0.1:port/path`` for ``seconds``; return responses completed."""
        ...


def measure(
    servers: Mapping[str, Server],
    load: Load,
    files: Mapping[int, str],
    *,
    rounds: int,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
    on_window: Callable[[Window], None] = lambda window: None,
) -> list[Window]:
    """Run every window: for each round, each size, both candidates in :func:`order`.

    Args:
        servers: The running servers, by candidate name (:data:`CANDIDATES`).
        load: What drives them.
        files: The path of each size's file.
        rounds: Rounds of every (size, candidate).
        seconds: Load per window.
        clock: Times each window (a fake clock in tests).
        on_window: Called after each window (progress).

    Returns:
        Every window, in the order measured.
    """
    windows = []
    for round_ in range(rounds):
        for index, (size, path) in enumerate(sorted(files.items())):
            for name in order(round_, index):
                server = servers[name]
                before, started = server.cpu_seconds(), clock()
                requests = load.run(server.port, path, seconds)
                window = Window(
                    candidate=name,
                    size=size,
                    round=round_,
                    requests=requests,
                    cpu_s=server.cpu_seconds() - before,
                    seconds=clock() - started,
                )
                windows.append(window)
                on_window(window)
    return windows


# -- processes and load generators --------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid``: the sum of ``/proc/PID/task/*/schedstat``
    (nanoseconds), or ``utime + stime`` of ``/proc/PID/stat`` (clock ticks) without schedstat.

    A thread that exits is lost from the schedstat sum; the server keeps its threads.
    """
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError),
                open(f"{task.path}/schedstat") as file,
            ):
                total += int(file.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_READY: Final = re.compile(r"on http://127\.0\.0\.1:(\d+)/")
_METRICS: Final = re.compile(r"metrics on (http://\S+/metrics)")


@final
class ServerProcess:
    """``zerocopy serve`` in a session of its own, pinned to ``cpu``; use as ``with``.

    Args:
        root: The directory to serve.
        flags: ``--strategy`` and whatever else the candidate needs.
        cpu: The CPU to pin it to (its threads inherit it), or ``None``.
        metrics: Add ``--metrics-port 0`` (needs prometheus-client).

    Raises:
        RuntimeError: On entry, if it exits or prints no ready line in time (its log says why).

    Resource handling: the whole process group is stopped when the block ends, SIGTERM then
    SIGKILL; its log is a temporary file, removed then.
    """

    def __init__(
        self, root: Path, flags: Sequence[str], *, cpu: int | None, metrics: bool = False
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "zerocopy",
            "serve",
            str(root),
            *("--bind", "127.0.0.1", "--port", "0", "--workers", "1", "--log-level", "warning"),
            *(("--metrics-port", "0") if metrics else ()),
            *flags,
        ]
        self._cpu = cpu
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_url: str | None = None

    def __enter__(self) -> Self:
        mine = os.sched_getaffinity(0)
        try:
            # The child inherits the affinity at fork: pin it without a race with its threads.
            if self._cpu is not None:
                os.sched_setaffinity(0, {self._cpu})
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
                start_new_session=True,
            )
        finally:
            os.sched_setaffinity(0, mine)
        try:
            line = self._ready_line()
        except BaseException:
            self.stop()
            raise
        match = _READY.search(line)
        assert match is not None
        self.port = int(match[1])
        metrics = _METRICS.search(line)
        self.metrics_url = metrics[1] if metrics else None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _ready_line(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        deadline = time.monotonic() + START_TIMEOUT
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    break
                pending += chunk
                for line in pending.decode(errors="replace").splitlines():
                    if _READY.search(line):
                        return line
        self._proc.poll()
        raise RuntimeError(
            f"`{' '.join(self.argv[1:])}` did not start (exit status {self._proc.returncode}): "
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 5) -> str:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def counter(self, name: str) -> float | None:
        """A counter from the metrics port (``None`` without one)."""
        if self.metrics_url is None:
            return None
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(match[1]) if match else 0.0

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left; idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self._log.close()


_WRK_REQUESTS: Final = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_WRK_ERRORS: Final = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")


@final
class WrkLoad:
    """wrk, one thread, ``connections`` keep-alive connections; whole-second windows."""

    def __init__(self, connections: int, wrk: str) -> None:
        self.connections = connections
        self.wrk = wrk
        version = subprocess.run(
            [wrk, "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        name = version.split(" Copyright")[0].strip() or "wrk"
        self.description = f"{name}, {connections} connections"

    def window(self, seconds: float) -> float:
        return float(max(1, round(seconds)))

    def run(self, port: int, path: str, seconds: float) -> int:
        duration = int(self.window(seconds))
        argv = [
            self.wrk,
            "-t1",
            f"-c{self.connections}",
            f"-d{duration}s",
            f"http://127.0.0.1:{port}/{path}",
        ]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 30, check=False
        )
        match = _WRK_REQUESTS.search(done.stdout)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        if errors := _WRK_ERRORS.search(done.stdout):
            raise RuntimeError(f"wrk saw errors: {errors[0]}")
        return int(match[1])


@final
class ClientLoad:
    """The project's keep-alive client (:func:`zerocopy.tune.client.run_load`), in this
    process, ``connections`` connections on one trio loop."""

    MIN_WINDOW: Final = 0.25

    def __init__(self, connections: int, why: str) -> None:
        self.connections = connections
        self.description = f"zerocopy's own keep-alive client ({why}), {connections} connections"

    def window(self, seconds: float) -> float:
        return max(self.MIN_WINDOW, seconds)

    def run(self, port: int, path: str, seconds: float) -> int:
        return trio.run(
            lambda: run_load(port, path, connections=self.connections, seconds=self.window(seconds))
        )


def find_wrk() -> str | None:
    """wrk's path, or ``None``."""
    return shutil.which("wrk")
