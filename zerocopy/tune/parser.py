"""``zerocopy tune``'s command line: what every ``zerocopy`` start builds, so it imports
nothing of the measurement (``command.py``, loaded only when ``tune`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

from zerocopy.config_file import count, positive
from zerocopy.tune.sizes import parse_size_list

__all__ = ["DEFAULT_SIZES", "add_parser"]

DEFAULT_SIZES: Final = "1KiB,2KiB,4KiB,8KiB,16KiB,32KiB,64KiB,128KiB,256KiB"
"""Doubling steps around every threshold worth having (lighttpd's 16 KiB; the 64 KiB default)."""


def _sizes(text: str) -> dict[str, int]:
    try:
        return parse_size_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``tune`` to the ``zerocopy`` command's sub-parsers."""
    tune = commands.add_parser(
        "tune",
        help="measure where sending small files from memory stops paying, for --auto-threshold",
        description="Measure, on this host, the server CPU per request of `serve --strategy "
        "auto` sending files from memory against `--strategy sendfile`, alternated, at "
        "several sizes under a short load (wrk if installed, else zerocopy's own client); "
        "print the crossover and write it where `zerocopy serve` reads it "
        "($XDG_CONFIG_HOME/zerocopy/tune.toml, else ~/.config/zerocopy/tune.toml). "
        "--auto-threshold, or auto-threshold in a --config file, still overrides it.",
        formatter_class=formatter_class,
    )
    tune.add_argument(
        "dir",
        nargs="?",
        default=None,
        help="where to write the test files: a directory on the file system you serve from "
        "(default: the system's temporary directory); removed afterwards",
    )
    tune.add_argument(
        "--duration",
        type=positive,
        default=60.0,
        metavar="SECONDS",
        help="load time in all, shared by every window (server start and warm-up come on top)",
    )
    tune.add_argument(
        "--sizes", type=_sizes, default=DEFAULT_SIZES, metavar="LIST", help="file sizes"
    )
    tune.add_argument("--rounds", type=count, default=3, metavar="N", help="rounds of every window")
    tune.add_argument(
        "--connections", type=count, default=16, metavar="N", help="keep-alive clients"
    )
    tune.add_argument(
        "--load",
        choices=["auto", "wrk", "client"],
        default="auto",
        help="load generator: wrk, zerocopy's own keep-alive client, or auto (wrk when installed)",
    )
    tune.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="where to write the result (default: the tune file zerocopy serve reads)",
    )
    tune.add_argument("--dry-run", action="store_true", help="measure and print, but write no file")
