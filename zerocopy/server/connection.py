"""The per-connection loop: read, parse, answer in order, keep alive or close.

Theory of operation:

* One task per connection, started by ``trio.serve_listeners``. The task owns the socket and
  closes it on every path out.
* Deadlines are cancel scopes. The head deadline is set when a request's first byte arrives
  (or at accept, for the first request) and is not moved by later bytes, so a client that
  trickles its head cannot keep the connection. Between requests the idle deadline applies,
  and shutdown cancels idle waits at once. The send timeout lives in the transfer layer: it
  bounds each wait for the socket to become writable, like nginx's ``send_timeout``.
* Errors: before a response head goes out, every failure is an error plan (see
  ``respond.py``). After it, any failure closes the connection: a half-sent body can only be
  reported by closing.
* Closing after a response we chose to end (``Connection: close``) is a lingering close, as
  nginx does it: shut down our side, then read and discard until the client closes, for at most
  :data:`LINGER_SECONDS`. Closing with unread request bytes would send RST, and an RST can
  destroy the response in the client's receive buffer before it is read.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Final

import trio

from zerocopy.http import CLOSED, NEED_DATA, HTTPError, Request, RequestParser
from zerocopy.span import FileSpan
from zerocopy.transfer import (
    FileTruncated,
    PeerGone,
    SendTimeout,
    TransferError,
    recv,
    send_all,
    translate_errors,
)

if TYPE_CHECKING:
    from zerocopy.http import ResponsePlan
    from zerocopy.server.listener import Connection
    from zerocopy.server.serve import ServerState
    from zerocopy.transfer import TransferStrategy

__all__ = ["handle_connection", "send_plan"]

logger = logging.getLogger("zerocopy.server")
access_logger = logging.getLogger("zerocopy.access")

RECV_SIZE: Final = 64 * 1024
LINGER_SECONDS: Final = 2.0
LINGER_MAX_BYTES: Final = 1024 * 1024


async def send_plan(
    sock: socket.socket, plan: ResponsePlan, strategy: TransferStrategy, state: ServerState
) -> None:
    """Send a plan's head and body parts, in order.

    Small ``bytes`` parts are joined to what precedes them; each span goes out through the
    strategy with the bytes before it as its prefix, so heads and boundaries share packets
    with the data.

    Raises:
        TransferError: The response is incomplete; close the connection.
    """
    prefix = plan.head
    for part in plan.body:
        if isinstance(part, FileSpan):
            await strategy.send_span(sock, part, prefix=prefix)
            prefix = b""
        else:
            prefix += part
    if prefix:
        with translate_errors():
            await send_all(sock, prefix, state.counters, send_timeout=state.config.send_timeout)


async def _linger(sock: socket.socket, state: ServerState) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    received = 0
    with trio.move_on_after(LINGER_SECONDS):
        while received < LINGER_MAX_BYTES:
            try:
                data = await recv(sock, RECV_SIZE, state.counters)
            except OSError:
                return
            if not data:
                return
            received += len(data)


def _log_access(peer: str, request: Request, plan: ResponsePlan) -> None:
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    access_logger.info(
        '%s - - [%s] "%s %s HTTP/%s" %d %d',
        peer,
        when,
        request.method,
        request.target.decode("latin-1"),
        request.version,
        plan.status,
        plan.body_length,
    )


async def handle_connection(conn: Connection, state: ServerState) -> None:
    """Serve requests on ``conn`` until either side closes it.

    Args:
        conn: The accepted connection. This function owns it and closes it.
        state: The server's shared state.

    Never raises, except Cancelled: errors are logged and close the connection.
    """
    try:
        linger = await _serve_requests(conn, state)
        if linger:
            await _linger(conn.socket, state)
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


async def _serve_requests(conn: Connection, state: ServerState) -> bool:
    """Run the request loop. Returns whether the close should linger."""
    config = state.config
    sock = conn.socket
    parser = RequestParser(config.limits)
    deadline = trio.current_time() + config.head_timeout
    while True:
        try:
            event = parser.next_event()
        except HTTPError as error:
            plan = state.responder.error(error, None, keep_alive=False)
            state.count_response(plan)
            await send_plan(sock, plan, state.strategy, state)
            return True
        if event is NEED_DATA:
            idle = not parser.in_message
            if idle and state.shutting_down:
                return False
            with trio.CancelScope(deadline=deadline) as scope:
                if idle:
                    state.idle_scopes.add(scope)
                try:
                    data = await recv(sock, RECV_SIZE, state.counters)
                except OSError as exc:
                    raise PeerGone(str(exc)) from exc
                finally:
                    state.idle_scopes.discard(scope)
            if scope.cancelled_caught:
                if parser.in_message and not state.shutting_down:
                    timed_out = HTTPError(408, "request head timed out")
                    plan = state.responder.error(timed_out, None, keep_alive=False)
                    state.count_response(plan)
                    await send_plan(sock, plan, state.strategy, state)
                    return True
                return False
            if idle and data:
                deadline = trio.current_time() + config.head_timeout
            parser.receive_data(data)
            continue
        if event is CLOSED:
            return False
        assert isinstance(event, Request)
        keep_alive = event.keep_alive and not state.shutting_down
        prepared = await state.responder.respond(event, keep_alive=keep_alive)
        try:
            await send_plan(sock, prepared.plan, state.strategy, state)
        except FileTruncated as exc:
            path = prepared.file.path.decode(errors="replace") if prepared.file else "?"
            logger.error(
                "%s: %s truncated while being sent: %s; connection closed", conn.peer, path, exc
            )
            return False
        finally:
            prepared.close()
        state.count_response(prepared.plan)
        if config.access_log:
            _log_access(conn.peer, event, prepared.plan)
        if not prepared.plan.keep_alive:
            return True
        deadline = trio.current_time() + (
            config.head_timeout if parser.in_message else config.idle_timeout
        )
