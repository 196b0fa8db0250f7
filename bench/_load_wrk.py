"""Running wrk, and parsing what it prints.

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

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "SocketErrors",
    "WrkError",
    "WrkResult",
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
class SocketErrors:
    """wrk's "Socket errors" line; all zero when wrk did not print it."""

    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0

    @property
    def total(self) -> int:
        return self.connect + self.read + self.write + self.timeout


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
    socket_errors: SocketErrors = SocketErrors()
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
    errors = SocketErrors()
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
    wrk: str = "wrk",
) -> list[str]:
    """The argv for one wrk run, pinned to ``cpu`` with taskset when given.

    wrk takes whole seconds for ``-d`` and refuses fewer connections than threads, so the
    thread count is capped at the connection count.
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
        url,
    ]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    return argv


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
