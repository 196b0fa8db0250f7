"""Text that is safe to show: one line, no terminal controls, no reordering.

A file name, a request-target or a header value is chosen by whoever made the file or sent the
request. Put into a log line as it is, a CR or LF forges a whole line of its own, ESC drives the
terminal of whoever runs ``tail -f``, and a bidi override (U+202E) makes the rest of the line
read backwards (the "Trojan Source" trick, CVE-2021-42574). :func:`safe_text` escapes all of
these visibly, in the style of Python's ``backslashreplace``:

* C0 controls, DEL and C1 controls (U+0000-U+001F, U+007F-U+009F): ``\\xNN``. A few get
  their short C names (``\\t``, ``\\n``, ``\\r``), as in ``ls -b``.
* bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), the bidi marks
  (U+200E, U+200F, U+061C) and the line and paragraph separators (U+2028, U+2029), which some
  viewers treat as line breaks: ``\\uNNNN``.
* bytes that are not UTF-8 (bytes input, or ``str`` from ``os.fsdecode`` holding them as
  surrogates): ``\\xNN``, the byte itself. Lone surrogates that stand for no byte: ``\\uNNNN``.
* the backslash itself: ``\\\\``, so that every escape reads back one way: a name that is
  literally ``a\\x0a`` shows as ``a\\\\x0a``, never as ``a`` and a newline.

Everything else, non-ASCII letters included, is left as it is. This module imports nothing
from the rest of the package, so the HTTP core, the file layer and the server can all use it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["safe_text"]

_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}
_UNSAFE: Final = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0x9F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself.
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def safe_text(value: str | bytes) -> str:
    """Escape ``value`` so that it shows as one line, in its own order, with no controls.

    Args:
        value: Text, or bytes (decoded as UTF-8; what is not UTF-8 is escaped byte by byte).

    Returns:
        The escaped text; the same ``str`` when nothing needed escaping.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    return _UNSAFE.sub(_escape, value)
