"""The tune file: where ``zerocopy tune`` writes the measured threshold, and ``zerocopy serve``
reads it.

The file is ``$XDG_CONFIG_HOME/zerocopy/tune.toml`` (``~/.config/zerocopy/tune.toml`` when
``XDG_CONFIG_HOME`` is unset or not absolute, as the XDG Base Directory specification says).
It is TOML: one key that ``zerocopy serve`` uses, ``auto-threshold`` (bytes), and a
``[measured]`` table that says when, where and how it was measured, which ``serve`` only
quotes in its start-up log line::

    auto-threshold = 49152

    [measured]
    date = "2025-12-01T16:40:00+00:00"
    host = "build-7"
    load = "wrk debian/4.1.0-3 [epoll], 16 connections"
    sizes = [1024, 2048, ...]
    memory-cpu-us = [...]
    sendfile-cpu-us = [...]

Precedence, for ``--auto-threshold``: the flag, or the same key in a ``--config`` file; else
this file; else the built-in default (``zerocopy.transfer.AUTO_THRESHOLD``). A tune file that
cannot be read or holds no valid threshold is not fatal: the server starts with the default
and logs why the file was ignored.

Only the standard library: the command line imports this module on every start.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

from zerocopy.config_file import toml_value
from zerocopy.transfer import AUTO_THRESHOLD
from zerocopy.tune.sizes import format_size

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "KEY",
    "ThresholdChoice",
    "TuneFile",
    "read_tune_file",
    "render_tune_file",
    "resolve_auto_threshold",
    "tune_path",
    "write_tune_file",
]

KEY: Final = "auto-threshold"
"""The key, spelt as the flag and as a ``--config`` file spell it."""
MAX_THRESHOLD: Final = 1 << 30
"""Far above any size worth sending from memory; a larger value is a broken file."""


def tune_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/zerocopy/tune.toml``, else ``~/.config/zerocopy/tune.toml``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    # The specification: a relative path in XDG_CONFIG_HOME is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "zerocopy" / "tune.toml"


@final
@dataclass(frozen=True, slots=True)
class TuneFile:
    """What a tune file holds.

    Attributes:
        threshold: The largest file ``auto`` sends from memory, in bytes (0: never).
        measured: The ``[measured]`` table: strings, numbers and lists of numbers.
    """

    threshold: int
    measured: dict[str, str | int | float | list[float]] = field(default_factory=dict)

    def describe(self) -> str:
        """``measured 2025-12-01T16:40:00+00:00 on build-7``, or less if the file says less."""
        parts = []
        if isinstance(date := self.measured.get("date"), str):
            parts.append(f"measured {date}")
        if isinstance(host := self.measured.get("host"), str):
            parts.append(f"on {host}")
        return " ".join(parts)


def render_tune_file(tune: TuneFile) -> str:
    """The file's text (read back by :func:`read_tune_file` unchanged)."""
    lines = [
        "# Written by `zerocopy tune`: the largest file that `zerocopy serve --strategy auto`",
        "# sends from memory rather than by sendfile, measured on this host. --auto-threshold,",
        "# or auto-threshold in a --config file, overrides it. Run `zerocopy tune` again after",
        "# a kernel, CPU or Python upgrade; delete this file to use the built-in default.",
        f"{KEY} = {tune.threshold}  # {format_size(tune.threshold)}",
    ]
    if tune.measured:
        lines += ["", "[measured]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in tune.measured.items()]
    return "\n".join(lines) + "\n"


def write_tune_file(path: Path, tune: TuneFile) -> None:
    """Write ``tune`` to ``path`` atomically (a reader sees the old file or the new one).

    Creates the directory. Raises OSError if it cannot.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".tune-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(render_tune_file(tune))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def read_tune_file(path: Path) -> TuneFile:
    """Read a tune file.

    Raises:
        FileNotFoundError: There is none.
        ValueError: It is unreadable, not TOML, or has no valid ``auto-threshold`` (the
            message is one line).
    """
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML: {exc}") from None
    value = document.get(KEY)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"no integer {KEY} in it")
    if not 0 <= value <= MAX_THRESHOLD:
        raise ValueError(f"{KEY} = {value} is out of range (0 to {MAX_THRESHOLD})")
    measured = document.get("measured", {})
    if not isinstance(measured, dict):
        raise ValueError("[measured] is not a table")
    return TuneFile(value, measured)


@final
@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """The ``--auto-threshold`` in effect, and where it came from.

    Attributes:
        value: Bytes.
        source: ``--auto-threshold``, ``--config FILE``, ``tune file PATH (measured ...)``,
            or ``built-in default``.
        problem: Why a tune file that exists was ignored, or ``None``.
    """

    value: int
    source: str
    problem: str | None = None

    def describe(self) -> str:
        """One line for the server's start-up log."""
        text = f"auto-threshold {format_size(self.value)} ({self.value} bytes), from {self.source}"
        return text if self.problem is None else f"{text}; {self.problem}"


def resolve_auto_threshold(
    given: int | None, given_by: str, *, path: Path | None = None
) -> ThresholdChoice:
    """Apply the precedence: a value given (flag or config file) > tune file > default.

    Args:
        given: The value from the command line or a ``--config`` file, or ``None``.
        given_by: Where ``given`` came from (``--auto-threshold``, ``--config FILE``).
        path: The tune file (default: :func:`tune_path`).

    Returns:
        The choice; it never raises for a bad tune file (``problem`` says why it was ignored).
    """
    if given is not None:
        return ThresholdChoice(given, given_by)
    path = tune_path() if path is None else path
    try:
        tune = read_tune_file(path)
    except FileNotFoundError:
        return ThresholdChoice(AUTO_THRESHOLD, "built-in default")
    except ValueError as exc:
        return ThresholdChoice(
            AUTO_THRESHOLD, "built-in default", f"tune file {path} ignored: {exc}"
        )
    measured = tune.describe()
    return ThresholdChoice(
        tune.threshold, f"tune file {path}" + (f" ({measured})" if measured else "")
    )
