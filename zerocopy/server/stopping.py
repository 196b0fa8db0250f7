"""Stopping a server process on time, whatever its worker threads are doing.

A graceful stop cancels what is still running when ``shutdown_grace`` is over, and a second
signal cancels it at once (``serve.py``). Cancellation reaches every task, but not a thread:
``trio.to_thread.run_sync`` waits for its thread even when cancelled, and ``trio.run``
returns only when every task has. That wait is what makes threads safe: an offloaded
``sendfile`` or ``splice`` writes to the client's socket, and abandoning it would let it write
to whatever descriptor reuses that number after the socket is closed. So a thread that stays
busy (a listing of a huge directory, a read from a disk that hangs, any ``to_thread`` call)
would hold the whole process past the grace period, and past a second signal: 48.8 s and 50 s
for twelve listings of a 200,000-entry directory.

The process, not the server, keeps the promise. :class:`Stopper` gives the server until the
end of the grace period (or, after a second signal, until now) plus :data:`UNWIND` seconds to
return; past that, it writes the access log's pending lines, flushes standard output and
error, and ends the process with ``os._exit``. Exiting is the one safe way to drop a busy
thread: the kernel closes every descriptor at once, so none can be reused under it. Threads
are never abandoned inside a process that goes on serving.

The single-process command line and each worker process use it; a supervisor's workers thus
exit on time by themselves, and the supervisor kills only one that hangs outright.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from typing import TYPE_CHECKING, Final, NoReturn, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from zerocopy.server.serve import Server

__all__ = ["UNWIND", "Stopper"]

logger = logging.getLogger("zerocopy.server")

UNWIND: Final = 0.25
"""Seconds the server gets past its deadline to unwind: cancelled tasks close their sockets,
the access log writes its last lines. Without busy threads this takes milliseconds; with them
it takes longer, because busy threads hold the GIL for up to 5 ms each time the event loop
waits for it. A quarter of a second lets a healthy disk finish the log's last write even then,
and keeps "a second signal stops at once" true to the eye."""


def _exit_process(status: int) -> NoReturn:
    os._exit(status)


@final
class Stopper:
    """Stops ``server`` on signals, and ends the process if it does not stop on time.

    Args:
        server: The server, served by a task of the same ``trio.run``.
        before_exit: Called just before the process ends without unwinding (a worker sends
            its final counts to the supervisor); must not block.
        exit_process: Ends the process (``os._exit``); tests give a fake.
    """

    def __init__(
        self,
        server: Server,
        *,
        before_exit: Callable[[], None] | None = None,
        exit_process: Callable[[int], NoReturn] = _exit_process,
    ) -> None:
        self._server = server
        self._before_exit = before_exit
        self._exit = exit_process
        self._scope = trio.CancelScope(deadline=math.inf)

    def stop(self) -> None:
        """Stop gracefully; a second call stops at once. Moves the process's deadline: the
        grace period plus :data:`UNWIND` seconds from the first call, :data:`UNWIND` from a
        later one. Never blocks."""
        server = self._server
        grace = 0.0 if server.shutting_down else server.config.shutdown_grace
        server.shutdown()
        deadline = trio.current_time() + grace + UNWIND
        self._scope.deadline = min(self._scope.deadline, deadline)

    async def wait_stopped(self) -> None:
        """Wait until the server has stopped; if it has not by the deadline, end the process.

        Returns only when the server stopped in time (or the exit function returned, which
        only a test's does).
        """
        with self._scope:
            await self._server.wait_closed()
        if not self._scope.cancelled_caught:
            return
        logger.warning(
            "still stopping %g s after the deadline (worker threads are busy): exiting now",
            UNWIND,
        )
        try:
            self._server.write_logs_now()
            if self._before_exit is not None:
                self._before_exit()
        finally:
            for stream in (sys.stdout, sys.stderr):
                # Closed, or a broken pipe: nothing left to save there.
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            self._exit(0)
