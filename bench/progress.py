"""Progress lines for long runs: a tqdm bar when tqdm is installed, plain lines otherwise.

tqdm is optional (not in the ``bench`` extra yet), so it is imported by name at run time and
used through a two-method surface; without it every step prints one line to stderr with the
elapsed time, which also reads well in CI logs.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, final

__all__ = ["Progress"]


@final
class Progress:
    """``step(text)`` once per unit of work out of ``total``; ``close()`` at the end."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        self._total = total
        self._done = 0
        self._start = time.monotonic()
        self._enabled = enabled
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            try:
                tqdm = importlib.import_module("tqdm")
            except ImportError:
                pass
            else:
                self._bar = tqdm.tqdm(total=total, unit="step", dynamic_ncols=True)

    def step(self, text: str) -> None:
        """Announce the unit of work that starts now."""
        if not self._enabled:
            return
        if self._bar is not None:
            if self._done:
                self._bar.update(1)
            self._bar.set_description(text)
        else:
            elapsed = time.monotonic() - self._start
            print(f"[{self._done + 1}/{self._total} {elapsed:6.1f}s] {text}", file=sys.stderr)
        self._done += 1

    def note(self, text: str) -> None:
        """A line that is not a step (a skipped phase, a warning)."""
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(f"  {text}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._done - self._bar.n)
            self._bar.close()
