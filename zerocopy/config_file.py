"""``zerocopy serve --config FILE``: a TOML file whose keys are the long flag names.

The file is checked against the command line's own parser, so that each key exists once, as a
flag, and means the same in both places::

    dir = "/srv/files"        # the DIR argument
    bind = "0.0.0.0"
    port = 8080
    workers = "auto"          # or a number
    no-listing = true         # a switch: true to give it, false for its default
    head-timeout = 5          # seconds; an integer or a float

A key the parser does not know, a value of the wrong TOML type, or a value the flag itself
refuses (``port = -1`` is fine for TOML, not for ``--port``) is a :class:`ConfigError` with a
one-line message naming the key. Values become the parser's defaults, so flags given on the
command line override the file. :func:`dump` writes the effective values back as TOML, which
this module reads again unchanged (``--print-config``).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterator

_Parse = TypeVar("_Parse", bound=Callable[[str], Any])

__all__ = ["ConfigError", "count", "dump", "load", "positive", "toml_types", "toml_value"]

NOT_IN_FILE: Final = frozenset({"help", "config", "print_config"})
"""Parser destinations that make no sense in a file."""


class ConfigError(ValueError):
    """The configuration file is unreadable or wrong; the message is one line."""


def toml_types(*types: type) -> Callable[[_Parse], _Parse]:
    """Declare which TOML value types an argparse ``type=`` function accepts from a file.

    Without it, the TOML type follows the function: ``int`` takes integers, ``float``
    integers and floats, anything else strings.
    """

    def mark(function: _Parse) -> _Parse:
        function.toml_types = types  # type: ignore[attr-defined]
        return function

    return mark


@toml_types(int, float)
def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


@toml_types(int)
def count(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _keys(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """(key, action) for every option and positional that a file may set."""
    for action in parser._actions:
        if action.dest in NOT_IN_FILE or action.dest == argparse.SUPPRESS:
            continue
        longs = [flag for flag in action.option_strings if flag.startswith("--")]
        if longs:
            yield longs[0][2:], action
        elif not action.option_strings:
            yield action.dest, action


def _repeated(action: argparse.Action) -> bool:
    """A flag given once per value (``--header``): a TOML array of them in a file."""
    return isinstance(action, argparse._AppendAction)


def _accepted(action: argparse.Action) -> tuple[type, ...]:
    if action.nargs == 0:
        return (bool,)
    declared = getattr(action.type, "toml_types", None)
    if declared is not None:
        return tuple(declared)
    if action.type is int:
        return (int,)
    if action.type is float:
        return (int, float)
    return (str,)


_NAMES: Final = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array of strings",
}


def load(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read ``path`` and return parser defaults (``dest`` to value) for ``set_defaults``.

    Args:
        path: The TOML file.
        parser: The ``serve`` sub-parser whose flags name the keys.

    Raises:
        ConfigError: Unreadable file, TOML syntax error, unknown key, or bad value.
    """
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    known = dict(_keys(parser))
    defaults: dict[str, Any] = {}
    for key, value in document.items():
        action = known.get(key)
        if action is None:
            raise ConfigError(f"{path}: unknown key {key!r} (keys are the long flag names)")
        if _repeated(action):
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ConfigError(f"{path}: key {key!r} must be an array of strings, not {value!r}")
            try:
                defaults[action.dest] = [
                    action.type(item) if callable(action.type) else item for item in value
                ]
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ConfigError(f"{path}: key {key!r}: {exc}") from None
            continue
        accepted = _accepted(action)
        # TOML booleans are not integers here, whatever Python's bool says.
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            wanted = " or ".join(_NAMES.get(kind, kind.__name__) for kind in accepted)
            raise ConfigError(
                f"{path}: key {key!r} must be {wanted}, not {type(value).__name__} {value!r}"
            )
        if action.nargs == 0:
            # store_true / store_false: true means "as if the switch were given".
            defaults[action.dest] = action.const if value else action.default
            continue
        try:
            converted = action.type(str(value)) if callable(action.type) else value
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ConfigError(f"{path}: key {key!r}: {exc}") from None
        if action.choices is not None and converted not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ConfigError(f"{path}: key {key!r} must be one of {choices}, not {value!r}")
        defaults[action.dest] = converted
    return defaults


def toml_value(value: Any) -> str:
    """``value`` (a list, bool, int, float or string) as a TOML value."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # TOML writes inf, -inf and nan as Python's repr does
    # JSON string escapes are a subset of TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


def dump(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The effective values of every key, as a TOML document :func:`load` accepts."""
    lines = ["# zerocopy serve: effective configuration"]
    for key, action in _keys(parser):
        value = getattr(args, action.dest)
        if action.nargs == 0:
            value = value == action.const
        elif isinstance(value, tuple):
            value = ",".join(value) or "none"  # a list flag, written as it is given
        if value is None:
            lines.append(f"# {key} is not set")
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
