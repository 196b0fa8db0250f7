"""The request-target: decode it exactly once, and refuse what could escape the root.

The rules, and the CVEs behind them:

* Percent-decode once (``%252e`` stays ``%2e``, a literal name). Malformed escapes: 400.
* The result must be strict UTF-8: overlong encodings such as ``%c0%ae`` (``.``) are invalid
  UTF-8 and are refused, never "repaired".
* NUL and backslash are refused: 400.
* ``..`` segments are refused rather than resolved: 400. Empty and ``.`` segments are dropped,
  as nginx's ``merge_slashes`` does.
* The directory redirect is built from the *decoded, normalised* segments and re-quoted, so its
  ``Location`` can never start with ``//`` (CPython CVE-2021-28861) or carry CR or LF.

Checking happens on the decoded form, before any file-system access (aiohttp CVE-2025-69226
leaked which files exist by checking before normalising).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, final
from urllib.parse import quote, unquote_to_bytes

import httptools

from zerocopy.http.errors import HTTPError

__all__ = ["Target", "parse_target", "redirect_location"]

_BAD_ESCAPE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_SEGMENT_SAFE: Final = "!$&'()*+,;=:@-._~"
_QUERY_SAFE: Final = "/?:@!$&'()*+,;=%-._~"


@final
@dataclass(frozen=True, slots=True)
class Target:
    """A decoded, normalised origin path.

    Attributes:
        segments: Decoded path segments; none is empty, ``.`` or ``..``.
        trailing_slash: Whether the decoded path ends with ``/`` or a ``.`` segment (true
            for ``/`` itself).
        query: The raw query string, without the ``?``; ``b""`` when absent.
    """

    segments: tuple[str, ...]
    trailing_slash: bool
    query: bytes

    @property
    def path(self) -> str:
        """The normalised path, for logs and listings: ``/a/b/``."""
        joined = "/" + "/".join(self.segments)
        return joined + "/" if self.trailing_slash and self.segments else joined


def _bad(reason: str) -> HTTPError:
    return HTTPError(400, reason)


def parse_target(raw: bytes) -> Target:
    """Decode a request-target in origin-form or absolute-form.

    Raises:
        HTTPError: 400 for anything that is not a safe path.
    """
    if raw.startswith(b"/"):
        # RFC 3986 §3.5: a fragment starts at the first "#", and a "?" after it is part of it.
        path, _, query = raw.partition(b"#")[0].partition(b"?")
    elif raw[:7].lower() == b"http://" or raw[:8].lower() == b"https://":
        try:
            url = httptools.parse_url(raw)
        except httptools.HttpParserInvalidURLError:
            raise _bad("malformed absolute-form target") from None
        path = url.path or b"/"
        query = url.query or b""
    else:
        raise _bad("request-target is not a path")
    if b"%" in path:
        if _BAD_ESCAPE.search(path):
            raise _bad("malformed percent-escape")
        path = unquote_to_bytes(path)
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("path is not valid UTF-8") from None
    if "\x00" in text or "\\" in text:
        raise _bad("NUL or backslash in path")
    segments = []
    raw_segments = text.split("/")
    for segment in raw_segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            raise _bad("'..' segment in path")
        segments.append(segment)
    # RFC 3986 §5.2.4 turns a final "." into a trailing slash: "/dir/." is "/dir/".
    return Target(tuple(segments), raw_segments[-1] in ("", "."), query)


def redirect_location(target: Target) -> bytes:
    """The ``Location`` for a directory requested without its trailing slash.

    Built from the normalised segments, so it always starts with exactly one ``/``.
    """
    path = "".join("/" + quote(segment, safe=_SEGMENT_SAFE) for segment in target.segments) + "/"
    location = path.encode("ascii")
    if target.query:
        # Valid escapes pass through as they are; a stray "%" becomes "%25", so that the
        # Location is a valid URI-reference (RFC 3986 §3.4) and decodes as the client sent it.
        query = _BAD_ESCAPE.sub(b"%25", target.query)
        location += b"?" + quote(query, safe=_QUERY_SAFE).encode("ascii")
    return location
