"""Progress of a long run on stderr: a rich or tqdm bar when installed, plain lines otherwise.

Progress goes to stderr, so that stdout carries only the notes and the summary tables. Neither
rich nor tqdm is a dependency: they are looked up by name at run time (which also keeps mypy
from needing them) and used through a three-call surface. With ``style="auto"`` a bar is
drawn only when stderr is a terminal: redirected to a file (CI, ``make … 2> log``) a bar
would fill it with carriage returns, so every step is one plain line, with the elapsed time
and an estimate of the time left.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from typing import TYPE_CHECKING, Any, Final, Self, final

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["STYLES", "Progress"]

STYLES: Final = ("auto", "rich", "tqdm", "plain")


def _format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


@final
class Progress:
    """A counter of ``total`` steps with a message per finished step; use as ``with``.

    Args:
        total: the planned number of steps.
        title: shown once at the start (and as the bar's label).
        style: ``"auto"`` (rich, else tqdm, when stderr is a terminal; else plain), or one of
            ``rich``, ``tqdm``, ``plain`` (a library that is not installed falls back to
            plain).

    Raises:
        ValueError: an unknown style.

    Resource handling: the bar is started on entering the ``with`` block and stopped on
    leaving it, however it is left.
    """

    def __init__(self, total: int, title: str, *, style: str = "auto") -> None:
        self.total = total
        self.title = title
        self.done = 0
        self._started = time.monotonic()
        self.style = _pick_style(style)
        self._bar: Any = None
        self._task: Any = None
        self._console: Any = None

    def __enter__(self) -> Self:
        if self.style == "rich":
            progress = importlib.import_module("rich.progress")
            console = importlib.import_module("rich.console").Console(stderr=True)
            self._console = console
            self._bar = progress.Progress(
                progress.TextColumn("{task.description}"),
                progress.BarColumn(),
                progress.MofNCompleteColumn(),
                progress.TimeElapsedColumn(),
                progress.TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=self.total)
        elif self.style == "tqdm":
            tqdm = importlib.import_module("tqdm")
            self._bar = tqdm.tqdm(total=self.total, desc=self.title, file=sys.stderr)
        else:
            print(f"{self.title}: {self.total} steps", file=sys.stderr, flush=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.style == "rich":
            self._bar.stop()
        elif self.style == "tqdm":
            self._bar.close()

    def note(self, message: str) -> None:
        """A line that is not a step (a skipped phase, a warning); stays above the bar."""
        if self.style == "rich":
            self._console.print(message, markup=False, highlight=False)
        elif self.style == "tqdm":
            self._bar.write(message, file=sys.stderr)
        else:
            print(f"  {message}", file=sys.stderr, flush=True)

    def advance(self, message: str) -> None:
        """One step finished; ``message`` says what it did."""
        self.done += 1
        step = f"{self.done}/{self.total}"
        if self.style == "rich":
            self._console.print(f"[{step}] {message}", markup=False, highlight=False)
            self._bar.advance(self._task)
        elif self.style == "tqdm":
            self._bar.write(f"[{step}] {message}", file=sys.stderr)
            self._bar.update(1)
        else:
            elapsed = time.monotonic() - self._started
            eta = elapsed / self.done * max(0, self.total - self.done)
            times = f"{_format_duration(elapsed)}, ETA {_format_duration(eta)}"
            print(f"[{step} {times}] {message}", file=sys.stderr, flush=True)


def _pick_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"unknown progress style {style!r}")
    if style == "auto":
        if not sys.stderr.isatty():
            return "plain"
        for name in ("rich", "tqdm"):
            if importlib.util.find_spec(name) is not None:
                return name
        return "plain"
    if style != "plain" and importlib.util.find_spec(style) is None:
        return "plain"
    return style
