"""Running wrk against a server, parsing what it prints, and what the server's CPU did meanwhile.

Theory of operation: wrk (Debian's 4.1) is a *closed-loop* load generator. Each of its
connections sends the next request only when the previous response has arrived, so while the
server stalls, the requests that an open-loop client would have sent are never sent and never
timed. This is "coordinated omission": wrk's latency percentiles understate the tail as soon as
the server saturates, and they must always be quoted with that caveat. Throughput (requests per
second at a fixed number of connections) is what wrk measures well.

wrk prints human units with two decimals (``src/units.c``): times in ``us``, ``ms``, ``s``, ``m``,
``h``; byte counts in binary multiples (``K``, ``M``, ``G``... of 1024) followed by ``B``. The
``--latency`` flag adds a "Latency Distribution" block with the 50/75/90/99th percentiles.
Requests that take longer than ``--timeout`` (2 s by default) are counted as timeouts and left
out of the latency statistics altogether.

A workload is one URL, or (:class:`Workload` with a Lua script from ``bench/data/wrk/``) a
path the script picks for every request.

Around each run :func:`measure` reads, from :mod:`bench.harness.procfs`, the server's process group
(utime + stime, involuntary context switches) and, when the server is pinned, its CPU's
``/proc/stat`` line and that CPU's ``ksoftirqd`` thread: on loopback the kernel processes both
ends of TCP in softirq on the sending CPU, time that is charged to no process (or to
ksoftirqd), so "server CPU" alone leaves out part of what serving costs.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from bench.harness.procfs import (
    CLOCK_TICKS,
    CpuTimes,
    cpu_times,
    ksoftirqd_pid,
    sample,
    sample_group,
)
from bench.harness.schema import SocketErrors, WorkloadInfo, WrkFigures
from bench.harness.servers import ServerStartError, taskset_prefix
from bench.harness.stats import finite_or_none

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from bench.harness.files import DocFile
    from bench.harness.servers import RunningServer

__all__ = [
    "Measurement",
    "Workload",
    "WrkError",
    "WrkResult",
    "WrkSettings",
    "measure",
    "parse_wrk",
    "parse_wrk_time_ms",
    "run_wrk",
    "wrk_command",
    "wrk_version",
]

_TIME_UNITS_MS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_BINARY_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}

_NUMBER = r"(-?nan|-?inf|[0-9]+(?:\.[0-9]+)?)"
_TIME = _NUMBER + r"(us|ms|s|m|h)"
_PERCENTILE_RE: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)%\s+" + _TIME + r"\s*$")
_LATENCY_RE: Final = re.compile(r"^\s*Latency\s+" + _TIME + r"\s+" + _TIME + r"\s+" + _TIME)
_SUMMARY_RE: Final = re.compile(
    r"^\s*([0-9]+) requests in " + _TIME + r", " + _NUMBER + r"([KMGTP]?)B read"
)
_RPS_RE: Final = re.compile(r"^Requests/sec:\s+" + _NUMBER)
_SOCKET_ERRORS_RE: Final = re.compile(
    r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)"
)
_NON_2XX_RE: Final = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)")


_NO_ERRORS: Final = SocketErrors(0, 0, 0, 0)


class WrkError(RuntimeError):
    """wrk failed to run, or printed something that is not a wrk report."""


def parse_wrk_time_ms(number: str, unit: str) -> float:
    """Convert one of wrk's time strings, split into number and unit, to milliseconds.

    Args:
        number: the digits, e.g. ``"245.53"`` (``"nan"`` when wrk had no samples).
        unit: ``us``, ``ms``, ``s``, ``m`` or ``h``.

    Returns:
        Milliseconds; NaN when wrk printed nan.

    Raises:
        WrkError: on an unknown unit.
    """
    try:
        scale = _TIME_UNITS_MS[unit]
    except KeyError:
        raise WrkError(f"unknown wrk time unit {unit!r}") from None
    return float(number) * scale


@final
@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run, in SI units (milliseconds, seconds, bytes)."""

    requests: int
    duration_s: float
    bytes_read: int
    """Approximate: wrk prints it rounded to two decimals of a binary unit."""
    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    percentiles_ms: Mapping[float, float] = field(default_factory=dict)
    """Percentile (50.0, 75.0, 90.0, 99.0) to milliseconds, from ``--latency``."""
    socket_errors: SocketErrors = _NO_ERRORS
    non_2xx_3xx: int = 0

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms.get(50.0, math.nan)

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms.get(99.0, math.nan)

    @property
    def errors(self) -> int:
        """Socket errors plus non-2xx/3xx responses: non-zero means the run is suspect."""
        return self.socket_errors.total + self.non_2xx_3xx


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's standard output (with or without ``--latency``).

    Args:
        text: everything wrk printed on stdout.

    Returns:
        The parsed result. Percentiles are empty when ``--latency`` was not given.

    Raises:
        WrkError: if the summary lines ("N requests in ...", "Requests/sec") are missing.
    """
    requests: int | None = None
    duration_s = math.nan
    bytes_read = 0
    rps: float | None = None
    avg_ms = max_ms = math.nan
    percentiles: dict[float, float] = {}
    errors = _NO_ERRORS
    non_2xx = 0
    in_distribution = False
    for line in text.splitlines():
        if line.strip() == "Latency Distribution":
            in_distribution = True
            continue
        if in_distribution:
            if match := _PERCENTILE_RE.match(line):
                percentiles[float(match[1])] = parse_wrk_time_ms(match[2], match[3])
                continue
            in_distribution = False
        if match := _LATENCY_RE.match(line):
            avg_ms = parse_wrk_time_ms(match[1], match[2])
            max_ms = parse_wrk_time_ms(match[5], match[6])
        elif match := _SUMMARY_RE.match(line):
            requests = int(match[1])
            duration_s = parse_wrk_time_ms(match[2], match[3]) / 1e3
            bytes_read = round(float(match[4]) * _BINARY_UNITS[match[5]])
        elif match := _RPS_RE.match(line):
            rps = float(match[1])
        elif match := _SOCKET_ERRORS_RE.search(line):
            errors = SocketErrors(*(int(group) for group in match.groups()))
        elif match := _NON_2XX_RE.search(line):
            non_2xx = int(match[1])
    if requests is None or rps is None:
        raise WrkError(f"not a wrk report (no summary lines): {text[:500]!r}")
    return WrkResult(
        requests=requests,
        duration_s=duration_s,
        bytes_read=bytes_read,
        rps=rps,
        latency_avg_ms=avg_ms,
        latency_max_ms=max_ms,
        percentiles_ms=percentiles,
        socket_errors=errors,
        non_2xx_3xx=non_2xx,
    )


def wrk_command(
    url: str,
    *,
    connections: int,
    duration_s: int,
    threads: int = 1,
    timeout_s: int = 2,
    cpu: int | None = None,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    wrk: str = "wrk",
) -> list[str]:
    """The argv for one wrk run, pinned to ``cpu`` with taskset when given.

    wrk takes whole seconds for ``-d`` and refuses fewer connections than threads, so the
    thread count is capped at the connection count. A Lua ``script`` gets ``script_args``
    after ``--`` (its ``init(args)``).
    """
    if duration_s < 1:
        raise ValueError("wrk durations are whole seconds, at least 1")
    argv = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={timeout_s}s",
        "--latency",
        *(["-s", str(script)] if script is not None else []),
        url,
        *(["--", *script_args] if script is not None and script_args else []),
    ]
    return [*taskset_prefix(cpu), *argv]


def run_wrk(argv: Sequence[str], *, timeout_s: float) -> WrkResult:
    """Run wrk to completion and parse its report.

    Args:
        argv: from ``wrk_command``.
        timeout_s: a hard bound on the whole run (duration plus slack); past it, wrk is killed.

    Returns:
        The parsed report.

    Raises:
        WrkError: if wrk exits non-zero, times out, or prints no report.

    Resource handling:
        wrk runs in its own session, so a Ctrl-C reaching this process does not interleave
        with wrk's output; the ``finally`` kills wrk's process group if it is still running.
    """
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise WrkError(f"wrk did not finish within {timeout_s:g} s: {' '.join(argv)}") from None
        finally:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {stderr.strip() or stdout.strip()}")
    return parse_wrk(stdout)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wrk_version(wrk: str = "wrk") -> str | None:
    """wrk's version line (``wrk debian/4.1.0-3 [epoll] ...``), or None if wrk is missing."""
    path = shutil.which(wrk)
    if path is None:
        return None
    # `wrk -v` prints the version and the usage, and exits 1.
    out = subprocess.run(
        [path, "-v"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    first = out.splitlines()[0] if out else ""
    return first.split(" Copyright")[0].strip() or None


@final
@dataclass(frozen=True, slots=True)
class WrkSettings:
    """What every wrk run of one benchmark shares.

    Attributes:
        threads: wrk's ``-t`` (capped at the connection count).
        timeout_s: wrk's ``--timeout``.
        wrk_cpu: the CPU wrk is pinned to, or None.
        server_cpu: the CPU the servers are pinned to, or None (then no per-CPU readings).
    """

    threads: int
    timeout_s: int
    wrk_cpu: int | None
    server_cpu: int | None


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

    def figures(self) -> WrkFigures:
        """The figures every row of ``load.json`` and ``peers.json`` carries (NaN: ``None``)."""
        wrk = self.wrk
        return WrkFigures(
            rps=wrk.rps,
            p50_ms=finite_or_none(wrk.p50_ms),
            p75_ms=finite_or_none(wrk.percentiles_ms.get(75.0, math.nan)),
            p90_ms=finite_or_none(wrk.percentiles_ms.get(90.0, math.nan)),
            p99_ms=finite_or_none(wrk.p99_ms),
            latency_avg_ms=finite_or_none(wrk.latency_avg_ms),
            latency_max_ms=finite_or_none(wrk.latency_max_ms),
            duration_s=finite_or_none(wrk.duration_s),
            bytes_read=wrk.bytes_read,
            requests=wrk.requests,
            socket_errors=wrk.socket_errors,
            non_2xx_3xx=wrk.non_2xx_3xx,
            errors=wrk.errors,
            server_cpu_s=self.server_cpu_s,
            server_cpu_per_req_us=finite_or_none(self.cpu_per_req_us),
            server_cpu_irq_per_req_us=finite_or_none(self.cpu_irq_per_req_us),
            server_involuntary_switches=self.involuntary_switches,
            pinned_cpu_other_pct=finite_or_none(self.pinned_cpu_other_pct),
            pinned_cpu_steal_pct=finite_or_none(self.pinned_cpu_steal_pct),
            pinned_cpu_irq_pct=finite_or_none(self.pinned_cpu_irq_pct),
        )

    def describe(self) -> str:
        """One line for the progress display."""
        cpu = self.cpu_per_req_us
        warn = f" ERRORS {self.wrk.errors}" if self.wrk.errors else ""
        return (
            f"{self.wrk.rps:,.0f} req/s, p50 {self.wrk.p50_ms:.2f} ms, "
            f"p99 {self.wrk.p99_ms:.2f} ms, {cpu if math.isfinite(cpu) else 0.0:.1f} µs CPU/req"
            f"{warn}"
        )


@final
@dataclass(frozen=True, slots=True)
class Workload:
    """What wrk requests: ``path`` every time, or, with a Lua ``script``, whatever path the
    script picks per request (``path`` is then the URL wrk is given)."""

    info: WorkloadInfo
    path: str
    script: Path | None = None
    script_args: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.info.label

    @classmethod
    def of_file(cls, doc: DocFile) -> Workload:
        """GETs of one file, labelled as the file is (``4KiB``)."""
        info = WorkloadInfo(doc.label, 1, doc.size, doc.size, f"GET of one {doc.label} file")
        return cls(info, doc.path)


def measure(
    server: RunningServer,
    workload: Workload,
    *,
    connections: int,
    duration_s: int,
    settings: WrkSettings,
) -> Measurement:
    """One wrk run against ``server`` for ``workload``, bracketed by the group's /proc counters.

    Raises:
        WrkError: wrk failed.
        ServerStartError: the server died during the run.
    """
    argv = wrk_command(
        server.url(workload.path),
        connections=connections,
        duration_s=duration_s,
        threads=settings.threads,
        timeout_s=settings.timeout_s,
        cpu=settings.wrk_cpu,
        script=workload.script,
        script_args=workload.script_args,
    )
    cpu = settings.server_cpu
    softirqd = ksoftirqd_pid(cpu) if cpu is not None else None
    softirqd_pids = [] if softirqd is None else [softirqd]
    core = cpu_times(cpu) if cpu is not None else None
    softirqd_before = sample(softirqd_pids)
    before = sample_group(server.pgid)
    # wrk stops itself after the duration; the bound only guards against a hung wrk.
    result = run_wrk(argv, timeout_s=duration_s + settings.timeout_s + 30)
    used = sample_group(server.pgid) - before
    softirqd_s = (sample(softirqd_pids) - softirqd_before).ticks_s
    core_delta = cpu_times(cpu) - core if cpu is not None and core is not None else None
    if server.proc.poll() is not None:
        raise ServerStartError(
            f"{server.name} exited with status {server.proc.returncode} during a run",
            server.log_tail(),
        )
    return Measurement(result, used.ticks_s, used.involuntary, core_delta, softirqd_s)
