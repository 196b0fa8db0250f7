"""What both load scripts share: pinning, run metadata, signals, the time budget, JSON output."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import io
import json
import math
import os
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from bench._load_proc import CLOCK_TICKS
from bench._load_stats import format_size, parse_size

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Mapping, Sequence
    from types import FrameType

__all__ = [
    "COORDINATED_OMISSION_NOTE",
    "Budget",
    "Pinning",
    "add_common_arguments",
    "choose_pinning",
    "line_buffered_stdout",
    "machine_meta",
    "parse_int_list",
    "parse_size_list",
    "signals_raise_keyboard_interrupt",
    "write_json",
]

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"

COORDINATED_OMISSION_NOTE: Final = (
    "wrk is closed-loop: each connection waits for its response before sending the next "
    "request, so its latency percentiles suffer from coordinated omission and understate the "
    "tail once the server saturates; throughput is the robust number."
)


def line_buffered_stdout() -> None:
    """Notes on stdout and progress on stderr stay in order, also when piped (make, tee)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def parse_int_list(text: str) -> list[int]:
    """``"1,4,16"`` to ``[1, 4, 16]``; every value must be at least 1."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"need positive integers, comma-separated: {text!r}")
    return values


def parse_size_list(text: str) -> dict[str, int]:
    """``"4KiB,1MiB"`` to ``{"4KiB": 4096, "1MiB": 1048576}`` (labels normalised)."""
    sizes = {}
    for part in text.split(","):
        if part.strip():
            size = parse_size(part)
            sizes[format_size(size)] = size
    if not sizes:
        raise ValueError(f"no sizes in {text!r}")
    return sizes


def add_common_arguments(parser: argparse.ArgumentParser, *, output: str) -> None:
    """The flags shared by ``load.py`` and ``peers.py``."""
    parser.add_argument(
        "--duration", type=int, default=5, help="seconds per wrk run (whole seconds, wrk's -d)"
    )
    parser.add_argument(
        "--repetitions", type=int, default=3, help="repetitions of every cell; medians reported"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="seconds of unrecorded load per server and size before measuring (0: none)",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (wrk's -t)")
    parser.add_argument(
        "--wrk-timeout", type=int, default=2, help="wrk's --timeout in seconds (wrk default: 2)"
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin with taskset"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=3600.0,
        help="stop measuring after this many seconds and write what was measured",
    )
    parser.add_argument(
        "--progress",
        choices=["auto", "rich", "tqdm", "plain"],
        default="auto",
        help="progress display on stderr (rich or tqdm when installed)",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / output, help="where the JSON goes"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 s runs, one repetition, no warm-up, fewer cells (overrides the above)",
    )


@final
@dataclass(frozen=True, slots=True)
class Pinning:
    server_cpu: int | None
    wrk_cpu: int | None
    note: str


def choose_pinning(server_cpu: int, wrk_cpu: int, *, enabled: bool) -> Pinning:
    """Pin only when asked, taskset exists, and both CPUs are distinct and allowed to us."""
    if not enabled:
        return Pinning(None, None, "not pinned (--no-pin)")
    if shutil.which("taskset") is None:
        return Pinning(None, None, "not pinned: taskset is missing (util-linux)")
    allowed = os.sched_getaffinity(0)
    if server_cpu == wrk_cpu or not {server_cpu, wrk_cpu} <= allowed:
        return Pinning(
            None,
            None,
            f"not pinned: CPUs {server_cpu} and {wrk_cpu} are not two distinct CPUs of "
            f"{sorted(allowed)}",
        )
    return Pinning(server_cpu, wrk_cpu, f"server on CPU {server_cpu}, wrk on CPU {wrk_cpu}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _package_versions(names: Sequence[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_meta(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Machine, kernel, Python and package versions, and the load when the run started."""
    loadavg: list[str] = []
    with contextlib.suppress(OSError):
        loadavg = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "clock_ticks_per_s": CLOCK_TICKS,
        "loadavg_at_start": [float(value) for value in loadavg],
        "packages": _package_versions(["zerocopy", "trio", "httptools", *packages]),
    }


@final
class Budget:
    """A wall-clock bound on a whole run: loops ask ``exceeded()`` before every step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.hit = False

    def exceeded(self) -> bool:
        if time.monotonic() - self.started > self.seconds:
            self.hit = True
        return self.hit

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, delivered like Ctrl-C so that every ``finally`` runs."""


@contextlib.contextmanager
def signals_raise_keyboard_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt, as SIGINT does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _clean(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(dict(document)), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
