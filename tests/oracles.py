"""Independent readers for what the server writes: stdlib code, not zerocopy's.

* :func:`multipart_parts`: a ``multipart/byteranges`` body, read by the ``email`` parser
  (RFC 2046 multipart).
* :func:`unescape` and :func:`is_visible`: text escaped for a log line or a listing label,
  read back by the ``unicode_escape`` codec, and checked for characters that must not show.
"""

from __future__ import annotations

import email.message
import email.parser
import unicodedata
from typing import Final

BIDI_CONTROLS: Final = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
    "\u200e\u200f\u061c"  # marks
)
LINE_BREAKS: Final = frozenset("\u2028\u2029")  # Unicode's line and paragraph separators


def multipart_parts(content_type: bytes, body: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(Content-Type, Content-Range, payload) of each part of a multipart body."""
    # compat32 (the default policy) leaves header values as they were sent.
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type + b"\r\n\r\n" + body
    )
    assert message.get_content_type() == "multipart/byteranges"
    assert message.is_multipart()
    assert not message.defects
    parts = []
    for part in message.get_payload():
        assert isinstance(part, email.message.Message)
        assert not part.defects
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append((part["Content-Type"].encode(), part["Content-Range"].encode(), payload))
    return parts


def unescape(text: str) -> str:
    """Read backslash escapes (``\\n``, ``\\x1b``, ``\\u202e``, ``\\\\``) back into characters."""
    return text.encode("ascii", "backslashreplace").decode("unicode_escape")


def is_visible(text: str) -> bool:
    """Whether ``text`` holds no control, surrogate, bidi control or Unicode line break."""
    return not any(
        unicodedata.category(c) in ("Cc", "Cs") or c in BIDI_CONTROLS or c in LINE_BREAKS
        for c in text
    )
