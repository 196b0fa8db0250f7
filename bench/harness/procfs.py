"""What /proc says about a process group and a CPU: CPU time, context switches, memory, load.

Theory of operation (``proc(5)``):

- ``/proc/PID/stat`` fields 14 and 15 are the user and system CPU time of the whole thread
  group, in clock ticks (``SC_CLK_TCK``, USER_HZ, 100 per second on Linux), and they include
  threads that have already exited. Good for the user/sys split over windows of a second or
  more, too coarse for one request: differences have a resolution of one tick (10 ms) per
  process.
- ``/proc/PID/task/TID/schedstat`` reports each thread's time on the CPU in nanoseconds, user
  and sys together; summed over the threads it is the precise figure the suite's per-request
  CPU benchmarks use. Threads that exited during a window are lost from that sum (the zerocopy
  server keeps its threads, so nothing is lost in practice).
- Context switches are per thread, in ``/proc/PID/task/TID/status``
  (``voluntary_ctxt_switches``: the thread blocked, e.g. in epoll_wait;
  ``nonvoluntary_ctxt_switches``: it was preempted), and are summed the same way.
- Every reader sums over a *process group*, so that a server is measured whole, workers and
  threads included: each server is started in a session of its own
  (:mod:`bench.harness.servers`), so its process group id is the pid
  the harness started, and a server that forks workers (nginx's master and worker) is measured
  whole: the group is every ``/proc/PID/stat`` whose field 5 (``pgrp``) is that id.
- The second field of ``stat``, ``comm``, is in parentheses and may itself contain spaces and
  parentheses, so the parser splits at the *last* ``)``.
- On a shared machine the server's CPU is not the server's alone. The ``cpuN`` line of
  ``/proc/stat`` gives the busy time of the pinned CPU, of which whatever the server was not
  charged went to other processes, to interrupts (``irq``, ``softirq``: loopback TCP
  processing, charged to no process, or to ``ksoftirqd/N`` when the kernel defers it) or to
  the hypervisor (``steal``).

The parsers are pure functions of the file text, and every reader takes the /proc directory
as an argument, so all of it is tested on a fake /proc without a live process.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CLOCK_TICKS",
    "CpuTimes",
    "ProcSample",
    "ProcStat",
    "cpu_model",
    "cpu_times",
    "group_peak_rss_kib",
    "group_pids",
    "ksoftirqd_pid",
    "loadavg",
    "parse_cpu_times",
    "parse_proc_stat",
    "parse_schedstat",
    "parse_status_switches",
    "rss_kib",
    "sample",
    "sample_group",
]

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PROC: Final = Path("/proc")


# -- one process ---------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` that the benchmarks use."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    utime_ticks: int
    stime_ticks: int


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


def parse_schedstat(text: str) -> int:
    """Nanoseconds on the CPU, the first field of ``/proc/PID/task/TID/schedstat``."""
    return int(text.split()[0])


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


def rss_kib(pid: int, proc: Path = _PROC, *, field: str = "VmRSS") -> int:
    """The resident set size of ``pid`` in KiB (``VmRSS`` in ``/proc/PID/status``), or with
    ``field="VmHWM"`` its peak since the process started (the "high water mark").

    Raises:
        OSError: the process is gone.
        ValueError: the status has no such line (a kernel thread, a zombie).
    """
    for line in (proc / str(pid) / "status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"no {field} for pid {pid}")


def group_peak_rss_kib(pgid: int, proc: Path = _PROC) -> int:
    """The largest peak RSS (``VmHWM``) of any process of group ``pgid``, in KiB: the serving
    process's, whether it is the group leader (zerocopy) or a worker (nginx); 0 if none."""
    peaks = [0]
    for pid in group_pids(pgid, proc):
        with contextlib.suppress(OSError, ValueError):
            peaks.append(rss_kib(pid, proc, field="VmHWM"))
    return max(peaks)


def _read(path: Path) -> str | None:
    """The text of a /proc file, or None if its process exited in the meantime."""
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None


# -- process groups ------------------------------------------------------------------------


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
    """The live pids in process group ``pgid`` (zombies included until reaped), sorted."""
    return sorted(stat.pid for stat in _read_stats(proc) if stat.pgrp == pgid)


def ksoftirqd_pid(cpu: int, proc: Path = _PROC) -> int | None:
    """The pid of the kernel thread ``ksoftirqd/CPU``, or None if there is none."""
    for stat in _read_stats(proc):
        if stat.comm == f"ksoftirqd/{cpu}":
            return stat.pid
    return None


@final
@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU and scheduling counters of a set of processes at one instant, or a difference.

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
    def ticks_s(self) -> float:
        """User plus sys CPU seconds from ``stat`` (clock ticks; exited threads included)."""
        return self.utime_s + self.stime_s

    @property
    def cpu_s(self) -> float:
        """User plus sys CPU seconds, at the best resolution available (schedstat, else
        ticks)."""
        if self.runtime_s is not None:
            return self.runtime_s
        return self.ticks_s


def sample(pids: Iterable[int], proc: Path = _PROC) -> ProcSample:
    """Sum the counters of ``pids`` and all their threads, now.

    A pid that is gone counts as zero; a thread without schedstat makes ``runtime_s`` None.
    """
    utime = stime = runtime = voluntary = involuntary = 0
    have_schedstat = True
    for pid in pids:
        stat = _read(proc / str(pid) / "stat")
        if stat is None:
            continue
        parsed = parse_proc_stat(stat)
        utime += parsed.utime_ticks
        stime += parsed.stime_ticks
        try:
            tasks = list((proc / str(pid) / "task").iterdir())
        except FileNotFoundError:
            continue
        for task in tasks:
            status = _read(task / "status")
            if status is not None:
                with contextlib.suppress(ValueError):
                    vol, invol = parse_status_switches(status)
                    voluntary += vol
                    involuntary += invol
            sched = _read(task / "schedstat")
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


def sample_group(pgid: int, proc: Path = _PROC) -> ProcSample:
    """:func:`sample` over every process of process group ``pgid``, as it is now."""
    return sample(group_pids(pgid, proc), proc)


# -- the machine ---------------------------------------------------------------------------


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


def cpu_model(proc: Path = _PROC) -> str:
    """The ``model name`` of ``/proc/cpuinfo``, else ``platform.processor()``, else unknown."""
    with contextlib.suppress(OSError):
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def loadavg(proc: Path = _PROC) -> list[str]:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` prints them; [] if unreadable."""
    with contextlib.suppress(OSError):
        return (proc / "loadavg").read_text().split()[:3]
    return []
