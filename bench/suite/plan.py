"""What a benchmark run measures: the cases (file sizes, page-cache state) and the profile.

Benchmark names are unique and the same in every strategy's file, so that
``pyperf compare_to readwrite.json sendfile.json splice.json auto.json`` lines them up:
``latency_<case>`` is seconds per request to the last byte, and ``cpu_<case>`` is server CPU
seconds per request. A case label is its size (``4KiB``, ``64MiB``) and, for the cold-cache
case, ``_cold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from bench.harness.sizes import KiB, MiB, format_size

__all__ = ["FULL", "QUICK", "Case", "Profile"]


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
        pyspy_seconds: Length of the py-spy profile of ``auto`` at 4 KiB (0: none).
        bpftrace: Trace with bpftrace too (when root and available); each window costs about
            a second of bpftrace start-up and exit.
        nginx: Measure nginx (``sendfile on`` and ``off``) in the CPU phase too, alternated
            with the strategies (when nginx is installed).
        tls_cases: Cases (among ``cpu_cases``) the CPU phase also measures over TLS, with the
            default strategy, in the same rotation.
        handshake_repetitions: Windows of full TLS handshakes (0: none).
        handshake_seconds: Length of each.
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
    pyspy_seconds: float
    bpftrace: bool
    nginx: bool
    tls_cases: tuple[Case, ...]
    handshake_repetitions: int
    handshake_seconds: int

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
    pyspy_seconds=4.0,
    bpftrace=True,
    nginx=True,
    tls_cases=(Case(4 * KiB), Case(1 * MiB), Case(256 * MiB)),
    handshake_repetitions=3,
    handshake_seconds=3,
)

QUICK: Final = Profile(
    name="quick",
    latency_cases=(Case(4 * KiB), Case(64 * KiB), Case(1 * MiB)),
    cpu_cases=(Case(4 * KiB), Case(64 * KiB), Case(1 * MiB)),
    count_cases=(Case(4 * KiB), Case(1 * MiB)),
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
    pyspy_seconds=1.0,
    bpftrace=True,
    nginx=True,
    tls_cases=(Case(4 * KiB), Case(1 * MiB)),
    handshake_repetitions=1,
    handshake_seconds=1,
)
