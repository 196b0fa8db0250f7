"""What a benchmark run measures: the cases (file sizes, page-cache state) and the profile.

Benchmark names are unique and the same in every strategy's file (STYLE §14), so that
``pyperf compare_to readwrite.json sendfile.json splice.json`` lines them up:
``latency_<case>`` is seconds per request to the last byte, and ``cpu_<case>`` is server CPU
seconds per request. A case label is its size (``4KiB``, ``64MiB``) and, for the cold-cache
case, ``_cold``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "FULL",
    "QUICK",
    "STRATEGIES",
    "Case",
    "Profile",
    "format_size",
    "parse_size",
]

# The order the report and the charts use; measurements rotate through it.
STRATEGIES: Final = ("readwrite", "sendfile", "splice")
KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB


_SIZE_RE: Final = re.compile(r"^\s*([0-9]+)\s*(|B|K|KB|KiB|M|MB|MiB|G|GB|GiB)\s*$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "b": 1, "k": KiB, "m": MiB, "g": GiB}


def format_size(size: int) -> str:
    """``4096`` → ``"4KiB"``, ``1000`` → ``"1000B"``: exact multiples of 1024 get a unit."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def parse_size(text: str) -> int:
    """``"64KiB"``, ``"64k"``, ``"1MiB"``, ``"4096"`` → bytes; the inverse of :func:`format_size`.

    Binary multiples throughout (``4KB`` is 4096 bytes too), as on wrk's command line.

    Raises:
        ValueError: Not a size, or zero.
    """
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (examples: 4KiB, 1MiB, 65536)")
    size = int(match[1]) * _SIZE_UNITS[match[2][:1].lower()]
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size


@final
@dataclass(frozen=True, slots=True)
class Case:
    """One file to request.

    Attributes:
        size: File size in bytes.
        cold: Evict the file from the page cache before each request.
    """

    size: int
    cold: bool = False

    @property
    def label(self) -> str:
        """``4KiB``, ``64MiB_cold``."""
        return format_size(self.size) + ("_cold" if self.cold else "")

    @property
    def filename(self) -> str:
        """The file's name in the data directory. Cold cases get a file of their own, so that
        evicting it never touches the hot case's pages."""
        return f"{self.label}.bin"

    @property
    def latency_name(self) -> str:
        return f"latency_{self.label}"

    @property
    def cpu_name(self) -> str:
        return f"cpu_{self.label}"


@final
@dataclass(frozen=True, slots=True)
class Profile:
    """How much to measure.

    Attributes:
        name: ``full`` or ``quick``.
        latency_cases: Cases timed by pyperf workers.
        cpu_cases: Cases whose server CPU is measured (with the counters alongside).
        count_cases: Cases traced by strace and bpftrace.
        rounds: Latency rounds; each round runs every strategy once, in rotated order.
        processes: pyperf worker processes per benchmark per round.
        values: pyperf values per worker.
        warmups: pyperf warmup values per worker.
        value_time: Target seconds per pyperf value (sets ``inner_loops``).
        cpu_repetitions: CPU-phase repetitions; each runs every strategy once.
        cpu_window: Least seconds per CPU-phase window.
        cpu_min_requests: Least requests per CPU-phase window.
        count_requests_bytes: Bytes to request per traced window (at least 2 requests).
        perf: Record ``perf`` profiles.
        bpftrace: Trace with bpftrace too (when root and available).
        bpftrace_windows: Trace at most this many windows with bpftrace (0: all); each costs
            a second or two of bpftrace start-up and exit.
    """

    name: str
    latency_cases: tuple[Case, ...]
    cpu_cases: tuple[Case, ...]
    count_cases: tuple[Case, ...]
    rounds: int
    processes: int
    values: int
    warmups: int
    value_time: float
    cpu_repetitions: int
    cpu_window: float
    cpu_min_requests: int
    count_requests_bytes: int
    perf: bool
    bpftrace: bool
    bpftrace_windows: int = 0

    @property
    def cases(self) -> tuple[Case, ...]:
        """Every case, once, in size order (the files to create)."""
        seen = {*self.latency_cases, *self.cpu_cases, *self.count_cases}
        return tuple(sorted(seen, key=lambda case: (case.size, case.cold)))


_HOT = (Case(4 * KiB), Case(64 * KiB), Case(1 * MiB), Case(64 * MiB))

FULL: Final = Profile(
    name="full",
    latency_cases=(*_HOT, Case(64 * MiB, cold=True)),
    cpu_cases=(*_HOT, Case(64 * MiB, cold=True), Case(256 * MiB)),
    count_cases=(*_HOT, Case(256 * MiB)),
    rounds=5,
    processes=2,
    values=3,
    warmups=1,
    value_time=0.1,
    cpu_repetitions=5,
    cpu_window=0.4,
    cpu_min_requests=3,
    count_requests_bytes=64 * MiB,
    perf=True,
    bpftrace=True,
)

QUICK: Final = Profile(
    name="quick",
    latency_cases=(Case(4 * KiB), Case(64 * KiB), Case(1 * MiB)),
    cpu_cases=(Case(4 * KiB), Case(64 * KiB), Case(1 * MiB)),
    count_cases=(Case(64 * KiB),),
    rounds=2,
    processes=1,
    values=2,
    warmups=1,
    value_time=0.02,
    cpu_repetitions=2,
    cpu_window=0.1,
    cpu_min_requests=3,
    count_requests_bytes=8 * MiB,
    perf=False,
    bpftrace=True,
    bpftrace_windows=1,
)
