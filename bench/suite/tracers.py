"""Outside views of the server's syscalls: ``strace -f -c`` and bpftrace.

Both attach to a running server by pid, for a window the caller brackets with ``with``, and
both see the whole process (every thread), every syscall, by name. The server's own counters
see only its transfer path; the report puts the two side by side.

* ``strace -f -c -p PID`` counts every call, failed ones too ("calls" includes "errors"), so
  a transfer-path figure is compared with the server's returned + EAGAIN. It slows the server
  down a lot, which is why these windows are never timed. It is attached once it has said so
  ("Process N attached").
* bpftrace (root, tracefs mounted; kprobes are not available on this kernel) runs one probe,
  ``tracepoint:raw_syscalls:sys_exit`` filtered on the server's pid: it fires on the exit of
  every syscall, so one probe counts them all, by number, with their return values. (One
  probe per ``syscalls:sys_exit_*`` tracepoint would give names directly, but attaching those
  363 probes takes about 30 s here, against well under a second for this one.) Numbers become
  names through the kernel headers' syscall table (``asm/unistd_64.h``, Debian's
  linux-libc-dev). From the return values it also sums the bytes of the read-side syscalls
  (kernel → user copies) and of the write-side ones (user → kernel).

Attaching bpftrace, and knowing it is attached: neither of bpftrace's own signs proves that
the probes are live. ``Attaching N probes...`` is printed before it attaches them, and a BEGIN
probe fires before the other probes are attached (bpftrace's reference says so). A window
counted from either can lose its first syscalls, or all of them. So the script also holds two
*sentinel* probes on syscalls that only the harness makes (``getppid`` and ``getsid``, filtered
on the harness's pid). bpftrace delivers a probe's output only once it polls its buffers,
after every probe is attached; the harness calls ``getppid`` until the sentinel's ``ARMED``
line arrives, and the sentinel clears every count at that moment, so counting starts at a
known instant with the probes live. At the end of the window ``getsid`` makes the other
sentinel print the counts between ``COUNTS`` and ``DONE``, clear them, and end bpftrace (it
does not always heed a SIGINT promptly: about one window in a dozen waited here for the
SIGKILL, 30 s later). A window in which the
tracer still saw nothing is not a measurement of the server: the suite runs it again and
records the loss (:class:`bench.harness.schema.TracerLoss`).

The parsers are pure and tested on captured output.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench.harness.schema import BpfCounts, StraceCounts

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "ARM_SYSCALL",
    "COPY_IN_SYSCALLS",
    "COPY_OUT_SYSCALLS",
    "DUMP_SYSCALL",
    "ZERO_COPY_SYSCALLS",
    "attached",
    "bpf_counts",
    "bpftrace_available",
    "bpftrace_script",
    "ensure_tracefs",
    "interrupt",
    "parse_bpftrace_maps",
    "parse_strace_summary",
    "parse_syscall_table",
    "strace_available",
    "syscall_table",
    "trace_bpftrace",
    "trace_strace",
]

# Kernel syscall names whose return value is a byte count copied kernel → user.
COPY_IN_SYSCALLS: Final = ("read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg")
# ... and user → kernel.
COPY_OUT_SYSCALLS: Final = ("write", "writev", "pwrite64", "sendto", "sendmsg")
# Calls that move bytes without passing them through user memory.
ZERO_COPY_SYSCALLS: Final = ("sendfile", "splice")
TRACKED: Final = (*COPY_IN_SYSCALLS, *COPY_OUT_SYSCALLS, *ZERO_COPY_SYSCALLS)
"""Syscalls whose returned calls the report compares one by one with the server's counters."""

ARM_SYSCALL: Final = "getppid"
DUMP_SYSCALL: Final = "getsid"
EAGAIN_RET: Final = -11
ATTACH_TIMEOUT: Final = 30.0
DETACH_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 5.0
"""bpftrace ends itself after printing its counts; this bounds the wait for one that does not."""
ARM_POLL: Final = 0.05
TRACEFS: Final = "/sys/kernel/tracing"
_HEADER_DIRS: Final = ("/usr/include/{arch}-linux-gnu/asm", "/usr/include/asm")


# -- strace ------------------------------------------------------------------------------------

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


def strace_available() -> bool:
    return shutil.which("strace") is not None


# -- bpftrace ----------------------------------------------------------------------------------


def parse_syscall_table(text: str) -> dict[int, str]:
    """``{number: name}`` from a ``unistd_64.h`` (``#define __NR_sendfile 40``)."""
    table = {}
    for match in re.finditer(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", text, re.MULTILINE):
        table[int(match[2])] = match[1]
    return table


@functools.cache
def syscall_table() -> dict[int, str]:
    """This machine's syscall numbers and names; empty when no kernel header is installed
    (then the names are ``syscall_N``)."""
    arch = platform.machine()
    for directory in _HEADER_DIRS:
        path = Path(directory.format(arch=arch)) / "unistd_64.h"
        with contextlib.suppress(OSError):
            return parse_syscall_table(path.read_text())
    return {}


def bpftrace_script(server_pid: int, harness_pid: int) -> str:
    """The bpftrace program: every syscall of ``server_pid``, and the two sentinels."""
    maps = ("@calls", "@returned", "@bytes", "@eagain")
    clear = " ".join(f"clear({name});" for name in maps)
    prints = " ".join(f"print({name});" for name in maps)
    return (
        f"tracepoint:raw_syscalls:sys_exit /pid == {server_pid}/ {{\n"
        "  @calls[args->id] = count();\n"
        "  if (args->ret >= 0) { @returned[args->id] = count(); "
        "@bytes[args->id] = sum(args->ret); }\n"
        f"  if (args->ret == {EAGAIN_RET}) {{ @eagain[args->id] = count(); }}\n"
        "}\n"
        f"tracepoint:syscalls:sys_enter_{ARM_SYSCALL} /pid == {harness_pid}/ "
        f'{{ {clear} printf("ARMED\\n"); }}\n'
        f"tracepoint:syscalls:sys_enter_{DUMP_SYSCALL} /pid == {harness_pid}/ "
        f'{{ printf("COUNTS\\n"); {prints} {clear} printf("DONE\\n"); exit(); }}\n'
    )


_BPF_LINE = re.compile(r"^@(\w+)\[(\d+)\]:\s*(-?\d+)\s*$")


def parse_bpftrace_maps(text: str) -> dict[str, dict[int, int]]:
    """The maps printed between ``COUNTS`` and ``DONE``: ``{map: {syscall number: value}}``.

    Output before ``COUNTS`` (bpftrace's notes, ``ARMED``) is ignored; so is a map bpftrace
    prints again at exit after ``DONE``.
    """
    _, _, text = text.partition("COUNTS\n")
    text, _, _ = text.partition("DONE")
    maps: dict[str, dict[int, int]] = {"calls": {}, "returned": {}, "bytes": {}, "eagain": {}}
    for line in text.splitlines():
        match = _BPF_LINE.match(line.strip())
        if match and match[1] in maps:
            maps[match[1]][int(match[2])] = int(match[3])
    return maps


def bpf_counts(maps: Mapping[str, Mapping[int, int]], table: Mapping[int, str]) -> BpfCounts:
    """Name the syscalls of :func:`parse_bpftrace_maps`' output and sort out the bytes."""

    def named(values: Mapping[int, int]) -> dict[str, int]:
        return {table.get(number, f"syscall_{number}"): value for number, value in values.items()}

    returned = named(maps["returned"])
    byte_sums = named(maps["bytes"])
    return BpfCounts(
        calls=named(maps["calls"]),
        returned={name: count for name, count in returned.items() if name in TRACKED},
        eagain=named(maps["eagain"]),
        bytes_in={n: v for n, v in byte_sums.items() if n in COPY_IN_SYSCALLS},
        bytes_out={n: v for n, v in byte_sums.items() if n in COPY_OUT_SYSCALLS},
    )


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


# -- attaching ---------------------------------------------------------------------------------


class _Output:
    """What a tool prints on one pipe, read without blocking, kept whole."""

    def __init__(self, fd: int, what: str) -> None:
        self.fd = fd
        self.what = what
        self.text = b""
        self.closed = False

    def wait_for(self, marker: bytes, timeout: float) -> bool:
        """Read until ``marker`` has been printed; False if it has not after ``timeout``.

        Raises:
            RuntimeError: The tool exited first.
        """
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while marker not in self.text:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if not selector.select(remaining):
                    continue
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    self.closed = True
                    raise RuntimeError(f"{self.what} exited: {self.text[-500:]!r}")
                self.text += chunk
        return True


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
def attached(
    argv: Sequence[str], *, start_delay: float, stop_timeout: float
) -> Iterator[list[bytes]]:
    """Run a profiler that attaches to a process (``perf record``, ``py-spy record``) for the
    block, then stop it with :func:`interrupt`; the yielded list then holds its stderr.

    Raises:
        RuntimeError: It exited within ``start_delay`` seconds (no permission, no such pid).
    """
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    stderr: list[bytes] = []
    try:
        time.sleep(start_delay)
        if process.poll() is not None:
            _, said = process.communicate()
            raise RuntimeError(
                f"{Path(argv[0]).name} exited with status {process.returncode}: "
                f"{said.decode(errors='replace').strip()[-300:]}"
            )
        yield stderr
    finally:
        stderr.append(interrupt(process, stop_timeout)[1])


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
            stderr = _Output(process.stderr.fileno(), "strace")
            if not stderr.wait_for(b"attached", ATTACH_TIMEOUT):
                raise RuntimeError(f"strace did not attach in {ATTACH_TIMEOUT:g} s")
            yield result
        finally:
            interrupt(process)
        with open(out.name) as f:
            result.append(parse_strace_summary(f.read()))


@contextlib.contextmanager
def trace_bpftrace(pid: int) -> Iterator[list[BpfCounts]]:
    """Count every syscall of ``pid`` with bpftrace for the block, armed as the module
    docstring says; the yielded list receives the counts when the block ends.

    Raises:
        RuntimeError: bpftrace exited, or did not arm or print its counts in time. Nothing
            is appended then.

    Resource handling: bpftrace is interrupted (and killed if stuck) however the block ends.
    """
    process = subprocess.Popen(
        ["bpftrace", "-e", bpftrace_script(pid, os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    result: list[BpfCounts] = []
    try:
        assert process.stdout is not None
        output = _Output(process.stdout.fileno(), "bpftrace")
        if not output.wait_for(b"Attaching", ATTACH_TIMEOUT):
            raise RuntimeError(f"bpftrace printed nothing in {ATTACH_TIMEOUT:g} s")
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while True:
            os.getppid()  # the arming sentinel
            if output.wait_for(b"ARMED", ARM_POLL):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"bpftrace did not arm in {ATTACH_TIMEOUT:g} s")
        yield result
        os.getsid(0)  # the counting sentinel
        if not output.wait_for(b"DONE", DETACH_TIMEOUT):
            raise RuntimeError(f"bpftrace printed no counts in {DETACH_TIMEOUT:g} s")
    finally:
        interrupt(process, STOP_TIMEOUT)
    result.append(
        bpf_counts(parse_bpftrace_maps(output.text.decode(errors="replace")), syscall_table())
    )
