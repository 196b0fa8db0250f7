"""From a parsed request to a response: the glue between http/ and files/.

Two paths:

* **The fast path** (:meth:`Responder.cached`): a plain GET or HEAD (no conditional, no
  range) of a file that a previous request resolved to an open-file cache entry. The raw
  request-target is looked up in a map of targets already parsed and resolved (the same bytes
  always decode to the same path), the entry is checked fresh (``OpenFileCache.fresh``), and
  the connection sends the 200 head kept with the entry, completed with ``Date`` and
  ``Connection``. No target parsing, no path resolution, no plan.
* **The full path** (:meth:`Responder.respond`): everything else, and the first request for
  each target. It returns a :class:`Prepared` plan. Everything here is synchronous: a
  directory listing is read and rendered after its head has gone, by the plan's stream
  (``listing.py``). Every failure before the head is sent becomes an error plan, so the
  connection loop only ever sends plans.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Final, final

from zerocopy.files import MAX_LISTING_ENTRIES, Refused, content_type, etag
from zerocopy.http import (
    HTTPError,
    Representation,
    check_method,
    parse_target,
    plan_error,
    plan_file,
    plan_listing,
    plan_redirect,
    redirect_location,
    representation_fields,
)
from zerocopy.logtext import safe_text
from zerocopy.server.listing import Listings

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable

    from zerocopy.files import CachedFile, Opened, OpenFileCache
    from zerocopy.http import DateCache, Limits, Request, ResponsePlan, Target
    from zerocopy.server.sender import Sender

    Stream = Callable[[socket.socket, Sender], Awaitable[int]]

__all__ = ["Prepared", "Responder"]

logger = logging.getLogger("zerocopy.server")
_HTML: Final = b"text/html; charset=utf-8"
_FAST_METHODS: Final = frozenset({"GET", "HEAD"})


@final
class Prepared:
    """A plan, and every file opened to make it.

    Attributes:
        plan: What to send.
        files: The files and directories opened for the plan; its spans borrow one of them.
            :meth:`close` is the one place they are closed, after the plan was sent or failed.
        stream: For a plan whose body is streamed (``plan.stream``): sends the body after the
            head, ``await stream(sock, sender)``, and returns its length. It borrows one of
            :attr:`files`.
    """

    __slots__ = ("files", "path", "plan", "stream")

    def __init__(
        self,
        plan: ResponsePlan,
        files: list[Opened] | None = None,
        stream: Stream | None = None,
    ) -> None:
        self.plan = plan
        self.stream = stream
        self.files = files or []
        self.path = self.files[-1].path if self.files else None
        """The resolved path of the last file opened (the one sent), for logs."""

    def close(self) -> None:
        """Close (or give back to the cache) every file opened for the plan."""
        files, self.files = self.files, []
        _close_all(files)


def _close_all(files: list[Opened]) -> None:
    """The one place where the files opened for a response are closed."""
    for opened in files:
        opened.close()


@final
class Responder:
    """Answers requests from a root directory.

    Args:
        files: Where files come from: the open-file cache over the root.
        limits: For the range-count guard.
        dates: The shared Date header cache.
        listing: Render listings for directories without index.html (else 403).
        max_targets: Most request-targets remembered for the fast path; the map is emptied
            when it is full (it is rebuilt by the next requests).
        max_listing_entries: The most directory entries one listing reads.
    """

    def __init__(
        self,
        files: OpenFileCache,
        limits: Limits,
        dates: DateCache,
        *,
        listing: bool,
        max_targets: int = 4096,
        max_listing_entries: int = MAX_LISTING_ENTRIES,
    ) -> None:
        self._files = files
        self._root = files.root
        self._limits = limits
        self._dates = dates
        self._listing = listing
        self.listings = Listings(
            max_entries=max_listing_entries,
            follow_symlinks=self._root.follow_symlinks,
            within=self._root.path,
        )
        self._targets: dict[bytes, CachedFile] = {}
        self._max_targets = max_targets

    def cached(self, request: Request) -> CachedFile | None:
        """The fresh cache entry that a plain GET or HEAD may be answered from, or ``None``.

        The entry's ``memo`` holds the 200's representation fields (``head_200`` completes
        them). The caller borrows the entry's descriptor for as long as it sends.
        Never blocks: one ``ioctl`` on the inotify descriptor, or a revalidation.
        """
        entry = self._targets.get(request.target)
        if entry is None or request.method not in _FAST_METHODS:
            return None
        if self._files.fresh(entry):
            return entry
        del self._targets[request.target]
        return None

    def respond(self, request: Request, *, keep_alive: bool) -> Prepared:
        """Plan the response to ``request``.

        Args:
            request: A parsed request.
            keep_alive: Whether the connection may stay open after the response.

        Returns:
            The plan, the files it opened (the caller closes them: ``Prepared.close``), and
            for a listing the stream that sends its body.

        Never blocks: a listing's directory is read by its stream.
        """
        opened: list[Opened] = []
        try:
            plan = self._plan(request, opened, keep_alive)
        except BaseException:
            _close_all(opened)
            raise
        if isinstance(plan, Prepared):
            return plan
        return Prepared(plan, opened)

    def _plan(
        self, request: Request, opened: list[Opened], keep_alive: bool
    ) -> ResponsePlan | Prepared:
        """The plan for ``request`` (a listing's comes with its stream, as a
        :class:`Prepared`); every file it opens is appended to ``opened``."""
        try:
            check_method(request.method)
            target = parse_target(request.target)
            found = self._open(target.segments, opened)
        except HTTPError as exc:
            return self.error(exc, request, keep_alive=keep_alive)
        except Refused as exc:
            return self.refused(exc, request, keep_alive=keep_alive)
        date = self._dates.now()
        if not found.is_dir:
            if target.trailing_slash:
                error = HTTPError(404, "file requested as a directory", close=False)
                return self.error(error, request, keep_alive=keep_alive)
            return self._file_plan(request, found, target.segments[-1], date, keep_alive)
        if not target.trailing_slash:
            location = redirect_location(target)
            return plan_redirect(location, request, date=date, keep_alive=keep_alive)
        try:
            index = self._open_index(target.segments, opened)
        except Refused as exc:
            return self.refused(exc, request, keep_alive=keep_alive)
        if index is None:
            return self._listing_of(request, target, found, opened, keep_alive=keep_alive)
        return self._file_plan(request, index, "index.html", date, keep_alive)

    def _open_index(self, directory: tuple[str, ...], opened: list[Opened]) -> Opened | None:
        """The directory's ``index.html``, or ``None`` when it has none (or it is a directory).

        A directory without one is looked at through the root, not the open-file cache: a
        cache miss adds an inotify watch on the directory and removes it again, and in a
        directory of 200,000 names the kernel takes about 8 ms for each, on the event loop
        (it marks every child dentry). An ``index.html`` that exists is then opened through
        the cache, so that later requests for the directory take the fast path.

        Raises:
            Refused: Anything but "not found" (403, 503, ...).
        """
        names = (*directory, "index.html")
        try:
            probe = self._root.open(names)
        except Refused as exc:
            if exc.status_hint == 404:
                return None
            raise
        is_dir = probe.is_dir
        probe.close()
        if is_dir:
            return None
        try:
            index = self._open(names, opened)
        except Refused as exc:
            if exc.status_hint == 404:  # Gone in between.
                return None
            raise
        return None if index.is_dir else index

    def _open(self, segments: tuple[str, ...], opened: list[Opened]) -> Opened:
        found = self._files.open(segments)
        opened.append(found)
        return found

    def _file_plan(
        self, request: Request, found: Opened, name: str, date: bytes, keep_alive: bool
    ) -> ResponsePlan:
        info = found.stat
        rep = Representation(
            body=found.body(),
            mtime=int(info.st_mtime),
            etag=etag(info),
            content_type=content_type(name),
        )
        entry = found.entry
        if entry is not None:
            # Later plain requests for this very target take the fast path.
            if entry.memo is None:
                entry.memo = representation_fields(rep)
            if len(self._targets) >= self._max_targets:
                self._targets.clear()
            self._targets[request.target] = entry
        return plan_file(
            request,
            rep,
            date=date,
            keep_alive=keep_alive,
            max_ranges=self._limits.max_ranges,
        )

    def _listing_of(
        self,
        request: Request,
        target: Target,
        directory: Opened,
        opened: list[Opened],
        *,
        keep_alive: bool,
    ) -> ResponsePlan | Prepared:
        if not self._listing:
            error = HTTPError(403, "directory listing disabled", close=False)
            return self.error(error, request, keep_alive=keep_alive)
        date = self._dates.now()
        plan = plan_listing(request, _HTML, date=date, keep_alive=keep_alive)
        if plan.stream is None:  # HEAD, 304, 412: nothing to read.
            return plan
        stream = partial(
            self.listings.stream, fd=directory.fd, path=target.path, framing=plan.stream
        )
        return Prepared(plan, opened, stream)

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
            logger.error(
                "%s %s: %s", request.method, safe_text(request.target), safe_text(exc.reason)
            )
        error = HTTPError(exc.status_hint, exc.reason, close=False)
        return self.error(error, request, keep_alive=keep_alive)
