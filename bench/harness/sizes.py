"""File sizes: binary units, labels (``4KiB``) and parsing (``4k``, ``1MiB``, ``65536``).

The package's own (``zerocopy tune`` parses and prints sizes the same way), re-exported here so
that every benchmark module keeps one import path.
"""

from __future__ import annotations

from zerocopy.tune.sizes import GiB, KiB, MiB, format_size, parse_size, parse_size_list

__all__ = ["GiB", "KiB", "MiB", "format_size", "parse_size", "parse_size_list"]
