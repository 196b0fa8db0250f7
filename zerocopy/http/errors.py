"""The single exception type of the HTTP core.

Modelled on h11's ``ProtocolError``: whoever detects a problem raises :class:`HTTPError` with a
``status_hint``, and one function in the server (``respond_to_error``) turns it into a short
response, or into a plain close when nothing can be sent any more.
"""

from __future__ import annotations

from typing import final


@final
class HTTPError(Exception):
    """A request that gets an error response instead of a file.

    Args:
        status_hint: The status code to answer with.
        reason: A short, log-friendly explanation. It is never sent to the client.
        close: Whether the connection must close after the response: true whenever the
            byte stream can no longer be trusted to frame the next request.
        headers: Extra response header lines, e.g. ``(b"Allow", b"GET, HEAD")``.
    """

    def __init__(
        self,
        status_hint: int,
        reason: str,
        *,
        close: bool = True,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(f"{status_hint}: {reason}")
        self.status_hint = status_hint
        self.reason = reason
        self.close = close
        self.headers = headers
