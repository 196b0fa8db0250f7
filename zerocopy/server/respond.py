"""From a parsed request to a response plan: the glue between http/ and files/.

Everything here is synchronous except the directory listing, which reads the directory in a
worker thread. Every failure before the head is sent becomes an error plan here, so the
connection loop only ever sends plans.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import trio

from zerocopy.files import Refused, content_type, etag, read_entries, render_listing
from zerocopy.http import (
    HTTPError,
    Representation,
    ResponsePlan,
    check_method,
    parse_target,
    plan_content,
    plan_error,
    plan_file,
    plan_redirect,
    redirect_location,
)
from zerocopy.span import FileSpan

if TYPE_CHECKING:
    from zerocopy.files import Opened, OpenFileCache
    from zerocopy.http import DateCache, Limits, Request, Target

__all__ = ["Prepared", "Responder"]

logger = logging.getLogger("zerocopy.server")
_HTML = b"text/html; charset=utf-8"


def _has_span(plan: ResponsePlan) -> bool:
    return any(isinstance(part, FileSpan) for part in plan.body)


@final
@dataclass(frozen=True, slots=True)
class Prepared:
    """A plan and the file its spans borrow.

    Attributes:
        plan: What to send.
        file: The open file the plan's spans read from, or ``None``. The connection closes it
            after the plan has been sent, or has failed.
    """

    plan: ResponsePlan
    file: Opened | None = None

    def close(self) -> None:
        """Close the borrowed file, if any."""
        if self.file is not None:
            self.file.close()


@final
class Responder:
    """Answers requests from a root directory.

    Args:
        files: Where files come from: the open-file cache over the root.
        limits: For the range-count guard.
        dates: The shared Date header cache.
        listing: Render listings for directories without index.html (else 403).
    """

    def __init__(
        self, files: OpenFileCache, limits: Limits, dates: DateCache, *, listing: bool
    ) -> None:
        self._files = files
        self._root = files.root
        self._limits = limits
        self._dates = dates
        self._listing = listing

    async def respond(self, request: Request, *, keep_alive: bool) -> Prepared:
        """Plan the response to ``request``.

        Args:
            request: A parsed request.
            keep_alive: Whether the connection may stay open after the response.

        Returns:
            The plan, and the open file that its spans borrow (the caller closes it).

        Checkpoints: only when it renders a listing (in a worker thread).
        """
        try:
            check_method(request.method)
            target = parse_target(request.target)
            opened = self._files.open(target.segments)
        except HTTPError as exc:
            return Prepared(self.error(exc, request, keep_alive=keep_alive))
        except Refused as exc:
            return Prepared(self.refused(exc, request, keep_alive=keep_alive))
        prepared: Prepared | None = None
        try:
            prepared = await self._respond_opened(request, target, opened, keep_alive=keep_alive)
            return prepared
        finally:
            # Ownership of `opened` passes to the caller only inside the returned plan.
            if prepared is None or prepared.file is not opened:
                opened.close()

    async def _respond_opened(
        self, request: Request, target: Target, opened: Opened, *, keep_alive: bool
    ) -> Prepared:
        """Plan the response for an open file or directory. Never closes ``opened``."""
        date = self._dates.now()
        if opened.is_dir:
            if not target.trailing_slash:
                location = redirect_location(target)
                return Prepared(plan_redirect(location, request, date=date, keep_alive=keep_alive))
            try:
                index = self._files.open((*target.segments, "index.html"))
            except Refused as exc:
                if exc.status_hint != 404:
                    return Prepared(self.refused(exc, request, keep_alive=keep_alive))
                return await self._listing_of(request, target, opened, keep_alive=keep_alive)
            if index.is_dir:
                index.close()
                return await self._listing_of(request, target, opened, keep_alive=keep_alive)
            try:
                prepared = self._file_plan(request, index, "index.html", date, keep_alive)
            except BaseException:
                index.close()
                raise
            if prepared.file is not index:
                index.close()
            return prepared
        if target.trailing_slash:
            error = HTTPError(404, "file requested as a directory", close=False)
            return Prepared(self.error(error, request, keep_alive=keep_alive))
        return self._file_plan(request, opened, target.segments[-1], date, keep_alive)

    def _file_plan(
        self, request: Request, opened: Opened, name: str, date: bytes, keep_alive: bool
    ) -> Prepared:
        info = opened.stat
        rep = Representation(
            size=info.st_size,
            mtime=int(info.st_mtime),
            etag=etag(info),
            content_type=content_type(name),
            dev=info.st_dev,
        )
        plan = plan_file(
            request,
            rep,
            opened.fd,
            date=date,
            keep_alive=keep_alive,
            max_ranges=self._limits.max_ranges,
        )
        return Prepared(plan, opened if _has_span(plan) else None)

    async def _listing_of(
        self, request: Request, target: Target, opened: Opened, *, keep_alive: bool
    ) -> Prepared:
        if not self._listing:
            error = HTTPError(403, "directory listing disabled", close=False)
            return Prepared(self.error(error, request, keep_alive=keep_alive))
        follow = self._root.follow_symlinks
        within = self._root.path
        entries = await trio.to_thread.run_sync(
            lambda: read_entries(opened.fd, follow_symlinks=follow, within=within)
        )
        body = render_listing(entries, target.path)
        date = self._dates.now()
        return Prepared(plan_content(body, _HTML, request, date=date, keep_alive=keep_alive))

    def error(self, error: HTTPError, request: Request | None, *, keep_alive: bool) -> ResponsePlan:
        """The plan for an error, shaped by the request when there is one."""
        return plan_error(
            error,
            date=self._dates.now(),
            version=request.version if request else "1.1",
            keep_alive=keep_alive,
            head_only=request is not None and request.method == "HEAD",
        )

    def refused(self, exc: Refused, request: Request, *, keep_alive: bool) -> ResponsePlan:
        """The plan for a refused path; 500s are logged, the rest are routine."""
        if exc.status_hint >= 500:
            logger.error("%s %r: %s", request.method, request.target, exc.reason)
        error = HTTPError(exc.status_hint, exc.reason, close=False)
        return self.error(error, request, keep_alive=keep_alive)
