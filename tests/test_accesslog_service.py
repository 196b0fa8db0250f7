"""The access log of real ``zerocopy`` processes: SIGUSR1 after logrotate's rename, one
process and a supervisor's workers; a log tool nobody here wrote (GoAccess) reading it; the
command line's forms of ``--access-log``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import random_file
from tests.procs import Proc, get

Start = Callable[..., Proc]


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    random_file(root / "4k.bin", 4096)
    return root


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_lines(path: Path, count: int) -> list[str]:
    """The log's lines once it holds ``count`` of them (the writer flushes within a second)."""
    deadline = time.monotonic() + 10
    while len(lines := _lines(path)) < count:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    return lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigusr1_after_a_rename_makes_a_new_file(
    procs: Start, www: Path, tmp_path: Path, workers: str
) -> None:
    log = tmp_path / "access.log"
    proc = procs("serve", str(www), "--port", "0", "--workers", workers, "--access-log", str(log))
    port, _ = proc.serving()
    if workers == "2":
        proc.wait_children(2)
    for _ in range(20):  # fresh connections: with two workers, both serve some
        assert get(port, "/hello.txt") == (200, b"hello\n")
    _wait_lines(log, 20)
    rotated = tmp_path / "access.log.1"
    log.rename(rotated)  # what logrotate does, before it signals
    proc.signal(signal.SIGUSR1)
    for _ in range(int(workers)):
        proc.wait_for(r"access log reopened: ")
    assert log.exists()
    for _ in range(20):
        assert get(port, "/4k.bin")[0] == 200
    _wait_lines(log, 20)
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    old, new = _lines(rotated), _lines(log)
    assert len(old) == 20
    assert all('"GET /hello.txt HTTP/1.1" 200 6 ' in line for line in old)
    assert len(new) == 20
    assert all('"GET /4k.bin HTTP/1.1" 200 4096 ' in line for line in new)
    assert "Traceback" not in "".join(proc.stderr)


@pytest.mark.skipif(shutil.which("goaccess") is None, reason="goaccess is not installed")
def test_goaccess_reads_every_line(procs: Start, www: Path, tmp_path: Path) -> None:
    """GoAccess, told the Combined fields and then ``%T`` (seconds), counts every request,
    the bytes, and the request times, with no line it cannot parse."""
    log = tmp_path / "access.log"
    proc = procs("serve", str(www), "--port", "0", "--access-log", str(log))
    port, _ = proc.serving()
    for _ in range(7):
        assert get(port, "/4k.bin")[0] == 200
    for _ in range(3):
        assert get(port, "/missing")[0] == 404
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    lines = _lines(log)
    assert len(lines) == 10
    report = tmp_path / "report.json"
    subprocess.run(
        [
            "goaccess",
            str(log),
            "--no-global-config",
            "--log-format",
            '%h %^[%d:%t %^] "%r" %s %b "%R" "%u" %T %^ %^',
            "--date-format",
            "%d/%b/%Y",
            "--time-format",
            "%T",
            "-o",
            str(report),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    result = json.loads(report.read_text())
    general = result["general"]
    assert (general["valid_requests"], general["failed_requests"]) == (10, 0)
    assert general["bandwidth"] == sum(int(line.split()[-1]) for line in lines)
    [served] = [row for row in result["requests"]["data"] if row["data"] == "/4k.bin"]
    # GoAccess keeps request times in microseconds, converted from the seconds it parsed as C
    # does it (a double, truncated): the log's times are read to the microsecond.
    times = [int(float(line.split()[-3]) * 1e6) for line in lines if "/4k.bin" in line]
    assert served["cumts"] == sum(times)


def test_bare_flag_logs_to_standard_error(procs: Start, www: Path) -> None:
    proc = procs("serve", str(www), "--port", "0", "--access-log")
    port, _ = proc.serving()
    assert get(port, "/hello.txt") == (200, b"hello\n")
    proc.wait_for(r'^127\.0\.0\.1 - - \[.*\] "GET /hello\.txt HTTP/1\.1" 200 6 "-" ".*" ')
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_json_format_from_the_command_line(procs: Start, www: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.json"
    proc = procs(
        "serve", str(www), "--port", "0", "--access-log", str(log), "--access-log-format", "json"
    )
    port, _ = proc.serving()
    assert get(port, "/hello.txt") == (200, b"hello\n")
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    [line] = _lines(log)
    fields = json.loads(line)
    assert (fields["request"], fields["status"], fields["body_bytes_sent"]) == (
        "GET /hello.txt HTTP/1.1",
        200,
        6,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_access_log_that_cannot_be_opened_stops_the_start(
    procs: Start, www: Path, tmp_path: Path, workers: str
) -> None:
    proc = procs("serve", str(www), "--port", "0", "--workers", workers, "--access-log", str(www))
    assert proc.wait(timeout=30) == 2
    stderr = "".join(proc.stderr)
    assert f"cannot open access log {www}: Is a directory" in stderr
    assert "Traceback" not in stderr
