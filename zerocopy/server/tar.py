"""A directory as a tar download (``?download=tar``): walked off the event loop, then sent with
its file data through the transfer strategy, so that with sendfile or splice no byte of it
passes through user space.

Theory of operation:

* **Walk first, head after.** The response has a Content-Length (clients show progress), so
  the tree is walked before the head: :meth:`Archives.prepare` runs a
  :class:`~zerocopy.files.tar.TreeWalker` in worker-thread steps of :data:`BATCH` names,
  with the same one-thread limiter as listings, and looks at the socket before each step (a
  client that has gone stops the walk). The walk is bounded by ``--tar-max-files`` (names read)
  and ``--tar-max-bytes`` (the archive's length); past either, the answer is a 413 that says
  which, and nothing more is read. Then the head goes out (HEAD stops there: it walks the tree,
  since it needs the length, but opens no file).
* **Then the members, one file open at a time.** For each member, in the walk's order, the
  path is opened again with :meth:`Root.open <zerocopy.files.Root.open>` (never the open-file
  cache: an archive would fill it with files asked for once, and evict those asked for
  often), so every containment, symlink and dot-file rule applies at the moment the bytes are
  read. Its header (pax and ustar blocks, made again from what the walk saw:
  ``member_header``) goes out as the prefix of its data, a :class:`~zerocopy.span.FileSpan`
  sent by the strategy (``Sender.send_file``: ``MSG_MORE`` and ``sendfile``/``splice``, or
  one ``sendmsg`` under read/write and TLS); the padding after it becomes the next prefix.
  Headers of directories and empty files are gathered and sent together (at most
  :data:`FLUSH` bytes at a time). The file is closed before the next is opened.
* **The tree may change under the archive.** A member that is gone, is refused now (it became
  a symlink, or leads out of the root), changed type, or whose size is not the walk's, ends
  the connection before its header is sent (:class:`ArchiveChanged`), and so does a root
  switched to another directory since the walk (a deploy: an archive comes whole from one
  release; a switch during the walk walks again, once); a file truncated while its data is
  sent ends it as a single file does (``FileTruncated`` from the strategy). The client sees
  fewer bytes than Content-Length announced, so it knows the download failed; the archive is
  never padded and never holds bytes that are not the file's. Both are logged as a truncated
  single file is, with the path. A file that grows after it was opened is sent
  with the length the walk saw, as a growing single file is sent with its length at open.
* After the head, any failure can only close the connection (as for every response).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import trio

from zerocopy.files import Refused
from zerocopy.files.tar import (
    END,
    MAX_ARCHIVE_BYTES,
    MAX_ARCHIVE_ENTRIES,
    TreeWalker,
    member_header,
    padding,
)
from zerocopy.http import HTTPError, content_disposition, plan_archive, plan_error
from zerocopy.logtext import safe_text
from zerocopy.span import FileSpan
from zerocopy.transfer import TransferError

if TYPE_CHECKING:
    from zerocopy.files import Opened, Root
    from zerocopy.files.tar import Member
    from zerocopy.http import DateCache, Request, ResponsePlan
    from zerocopy.server.respond import Prepared

__all__ = [
    "BATCH",
    "FLUSH",
    "ArchiveChanged",
    "ArchiveSender",
    "ArchiveStatistics",
    "Archives",
    "TarLimits",
]

logger = logging.getLogger("zerocopy.server")

_WALKS: Final = 2
"""Walks tried when the root is switched to another directory (a deploy) during one: an
archive comes whole from one release. After a second switch, 503."""
BATCH: Final = 512
"""Names read per worker-thread call of the walk, as listings read them: a few milliseconds."""
FLUSH: Final = 64 * 1024
"""Headers of directories and empty files gathered before they are sent; a tree of many
small entries is sent in writes of this size, with a checkpoint each."""


@final
class ArchiveChanged(TransferError):
    """A member of an archive being sent no longer matches the walk that sized the archive:
    gone, refused, another type, or another size. The connection must close.

    Attributes:
        member: The member's path in the archive.
    """

    def __init__(self, member: str, what: str) -> None:
        super().__init__(f"archive member {member!r} {what} since the walk")
        self.member = member


@final
@dataclass(frozen=True, slots=True)
class TarLimits:
    """How far one archive may go.

    Attributes:
        max_files: Names one walk may read (files, directories, and names left out).
        max_bytes: The largest archive.
    """

    max_files: int = MAX_ARCHIVE_ENTRIES
    max_bytes: int = MAX_ARCHIVE_BYTES


@final
@dataclass(frozen=True, slots=True)
class ArchiveStatistics:
    """What the archives have done since start.

    Attributes:
        walks: Walks begun (GET and HEAD).
        refused: Walks past a limit, answered 413.
        started: Archive bodies begun.
        completed: Archive bodies sent whole.
        stopped: Archive bodies (and walks) that ended early: the client went, the tree
            changed, the server shut down.
        members: Files whose data was sent.
        batches: Worker-thread calls made by walks.
    """

    walks: int = 0
    refused: int = 0
    started: int = 0
    completed: int = 0
    stopped: int = 0
    members: int = 0
    batches: int = 0


class ArchiveSender(Protocol):
    """What an archive needs of the connection's sender (``Sender`` or ``TLSSender``)."""

    def check_peer(self, sock: Any, /) -> None: ...
    async def send_bytes(self, sock: Any, data: bytes, /) -> None: ...
    async def send_file(self, sock: Any, head: bytes, body: FileSpan, /) -> None: ...


@final
class Archives:
    """Walks directories and streams their archives; shared by all connections of a server.

    Args:
        root: Where every directory and file of an archive is opened.
        dates: The shared Date header cache.
        limiter: Worker threads for walks (the listings' limiter: one thread for both).
        limits: ``--tar-max-files`` and ``--tar-max-bytes``.
        dotfiles: Include names that start with a dot.
        common: The operator's fields for every response (``nosniff``, CORS).
        batch: Names read per worker-thread call.
    """

    def __init__(
        self,
        *,
        root: Root,
        dates: DateCache,
        limiter: trio.CapacityLimiter,
        limits: TarLimits,
        dotfiles: bool,
        common: bytes = b"",
        batch: int = BATCH,
    ) -> None:
        self._root = root
        self._dates = dates
        self.limiter = limiter
        self.limits = limits
        self._dotfiles = dotfiles
        self._common = common
        self._batch = batch
        self._walks = 0
        self._refused = 0
        self._started = 0
        self._completed = 0
        self._stopped = 0
        self._members = 0
        self._batches = 0

    def statistics(self) -> ArchiveStatistics:
        """Return the archives' counts."""
        return ArchiveStatistics(
            walks=self._walks,
            refused=self._refused,
            started=self._started,
            completed=self._completed,
            stopped=self._stopped,
            members=self._members,
            batches=self._batches,
        )

    def archive_name(self, segments: tuple[str, ...]) -> str:
        """The top directory of the archive of ``segments``: the directory's name, or for the
        root the name it was given (``www`` for ``zerocopy serve /srv/www``, the same for
        every release behind a ``current`` symlink), or ``root`` when it has none that can be
        written (``/``)."""
        if segments:
            return segments[-1]
        name = self._root.configured.rstrip("/").rpartition("/")[2]
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return "root"
        return name or "root"

    async def prepare(
        self,
        sock: Any,
        sender: ArchiveSender,
        *,
        prepared: Prepared,
        request: Request,
        segments: tuple[str, ...],
        keep_alive: bool,
    ) -> None:
        """Walk the directory and set ``prepared``'s plan (and stream, for a GET).

        Args:
            sock: The client's socket (or TLS channel). Borrowed.
            sender: The connection's sender: ``check_peer`` before each step.
            prepared: Its ``plan`` becomes the 200 (or a 413, or a 500 for a directory that
                could not be read), its ``stream`` the archive's body.
            request: The GET or HEAD.
            segments: The directory, under the root.
            keep_alive: Whether the connection may stay open after the response.

        Raises:
            PeerGone: The client reset the connection during the walk.

        Checkpoints: at every worker-thread call. A cancellation waits for the step in its
        thread, never more.
        """
        self._walks += 1
        name = self.archive_name(segments)
        root = self._root
        for _ in range(_WALKS):
            release = root.path
            try:
                walker = await self._walk(sock, sender, segments, name)
            except OSError as exc:
                logger.error("tar of %s: %s", safe_text("/".join(segments) + "/"), exc)
                error = HTTPError(500, "directory unreadable", close=False)
                prepared.plan = self._error(error, request, keep_alive)
                return
            except BaseException:
                self._stopped += 1
                raise
            if root.path == release:
                break
        else:
            # Deploys are rare and quick: the client may try again at once.
            error = HTTPError(
                503,
                "root switched during the walk",
                close=False,
                headers=((b"Retry-After", b"1"),),
            )
            prepared.plan = self._error(error, request, keep_alive)
            return
        if walker.over is not None:
            self._refused += 1
            prepared.plan = self._too_large(walker.over, request, keep_alive)
            return
        plan = plan_archive(
            request,
            walker.length,
            content_disposition(name + ".tar"),
            date=self._dates.now(),
            keep_alive=keep_alive,
            extra=self._common,
        )
        prepared.plan = plan
        if plan.stream is not None:
            prepared.stream = partial(self.send, walker=walker, prepared=prepared, release=release)

    async def _walk(
        self, sock: Any, sender: ArchiveSender, segments: tuple[str, ...], name: str
    ) -> TreeWalker:
        """Walk the tree in worker-thread steps, looking at the socket before each.

        Raises:
            OSError: A directory could not be read.
            PeerGone: The client reset the connection.
        """
        walker = TreeWalker(
            self._root,
            segments,
            name=name,
            dotfiles=self._dotfiles,
            max_entries=self.limits.max_files,
            max_bytes=self.limits.max_bytes,
        )
        limiter = self.limiter
        batch = self._batch
        done = False
        try:
            while not done:
                sender.check_peer(sock)
                try:
                    done = await trio.to_thread.run_sync(walker.walk, batch, limiter=limiter)
                finally:
                    self._batches += 1
        except BaseException:
            walker.close()
            raise
        return walker

    def _error(
        self, error: HTTPError, request: Request, keep_alive: bool, detail: str = ""
    ) -> ResponsePlan:
        return plan_error(
            error,
            date=self._dates.now(),
            version=request.version,
            keep_alive=keep_alive,
            head_only=request.method == "HEAD",
            extra=self._common,
            detail=detail.encode("ascii"),
        )

    def _too_large(self, over: str, request: Request, keep_alive: bool) -> ResponsePlan:
        limits = self.limits
        if over == "entries":
            detail = (
                f"This directory holds more than {limits.max_files:,} entries, the most this "
                "server puts in one archive. Download its subdirectories instead.\n"
            )
        else:
            detail = (
                f"This directory's archive would be larger than {limits.max_bytes:,} bytes, "
                "the most this server sends as one archive. Download its subdirectories "
                "instead.\n"
            )
        error = HTTPError(413, f"archive past --tar-max-{over}", close=False)
        return self._error(error, request, keep_alive, detail)

    def _open(self, member: Member, walker: TreeWalker, prepared: Prepared, release: str) -> Opened:
        """Open a member as a request would, and check it against the walk.

        Raises:
            ArchiveChanged: It is gone, refused, or not what the walk saw, or the root was
                switched to another directory (a deploy) since the walk.
        """
        segments = walker.segments(member)
        root = self._root
        name = walker.archive_name(member)
        prepared.path = root.path_of(segments)
        if root.path != release:
            raise ArchiveChanged(name, f"is in another release ({safe_text(root.path)})")
        try:
            opened = root.open(segments)
        except Refused as exc:
            raise ArchiveChanged(name, f"is gone or refused ({exc.reason})") from None
        _, is_dir, size, _, _ = member
        if opened.is_dir != is_dir:
            opened.close()
            raise ArchiveChanged(name, "changed type")
        if not is_dir and opened.stat.st_size != size:
            actual = opened.stat.st_size
            opened.close()
            raise ArchiveChanged(name, f"changed size from {size} to {actual} bytes")
        prepared.path = opened.path
        return opened

    async def send(
        self,
        sock: Any,
        sender: ArchiveSender,
        *,
        walker: TreeWalker,
        prepared: Prepared,
        release: str,
    ) -> int:
        """Send the archive, as the body of a response whose head has gone out.

        Args:
            sock: The client's socket (or TLS channel). Borrowed.
            sender: ``Sender`` or ``TLSSender``: ``send_file`` for each file's header and
                data, ``send_bytes`` for the rest.
            walker: The finished walk: its members, in order.
            prepared: Its ``path`` names the member being sent, for the log of a failure.
            release: The root's real path during the walk: every member comes from it (a
                root switched to another release ends the archive).

        Returns:
            Bytes sent: the archive's length.

        Raises:
            ArchiveChanged: A member is not what the walk saw (see the module docstring).
            FileTruncated: A file was truncated while its data was sent.
            PeerGone, SendTimeout, TransferError: As for any body. After any of these the
                body is incomplete: close the connection.

        Resource handling: each file is opened, sent and closed before the next is opened.

        Checkpoints: after every chunk of file data (the strategy's), and at every send.
        """
        self._started += 1
        sent = 0
        pending = b""
        completed = False
        try:
            for member in walker.members:
                _, is_dir, size, mtime, executable = member
                header = member_header(
                    walker.archive_name(member),
                    is_dir=is_dir,
                    size=size,
                    mtime=mtime,
                    executable=executable,
                )
                opened = self._open(member, walker, prepared, release)
                try:
                    if is_dir or not size:
                        pending += header
                    else:
                        span = FileSpan(opened.fd, 0, size, opened.stat.st_dev)
                        await sender.send_file(sock, pending + header, span)
                        sent += len(pending) + len(header) + size
                        self._members += 1
                        pending = padding(size)
                finally:
                    opened.close()
                if len(pending) >= FLUSH:
                    await sender.send_bytes(sock, pending)
                    sent += len(pending)
                    pending = b""
            pending += END
            await sender.send_bytes(sock, pending)
            sent += len(pending)
            completed = True
        finally:
            if completed:
                self._completed += 1
            else:
                self._stopped += 1
            walker.members = []
        assert sent == walker.length, (sent, walker.length)
        return sent
