"""``python -m zerocopy`` is the ``zerocopy`` command."""

from __future__ import annotations

import sys

from zerocopy.cli import main

if __name__ == "__main__":
    sys.exit(main())
