"""HTTP basic authentication, sans-IO: the ``Authorization`` header in, credentials or an
error out (RFC 7617).

* No ``Authorization`` header, or another scheme: 401 with the challenge, so that a browser
  asks for a password.
* ``Basic`` with a token that is not valid base64, or does not decode to UTF-8 text with a
  colon, or a header over :data:`MAX_CREDENTIALS` bytes, or the header repeated: 400. No
  client that a user types a password into sends those.
* The user-id is everything before the first colon and the password everything after it
  (RFC 7617 §2: a user-id cannot contain a colon), so ``a:b:c`` is user ``a``, password
  ``b:c``; an empty password is a password like any other (it never matches a hash).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Final

from zerocopy.http.errors import HTTPError

if TYPE_CHECKING:
    from zerocopy.http.parser import Request

__all__ = ["MAX_CREDENTIALS", "challenge", "parse_basic"]

MAX_CREDENTIALS: Final = 4096
"""Bytes of an Authorization header. A user name and password fit in far less; nginx's
whole request line and each header line fit in ``large_client_header_buffers`` (8 KiB)."""


def challenge(realm: str) -> HTTPError:
    """The 401 that asks for credentials; the connection stays open for the retry.

    ``realm`` is written as a quoted-string: backslash and double quote are escaped.
    """
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    value = f'Basic realm="{quoted}", charset="UTF-8"'.encode()
    return HTTPError(
        401, "authentication required", close=False, headers=((b"WWW-Authenticate", value),)
    )


def parse_basic(request: Request) -> tuple[str, str] | None:
    """The (user, password) of a request's basic credentials; ``None`` if it sent none.

    Raises:
        HTTPError: 400 for credentials that are malformed (see the module docstring).
    """
    if b"authorization" in request.repeated:
        raise HTTPError(400, "repeated Authorization header", close=False)
    value = request.headers.get(b"authorization")
    if value is None:
        return None
    if len(value) > MAX_CREDENTIALS:
        raise HTTPError(400, "Authorization header too large", close=False)
    scheme, _, token = value.strip(b" \t").partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(b" "), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        error = HTTPError(400, "basic credentials are not base64 of UTF-8 text", close=False)
        raise error from exc
    user, colon, password = decoded.partition(":")
    if not colon:
        raise HTTPError(400, "basic credentials without a colon", close=False)
    return user, password
