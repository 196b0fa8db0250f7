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
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from zerocopy.http import CLOSED, NEED_DATA, HTTPError, Request, RequestParser, head_200
from zerocopy.logtext import safe_text
from zerocopy.transfer import FileTruncated, PeerGone, SendTimeout, TransferError

if TYPE_CHECKING:
    import socket

    from zerocopy.files import CachedFile
    from zerocopy.http import ResponsePlan
    from zerocopy.server.accesslog import Clerk
    from zerocopy.server.listener import Connection
    from zerocopy.server.serve import ServerState

__all__ = ["handle_connection"]

logger = logging.getLogger("zerocopy.server")


async def handle_connection(conn: Connection, state: ServerState) -> None:
    """Serve requests on ``conn`` until either side closes it.

    Args:
        conn: The accepted connection. This function owns it and closes it.
        state: The server's shared state.

    Never raises, except Cancelled: errors are logged and close the connection.
    """
    log = state.access_log
    clerk = log.clerk(conn.peer, conn.socket) if log is not None else None
    try:
        linger = await _serve_requests(conn, state, clerk)
        if linger:
            await state.sender.linger(conn.socket)
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
    sock: socket.socket,
    state: ServerState,
    entry: CachedFile,
    request: Request,
    keep_alive: bool,
    clerk: Clerk | None,
) -> int:
    """Answer a plain GET or HEAD from a cache entry; returns the body length."""
    fields = entry.memo
    assert fields is not None, "Responder.cached returns entries with their fields"
    head = head_200(fields, state.dates.now(), request.version, keep_alive)
    body = entry.span
    if request.method == "HEAD" or not body.count:
        if clerk is not None:
            clerk.cached(len(head), None)
        await state.sender.send_bytes(sock, head)
        return 0
    if clerk is not None:
        clerk.cached(len(head), body)
    entry.borrowers += 1
    try:
        await state.sender.send_file(sock, head, body)
    finally:
        entry.release()
    return body.count


async def _send_error(
    sock: socket.socket,
    state: ServerState,
    plan: ResponsePlan,
    clerk: Clerk | None,
    started: float | None,
) -> None:
    """Send the error plan for a request that could not be parsed, counted and logged."""
    state.responses[plan.status] += 1
    if clerk is None:
        await state.sender.send_plan(sock, plan)
        return
    whole = False
    try:
        await state.sender.send_plan(sock, plan)
        whole = True
    finally:
        clerk.record(None, plan, whole, started)


async def _serve_requests(conn: Connection, state: ServerState, clerk: Clerk | None) -> bool:
    """Run the request loop. Returns whether the close should linger."""
    config = state.config
    sock = conn.socket
    sender = state.sender
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
            await _send_error(
                sock, state, responder.error(error, None, keep_alive=False), clerk, head_started
            )
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
                        await _send_error(sock, state, plan, clerk, head_started)
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
        entry = responder.cached(request) if request.plain else None
        plan = None
        whole = False
        try:
            if entry is not None:
                status = 200
                await _send_cached(sock, state, entry, request, keep_alive, clerk)
            else:
                prepared = await responder.respond(request, keep_alive=keep_alive)
                try:
                    plan = prepared.plan
                    status, keep_alive = plan.status, plan.keep_alive
                    await sender.send_plan(sock, plan)
                finally:
                    prepared.close()
            whole = True
        except FileTruncated as exc:
            path = entry.path if entry is not None else prepared.path
            logger.error(
                "%s: %s truncated while being sent: %s; connection closed",
                conn.peer,
                safe_text(path or b"?"),
                exc,
            )
            return False
        finally:
            if clerk is not None and (plan is not None or entry is not None):
                clerk.record(request, plan, whole, head_started)  # plan None: the fast path
        head_started = None
        responses[status] += 1
        if not keep_alive:
            return True
