"""What /proc says about a process: CPU time (user and sys), run time, context switches.

``/proc/PID/stat`` reports ``utime`` and ``stime`` for the whole thread group, in clock ticks
(USER_HZ, 100 per second on Linux): good for the user/sys split over windows of a second or
more, too coarse for one request. ``/proc/PID/task/TID/schedstat`` reports each thread's time
on the CPU in nanoseconds, user and sys together; summed over the threads it is the precise
figure the per-request CPU benchmarks use. Context switches are per thread in
``/proc/PID/task/TID/status`` and are summed the same way.

Every reader sums over the process group (DESIGN-NOTES, "Measuring honestly"), so a server
that forks workers is measured whole. Threads or processes that exited during a window are
lost from the sums; the zerocopy server keeps its threads, so nothing is lost in practice.
The parsers are pure functions of the file text, tested without a live process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CLOCK_TICKS",
    "ProcSample",
    "group_pids",
    "parse_schedstat",
    "parse_stat",
    "parse_status_switches",
    "sample",
]

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


@final
@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU and scheduling counters of a process group at one instant.

    Attributes:
        utime_s: User CPU seconds (clock-tick resolution).
        stime_s: System CPU seconds (clock-tick resolution).
        runtime_s: Time on the CPU, user and sys, from schedstat (nanosecond resolution);
            ``None`` where the kernel has no schedstat.
        voluntary: Voluntary context switches (the thread blocked, e.g. in epoll_wait).
        involuntary: Involuntary context switches (the thread was preempted).
    """

    utime_s: float
    stime_s: float
    runtime_s: float | None
    voluntary: int
    involuntary: int

    def __sub__(self, other: ProcSample) -> ProcSample:
        runtime = (
            None
            if self.runtime_s is None or other.runtime_s is None
            else self.runtime_s - other.runtime_s
        )
        return ProcSample(
            utime_s=self.utime_s - other.utime_s,
            stime_s=self.stime_s - other.stime_s,
            runtime_s=runtime,
            voluntary=self.voluntary - other.voluntary,
            involuntary=self.involuntary - other.involuntary,
        )

    @property
    def cpu_s(self) -> float:
        """User plus sys CPU seconds, at the best resolution available."""
        if self.runtime_s is not None:
            return self.runtime_s
        return self.utime_s + self.stime_s


def parse_stat(text: str) -> tuple[int, int, int]:
    """Return ``(pgrp, utime_ticks, stime_ticks)`` from the text of ``/proc/PID/stat``.

    The command name (field 2) may hold spaces and parentheses, so fields are counted from
    the last ``)``.
    """
    rest = text.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
    return int(rest[2]), int(rest[11]), int(rest[12])


def parse_schedstat(text: str) -> int:
    """Nanoseconds on the CPU, the first field of ``/proc/PID/task/TID/schedstat``."""
    return int(text.split()[0])


def parse_status_switches(text: str) -> tuple[int, int]:
    """Return ``(voluntary, involuntary)`` context switches from ``/proc/.../status``."""
    voluntary = involuntary = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "voluntary_ctxt_switches":
            voluntary = int(value)
        elif key == "nonvoluntary_ctxt_switches":
            involuntary = int(value)
    return voluntary, involuntary


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def group_pids(pgid: int) -> list[int]:
    """The live processes whose process group is ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        text = _read(f"/proc/{entry}/stat")
        if text is not None and parse_stat(text)[0] == pgid:
            pids.append(int(entry))
    return pids


def sample(pids: Iterable[int]) -> ProcSample:
    """Sum the counters of ``pids`` and all their threads, now."""
    utime = stime = runtime = voluntary = involuntary = 0
    have_schedstat = True
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat is None:
            continue
        _, user, system = parse_stat(stat)
        utime += user
        stime += system
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            status = _read(f"/proc/{pid}/task/{tid}/status")
            if status is not None:
                vol, invol = parse_status_switches(status)
                voluntary += vol
                involuntary += invol
            sched = _read(f"/proc/{pid}/task/{tid}/schedstat")
            if sched is None:
                have_schedstat = False
            else:
                runtime += parse_schedstat(sched)
    return ProcSample(
        utime_s=utime / CLOCK_TICKS,
        stime_s=stime / CLOCK_TICKS,
        runtime_s=runtime / 1e9 if have_schedstat else None,
        voluntary=voluntary,
        involuntary=involuntary,
    )
