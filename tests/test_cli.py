"""The command line, run as users run it: a subprocess, real signals, real exit codes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.bounded import readline_within, stop_within
from zerocopy import __version__
from zerocopy.cli import build_parser

ZEROCOPY = [sys.executable, "-m", "zerocopy"]


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    # Its own process group: should a wait run out, the helpers kill any workers with it.
    process = subprocess.Popen(
        [*ZEROCOPY, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return process, readline_within(process)


def _stop(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> tuple[int, str]:
    return stop_within(process, signum)


def test_version() -> None:
    result = subprocess.run(
        [*ZEROCOPY, "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == f"zerocopy {__version__}"


def test_help_documents_every_flag() -> None:
    result = subprocess.run(
        [*ZEROCOPY, "serve", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    serve = next(
        action
        for action in build_parser()._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
        if action.prog.endswith("serve")
    )
    for action in serve._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
        if action.option_strings and action.help is not None:
            assert action.help.split()[0] in result.stdout


@pytest.mark.parametrize("strategy", ["auto", "sendfile", "splice", "readwrite"])
def test_serves_and_stops_cleanly_on_sigint(tmp_path: Path, strategy: str) -> None:
    (tmp_path / "f.txt").write_text("cli\n")
    process, line = _start(str(tmp_path), "--port", "0", "--strategy", strategy)
    try:
        match = re.search(r"on (http://127\.0\.0\.1:(\d+)/) \(strategy (\w+)\)", line)
        assert match, line
        assert str(tmp_path) in line
        assert match.group(3) == strategy
        with urllib.request.urlopen(match.group(1) + "f.txt", timeout=10) as response:
            assert response.read() == b"cli\n"
    finally:
        code, stderr = _stop(process)
    assert code == 0
    assert "Traceback" not in stderr


def test_sigterm_is_graceful(tmp_path: Path) -> None:
    process, _ = _start(str(tmp_path), "--port", "0")
    code, stderr = _stop(process, signal.SIGTERM)
    assert code == 0
    assert "SIGTERM" in stderr
    assert "Traceback" not in stderr


def _run_expecting_error(*args: str) -> str:
    result = subprocess.run([*ZEROCOPY, "serve", *args], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_root(tmp_path: Path) -> None:
    line = _run_expecting_error(str(tmp_path / "nope"), "--port", "0")
    assert "does not exist" in line


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "not a directory" in _run_expecting_error(str(tmp_path / "file"), "--port", "0")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _run_expecting_error(str(tmp_path), "--port", str(port))
    assert "in use" in line


def test_unknown_strategy(tmp_path: Path) -> None:
    line = _run_expecting_error(str(tmp_path), "--strategy", "teleport")
    assert "teleport" in line
