"""The per-connection loop: read, parse, answer in order, keep alive or close.

Theory of operation:

* One task per connection, started by ``trio.serve_listeners``. The task owns the socket and
  closes it on every path out.
* Reading comes first, waiting second: when the parser needs data, the socket is read at once
  (``Sender.receive_now``). Only when it holds nothing does the task build a cancel scope
  with the right deadline and wait. Under load, the next request is usually already there, and
  a request that is answered without waiting costs one pass through trio's scheduler, taken
  by the response (see ``sender.py``).
* Deadlines are cancel scopes around the waits. The head deadline runs from a request's first
  byte (for the first request, from accept) and is not moved by later bytes, so a client that
  trickles its head cannot keep the connection. Between requests the idle deadline applies;
  on shutdown an idle connection gets ``IDLE_DRAIN`` seconds to send one last request (so a
  request already on its way is answered, not cut off), then its wait is cancelled. The send
  timeout lives in the transfer layer: it bounds each wait for the socket to become writable,
  like nginx's ``send_timeout``.
* A plain GET or HEAD of a cached file (``Responder.cached``) is answered from the head kept
  with the cache entry; everything else gets a plan from ``Responder.respond``.
* Errors: before a response head goes out, every failure is an error plan (see
  ``respond.py``). After it, any failure closes the connection: a half-sent body can only be
  reported by closing.
* Closing after a response we chose to end (``Connection: close``) is a lingering close
  (``Sender.linger``), as nginx does it.
* With the access log on, a :class:`~zerocopy.server.accesslog.Clerk` records every response
  once it has ended, whole or cut short (``accesslog.py``).
* With basic authentication on, each request's credentials are checked first, before the
  fast path's look-up and before anything is opened (``auth.py``); a good verdict is cached,
  so on a keep-alive connection the check costs one dict look-up.
* With TLS on, the handshake comes first, bounded by the head timeout from accept, and the
  same loop then runs on the TLS channel with the TLS sender (``tls.py``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, TypeVar

import trio

from zerocopy.http import CLOSED, NEED_DATA, HTTPError, Request, RequestParser, head_200
from zerocopy.logtext import safe_text
from zerocopy.server.tar import ArchiveChanged
from zerocopy.transfer import FileTruncated, PeerGone, SendTimeout, TransferError

if TYPE_CHECKING:
    from zerocopy.files import CachedFile
    from zerocopy.http import ResponsePlan
    from zerocopy.server.accesslog import Clerk
    from zerocopy.server.listener import Connection
    from zerocopy.server.serve import ServerState
    from zerocopy.span import FileSpan

__all__ = ["handle_connection"]

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)


class _Sends(Protocol[_T_contra]):
    """What the loop needs of a sender: ``Sender`` on sockets, ``TLSSender`` on channels."""

    def receive_now(self, sock: _T_contra, /) -> bytes | None: ...
    def check_peer(self, sock: _T_contra, /) -> None: ...
    async def receive(self, sock: _T_contra, /) -> bytes: ...
    async def send_plan(self, sock: _T_contra, plan: ResponsePlan, /) -> None: ...
    async def send_file(self, sock: _T_contra, head: bytes, body: FileSpan, /) -> None: ...
    async def send_bytes(self, sock: _T_contra, data: bytes, /) -> None: ...
    async def linger(self, sock: _T_contra, /) -> None: ...


logger = logging.getLogger("zerocopy.server")


async def handle_connection(conn: Connection, state: ServerState) -> None:
    """Serve requests on ``conn`` until either side closes it.

    Args:
        conn: The accepted connection. This function owns it and closes it.
        state: The server's shared state.

    Never raises, except Cancelled: errors are logged and close the connection.
    """
    tls = state.tls
    log = state.access_log
    # Under TLS the socket's kernel count is ciphertext: the clerk gets no socket there.
    clerk = None if log is None else log.clerk(conn.peer, conn.socket if tls is None else None)
    try:
        if tls is None:
            if await _serve_requests(conn, state, state.sender, conn.socket, clerk):
                await state.sender.linger(conn.socket)
        else:
            deadline = trio.current_time() + state.config.head_timeout
            channel = await tls.handshake(conn, deadline, state.idle_scopes)
            if channel is not None:
                if await _serve_requests(conn, state, tls.sender, channel, clerk):
                    await tls.sender.linger(channel)  # close_notify first
                else:
                    channel.close_notify()
    except PeerGone as exc:
        logger.debug("%s: client went away: %s", conn.peer, exc)
    except SendTimeout as exc:
        logger.debug("%s: send timed out (%s); connection closed", conn.peer, exc)
    except TransferError as exc:
        logger.warning("%s: transfer failed: %s; connection closed", conn.peer, exc)
    except Exception:
        logger.exception("%s: unexpected error; connection closed", conn.peer)
    finally:
        conn.close()


async def _send_cached(
    sender: _Sends[_T],
    sock: _T,
    state: ServerState,
    entry: CachedFile,
    fields: bytes,
    request: Request,
    keep_alive: bool,
    clerk: Clerk | None,
) -> None:
    """Answer a plain GET or HEAD from a cache entry and its 200's fields."""
    head = head_200(fields, state.dates.now(), request.version, keep_alive)
    body = entry.span
    if request.method == "HEAD" or not body.count:
        if clerk is not None:
            clerk.cached(len(head), None)
        await sender.send_bytes(sock, head)
        return
    if clerk is not None:
        clerk.cached(len(head), body)
    entry.borrowers += 1
    try:
        await sender.send_file(sock, head, body)
    finally:
        entry.release()


async def _send_plan(
    sender: _Sends[_T],
    sock: _T,
    state: ServerState,
    request: Request | None,
    plan: ResponsePlan,
    clerk: Clerk | None,
    started: float | None,
) -> None:
    """Send an error plan (a request that did not parse, a timeout, a refused password),
    counted and logged."""
    state.responses[plan.status] += 1
    if clerk is None:
        await sender.send_plan(sock, plan)
        return
    whole = False
    try:
        await sender.send_plan(sock, plan)
        whole = True
    finally:
        clerk.record(request, plan, whole, started)


async def _serve_requests(
    conn: Connection, state: ServerState, sender: _Sends[_T], sock: _T, clerk: Clerk | None
) -> bool:
    """Run the request loop. Returns whether the close should linger."""
    config = state.config
    auth = state.auth
    responder = state.responder
    responses = state.responses
    parser = RequestParser(config.limits, log_fields=clerk is not None)
    plan: ResponsePlan | None
    # When the current request's first byte arrived, if a wait needs to know; the first
    # request's head deadline runs from accept.
    head_started: float | None = trio.current_time()
    while True:
        try:
            event = parser.next_event()
        except HTTPError as error:
            plan = responder.error(error, None, keep_alive=False)
            await _send_plan(sender, sock, state, None, plan, clerk, head_started)
            return True
        if event is NEED_DATA:
            now_data = sender.receive_now(sock)
            if now_data is not None:
                data = now_data
            else:
                idle = not parser.in_message
                if idle and state.drain_over:
                    return False
                now = trio.current_time()
                if head_started is not None:
                    deadline = head_started + config.head_timeout
                elif idle:
                    deadline = now + config.idle_timeout
                else:
                    head_started = now  # Its first byte came in the read just made.
                    deadline = now + config.head_timeout
                data = b""
                with trio.CancelScope(deadline=deadline) as scope:
                    if idle:
                        state.idle_scopes.add(scope)
                    try:
                        data = await sender.receive(sock)
                    finally:
                        if idle:
                            state.idle_scopes.discard(scope)
                if scope.cancelled_caught:
                    if parser.in_message and not state.shutting_down:
                        timed_out = HTTPError(408, "request head timed out")
                        plan = responder.error(timed_out, None, keep_alive=False)
                        await _send_plan(sender, sock, state, None, plan, clerk, head_started)
                        return True
                    return False
                if idle and data:
                    head_started = trio.current_time()
            parser.receive_data(data)
            continue
        if event is CLOSED:
            return False
        assert isinstance(event, Request)
        request = event
        keep_alive = request.keep_alive and not state.shutting_down
        if auth is not None and not auth.known_good(request):
            refused = await auth.check(request)
            if refused is not None:
                plan = responder.error(refused, request, keep_alive=keep_alive)
                await _send_plan(sender, sock, state, request, plan, clerk, head_started)
                head_started = None
                if not plan.keep_alive:
                    return True
                continue
        hit = responder.cached(request) if request.plain else None
        plan = None
        whole = False
        streamed: int | None = None
        try:
            if hit is not None:
                status = 200
                await _send_cached(sender, sock, state, *hit, request, keep_alive, clerk)
            else:
                prepared = responder.respond(request, keep_alive=keep_alive)
                try:
                    if prepared.ready is not None:  # A tar download: the walk comes first.
                        await prepared.ready(sock, sender)
                    plan = prepared.plan
                    status, keep_alive = plan.status, plan.keep_alive
                    if prepared.stream is not None:  # A listing or an archive: its body
                        streamed = -1  # follows the head.
                    await sender.send_plan(sock, plan)
                    if prepared.stream is not None:
                        streamed = await prepared.stream(sock, sender)
                finally:
                    prepared.close()
            whole = True
        except (FileTruncated, ArchiveChanged) as exc:
            path = hit[0].path if hit is not None else prepared.path
            logger.error(
                "%s: %s truncated while being sent: %s; connection closed",
                conn.peer,
                safe_text(path or b"?"),
                exc,
            )
            return False
        finally:
            if clerk is not None and (plan is not None or hit is not None):
                clerk.record(request, plan, whole, head_started, streamed)  # plan None: fast
        head_started = None
        responses[status] += 1
        if not keep_alive:
            return True
