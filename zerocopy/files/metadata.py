"""Entity-tags and content types."""

from __future__ import annotations

import mimetypes
import os
from functools import lru_cache
from typing import Final

__all__ = ["content_type", "etag"]

# A compressed file is served as what it is, not as what it decompresses to: curl -O of
# foo.tar.gz must save the gzip bytes, so Content-Encoding is never sent.
_ENCODING_TYPES: Final = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
# Textual types that get "; charset=utf-8", as nginx's ``charset utf-8`` with its default
# ``charset_types`` would add.
_CHARSET_TYPES: Final = frozenset(
    {"application/javascript", "application/json", "application/xml", "image/svg+xml"}
)
OCTET_STREAM: Final = b"application/octet-stream"


def etag(info: os.stat_result) -> bytes:
    """A strong validator: ``"<mtime in ns, hex>-<size, hex>"``.

    nginx's is ``"<mtime hex>-<size hex>"`` in seconds; nanoseconds also tell apart two
    versions written within the same second with the same size. The tag depends on the size and
    the modification time and on nothing else, so it is the same after a restart,
    in every worker, and on every machine that serves a copy of the tree with its times kept
    (``cp -a``, ``rsync -a``), as caches behind a load balancer need. The inode number
    is left out: it differs between such copies and tells a client how the disk is laid out
    (Apache's inode ETags, CVE-2003-1418). What that gives up: a file replaced by another of
    the same size whose time was set to the same nanosecond (``touch -r``) keeps its tag, as
    it does in nginx.

    A time before 1970 is written with a minus sign, which ``etagc`` (RFC 9110 §8.8.3) allows.
    """
    return b'"%x-%x"' % (info.st_mtime_ns, info.st_size)


def content_type(name: str) -> bytes:
    """The Content-Type for a file name, from :mod:`mimetypes`; the suffix is case-insensitive."""
    return _by_suffix(os.path.splitext(name)[1])


@lru_cache(maxsize=1024)
def _by_suffix(suffix: str) -> bytes:
    # The suffix as written first: mimetypes knows ``.Z`` (compress), which lower-casing would
    # lose. Then lower-cased, for ``.BZ2`` and the like, which mimetypes matches case-sensitively.
    kind, encoding = mimetypes.guess_type("x" + suffix, strict=False)
    if kind is None and encoding is None:
        kind, encoding = mimetypes.guess_type("x" + suffix.lower(), strict=False)
    if encoding is not None:
        kind = _ENCODING_TYPES.get(encoding)
    if kind is None:
        return OCTET_STREAM
    if kind.startswith("text/") or kind in _CHARSET_TYPES:
        return f"{kind}; charset=utf-8".encode("ascii")
    return kind.encode("ascii")
