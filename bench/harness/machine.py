"""The machine a benchmark runs on: what it is (for every results file), and CPU pinning.

Pinning: on this project's 2-CPU machine every benchmark puts the server(s) on one CPU and
everything that drives or watches them (clients, wrk, tracers, the harness itself) on the
other, so that the client's work is never billed to the server and the two do not take turns
on one core. :func:`choose_pinning` is the one place that decides; with fewer than two CPUs
allowed to this process nothing is pinned, and the note says so.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Final

from bench.harness.procfs import CLOCK_TICKS, cpu_model, loadavg
from bench.harness.results import REPO_ROOT
from bench.harness.schema import Machine, Pinning, WorkerPlacement

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "TOOLS",
    "auto_workers",
    "choose_pinning",
    "git_commit",
    "loadavg_now",
    "machine_info",
    "package_versions",
    "pin_self",
    "place_workers",
    "tool_version",
]

TOOLS: Final = {
    "strace": ("strace", "-V"),
    "bpftrace": ("bpftrace", "--version"),
    "perf": ("perf", "--version"),
    "nginx": ("nginx", "-v"),
    "wrk": ("wrk", "-v"),
    "curl": ("curl", "--version"),
    "slowhttptest": ("slowhttptest", "-h"),
}
"""Each tool and how to ask for its version (the first line of its output)."""
_PACKAGES: Final = ("zerocopy", "trio", "httptools", "pyperf", "matplotlib", "prometheus-client")


def choose_pinning(server_cpu: int = 0, client_cpu: int = 1, *, enabled: bool = True) -> Pinning:
    """Pin only when asked, taskset exists, and both CPUs are distinct and allowed to us."""
    if not enabled:
        return Pinning(None, None, "not pinned (--no-pin)")
    if shutil.which("taskset") is None:
        return Pinning(None, None, "not pinned: taskset is missing (util-linux)")
    allowed = os.sched_getaffinity(0)
    if server_cpu == client_cpu or not {server_cpu, client_cpu} <= allowed:
        return Pinning(
            None,
            None,
            f"not pinned: CPUs {server_cpu} and {client_cpu} are not two distinct CPUs of "
            f"{sorted(allowed)}",
        )
    return Pinning(
        server_cpu,
        client_cpu,
        f"server on CPU {server_cpu}; clients, tools and the harness on CPU {client_cpu}",
    )


def auto_workers(allowed: int) -> list[int]:
    """The worker counts worth measuring on a machine with ``allowed`` CPUs: 1, and the CPUs
    left once wrk has one; where that is 1 again (2 CPUs), also 2, sharing the CPUs with wrk."""
    left = max(1, allowed - 1)
    counts = {1, left}
    if left == 1 and allowed >= 2:
        counts.add(allowed)
    return sorted(counts)


def place_workers(
    workers: int, pinning: Pinning, allowed: Sequence[int] | None = None
) -> WorkerPlacement:
    """Where a server with ``workers`` worker processes runs, given the run's pinning.

    One worker is pinned like every single-process server (the server CPU). More are never
    squeezed onto one CPU: they get every CPU but wrk's when there are enough, else every CPU,
    wrk's included, and the placement says that they share it.

    Args:
        workers: The worker count.
        pinning: The run's pinning (:func:`choose_pinning`).
        allowed: The CPUs this process may use (default: its affinity mask).
    """
    cpus = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
    if pinning.server_cpu is None or pinning.client_cpu is None:
        return WorkerPlacement(workers, None, False, f"{workers} worker(s), not pinned")
    if workers == 1:
        return WorkerPlacement(
            1, (pinning.server_cpu,), False, f"1 worker on CPU {pinning.server_cpu}"
        )
    others = [cpu for cpu in cpus if cpu != pinning.client_cpu]
    if workers <= len(others):
        return WorkerPlacement(
            workers,
            tuple(others),
            False,
            f"{workers} workers on CPUs {_cpu_list(others)}, wrk alone on CPU {pinning.client_cpu}",
        )
    return WorkerPlacement(
        workers,
        tuple(cpus),
        True,
        f"{workers} workers on CPUs {_cpu_list(cpus)}, shared with wrk (pinned to CPU "
        f"{pinning.client_cpu}): req/s is the machine's, CPU per request stays comparable",
    )


def _cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


def pin_self(cpu: int | None) -> None:
    """Pin this process (and the threads and children it starts from now on) to ``cpu``."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def tool_version(argv: Sequence[str]) -> str | None:
    """The first line a tool prints when asked for its version; ``None`` if it is missing."""
    path = shutil.which(argv[0]) or (
        f"/usr/sbin/{argv[0]}" if os.access(f"/usr/sbin/{argv[0]}", os.X_OK) else None
    )
    if path is None:
        return None
    try:
        completed = subprocess.run(
            [path, *argv[1:]], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else None


def git_commit() -> str | None:
    """``HEAD``'s short hash, ``+dirty`` when tracked files changed; ``None`` outside git."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(REPO_ROOT), *args]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=True
        ).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of Python distributions; ``None`` for those not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def loadavg_now() -> tuple[float, ...]:
    """The 1, 5 and 15 minute load averages; empty if unreadable."""
    return tuple(float(value) for value in loadavg())


def machine_info(packages: Sequence[str] = (), tools: Sequence[str] = ()) -> Machine:
    """What every results file says about where it was measured.

    Args:
        packages: Python distributions to record besides the project's own.
        tools: Keys of :data:`TOOLS` whose versions to record.
    """
    return Machine(
        date_utc=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
        machine=platform.machine(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        affinity=tuple(sorted(os.sched_getaffinity(0))),
        kernel=platform.release(),
        kernel_version=platform.version(),
        python=sys.version.split()[0],
        python_implementation=platform.python_implementation(),
        clock_ticks_per_s=CLOCK_TICKS,
        loadavg_start=loadavg_now(),
        git_commit=git_commit(),
        packages=package_versions([*_PACKAGES, *packages]),
        tools={tool: tool_version(TOOLS[tool]) for tool in tools},
    )
