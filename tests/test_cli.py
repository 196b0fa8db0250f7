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

from zerocopy import __version__
from zerocopy.cli import build_parser
from zerocopy.http import Limits
from zerocopy.server import ServerConfig

ZEROCOPY = [sys.executable, "-m", "zerocopy"]


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*ZEROCOPY, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line


def _stop(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=20)
    return process.returncode, stderr


def test_version() -> None:
    result = subprocess.run([*ZEROCOPY, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"zerocopy {__version__}"


def test_help_documents_every_flag() -> None:
    result = subprocess.run(
        [*ZEROCOPY, "serve", "--help"], capture_output=True, text=True, check=True
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


def test_flag_defaults_are_the_config_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    config = ServerConfig(root=".")
    assert args.bind == config.bind
    assert args.port == config.port
    assert args.strategy == config.strategy
    assert args.listing == config.listing
    assert args.follow_symlinks == config.follow_symlinks
    for name in ["head_timeout", "idle_timeout", "send_timeout", "shutdown_grace"]:
        assert getattr(args, name) == getattr(config, name), name
    for name in ["max_connections", "offload_threads", "open_file_cache"]:
        assert getattr(args, name) == getattr(config, name), name
    limits = Limits()
    assert args.max_head_size == limits.max_head_size
    assert args.max_headers == limits.max_header_count
    assert args.max_target_length == limits.max_target_length
    assert args.max_ranges == limits.max_ranges
