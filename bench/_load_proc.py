"""Server CPU time from ``/proc``: utime + stime, summed over a process group.

Theory of operation: ``/proc/PID/stat`` fields 14 and 15 (``proc(5)``) are the user and system
CPU time of the whole thread group, in clock ticks (``SC_CLK_TCK``, 100 per second here), and
they include threads that have already exited. A server whose work is spread over processes
(nginx's master and worker) is started in a session of its own, so its process group id equals
the pid of the process the harness started, and the group's CPU time is the sum over every
``/proc/PID/stat`` whose field 5 (``pgrp``) is that id. Differences taken around a run of
several seconds have a resolution of one tick (10 ms) per process.

The second field, ``comm``, is in parentheses and may itself contain spaces and parentheses,
so the parser splits at the *last* ``)``.

On a shared machine the server's CPU is not the server's alone. Two more readings tell whether
a run was disturbed: the ``cpuN`` line of ``/proc/stat`` (busy time of the pinned CPU, of which
whatever the server was not charged went to other processes, interrupts or the hypervisor's
``steal``), and ``nonvoluntary_ctxt_switches`` in ``/proc/PID/task/TID/status`` (how often the
server was preempted), summed over the group's threads.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

__all__ = [
    "CLOCK_TICKS",
    "CpuTimes",
    "ProcStat",
    "cpu_times",
    "group_cpu_seconds",
    "group_involuntary_switches",
    "group_pids",
    "ksoftirqd_pid",
    "parse_cpu_times",
    "parse_proc_stat",
    "parse_status_switches",
    "pid_cpu_seconds",
]

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PROC: Final = Path("/proc")


@final
@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` that the harness uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    utime_ticks: int
    stime_ticks: int

    def cpu_seconds(self, ticks_per_second: int = CLOCK_TICKS) -> float:
        return (self.utime_ticks + self.stime_ticks) / ticks_per_second


def parse_proc_stat(text: str) -> ProcStat:
    """Parse the one line of ``/proc/PID/stat``.

    Raises:
        ValueError: if the line is truncated or not a stat line.
    """
    head, sep, tail = text.rpartition(")")
    pid_text, open_paren, comm = head.partition(" (")
    fields = tail.split()
    if not sep or not open_paren or len(fields) < 13:
        raise ValueError(f"not a /proc/PID/stat line: {text[:200]!r}")
    # `fields[0]` is field 3 (state) of proc(5), so field N is `fields[N - 3]`.
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        utime_ticks=int(fields[11]),
        stime_ticks=int(fields[12]),
    )


def _read_stats(proc: Path) -> list[ProcStat]:
    stats = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats.append(parse_proc_stat((entry / "stat").read_text()))
        except (OSError, ValueError):
            continue  # The process exited between listing and reading.
    return stats


def group_pids(pgid: int, proc: Path = _PROC) -> list[int]:
    """The live pids in process group ``pgid`` (zombies included until reaped)."""
    return sorted(stat.pid for stat in _read_stats(proc) if stat.pgrp == pgid)


def ksoftirqd_pid(cpu: int, proc: Path = _PROC) -> int | None:
    """The pid of the kernel thread ``ksoftirqd/CPU``, or None if there is none."""
    for stat in _read_stats(proc):
        if stat.comm == f"ksoftirqd/{cpu}":
            return stat.pid
    return None


def pid_cpu_seconds(pid: int, proc: Path = _PROC) -> float:
    """utime + stime of one process, in seconds; 0.0 if it is gone."""
    try:
        return parse_proc_stat((proc / str(pid) / "stat").read_text()).cpu_seconds()
    except (OSError, ValueError):
        return 0.0


def group_cpu_seconds(pgid: int, proc: Path = _PROC) -> float:
    """utime + stime, in seconds, of every process in process group ``pgid``."""
    return sum(stat.cpu_seconds() for stat in _read_stats(proc) if stat.pgrp == pgid)


def group_involuntary_switches(pgid: int, proc: Path = _PROC) -> int:
    """``nonvoluntary_ctxt_switches`` summed over every thread of process group ``pgid``."""
    total = 0
    for pid in group_pids(pgid, proc):
        with contextlib.suppress(OSError):
            for task in (proc / str(pid) / "task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    total += parse_status_switches((task / "status").read_text())[1]
    return total


def parse_status_switches(text: str) -> tuple[int, int]:
    """``(voluntary, nonvoluntary)`` context switches from a ``/proc/.../status`` text.

    Raises:
        ValueError: if either line is missing.
    """
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in {"voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"}:
            found[name] = int(value)
    try:
        return found["voluntary_ctxt_switches"], found["nonvoluntary_ctxt_switches"]
    except KeyError:
        raise ValueError("no context switch counts in this status text") from None


@final
@dataclass(frozen=True, slots=True)
class CpuTimes:
    """One CPU's line of ``/proc/stat``, in clock ticks, in four buckets."""

    task_ticks: int
    """user + nice + system: processes, the server among them (guest time is inside user)."""
    irq_ticks: int
    """irq + softirq: with IRQ time accounting, loopback TCP processing lands here, not in
    the stime of the process that sent the data."""
    steal_ticks: int
    """Time the hypervisor gave this virtual CPU to someone else."""
    idle_ticks: int
    """idle + iowait."""

    @property
    def total_ticks(self) -> int:
        return self.task_ticks + self.irq_ticks + self.steal_ticks + self.idle_ticks

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(
            task_ticks=self.task_ticks - other.task_ticks,
            irq_ticks=self.irq_ticks - other.irq_ticks,
            steal_ticks=self.steal_ticks - other.steal_ticks,
            idle_ticks=self.idle_ticks - other.idle_ticks,
        )


def parse_cpu_times(text: str, cpu: int) -> CpuTimes:
    """The ``cpuN`` line of a ``/proc/stat`` text (missing trailing columns count as 0).

    Raises:
        ValueError: if there is no such CPU.
    """
    label = f"cpu{cpu}"
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == label:
            user, nice, system, idle, iowait, irq, softirq, steal = (
                int(value) for value in [*fields[1:9], *["0"] * 8][:8]
            )
            return CpuTimes(
                task_ticks=user + nice + system,
                irq_ticks=irq + softirq,
                steal_ticks=steal,
                idle_ticks=idle + iowait,
            )
    raise ValueError(f"no {label} line in /proc/stat")


def cpu_times(cpu: int, proc: Path = _PROC) -> CpuTimes:
    """The current ``cpuN`` counters."""
    return parse_cpu_times((proc / "stat").read_text(), cpu)
