"""``py-spy record --nonblocking`` around a load: where the server's Python time goes.

perf sees the interpreter as one symbol (``_PyEval_EvalFrameDefault``): at 4 KiB, half of a
request's CPU is "Python", which says nothing about which Python. py-spy reads the
interpreter's frames from outside (``--nonblocking``: it never pauses the server) and, by
default, drops the samples of a thread that sits in a blocking call, so the profile covers the
time the server spends working, not the time it waits for the next request.

Two readings of one recording, both by self time (the innermost Python frame of a sample):

* the share of each component of the process (trio's scheduler and I/O, the HTTP layer, the
  server's connection loop, the transfer strategies, the file layer, everything else), from the
  file that holds the frame;
* the source lines with the most samples (a line that makes a syscall carries the syscall's
  time: ``sockio.py`` lines are the socket calls).

A sample whose innermost frame is a trio checkpoint (``cancel_shielded_checkpoint``, a
``wait_*``) is time in the scheduler's pass, billed to trio. C code (httptools, the syscalls)
has no Python frame of its own: its time lands on the Python line that called it.

The parser is pure and tested on captured ``--format raw`` text.
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

from bench.harness.schema import ProfileEntry
from bench.suite.tracers import attached

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["COMPONENTS", "PySpyProfile", "component_of", "parse_raw", "pyspy_binary", "record"]

RATE: Final = 997
"""Samples per second (a prime, so sampling does not lock onto a periodic loop)."""
START_DELAY: Final = 0.3
STOP_TIMEOUT: Final = 30.0
TOP: Final = 15
COMPONENTS: Final = (
    ("trio: scheduler and I/O waits", ("trio/",)),
    ("zerocopy/http: parse, plan, heads", ("zerocopy/http/",)),
    ("zerocopy/server: connection loop, sender, respond", ("zerocopy/server/",)),
    ("zerocopy/transfer: strategies, socket calls", ("zerocopy/transfer/",)),
    ("zerocopy/files: cache, open, metadata", ("zerocopy/files/",)),
)
"""Components by the path of the file that holds a frame; the first match wins."""
OTHER: Final = "other (the standard library, start-up frames)"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


@final
@dataclass(frozen=True, slots=True)
class PySpyProfile:
    """What one recording says.

    Attributes:
        samples: Samples of a working (not idle) thread.
        components: Percent of samples per component (:data:`COMPONENTS`, then :data:`OTHER`),
            by self time; they sum to 100 when there are samples.
        top: The source lines with the most self time (``dso`` is the file, shortened to the
            package path; ``symbol`` is ``function:line``).
    """

    samples: int
    components: dict[str, float]
    top: list[ProfileEntry]


def component_of(file: str) -> str:
    """The component of a frame's file (a path as py-spy prints it, possibly shortened)."""
    for name, markers in COMPONENTS:
        if any(marker in file for marker in markers):
            return name
    return OTHER


def _short(file: str) -> str:
    for marker in ("zerocopy/", "trio/", "httptools/"):
        at = file.rfind(marker)
        if at >= 0:
            return file[at:]
    return Path(file).name or file


def parse_raw(text: str, limit: int = TOP) -> PySpyProfile:
    """From ``py-spy record --format raw``: one line per distinct stack, frames joined by
    ``;`` outermost first, then a space and the sample count."""
    by_component: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[tuple[str, str]] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        innermost = stack.rsplit(";", 1)[-1]
        match = _FRAME.match(innermost)
        if match is None:
            function, file = innermost, ""
        else:
            file = match["file"]
            function = (
                f"{match['function']}:{match['line']}" if match["line"] else match["function"]
            )
        n = int(count)
        total += n
        by_component[component_of(file)] += n
        by_function[_short(file), function] += n
    if total == 0:
        return PySpyProfile(0, {}, [])
    order = [name for name, _ in COMPONENTS] + [OTHER]
    components = {name: 100 * by_component[name] / total for name in order}
    top = [
        ProfileEntry(100 * n / total, file, function)
        for (file, function), n in by_function.most_common(limit)
    ]
    return PySpyProfile(total, components, top)


def pyspy_binary() -> str | None:
    """py-spy beside this interpreter (the bench extra installs it), else on ``PATH``."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


@contextlib.contextmanager
def record(pid: int) -> Iterator[list[PySpyProfile]]:
    """Sample ``pid`` for the block; the yielded list receives the profile afterwards.

    Raises:
        RuntimeError: py-spy is missing, exited at once (no permission, no such pid) or
            recorded nothing.
    """
    binary = pyspy_binary()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="pyspy-") as tmp:
        raw = Path(tmp) / "profile.txt"
        result: list[PySpyProfile] = []
        with attached(
            [
                *(binary, "record", "--nonblocking", "--format", "raw", "--rate", str(RATE)),
                *("--output", str(raw), "--pid", str(pid)),
            ],
            start_delay=START_DELAY,
            stop_timeout=STOP_TIMEOUT,
        ) as stderr:
            yield result
        text = raw.read_text(errors="replace") if raw.exists() else ""
        profile = parse_raw(text)
        if profile.samples == 0:
            detail = b"".join(stderr).decode(errors="replace").strip()[-300:]
            raise RuntimeError(f"py-spy recorded no sample: {detail}")
        result.append(profile)
