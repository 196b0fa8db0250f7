"""Transfer errors, and the one boundary where OSError becomes one of them.

Every strategy wraps its syscalls in :func:`translate_errors`, in the manner of trio's
``_translate_socket_errors_to_stream_errors``. The connection loop catches
:class:`TransferError` and closes: once a response head has gone out, nothing but a close can
tell the client that the body is incomplete.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "FileTruncated",
    "PeerGone",
    "ResourcesExhausted",
    "SendTimeout",
    "TransferError",
    "TransferUnsupported",
    "translate_errors",
]

# The peer went away: reset, or closed and we wrote anyway. Routine on the internet.
PEER_GONE_ERRNOS: Final = frozenset(
    {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ETIMEDOUT}
)
# The file system or file type cannot do sendfile/splice; lighttpd and nginx fall back to
# read() on these. EINVAL also means "bad argument", so it counts as "unsupported" only on the
# first call of a span, before any byte went out (see the strategies).
UNSUPPORTED_ERRNOS: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})
# Out of descriptors or kernel memory for a pipe: the process is full, not the transfer broken.
EXHAUSTED_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})


class TransferError(Exception):
    """A body could not be sent in full. The connection must close."""


@final
class PeerGone(TransferError):
    """The client reset or closed the connection."""


@final
class SendTimeout(TransferError):
    """The client accepted no byte for the send timeout: it stopped reading."""


@final
class FileTruncated(TransferError):
    """The file ended before the promised count: truncated while being sent.

    ``sendfile`` and ``splice`` return 0 and ``preadv`` returns 0 in this case. A loop that
    retried would spin forever, and padding would send bytes that are not the file's.

    Attributes:
        offset: File offset where the data ran out.
        missing: Bytes of the span that could not be sent.
    """

    def __init__(self, offset: int, missing: int) -> None:
        super().__init__(f"file ended at offset {offset}, {missing} bytes short")
        self.offset = offset
        self.missing = missing


@final
class TransferUnsupported(TransferError):
    """The zero-copy call is not supported for this file or socket.

    Raised only after the span's prefix (the response head) has gone out and before any body
    byte has, so a fallback strategy can send the whole span with no prefix.
    """

    def __init__(self, call: str, code: int) -> None:
        super().__init__(f"{call} unsupported here ({errno.errorcode.get(code, code)})")
        self.call = call
        self.errno = code


@final
class ResourcesExhausted(TransferError):
    """A strategy could not get what it needs (a pipe) for lack of descriptors.

    Raised before anything of the span or its prefix went out, so the read/write fallback can
    send both: under descriptor pressure a response degrades to a copy, never to a head
    followed by a close.
    """

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"no {what}: {errno.errorcode.get(code, code)}")
        self.errno = code


@final
class _TranslateErrors:
    """The context manager behind :func:`translate_errors`: a class, not a generator, because
    every chunk of every response enters one, and ``@contextmanager`` costs several times
    more per use."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(exc, OSError) or isinstance(exc, BlockingIOError):
            return
        if exc.errno in PEER_GONE_ERRNOS:
            raise PeerGone(str(exc)) from exc
        raise TransferError(f"I/O error: {exc}") from exc


_TRANSLATE: Final = _TranslateErrors()


def translate_errors() -> _TranslateErrors:
    """Map OSError from a socket or file syscall to :class:`TransferError`, as a context
    manager.

    BlockingIOError passes through untouched: it belongs to the retry loops, which wait for
    the socket and try again.
    """
    return _TRANSLATE
