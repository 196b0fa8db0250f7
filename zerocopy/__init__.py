"""zerocopy: an HTTP/1.1 file server on trio with sendfile, splice and read/write transfers."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
