"""Which methods a static file server answers (RFC 9110 §9)."""

from __future__ import annotations

from typing import Final

from zerocopy.http.errors import HTTPError

__all__ = ["ALLOW", "check_method"]

ALLOW: Final = b"GET, HEAD"
# Standard methods that a file server understands but does not allow: 405 with Allow.
# Anything else is a method we do not implement: 501 (RFC 9110 §15.6.2).
_STANDARD: Final = frozenset({"POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


def check_method(method: str) -> None:
    """Accept GET and HEAD.

    Raises:
        HTTPError: 405 with ``Allow: GET, HEAD`` for other standard methods, 501 for the rest.
            Both keep the connection: the request was framed correctly.
    """
    if method in ("GET", "HEAD"):
        return
    if method in _STANDARD:
        raise HTTPError(
            405, f"method {method} not allowed", close=False, headers=((b"Allow", ALLOW),)
        )
    raise HTTPError(501, f"method {method} not implemented", close=False)
