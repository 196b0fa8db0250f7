"""The command line, run as users run it: a subprocess, real signals, real exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import Proc, get
from zerocopy import __version__
from zerocopy.cli import _server_config, build_parser, parse_args, resolve_workers
from zerocopy.http import Limits
from zerocopy.server import ServerConfig

ZEROCOPY = [sys.executable, "-m", "zerocopy"]
Start = Callable[..., Proc]


def _stop(process: Proc, signum: int = signal.SIGINT) -> tuple[int, str]:
    process.signal(signum)
    code = process.wait(timeout=20)
    return code, "".join(process.stderr)


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
def test_serves_and_stops_cleanly_on_sigint(procs: Start, tmp_path: Path, strategy: str) -> None:
    (tmp_path / "f.txt").write_text("cli\n")
    process = procs("serve", str(tmp_path), "--port", "0", "--strategy", strategy)
    match = process.wait_for(r"on (http://127\.0\.0\.1:(\d+)/) \(strategy (\w+)\)", stream="stdout")
    assert str(tmp_path) in match.string
    assert match.group(3) == strategy
    with urllib.request.urlopen(match.group(1) + "f.txt", timeout=10) as response:
        assert response.read() == b"cli\n"
    assert process.children() == []  # one process: no supervisor, no workers
    code, stderr = _stop(process)
    assert code == 0
    assert "Traceback" not in stderr


def test_sigterm_is_graceful(procs: Start, tmp_path: Path) -> None:
    process = procs("serve", str(tmp_path), "--port", "0")
    process.serving()
    code, stderr = _stop(process, signal.SIGTERM)
    assert code == 0
    assert "SIGTERM" in stderr
    assert "Traceback" not in stderr


def test_single_process_sigusr1_and_sighup(procs: Start, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("cli\n")
    process = procs("serve", str(tmp_path), "--port", "0")
    port, _ = process.serving()
    process.signal(signal.SIGUSR1)
    process.wait_for("SIGUSR1: reopening log files")
    process.signal(signal.SIGHUP)
    process.wait_for("SIGHUP: a reload needs --workers 2 or more")
    assert get(port, "/f.txt") == (200, b"cli\n")  # neither signal stopped it
    code, _ = _stop(process, signal.SIGTERM)
    assert code == 0


def test_single_process_cpu_affinity(procs: Start, tmp_path: Path) -> None:
    process = procs("serve", str(tmp_path), "--port", "0", "--cpu-affinity")
    process.serving()
    assert os.sched_getaffinity(process.pid) == {min(os.sched_getaffinity(0))}
    assert _stop(process)[0] == 0


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


def test_every_flag_reaches_the_config() -> None:
    args = parse_args(
        [
            "serve",
            "/srv",
            "--bind=::1",
            "--port=9",
            "--strategy=splice",
            "--no-listing",
            "--follow-symlinks",
            "--access-log=/var/log/zc.log",
            "--access-log-format=json",
            "--metrics-port=10",
            "--metrics-bind=::1",
            "--head-timeout=1.5",
            "--idle-timeout=2.5",
            "--send-timeout=3.5",
            "--shutdown-grace=4.5",
            "--max-connections=11",
            "--offload-threads=0",
            "--open-file-cache=0",
            "--max-head-size=1000",
            "--max-headers=12",
            "--max-target-length=13",
            "--max-ranges=14",
        ]
    )
    assert _server_config(args) == ServerConfig(
        root="/srv",
        bind="::1",
        port=9,
        strategy="splice",
        listing=False,
        follow_symlinks=True,
        access_log="/var/log/zc.log",
        access_log_format="json",
        metrics_port=10,
        metrics_bind="::1",
        head_timeout=1.5,
        idle_timeout=2.5,
        send_timeout=3.5,
        shutdown_grace=4.5,
        max_connections=11,
        offload_threads=0,
        open_file_cache=0,
        limits=Limits(max_head_size=1000, max_header_count=12, max_target_length=13, max_ranges=14),
    )


def test_workers_values() -> None:
    assert resolve_workers(parse_args(["serve", "--workers", "3"]).workers) == 3
    assert resolve_workers(parse_args(["serve", "--workers", "auto"]).workers) == len(
        os.sched_getaffinity(0)
    )
    assert parse_args(["serve"]).workers == 1


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_bad_workers(tmp_path: Path, value: str) -> None:
    line = _run_expecting_error(str(tmp_path), "--workers", value)
    assert "--workers" in line
