"""The file side: root containment, opening and metadata, MIME types, listings.

Imports neither trio nor the HTTP layer: it answers with stat results, bytes, and
:class:`Refused` carrying a status hint.
"""

from __future__ import annotations

from zerocopy.files.cache import REVALIDATE_MODES, CachedFile, CacheStatistics, OpenFileCache
from zerocopy.files.errors import Refused, refusal
from zerocopy.files.listing import (
    MAX_LISTING_ENTRIES,
    PAGE_TAIL,
    DirectoryReader,
    Entry,
    Row,
    read_entries,
    render_head,
    render_listing,
    render_rows,
)
from zerocopy.files.metadata import content_type, etag
from zerocopy.files.root import Opened, Root

__all__ = [
    "MAX_LISTING_ENTRIES",
    "PAGE_TAIL",
    "REVALIDATE_MODES",
    "CacheStatistics",
    "CachedFile",
    "DirectoryReader",
    "Entry",
    "OpenFileCache",
    "Opened",
    "Refused",
    "Root",
    "Row",
    "content_type",
    "etag",
    "read_entries",
    "refusal",
    "render_head",
    "render_listing",
    "render_rows",
]
