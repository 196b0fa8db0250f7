"""Outside views of the server's syscalls: ``strace -c`` and bpftrace tracepoints.

Both attach to a running server by pid, for a window the caller brackets with ``with``:
the tracer is attached when the block starts, and detached, with its summary parsed, when it
ends. The two run side by side over the same window, so their counts and the server's own
(scraped before and after, outside the window) describe exactly the same requests.

* ``strace -f -c -p PID`` counts every call, failed ones too ("calls" includes "errors"), so
  it is compared with the server's returned + EAGAIN. It slows the server down a lot, which
  is why this window is never timed.
* bpftrace (root, tracefs mounted; kprobes are not available on this kernel) sums the return
  values of the read-side syscalls (bytes copied into user space) and of the write-side
  ones (bytes copied out of it), and counts sendfile and splice. ``sendfile`` is the
  ``sendfile64`` tracepoint on 64-bit kernels; it is reported as ``sendfile``.

The parsers are pure and tested on captured output.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "COPY_IN_SYSCALLS",
    "COPY_OUT_SYSCALLS",
    "ZERO_COPY_SYSCALLS",
    "BpfCounts",
    "StraceCounts",
    "bpftrace_available",
    "bpftrace_script",
    "ensure_tracefs",
    "interrupt",
    "parse_bpftrace_output",
    "parse_strace_summary",
    "strace_available",
    "trace_bpftrace",
    "trace_strace",
]

# Kernel syscall names whose return value is a byte count copied kernel → user.
COPY_IN_SYSCALLS: Final = ("read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg")
# ... and user → kernel.
COPY_OUT_SYSCALLS: Final = ("write", "writev", "sendto", "sendmsg")
# Calls that move bytes without passing them through user memory.
ZERO_COPY_SYSCALLS: Final = ("sendfile", "splice")
# Tracepoint names that differ from the name strace and the server use.
_TRACEPOINT_NAMES: Final = {"sendfile": "sendfile64"}
EAGAIN_RET: Final = -11
ATTACH_TIMEOUT: Final = 30.0
DETACH_TIMEOUT: Final = 30.0
TRACEFS: Final = "/sys/kernel/tracing"


@final
@dataclass(frozen=True, slots=True)
class StraceCounts:
    """``strace -c``'s table: calls (failed ones included) and errors, by syscall name."""

    calls: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@final
@dataclass(frozen=True, slots=True)
class BpfCounts:
    """What the bpftrace script counted for one pid.

    Attributes:
        returned: Calls that returned (``ret >= 0``), by syscall name.
        eagain: Calls that failed with EAGAIN.
        bytes_in: Sum of the return values of the copy-in syscalls, by name.
        bytes_out: Sum of the return values of the copy-out syscalls, by name.
    """

    returned: dict[str, int] = field(default_factory=dict)
    eagain: dict[str, int] = field(default_factory=dict)
    bytes_in: dict[str, int] = field(default_factory=dict)
    bytes_out: dict[str, int] = field(default_factory=dict)

    @property
    def copy_in(self) -> int:
        return sum(self.bytes_in.values())

    @property
    def copy_out(self) -> int:
        return sum(self.bytes_out.values())


_STRACE_ROW = re.compile(
    r"^\s*\d+\.\d+\s+\d+\.\d+\s+(?:\d+\s+)?(\d+)\s+(?:(\d+)\s+)?([a-z_0-9]+)\s*$"
)


def parse_strace_summary(text: str) -> StraceCounts:
    """Parse the table ``strace -c`` prints.

    The rows look like ``" 45.00 0.000450 11 40 3 sendfile"``: % time, seconds, usecs/call,
    calls, errors (blank when zero), name. The ``total`` row and any other line are skipped.
    """
    calls: dict[str, int] = {}
    errors: dict[str, int] = {}
    for line in text.splitlines():
        match = _STRACE_ROW.match(line)
        if match is None or match[3] == "total":
            continue
        calls[match[3]] = calls.get(match[3], 0) + int(match[1])
        if match[2]:
            errors[match[3]] = errors.get(match[3], 0) + int(match[2])
    return StraceCounts(calls, errors)


def bpftrace_script(pid: int) -> str:
    """A bpftrace program that counts and sums the tracked syscalls of process ``pid``."""
    lines = ['BEGIN { printf("READY\\n"); }']
    groups = (
        (COPY_IN_SYSCALLS, "@bytes_in"),
        (COPY_OUT_SYSCALLS, "@bytes_out"),
        (ZERO_COPY_SYSCALLS, None),
    )
    for names, byte_map in groups:
        for name in names:
            tracepoint = f"tracepoint:syscalls:sys_exit_{_TRACEPOINT_NAMES.get(name, name)}"
            body = f'@returned["{name}"] = count();'
            if byte_map:
                body += f' {byte_map}["{name}"] = sum(args->ret);'
            lines.append(f"{tracepoint} /pid == {pid} && args->ret >= 0/ {{ {body} }}")
            lines.append(
                f"{tracepoint} /pid == {pid} && args->ret == {EAGAIN_RET}/ "
                f'{{ @eagain["{name}"] = count(); }}'
            )
    return "\n".join(lines) + "\n"


_BPF_LINE = re.compile(r"^@(\w+)\[\"?([^\]\"]+)\"?\]:\s*(-?\d+)\s*$")


def parse_bpftrace_output(text: str) -> BpfCounts:
    """Parse the maps bpftrace prints at exit (``@returned[sendfile]: 12``)."""
    maps: dict[str, dict[str, int]] = {
        "returned": {},
        "eagain": {},
        "bytes_in": {},
        "bytes_out": {},
    }
    for line in text.splitlines():
        match = _BPF_LINE.match(line.strip())
        if match and match[1] in maps:
            maps[match[1]][match[2]] = int(match[3])
    return BpfCounts(maps["returned"], maps["eagain"], maps["bytes_in"], maps["bytes_out"])


def strace_available() -> bool:
    return shutil.which("strace") is not None


def ensure_tracefs() -> bool:
    """Mount tracefs if it is not mounted (root only); return whether it is there now."""
    if os.path.isdir(os.path.join(TRACEFS, "events", "syscalls")):
        return True
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    subprocess.run(
        ["mount", "-t", "tracefs", "nodev", TRACEFS],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return os.path.isdir(os.path.join(TRACEFS, "events", "syscalls"))


def bpftrace_available() -> bool:
    """bpftrace is installed, we are root, and the syscall tracepoints are reachable."""
    return shutil.which("bpftrace") is not None and os.geteuid() == 0 and ensure_tracefs()


def _wait_for(stream_fd: int, marker: bytes, timeout: float, what: str) -> bytes:
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream_fd, selectors.EVENT_READ)
        while marker not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{what} did not attach in {timeout:g} s: {seen[-500:]!r}")
            if not selector.select(remaining):
                continue
            chunk = os.read(stream_fd, 65536)
            if not chunk:
                raise RuntimeError(f"{what} exited before attaching: {seen[-500:]!r}")
            seen += chunk
    return seen


def interrupt(
    process: subprocess.Popen[bytes], timeout: float = DETACH_TIMEOUT
) -> tuple[bytes, bytes]:
    """Stop an attached tool: SIGINT (strace, bpftrace and perf write their summary on it),
    then collect its ``(stdout, stderr)``, empty where not piped; SIGKILL if it is stuck
    after ``timeout`` seconds. Never raises for a tool that already exited."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return stdout or b"", stderr or b""


@contextlib.contextmanager
def trace_strace(pid: int) -> Iterator[list[StraceCounts]]:
    """Attach ``strace -f -c`` to ``pid`` for the block; the yielded list receives the counts.

    Raises:
        RuntimeError: strace did not attach.
    """
    with tempfile.NamedTemporaryFile(prefix="strace-", suffix=".txt") as out:
        process = subprocess.Popen(
            ["strace", "-f", "-c", "-o", out.name, "-p", str(pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        result: list[StraceCounts] = []
        try:
            assert process.stderr is not None
            _wait_for(process.stderr.fileno(), b"attached", ATTACH_TIMEOUT, "strace")
            yield result
        finally:
            interrupt(process)
        with open(out.name) as f:
            result.append(parse_strace_summary(f.read()))


@contextlib.contextmanager
def trace_bpftrace(pid: int) -> Iterator[list[BpfCounts]]:
    """Run the bpftrace counting script on ``pid`` for the block; the list receives counts.

    Raises:
        RuntimeError: bpftrace did not start.
    """
    process = subprocess.Popen(
        ["bpftrace", "-e", bpftrace_script(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    result: list[BpfCounts] = []
    assert process.stdout is not None
    try:
        _wait_for(process.stdout.fileno(), b"READY", ATTACH_TIMEOUT, "bpftrace")
        yield result
    finally:
        output, _ = interrupt(process)
    result.append(parse_bpftrace_output(output.decode(errors="replace")))
