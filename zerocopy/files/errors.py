"""Why a path was refused, as a status hint, with errno mapped the way nginx maps it."""

from __future__ import annotations

import errno
from typing import Final, final

__all__ = ["Refused", "refusal"]

# ngx_http_static_module / ngx_open_cached_file: which open() errors mean which status.
_ERRNO_STATUS: Final = {
    errno.ENOENT: 404,
    errno.ENOTDIR: 404,
    errno.ENAMETOOLONG: 404,
    errno.EACCES: 403,
    errno.EPERM: 403,
    errno.ELOOP: 403,  # O_NOFOLLOW met a symlink.
    errno.ENXIO: 403,  # A socket or an unopened device node: not a file to serve.
    errno.EMFILE: 503,
    errno.ENFILE: 503,
}


@final
class Refused(Exception):
    """A request path that is not served.

    Attributes:
        status_hint: 403, 404, 500 or 503.
        reason: For the log; never sent to the client.
    """

    def __init__(self, status_hint: int, reason: str) -> None:
        super().__init__(f"{status_hint}: {reason}")
        self.status_hint = status_hint
        self.reason = reason


def refusal(exc: OSError) -> Refused:
    """Map an ``open``/``fstat`` error to a refusal; unknown errors are 500 (and logged)."""
    status = _ERRNO_STATUS.get(exc.errno or 0, 500)
    return Refused(status, f"{exc.strerror or exc}")
