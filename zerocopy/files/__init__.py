"""The file side: root containment, opening and metadata, MIME types, listings.

Imports neither trio nor the HTTP layer: it answers with stat results, bytes, and
:class:`Refused` carrying a status hint.
"""

from __future__ import annotations

from zerocopy.files.cache import REVALIDATE_MODES, CachedFile, CacheStatistics, OpenFileCache
from zerocopy.files.dotfiles import hidden_name, hidden_path
from zerocopy.files.errors import Refused, refusal
from zerocopy.files.listing import (
    JSON_TAIL,
    MAX_LISTING_ENTRIES,
    PAGE_TAIL,
    DirectoryReader,
    Entry,
    Row,
    human_size,
    read_entries,
    render_head,
    render_json_head,
    render_json_rows,
    render_listing,
    render_rows,
    rfc3339,
    sort_rows,
)
from zerocopy.files.metadata import content_type, etag
from zerocopy.files.root import Opened, Root

__all__ = [
    "JSON_TAIL",
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
    "hidden_name",
    "hidden_path",
    "human_size",
    "read_entries",
    "refusal",
    "render_head",
    "render_json_head",
    "render_json_rows",
    "render_listing",
    "render_rows",
    "rfc3339",
    "sort_rows",
]
