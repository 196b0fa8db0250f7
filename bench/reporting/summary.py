"""The suite's windows summarised per server and case: CPU, counters, whole-process syscalls.

Summaries are medians over the alternating repetitions, and per-request or per-payload-byte
figures summed over them. Pure functions of :class:`~bench.harness.schema.Measurements`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

from bench.harness.sizes import GiB

if TYPE_CHECKING:
    from collections.abc import Iterable

    from bench.harness.schema import CountWindow, CpuWindow

__all__ = ["CpuSummary", "WholeProcess", "summarise_cpu", "summarise_whole_process"]


@final
@dataclass(frozen=True, slots=True)
class CpuSummary:
    """The CPU phase for one server and case, over all repetitions.

    Attributes:
        server: A strategy, or an nginx configuration.
        cpu_per_request: Median over repetitions of server CPU seconds per request.
        user_share: utime / (utime + stime), from clock ticks summed over repetitions.
        requests: Requests over all repetitions.
        repetitions: Windows that went into the medians.
        voluntary: Voluntary context switches per request (all repetitions).
        involuntary: Involuntary context switches per request.
        counted: Whether the server counts its syscalls and copies (zerocopy does, nginx
            does not); the five fields below are zero when it does not.
        syscalls: Transfer-path syscalls that returned, per request, by name.
        eagain: EAGAIN failures per request, by name.
        copy_in: Bytes copied kernel → user per payload byte.
        copy_out: Bytes copied user → kernel per payload byte.
        zero_copy: Bytes moved by sendfile/splice per payload byte.
    """

    server: str
    case: str
    size: int
    cpu_per_request: float
    user_share: float
    requests: int
    repetitions: int
    voluntary: float
    involuntary: float
    counted: bool
    syscalls: dict[str, float] = field(default_factory=dict)
    eagain: dict[str, float] = field(default_factory=dict)
    copy_in: float = 0.0
    copy_out: float = 0.0
    zero_copy: float = 0.0

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_per_request * GiB / self.size

    @property
    def user_per_gib(self) -> float:
        return self.cpu_per_gib * self.user_share

    @property
    def sys_per_gib(self) -> float:
        return self.cpu_per_gib * (1.0 - self.user_share)

    @property
    def syscalls_per_request(self) -> float:
        return sum(self.syscalls.values())


def summarise_cpu(windows: Iterable[CpuWindow]) -> dict[tuple[str, str], CpuSummary]:
    """Summarise CPU-phase windows by (server, case). Windows with no requests are skipped."""
    groups: dict[tuple[str, str], list[CpuWindow]] = {}
    for window in windows:
        if window.requests > 0:
            groups.setdefault((window.server, window.case), []).append(window)
    result = {}
    for key, rows in groups.items():
        requests = sum(row.requests for row in rows)
        ticks_user = sum(row.utime_s for row in rows)
        ticks = ticks_user + sum(row.stime_s for row in rows)
        counters = [row.counters for row in rows if row.counters is not None]
        body = sum(c.body for c in counters)
        syscalls: dict[str, float] = {}
        eagain: dict[str, float] = {}
        for c in counters:
            for name, count in c.syscalls.items():
                syscalls[name] = syscalls.get(name, 0.0) + count / requests
            for name, count in c.eagain.items():
                eagain[name] = eagain.get(name, 0.0) + count / requests
        result[key] = CpuSummary(
            server=key[0],
            case=key[1],
            size=rows[0].size,
            cpu_per_request=statistics.median(row.cpu_s / row.requests for row in rows),
            user_share=ticks_user / ticks if ticks else 0.5,
            requests=requests,
            repetitions=len(rows),
            voluntary=sum(row.voluntary for row in rows) / requests,
            involuntary=sum(row.involuntary for row in rows) / requests,
            counted=bool(counters),
            syscalls=syscalls,
            eagain=eagain,
            copy_in=sum(c.copy_in for c in counters) / body if body else 0.0,
            copy_out=sum(c.copy_out for c in counters) / body if body else 0.0,
            zero_copy=sum(c.zero_copy for c in counters) / body if body else 0.0,
        )
    return result


@final
@dataclass(frozen=True, slots=True)
class WholeProcess:
    """Every syscall of the server's process per request, in one traced window.

    Attributes:
        source: ``bpftrace`` or ``strace`` (bpftrace when it ran: it does not slow the
            server down, and counts the same calls).
        per_request: All syscalls per request.
        by_name: Syscalls per request by name, most frequent first.
        transfer_path: The server's own counters' calls per request (returned + EAGAIN), for
            the comparison.
    """

    strategy: str
    case: str
    requests: int
    source: str
    per_request: float
    by_name: dict[str, float]
    transfer_path: float

    @property
    def mode_switches(self) -> float:
        """User/kernel mode switches per request: two per syscall (in and out)."""
        return 2 * self.per_request


def summarise_whole_process(windows: Iterable[CountWindow]) -> dict[tuple[str, str], WholeProcess]:
    """The whole-process view of each traced window, by (strategy, case)."""
    result = {}
    for window in windows:
        if window.bpftrace is not None:
            source, calls = "bpftrace", window.bpftrace.calls
        elif window.strace is not None:
            source, calls = "strace", window.strace.calls
        else:
            continue
        requests = max(1, window.requests)
        by_name = {
            name: count / requests
            for name, count in sorted(calls.items(), key=lambda item: (-item[1], item[0]))
        }
        result[window.strategy, window.case] = WholeProcess(
            strategy=window.strategy,
            case=window.case,
            requests=window.requests,
            source=source,
            per_request=sum(calls.values()) / requests,
            by_name=by_name,
            transfer_path=window.server.total / requests,
        )
    return result
