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
  (``listing.py``), and a tar download's tree is walked by the plan's ``ready`` step before
  its head, which needs the archive's length (``tar.py``). Every failure before the head is
  sent becomes an error plan, so the connection loop only ever sends plans. Every plan
  carries the operator's fields (``nosniff``, CORS; and for files ``Cache-Control`` and the
  ``--header`` rules).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, cast, final

from zerocopy.files import MAX_LISTING_ENTRIES, Refused, content_type, etag, hidden_path
from zerocopy.http import (
    ALLOW,
    CODING_SUFFIXES,
    HTTPError,
    Representation,
    ResponseHeaders,
    ResponsePlan,
    check_method,
    choose_coding,
    choose_format,
    parse_listing_query,
    parse_target,
    plan_archive,
    plan_error,
    plan_file,
    plan_listing,
    plan_page,
    plan_redirect,
    plan_status,
    redirect_location,
    representation_fields,
)
from zerocopy.http.headers import CORS_PREFLIGHT
from zerocopy.logtext import safe_text
from zerocopy.server.listing import Listings
from zerocopy.server.tar import Archives

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from zerocopy.files import CachedFile, Opened, OpenFileCache
    from zerocopy.http import DateCache, Limits, Request, Target
    from zerocopy.server.listing import ChunkSender
    from zerocopy.server.tar import ArchiveSender, TarLimits

    Stream = Callable[[Any, ChunkSender], Awaitable[int]]
    Ready = Callable[[Any, ArchiveSender], Awaitable[None]]

__all__ = ["ContentPolicy", "Prepared", "Responder"]

logger = logging.getLogger("zerocopy.server")
_HTML: Final = b"text/html; charset=utf-8"
_JSON: Final = b"application/json"
_LISTING_FIELDS: Final = (
    # The format follows Accept, so caches must key on it; the page needs nothing but its own
    # inline style, so nothing else may load or run (a name that slipped past the escaping
    # could not run a script either).
    b"Vary: Accept\r\nContent-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
)
_FAST_METHODS: Final = frozenset({"GET", "HEAD"})
_UNKNOWN: Final = "?"
_MAX_CHOICES: Final = 64
"""Accept-Encoding values remembered per file; browsers send a handful of distinct ones."""


@final
@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """What is served, beside the files themselves.

    Attributes:
        precompressed: Codings served from sidecars (``x.js.br``), in order of preference;
            empty: none.
        headers: The operator's fields (``nosniff``, ``--cors``, ``--cache-control``,
            ``--header``).
        dotfiles: Serve names that start with a dot (default: 404, as if missing, and hidden
            from listings); ``/.well-known/`` is served either way.
        not_found: The page (path segments under the root) sent with every 404 for a missing
            path, or ``None``.
        spa: The page sent, with 200, for a missing path whose last segment has no dot (a
            single-page application's route), or ``None``.
    """

    precompressed: tuple[str, ...] = ("br", "zstd", "gzip")
    headers: ResponseHeaders = field(default_factory=ResponseHeaders)
    dotfiles: bool = False
    not_found: tuple[str, ...] | None = None
    spa: tuple[str, ...] | None = None


@final
class _FileMemo:
    """What the full path worked out about a cached file, kept with its cache entry.

    Attributes:
        fields: The 200's fields for the original (``head_200`` completes them).
        codings: The codings of the sidecars that exist, in order of preference.
        variants: For each of them, the sidecar's cache key and the 200's fields.
        choices: Accept-Encoding values already negotiated, and the coding chosen.
        presence: Without inotify, each candidate sidecar's path and whether it existed: the
            fast path checks that none appeared or went (with inotify, the entry is dropped
            when one does).
    """

    __slots__ = ("choices", "codings", "fields", "presence", "variants")

    def __init__(
        self,
        fields: bytes,
        variants: dict[str, tuple[tuple[str, ...], bytes]],
        presence: tuple[tuple[bytes, bool], ...] | None,
    ) -> None:
        self.fields = fields
        self.codings = tuple(variants)
        self.variants = variants
        self.choices: dict[bytes | None, str | None] = {}
        self.presence = presence

    def coding_for(self, accept: bytes | None) -> str | None:
        coding = self.choices.get(accept, _UNKNOWN)
        if coding == _UNKNOWN:
            coding = choose_coding(accept, self.codings)
            if len(self.choices) >= _MAX_CHOICES:
                self.choices.clear()
            self.choices[accept] = coding
        return coding

    def unchanged(self) -> bool:
        """Without inotify: no sidecar appeared or went since the memo was made."""
        assert self.presence is not None
        for path, existed in self.presence:
            try:
                os.stat(path, follow_symlinks=False)
            except OSError:
                exists = False
            else:
                exists = True
            if exists != existed:
                return False
        return True


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
        ready: For a plan that needs blocking work before its head (a tar download, whose
            length needs the stat of every entry): ``await ready(sock, sender)`` does it in a
            worker thread and sets :attr:`plan` (and :attr:`stream`); until then :attr:`plan`
            is a 500. The caller awaits it before sending.
    """

    __slots__ = ("files", "path", "plan", "ready", "stream")

    def __init__(
        self,
        plan: ResponsePlan,
        files: list[Opened] | None = None,
        stream: Stream | None = None,
        ready: Ready | None = None,
    ) -> None:
        self.plan = plan
        self.stream = stream
        self.ready = ready
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
        policy: Sidecars, the operator's headers, dot files, the 404 and SPA pages.
        max_targets: Most request-targets remembered for the fast path; the map is emptied
            when it is full (it is rebuilt by the next requests).
        max_listing_entries: The most directory entries one listing reads.
        tar: The limits of tar downloads of listed directories (``?download=tar``);
            ``None``: off (the query is then ignored).
    """

    def __init__(
        self,
        files: OpenFileCache,
        limits: Limits,
        dates: DateCache,
        *,
        listing: bool,
        policy: ContentPolicy | None = None,
        max_targets: int = 4096,
        max_listing_entries: int = MAX_LISTING_ENTRIES,
        tar: TarLimits | None = None,
    ) -> None:
        self._files = files
        self._root = files.root
        self._limits = limits
        self._dates = dates
        self._listing = listing
        self._policy = policy = policy or ContentPolicy()
        self._headers = policy.headers
        self._common = policy.headers.common
        self._suffixes = [(coding, CODING_SUFFIXES[coding]) for coding in policy.precompressed]
        self.listings = Listings(
            max_entries=max_listing_entries, root=self._root, dotfiles=policy.dotfiles
        )
        self.archives = None
        if tar is not None:
            self.archives = Archives(
                root=self._root,
                dates=dates,
                limiter=self.listings.limiter,
                limits=tar,
                dotfiles=policy.dotfiles,
                common=self._common,
            )
        self._targets: dict[bytes, CachedFile] = {}
        self._max_targets = max_targets

    def cached(self, request: Request) -> tuple[CachedFile, bytes] | None:
        """The fresh cache entry that a plain GET or HEAD may be answered from, and the 200's
        fields for it (``head_200`` completes them), or ``None``.

        For a file with precompressed sidecars the entry is the sidecar that Accept-Encoding
        chooses. The caller borrows the entry's descriptor for as long as it sends.
        Never blocks: one ``ioctl`` on the inotify descriptor, or revalidations without it.
        """
        target = request.target
        entry = self._targets.get(target)
        if entry is None or request.method not in _FAST_METHODS:
            return None
        files = self._files
        memo = cast("_FileMemo", entry.memo)
        if not files.fresh(entry) or (memo.presence is not None and not memo.unchanged()):
            del self._targets[target]
            return None
        if not memo.codings:
            return entry, memo.fields
        coding = memo.coding_for(request.headers.get(b"accept-encoding"))
        if coding is None:
            return entry, memo.fields
        key, fields = memo.variants[coding]
        variant = files.get(key, synced=True)  # fresh() above drained the events
        if variant is None:
            del self._targets[target]
            return None
        return variant, fields

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
            if request.method == "OPTIONS" and self._headers.cors:
                return self._preflight(request, keep_alive)
            check_method(request.method)
            target = parse_target(request.target)
        except HTTPError as exc:
            return self._error(exc, request, keep_alive=keep_alive)
        segments = target.segments
        if not self._policy.dotfiles and hidden_path(segments):
            return self._missing(request, target, opened, keep_alive, "dot file")
        try:
            found = self._open(segments, opened)
        except Refused as exc:
            if exc.status_hint == 404:
                return self._missing(request, target, opened, keep_alive, exc.reason)
            return self._refused(exc, request, keep_alive=keep_alive)
        if not found.is_dir:
            if target.trailing_slash:
                return self._missing(request, target, opened, keep_alive, "file as directory")
            return self._file_plan(request, found, segments, keep_alive, opened)
        if not target.trailing_slash:
            location = redirect_location(target)
            date = self._dates.now()
            return plan_redirect(
                location, request, date=date, keep_alive=keep_alive, extra=self._common
            )
        index_segments = (*segments, "index.html")
        try:
            index = self._open_index(index_segments, opened)
        except Refused as exc:
            return self._refused(exc, request, keep_alive=keep_alive)
        if index is None:
            return self._listing_of(request, target, found, opened, keep_alive=keep_alive)
        return self._file_plan(request, index, index_segments, keep_alive, opened)

    def _open_index(self, names: tuple[str, ...], opened: list[Opened]) -> Opened | None:
        """The directory's ``index.html``, or ``None`` when it has none (or it is a directory).

        A directory without one is looked at through the root, not the open-file cache: a
        cache miss adds an inotify watch on the directory and removes it again, and in a
        directory of 200,000 names the kernel takes about 8 ms for each, on the event loop
        (it marks every child dentry). An ``index.html`` that exists is then opened through
        the cache, so that later requests for the directory take the fast path.

        Raises:
            Refused: Anything but "not found" (403, 503, ...).
        """
        if not self._root.may_exist(names):
            return None
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
        related = [segments[-1] + suffix for _, suffix in self._suffixes] if segments else ()
        found = self._files.open(segments, related=related)
        opened.append(found)
        return found

    def _missing(
        self,
        request: Request,
        target: Target,
        opened: list[Opened],
        keep_alive: bool,
        reason: str,
    ) -> ResponsePlan:
        """A 404 for a missing path (or one that must look missing): the SPA page, the 404
        page, or the plain 404, in that order."""
        policy = self._policy
        last = target.segments[-1] if target.segments else ""
        if policy.spa is not None and "." not in last and request.method in _FAST_METHODS:
            page = self._page(policy.spa, opened)
            if page is not None:
                return self._file_plan(request, page, policy.spa, keep_alive, opened, alias=False)
        error = HTTPError(404, reason, close=False)
        if policy.not_found is not None and request.method in _FAST_METHODS:
            page = self._page(policy.not_found, opened)
            if page is not None:
                kind = content_type(policy.not_found[-1])
                date = self._dates.now()
                return plan_page(
                    404,
                    page.body(),
                    kind,
                    request,
                    date=date,
                    keep_alive=keep_alive,
                    extra=self._common,
                )
        return self._error(error, request, keep_alive=keep_alive)

    def _page(self, segments: tuple[str, ...], opened: list[Opened]) -> Opened | None:
        """The configured page, if it opens as a regular file."""
        try:
            page = self._open(segments, opened)
        except Refused:
            return None
        return None if page.is_dir else page

    def _file_plan(
        self,
        request: Request,
        found: Opened,
        segments: tuple[str, ...],
        keep_alive: bool,
        opened: list[Opened],
        *,
        alias: bool = True,
    ) -> ResponsePlan:
        entry = found.entry
        memo = cast("_FileMemo | None", entry.memo if entry is not None else None)
        if memo is not None and memo.presence is not None and not memo.unchanged():
            memo = None
        name = segments[-1]
        kind = content_type(name)
        extra = self._headers.for_file("/" + "/".join(segments))
        sidecars: dict[str, Opened] = {}
        if memo is None:
            sidecars = self._sidecars(segments, opened)
        codings = tuple(sidecars) if memo is None else memo.codings
        coding = choose_coding(request.headers.get(b"accept-encoding"), codings)
        if coding is not None and memo is not None:
            try:
                sidecars[coding] = self._open(memo.variants[coding][0], opened)
            except Refused:
                coding = None  # Gone since: the original, this time; the entry goes soon.
        info = found.stat
        rep = Representation(found.body(), int(info.st_mtime), etag(info), kind, vary=bool(codings))
        if entry is not None and alias:
            if memo is None:
                memo = self._memo(rep, segments, sidecars, kind, extra)
                entry.memo = memo
            # Later plain requests for this very target take the fast path.
            if len(self._targets) >= self._max_targets:
                self._targets.clear()
            self._targets[request.target] = entry
        if coding is not None:
            rep = _encoded(sidecars[coding], coding, kind)
        return plan_file(
            request,
            rep,
            date=self._dates.now(),
            keep_alive=keep_alive,
            max_ranges=self._limits.max_ranges,
            extra=extra,
            common=self._common,
        )

    def _sidecars(self, segments: tuple[str, ...], opened: list[Opened]) -> dict[str, Opened]:
        """The precompressed sidecars of a file that open as regular files, by coding.

        A sidecar is opened like any file (containment, symlinks, dot files), so one that would
        be refused on its own is not used.
        """
        found: dict[str, Opened] = {}
        directory, name = segments[:-1], segments[-1]
        for coding, suffix in self._suffixes:
            candidate = (*directory, name + suffix)
            if not self._root.may_exist(candidate):
                continue  # Most files have none: one lstat, not a refused open.
            try:
                sidecar = self._open(candidate, opened)
            except Refused:
                continue
            if not sidecar.is_dir:
                found[coding] = sidecar
        return found

    def _memo(
        self,
        rep: Representation,
        segments: tuple[str, ...],
        sidecars: dict[str, Opened],
        kind: bytes,
        extra: bytes,
    ) -> _FileMemo:
        variants = {
            coding: (
                (*segments[:-1], segments[-1] + CODING_SUFFIXES[coding]),
                representation_fields(_encoded(sidecar, coding, kind), extra),
            )
            for coding, sidecar in sidecars.items()
            if sidecar.entry is not None
        }
        presence = None
        if self._files.mode != "inotify" and self._suffixes:
            base = self._root.path_of(segments)
            presence = tuple(
                (base + suffix.encode(), coding in sidecars) for coding, suffix in self._suffixes
            )
        return _FileMemo(representation_fields(rep, extra), variants, presence)

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
            return self._error(error, request, keep_alive=keep_alive)
        query = parse_listing_query(target.query)
        if query.download and self.archives is not None:
            return self._archive_of(request, target, opened, keep_alive=keep_alive)
        form = choose_format(query, request.headers.get(b"accept"))
        date = self._dates.now()
        plan = plan_listing(
            request,
            _JSON if form == "json" else _HTML,
            date=date,
            keep_alive=keep_alive,
            extra=self._common,
            fields=_LISTING_FIELDS,
        )
        framing = plan.stream
        if framing is None or framing == "length":  # HEAD, 304, 412 (never "length")
            return plan
        stream = partial(
            self.listings.stream,
            fd=directory.fd,
            path=target.path,
            framing=framing,
            top=not target.segments,
            form=form,
            sort=query.sort,
            descending=query.descending,
            tar=self.archives is not None,
        )
        return Prepared(plan, opened, stream)

    def _archive_of(
        self, request: Request, target: Target, opened: list[Opened], *, keep_alive: bool
    ) -> ResponsePlan | Prepared:
        """A tar download: 304 or 412 at once, else a plan made ready by walking the tree."""
        archives = self.archives
        assert archives is not None
        # The preconditions need no walk: a plan of any length tells whether they pass.
        early = plan_archive(
            request, 0, b"", date=self._dates.now(), keep_alive=keep_alive, extra=self._common
        )
        if early.status != 200:
            return early
        error = HTTPError(500, "archive not walked", close=False)
        prepared = Prepared(self._error(error, request, keep_alive=keep_alive), opened)
        prepared.ready = partial(
            archives.prepare,
            prepared=prepared,
            request=request,
            segments=target.segments,
            keep_alive=keep_alive,
        )
        return prepared

    def error(self, error: HTTPError, request: Request | None, *, keep_alive: bool) -> ResponsePlan:
        """The plan for an error found outside :meth:`respond` (a request that did not parse,
        a timeout, failed authentication)."""
        return self._error(error, request, keep_alive=keep_alive)

    def _error(
        self, error: HTTPError, request: Request | None, *, keep_alive: bool
    ) -> ResponsePlan:
        """The plan for an error, shaped by the request when there is one, with the fields
        every response carries."""
        return plan_error(
            error,
            date=self._dates.now(),
            version=request.version if request else "1.1",
            keep_alive=keep_alive,
            head_only=request is not None and request.method == "HEAD",
            extra=self._common,
        )

    def _preflight(self, request: Request, keep_alive: bool) -> ResponsePlan:
        """OPTIONS with ``--cors``: 204 with what a browser's preflight asks for."""
        fields = b"Allow: %s, OPTIONS\r\n%s%s" % (ALLOW, CORS_PREFLIGHT, self._common)
        return plan_status(204, fields, request, date=self._dates.now(), keep_alive=keep_alive)

    def _refused(self, exc: Refused, request: Request, *, keep_alive: bool) -> ResponsePlan:
        """The plan for a refused path; 500s are logged, the rest are routine."""
        if exc.status_hint >= 500:
            logger.error(
                "%s %s: %s", request.method, safe_text(request.target), safe_text(exc.reason)
            )
        error = HTTPError(exc.status_hint, exc.reason, close=False)
        return self._error(error, request, keep_alive=keep_alive)


def _encoded(sidecar: Opened, coding: str, kind: bytes) -> Representation:
    """A precompressed sidecar as the representation of its original: the original's type,
    the sidecar's bytes, length and time, and an entity-tag that names the coding (two
    codings of one file must never share a strong validator)."""
    info = sidecar.stat
    tag = etag(info)
    return Representation(
        sidecar.body(),
        int(info.st_mtime),
        tag[:-1] + b"-" + coding.encode() + b'"',
        kind,
        coding.encode(),
        vary=True,
    )
