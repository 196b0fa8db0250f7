"""``--config FILE`` (TOML, keys are the long flag names) and ``--print-config``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from zerocopy.cli import build_parser, main, parse_args
from zerocopy.config_file import ConfigError, dump

ZEROCOPY = [sys.executable, "-m", "zerocopy"]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "zerocopy.toml"
    path.write_text(text)
    return str(path)


def test_file_values_and_command_line_precedence(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        'dir = "/srv"\nport = 9000\nbind = "0.0.0.0"\nno-listing = true\n'
        'head-timeout = 5\nshutdown-grace = 2.5\nworkers = "auto"\nstrategy = "splice"\n',
    )
    args = parse_args(["serve", "--config", config, "--port", "9001", "--strategy", "readwrite"])
    assert args.dir == "/srv"
    assert args.port == 9001  # the flag wins
    assert args.bind == "0.0.0.0"  # the file, where no flag says otherwise
    assert args.strategy == "readwrite"
    assert args.listing is False
    assert args.head_timeout == 5.0
    assert args.shutdown_grace == 2.5
    assert args.workers == "auto"
    # A DIR on the command line overrides the file's dir.
    assert parse_args(["serve", "/elsewhere", "--config", config]).dir == "/elsewhere"


def test_false_switch_means_the_default(tmp_path: Path) -> None:
    config = _write(tmp_path, "no-listing = false\nfollow-symlinks = false\n")
    args = parse_args(["serve", "--config", config])
    assert args.listing is True
    assert args.follow_symlinks is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot = 8000\n", "unknown key 'prot'"),
        ("port = '8000'\n", "key 'port' must be an integer, not str '8000'"),
        ("port = true\n", "key 'port' must be an integer, not bool True"),
        ("port = 70000\n", "key 'port': not a TCP port: 70000"),
        ("no-listing = 1\n", "key 'no-listing' must be a boolean, not int 1"),
        ("head-timeout = 'soon'\n", "key 'head-timeout' must be an integer or a number"),
        ("head-timeout = -1\n", "key 'head-timeout': must be positive: -1"),
        ("strategy = 'teleport'\n", "key 'strategy' must be one of auto, sendfile"),
        ("workers = 'many'\n", "key 'workers': a number or 'auto', not 'many'"),
        ("workers = 1.5\n", "key 'workers' must be an integer or a string, not float 1.5"),
        ("[server]\nport = 1\n", "unknown key 'server'"),
        ("config = 'other.toml'\n", "unknown key 'config'"),
        ("port = \n", "Invalid value"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        parse_args(["serve", "--config", config])
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith(config)


@pytest.mark.parametrize(("text", "key"), [("prot = 1\n", "'prot'"), ("port = 'x'\n", "'port'")])
def test_exit_status_2_and_one_line(tmp_path: Path, text: str, key: str) -> None:
    config = _write(tmp_path, text)
    result = subprocess.run(
        [*ZEROCOPY, "serve", "--config", config], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("zerocopy: error: ")
    assert key in lines[0]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_print_config_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, 'dir = "/srv/\\"odd\\" ü"\nport = 9000\nno-listing = true\n')
    assert main(["serve", "--config", config, "--workers", "3", "--print-config"]) == 0
    printed = capsys.readouterr().out
    document = tomllib.loads(printed)
    assert document["dir"] == '/srv/"odd" ü'
    assert document["port"] == 9000
    assert document["workers"] == 3
    assert document["no-listing"] is True
    assert document["follow-symlinks"] is False
    assert "metrics-port" not in document  # off: printed as a comment
    assert "# metrics-port is not set" in printed
    assert "print-config" not in document
    assert "config" not in document
    # Every key of the printout is accepted back, and means the same.
    again = _write(tmp_path, printed)
    assert main(["serve", "--config", again, "--print-config"]) == 0
    assert capsys.readouterr().out == printed


def test_every_flag_is_a_key() -> None:
    args = parse_args(["serve"])
    parser = build_parser()
    serve = next(
        action.choices["serve"]
        for action in parser._actions
        if hasattr(action, "choices") and isinstance(action.choices, dict)
    )
    keys = set(tomllib.loads(dump(serve, args)))
    flags = {
        flag[2:]
        for action in serve._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag not in ("--help", "--config", "--print-config")
    }
    # Unset by default: printed as comments, not keys.
    flags -= {"metrics-port", "cache-control", "cors", "not-found", "spa"}
    flags -= {"tls-cert", "tls-key", "auth-file", "access-log"}
    assert keys == flags | {"dir"}


def test_contrib_example_is_a_valid_config() -> None:
    example = Path(__file__).parent.parent / "contrib" / "zerocopy.toml"
    args = parse_args(["serve", "--config", str(example)])
    assert args.dir == "/srv/www"
    assert args.workers == "auto"
    assert args.listing is False
    assert args.metrics_port == 9100
