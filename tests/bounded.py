"""Reading from and stopping a subprocess, with a time limit on every wait.

A test that calls ``process.stdout.readline()`` on a server that never prints its banner hangs
the whole suite (until ``faulthandler_timeout`` dumps the stacks, and then still waits). These
helpers wait at most a given time, and when it runs out they kill the process, reap it, and
fail the test with what was read so far.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time

SECONDS = 20.0
"""The default limit: far beyond what a healthy start or stop takes here (well under 2 s)."""


def _kill(process: subprocess.Popen[str]) -> str:
    """Kill and reap ``process``, and its whole process group when it leads one (started with
    ``start_new_session=True``, as a supervisor with workers should be); return what was left
    on its stderr."""
    try:
        leads_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        leads_group = False
    if leads_group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    try:
        _, stderr = process.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # A child outside its group still holds the pipes.
        process.wait()  # Killed: this returns at once.
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        return "<unread: the pipe is held open by a child process>"
    return stderr or ""


def readline_within(process: subprocess.Popen[str], seconds: float = SECONDS) -> str:
    """The next line of the process's stdout (``""`` at end of file), within ``seconds``.

    Reads the pipe's descriptor a byte at a time, so that nothing past the line is taken from
    it and a later ``communicate()`` sees the rest.

    Raises:
        AssertionError: No full line in time; the process has been killed and reaped.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + seconds
    line = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                stderr = _kill(process)
                raise AssertionError(
                    f"no line from {process.args!r} within {seconds} s; "
                    f"read {bytes(line)!r}; stderr: {stderr!r}"
                )
            byte = os.read(fd, 1)
            if not byte:
                break
            line += byte
    return line.decode()


def stop_within(
    process: subprocess.Popen[str], signum: int = signal.SIGINT, seconds: float = SECONDS
) -> tuple[int, str]:
    """Send ``signum``, wait for the exit; return the exit code and the whole stderr.

    Raises:
        AssertionError: Still running after ``seconds``; it has been killed and reaped.
    """
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        stderr = _kill(process)
        raise AssertionError(
            f"{process.args!r} still running {seconds} s after signal {signum}; stderr: {stderr!r}"
        ) from None
    return process.returncode, stderr
