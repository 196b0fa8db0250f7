"""``perf record -e cpu-clock -g -p PID`` around a load, and what ``perf report`` says.

Three readings of one recording:

* the share of the server's CPU spent in the kernel's copy routines, ``_copy_to_iter``
  (kernel → user: read, preadv, recv) and ``_copy_from_iter`` (user → kernel: send,
  sendmsg), "children" percentages so that the memcpy they call counts with them;
* the share in each of the kernel paths that tell the strategies apart
  (:data:`bench.harness.names.PERF_PATHS`), also
  callees included: where splice and sendfile spend their CPU, for instance;
* the top entries by self time (shared object and symbol), for the report's profile section.

On this virtual machine ``cpu-clock`` samples taken while interrupts are disabled land where
they are enabled again, so ``_raw_spin_unlock_irqrestore`` and ``handle_softirqs`` carry
much self time that belongs to their callers; the callee-inclusive paths are the honest view.

The parsers are pure and tested on captured ``perf report --stdio`` text.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from bench.harness.names import PERF_PATHS
from bench.harness.schema import ProfileEntry
from bench.suite.tracers import attached

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "PATHS",
    "PerfProfile",
    "parse_children_report",
    "parse_self_report",
    "parse_shares",
    "perf_available",
    "record",
]

START_DELAY: Final = 0.3
STOP_TIMEOUT: Final = 30.0
REPORT_TIMEOUT: Final = 120.0
COPY_TO: Final = re.compile(r"^_copy_to_iter(?:_\w+)?$")
COPY_FROM: Final = re.compile(r"^_copy_from_iter(?:_\w+)?$")
_CHILDREN_ROW = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(\S+)")
_SELF_ROW = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)")
_SAMPLES = re.compile(r"^# Samples:\s+(\S+)")
PATHS: Final = tuple(PERF_PATHS)


@final
@dataclass(frozen=True, slots=True)
class PerfProfile:
    """What one recording says.

    Attributes:
        samples: perf's sample count line (``6K``), as printed.
        copy_to_iter: Percent of samples in ``_copy_to_iter*`` and below.
        copy_from_iter: Percent of samples in ``_copy_from_iter*`` and below.
        top: The first entries by self time.
        kernel: Percent of samples in the kernel (self time).
        python: Percent of samples in the Python interpreter (libpython, self time).
        paths: Percent of samples in each of :data:`PATHS`, callees included.
    """

    samples: str
    copy_to_iter: float
    copy_from_iter: float
    top: list[ProfileEntry] = field(default_factory=list)
    kernel: float = 0.0
    python: float = 0.0
    paths: dict[str, float] = field(default_factory=dict)


def parse_children_report(text: str) -> tuple[str, float, float, dict[str, float]]:
    """From ``perf report --children --sort symbol -g none``: samples, the copy shares, and
    the share of each of :data:`PATHS` (0 where absent)."""
    samples = ""
    to_iter = from_iter = 0.0
    paths = dict.fromkeys(PATHS, 0.0)
    for line in text.splitlines():
        if match := _SAMPLES.match(line):
            samples = match[1]
            continue
        match = _CHILDREN_ROW.match(line)
        if match is None:
            continue
        children, symbol = float(match[1]), match[4]
        if COPY_TO.match(symbol):
            to_iter += children
        elif COPY_FROM.match(symbol):
            from_iter += children
        elif symbol in paths:
            paths[symbol] = max(paths[symbol], children)
    return samples, to_iter, from_iter, paths


def parse_self_report(text: str, limit: int = 15) -> list[ProfileEntry]:
    """From ``perf report --no-children --sort dso,symbol -g none``: the top ``limit`` rows."""
    entries = []
    for line in text.splitlines():
        match = _SELF_ROW.match(line)
        if match is not None:
            entries.append(ProfileEntry(float(match[1]), match[2], match[4]))
            if len(entries) >= limit:
                break
    return entries


def parse_shares(text: str) -> tuple[float, float]:
    """From the same self-time report: percent of samples in the kernel, and in libpython.

    Everything else is other user-space code (libc, extension modules).
    """
    kernel = python = 0.0
    for line in text.splitlines():
        match = _SELF_ROW.match(line)
        if match is None:
            continue
        if match[3] == "k":
            kernel += float(match[1])
        elif "python" in match[2]:
            python += float(match[1])
    return kernel, python


def perf_available() -> bool:
    return shutil.which("perf") is not None


def _report(data: str, *options: str) -> str:
    completed = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "-g", "none", *options],
        capture_output=True,
        text=True,
        timeout=REPORT_TIMEOUT,
        check=False,
    )
    return completed.stdout


@contextlib.contextmanager
def record(pid: int) -> Iterator[list[PerfProfile]]:
    """Record ``pid`` for the block; the yielded list receives the profile afterwards.

    Raises:
        RuntimeError: perf exited at once (no permission, no such pid) or wrote nothing.
    """
    with tempfile.TemporaryDirectory(prefix="perf-") as tmp:
        data = f"{tmp}/perf.data"
        result: list[PerfProfile] = []
        with attached(
            ["perf", "record", "-q", "-e", "cpu-clock", "-g", "-p", str(pid), "-o", data],
            start_delay=START_DELAY,
            stop_timeout=STOP_TIMEOUT,
        ) as stderr:
            yield result
        children = _report(data, "--children", "--sort", "symbol")
        if not children.strip():
            said = b"".join(stderr).decode(errors="replace")
            raise RuntimeError(f"perf report printed nothing: {said}")
        samples, to_iter, from_iter, paths = parse_children_report(children)
        flat = _report(data, "--no-children", "--sort", "dso,symbol")
        kernel, python = parse_shares(flat)
        result.append(
            PerfProfile(samples, to_iter, from_iter, parse_self_report(flat), kernel, python, paths)
        )
