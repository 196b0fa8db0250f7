"""Directory listings, streamed after their head: bounded in memory, in event-loop time, and in
the work that is left when the client goes.

Theory of operation:

* The head goes out first, before the directory is read (``plan_listing``: no Content-Length;
  chunked for HTTP/1.1, delimited by the close for HTTP/1.0, as nginx's autoindex sends it).
  So HEAD, 304 and 412 cost no reading, and a client that has already closed its socket
  answers the head with a reset, which the next check sees.
* The directory is read by a :class:`~zerocopy.files.DirectoryReader`: at most
  ``max_entries`` entries (``--max-listing-entries``), :data:`BATCH` per call, each call in a
  worker thread, since a cold directory blocks on the disk. Before each batch the event loop
  looks at the socket, one ``recv`` with ``MSG_PEEK`` that never blocks: a reset ends the
  listing there, so a listing whose client has gone stops after at most one more batch, and a
  cancellation (shutdown) waits for at most the batch in progress. End of file is not taken
  for "gone": a client may half-close after its request and still read the answer.
* Then the sorted entries are rendered (as HTML or JSON, in the order the query asked for),
  :data:`BATCH` rows per call in a worker thread, and
  each batch goes out as one chunk as soon as it is rendered; a full socket waits under the
  send timeout, like any response. A listing holds its entries (at most ``max_entries``) and
  one rendered batch, never the whole page.
* Worker threads come from one :class:`trio.CapacityLimiter` of :data:`THREADS` for all
  listings, taken per batch and in turn: listings cannot take the threads that cold file
  reads use (``zerocopy.transfer.offload`` has its own), trio's default pool stays free, and
  a listing whose client does not read holds no thread while it waits. Rendering on the event
  loop instead, in slices with checkpoints, measured worse: the loop then runs every slice of
  every listing between two requests of another client.
* After the head, a failure (a directory that cannot be read: EIO) can only close the
  connection. The chunked body then lacks its last chunk, which tells the client that the
  page is incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, final

import trio

from zerocopy.files import (
    JSON_TAIL,
    PAGE_TAIL,
    DirectoryReader,
    hidden_name,
    render_head,
    render_json_head,
    render_json_rows,
    render_rows,
)
from zerocopy.http import LAST_CHUNK, frame_chunk
from zerocopy.logtext import safe_text
from zerocopy.transfer import TransferError

if TYPE_CHECKING:
    from zerocopy.files import Root

__all__ = ["BATCH", "THREADS", "ListingStatistics", "Listings"]

THREADS: Final = 1
"""Worker threads for all listings together. Rendering holds the GIL, so a second thread adds
no throughput, and the event loop, which needs the GIL back after each of its syscalls, may
then wait for two switch intervals (5 ms each) instead of one: with eight listings running,
the p99 latency of a 4 KiB request was about 18 ms with two threads and 10 ms with one."""
BATCH: Final = 512
"""Directory entries read, or rows rendered, per worker-thread call: a few milliseconds of
work, so a gone client or a cancellation is noticed within that, and a chunk of about
150 KB."""


@final
@dataclass(frozen=True, slots=True)
class ListingStatistics:
    """What the listings have done since start.

    Attributes:
        started: Listing bodies begun (a GET of a directory that is listed).
        completed: Listing bodies sent whole.
        stopped: Listing bodies that ended early: the client went or stopped reading, the
            server shut down, or the directory could not be read. Listings in flight are in
            neither count.
        cut: Listings of directories that hold more than the limit.
        entries_read: Directory entries read, listed or not.
        batches: Worker-thread calls made (reading and rendering).
    """

    started: int = 0
    completed: int = 0
    stopped: int = 0
    cut: int = 0
    entries_read: int = 0
    batches: int = 0


class ChunkSender(Protocol):
    """What a listing needs of the connection's sender (``Sender`` or ``TLSSender``)."""

    def check_peer(self, sock: Any, /) -> None: ...
    async def send_bytes(self, sock: Any, data: bytes, /) -> None: ...


@final
class Listings:
    """Reads directories and streams their pages; shared by all connections of a server.

    Args:
        max_entries: The most directory entries one listing reads (see
            :class:`~zerocopy.files.DirectoryReader`).
        root: The root: its setting for symlinks, and its real path at the time of each
            listing (symlinks are listed only when they stay inside it).
        dotfiles: List names that start with a dot (else they are hidden, but for
            ``.well-known`` at the top).
        threads: Worker threads for all listings together.
        batch: Entries read, or rows rendered, per worker-thread call.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        root: Root,
        dotfiles: bool = False,
        threads: int = THREADS,
        batch: int = BATCH,
    ) -> None:
        self.limiter = trio.CapacityLimiter(threads)
        self._max = max_entries
        self._root = root
        self._dotfiles = dotfiles
        self._batch = batch
        self._started = 0
        self._completed = 0
        self._stopped = 0
        self._cut = 0
        self._entries_read = 0
        self._batches = 0

    def statistics(self) -> ListingStatistics:
        """Return the listings' counts."""
        return ListingStatistics(
            started=self._started,
            completed=self._completed,
            stopped=self._stopped,
            cut=self._cut,
            entries_read=self._entries_read,
            batches=self._batches,
        )

    async def stream(
        self,
        sock: Any,
        sender: ChunkSender,
        *,
        fd: int,
        path: str,
        framing: Literal["chunked", "close"],
        top: bool = False,
        form: Literal["html", "json"] = "html",
        sort: str = "name",
        descending: bool = False,
        tar: bool = False,
    ) -> int:
        """Read the directory ``fd`` and send its page, as the body of a response whose head
        has gone out.

        Args:
            sock: The client's socket (or TLS channel). Borrowed.
            sender: Sends the chunks, and tells whether the client has gone.
            fd: The open directory. Borrowed: the caller closes it after this returns.
            path: The decoded URL path of the directory, ending with ``/``.
            framing: ``chunked``, or ``close`` (the connection closes after the body).
            top: The root directory itself (where ``.well-known`` is listed).
            form: ``html`` (a page) or ``json`` (a document).
            sort: The column to sort by: ``name``, ``size`` or ``mtime``.
            descending: Sort in descending order.
            tar: The page links to the directory's tar download.

        Returns:
            Bytes of the page sent (chunk framing not counted).

        Raises:
            PeerGone: The client reset the connection.
            SendTimeout: The client stopped reading.
            TransferError: The directory could not be read. After any of these the body is
                incomplete: close the connection.

        Checkpoints: at every worker-thread call and every send. A cancellation waits for
        the batch in progress in its thread, never more.
        """
        self._started += 1
        root = self._root
        reader = DirectoryReader(
            fd,
            follow_symlinks=root.follow_symlinks,
            within=root.path,
            limit=self._max,
            hidden=None if self._dotfiles else partial(hidden_name, top=top),
            sort=sort,
            descending=descending,
        )
        limiter = self.limiter
        batch = self._batch
        chunked = framing == "chunked"
        sent = 0
        completed = False
        try:
            done = False
            while not done:
                sender.check_peer(sock)
                try:
                    done = await trio.to_thread.run_sync(reader.read, batch, limiter=limiter)
                except OSError as exc:
                    raise TransferError(f"listing {safe_text(path)}: {exc}") from exc
                self._batches += 1
            entries = reader.entries
            cut = None
            if reader.cut:
                self._cut += 1
                cut = (self._max, len(entries))
            json = form == "json"
            if json:
                page = render_json_head(path, cut=cut, sort=sort, descending=descending)
            else:
                page = render_head(path, cut=cut, sort=sort, descending=descending, tar=tar)
            for start in range(0, len(entries), batch):
                rows = entries[start : start + batch]
                if json:
                    page += await trio.to_thread.run_sync(
                        partial(render_json_rows, rows, first=not start), limiter=limiter
                    )
                else:
                    page += await trio.to_thread.run_sync(render_rows, rows, limiter=limiter)
                self._batches += 1
                await sender.send_bytes(sock, frame_chunk(page) if chunked else page)
                sent += len(page)
                page = b""
            page += JSON_TAIL if json else PAGE_TAIL
            await sender.send_bytes(sock, frame_chunk(page) + LAST_CHUNK if chunked else page)
            sent += len(page)
            completed = True
        finally:
            if completed:
                self._completed += 1
            else:
                self._stopped += 1
            self._entries_read += reader.examined
            reader.close()
        return sent
