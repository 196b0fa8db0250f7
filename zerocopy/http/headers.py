"""Header fields the operator adds: ``--cache-control``, ``--header``, ``nosniff``, ``--cors``.

* **Every response** gets the common fields: ``X-Content-Type-Options: nosniff`` (unless turned
  off) and, with ``--cors``, ``Access-Control-Allow-Origin`` and the headers a script needs to
  read ranges and validators (``Access-Control-Expose-Headers``).
* **File responses** (200, 206 and 304, whose heads RFC 9110 §15.4.5 wants to carry the same
  caching fields) also get ``--cache-control`` and every ``--header`` rule whose pattern
  matches the file's path under the root. Rules apply in the order given, and for one field
  name the last match wins: ``--header '*: Cache-Control: no-cache' --header '/assets/*:
  Cache-Control: max-age=31536000, immutable'`` gives assets the long lifetime and everything
  else ``no-cache``. ``--cache-control`` counts as a rule ``*`` that comes first.
* A pattern is a glob (``fnmatch``, case-sensitive; ``*`` also matches ``/``). One that starts
  with ``/`` matches the whole path (``/assets/*``); any other matches the file's name
  (``*.html``). The path is the file's own: ``/docs/`` answered with ``/docs/index.html`` is
  matched as ``/docs/index.html``.

Values come from the command line, so they are checked once, at start: a field name must be
a token, and a value may not hold CR, LF, NUL or other controls (no response splitting). The
fields the server computes itself (framing, validators, type and coding) cannot be set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CORS_PREFLIGHT", "HeaderRule", "ResponseHeaders", "field_value", "parse_header_rule"]

_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE: Final = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_RESERVED: Final = frozenset(
    {
        "accept-ranges",
        "connection",
        "content-encoding",
        "content-length",
        "content-range",
        "content-type",
        "date",
        "etag",
        "keep-alive",
        "last-modified",
        "server",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "vary",
    }
)
CORS_PREFLIGHT: Final = (
    b"Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
    b"Access-Control-Allow-Headers: Range, If-Match, If-None-Match, If-Modified-Since, "
    b"If-Unmodified-Since, If-Range, Authorization\r\n"
    b"Access-Control-Max-Age: 86400\r\n"
)
"""What a CORS preflight (``OPTIONS``) is answered with, besides the common fields."""
_CORS_EXPOSE: Final = (
    b"Access-Control-Expose-Headers: Content-Length, Content-Range, Content-Encoding, ETag, "
    b"Last-Modified, Accept-Ranges\r\n"
)


def field_value(value: str, what: str) -> bytes:
    """A header field's value from the command line, stripped of surrounding blanks and
    encoded; raises ValueError naming ``what`` for a control character (CR, LF, NUL, ...) or
    text that is not Latin-1."""
    value = value.strip(" \t")
    if not _VALUE.fullmatch(value):
        raise ValueError(f"{what}: the value holds CR, LF, NUL or another control character")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what}: the value is not Latin-1 text") from None


def _field(name: str, value: str, what: str) -> bytes:
    """``Name: value\\r\\n``, checked; raises ValueError naming ``what``."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{what}: {name!r} is not a valid header field name")
    if name.lower() in _RESERVED:
        raise ValueError(f"{what}: the server sets {name} itself")
    return name.encode("latin-1") + b": " + field_value(value, what) + b"\r\n"


@final
@dataclass(frozen=True, slots=True)
class HeaderRule:
    """One ``--header 'PATTERN: Name: value'``.

    Attributes:
        pattern: The glob the file's path (with ``/``) or name (without) must match.
        name: The field name, lower-cased: a later rule with the same name overrides.
        field: The whole field line, ``Name: value`` and CRLF.
    """

    pattern: str
    name: str
    field: bytes


def parse_header_rule(text: str) -> HeaderRule:
    """Parse ``PATTERN: Name: value``.

    Raises:
        ValueError: With a one-line reason: no pattern or name, a name that is not a token or
            is one the server sets, or a value with control characters (CR, LF, NUL, ...).
    """
    pattern, sep, rest = text.partition(":")
    name, sep2, value = rest.partition(":")
    pattern, name = pattern.strip(), name.strip()
    if not (sep and sep2 and pattern and name):
        raise ValueError(f"--header {text!r}: expected 'PATTERN: Name: value'")
    return HeaderRule(pattern, name.lower(), _field(name, value, f"--header {text!r}"))


def _matches(pattern: str, path: str) -> bool:
    if pattern.startswith("/"):
        return fnmatchcase(path, pattern)
    return fnmatchcase(path.rpartition("/")[2], pattern)


@final
class ResponseHeaders:
    """The operator's fields, by response and by file path.

    Args:
        cache_control: ``--cache-control``: the default ``Cache-Control`` of file responses.
        rules: ``--header`` rules, in the order given.
        nosniff: Send ``X-Content-Type-Options: nosniff`` on every response.
        cors: ``--cors``: the allowed origin (``*`` or one origin), or ``None``.

    Raises:
        ValueError: A value that cannot be sent (see :func:`parse_header_rule`).
    """

    def __init__(
        self,
        *,
        cache_control: str | None = None,
        rules: Sequence[HeaderRule] = (),
        nosniff: bool = True,
        cors: str | None = None,
    ) -> None:
        common = b"X-Content-Type-Options: nosniff\r\n" if nosniff else b""
        if cors is not None:
            common += _field("Access-Control-Allow-Origin", cors, "--cors") + _CORS_EXPOSE
        self.common = common
        """Fields for every response."""
        self.cors = cors is not None
        """Whether OPTIONS is answered as a CORS preflight (204) instead of 405."""
        default = []
        if cache_control is not None:
            field = _field("Cache-Control", cache_control, "--cache-control")
            default.append(HeaderRule("*", "cache-control", field))
        self._rules = (*default, *rules)
        self.for_file = lru_cache(maxsize=4096)(self._for_file)

    def _for_file(self, path: str) -> bytes:
        """Fields for a file response: the common ones, then the rules matching ``path``
        (the file's path under the root, starting with ``/``), the last per name winning."""
        chosen: dict[str, bytes] = {}
        for rule in self._rules:
            if _matches(rule.pattern, path):
                chosen.pop(rule.name, None)
                chosen[rule.name] = rule.field
        return self.common + b"".join(chosen.values())
