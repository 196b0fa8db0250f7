"""The subprocess helpers give up in time, and leave no process behind when they do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bounded import readline_within, stop_within


def _python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_readline_returns_the_line_and_leaves_the_rest() -> None:
    process = _python("print('first'); print('second', flush=True)")
    assert readline_within(process) == "first\n"
    out, _ = process.communicate(timeout=20)
    assert out == "second\n"


def test_readline_at_end_of_file() -> None:
    process = _python("pass")
    assert readline_within(process) == ""
    process.communicate(timeout=20)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import time; time.sleep(60)", id="silent"),
        pytest.param(
            "import sys, time; sys.stdout.write('no newline'); sys.stdout.flush(); time.sleep(60)",
            id="half a line",
        ),
    ],
)
def test_readline_gives_up_kills_and_reaps(code: str) -> None:
    process = _python(code)
    start = time.monotonic()
    with pytest.raises(AssertionError, match="no line from"):
        readline_within(process, 0.5)
    assert time.monotonic() - start < 10
    assert process.returncode == -signal.SIGKILL


def test_stop_gives_up_on_a_process_that_ignores_the_signal() -> None:
    process = _python(
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN);"
        " print('ready', flush=True); time.sleep(60)"
    )
    assert readline_within(process) == "ready\n"
    start = time.monotonic()
    with pytest.raises(AssertionError, match="still running"):
        stop_within(process, signal.SIGINT, 0.5)
    assert time.monotonic() - start < 10
    assert process.returncode == -signal.SIGKILL


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # dead, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("own_group", [True, False])
def test_giving_up_kills_the_group_and_never_waits_on_a_held_pipe(
    tmp_path: Path, own_group: bool
) -> None:
    # A supervisor's worker inherits its stdout: killing the supervisor alone leaves the pipe
    # open. With its own process group, the worker is killed too; without, the helper still
    # returns in time (and the worker, left behind, is killed here).
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        " child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']);"
        f" open({str(pid_file)!r}, 'w').write(str(child.pid));"
        " time.sleep(60)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,
    )
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    try:
        start = time.monotonic()
        with pytest.raises(AssertionError, match="no line from"):
            readline_within(process, 0.5)
        assert time.monotonic() - start < 10
        assert process.returncode == -signal.SIGKILL
        if own_group:
            deadline = time.monotonic() + 10
            while not _gone(child):
                assert time.monotonic() < deadline, "the worker survived"
                time.sleep(0.05)
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)
