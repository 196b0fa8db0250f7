"""Progress for the long load runs: rich or tqdm when installed in the venv, else plain lines.

Progress goes to stderr, so that stdout carries only the notes and the summary table. Neither
rich nor tqdm is a dependency; they are looked up at run time, which also keeps mypy from
needing them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from typing import TYPE_CHECKING, Any, Self, final

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Progress"]


def _format_eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


@final
class Progress:
    """A counter of ``total`` steps with a message per finished step.

    Args:
        total: the planned number of steps.
        title: shown once at the start.
        style: ``"auto"`` (rich, else tqdm, else plain), or one of ``rich``, ``tqdm``, ``plain``.
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
            print(f"{self.title}: {self.total} runs", file=sys.stderr, flush=True)
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
        """A line that stays visible above the bar."""
        if self.style == "rich":
            self._console.print(message, markup=False, highlight=False)
        elif self.style == "tqdm":
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def advance(self, message: str) -> None:
        """One step finished; ``message`` says what it measured."""
        self.done += 1
        elapsed = time.monotonic() - self._started
        eta = elapsed / self.done * (self.total - self.done)
        line = f"[{self.done}/{self.total}] {message}"
        if self.style == "rich":
            self._console.print(line, markup=False, highlight=False)
            self._bar.advance(self._task)
        elif self.style == "tqdm":
            self._bar.write(line, file=sys.stderr)
            self._bar.update(1)
        else:
            print(f"{line} (ETA {_format_eta(eta)})", file=sys.stderr, flush=True)


def _pick_style(style: str) -> str:
    if style == "auto":
        for name in ("rich", "tqdm"):
            if importlib.util.find_spec(name) is not None:
                return name
        return "plain"
    if style not in {"rich", "tqdm", "plain"}:
        raise ValueError(f"unknown progress style {style!r}")
    if style != "plain" and importlib.util.find_spec(style) is None:
        return "plain"
    return style
