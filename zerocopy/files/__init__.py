"""The file side: root containment, opening and metadata, MIME types, listings.

Imports neither trio nor the HTTP layer: it answers with stat results, bytes, and
:class:`Refused` carrying a status hint.
"""

from __future__ import annotations

from zerocopy.files.cache import REVALIDATE_MODES, CachedFile, CacheStatistics, OpenFileCache
from zerocopy.files.errors import Refused, refusal
from zerocopy.files.listing import Entry, read_entries, render_listing
from zerocopy.files.metadata import content_type, etag
from zerocopy.files.root import Opened, Root

__all__ = [
    "REVALIDATE_MODES",
    "CacheStatistics",
    "CachedFile",
    "Entry",
    "OpenFileCache",
    "Opened",
    "Refused",
    "Root",
    "content_type",
    "etag",
    "read_entries",
    "refusal",
    "render_listing",
]
