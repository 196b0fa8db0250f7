"""A worker process: today's server, on sockets a supervisor hands it.

``python -m zerocopy.server.worker CONTROL_FD LISTEN_FD[,LISTEN_FD...]`` is started by
:mod:`zerocopy.server.supervisor`, never by hand. The supervisor owns the listening sockets;
the worker serves on its inherited copies of them, so that a worker that exits (or is killed)
closes nothing that clients queue on.

The control descriptor is one end of a ``SOCK_SEQPACKET`` socket pair: one message per
``send``, pickled, private to the two processes (the same code at both ends):

* supervisor to worker: ``("init", WorkerInit)`` first, then ``("stats",)`` requests;
* worker to supervisor: ``("ready", pid)`` once it accepts, or ``("error", message)`` if it
  cannot start; ``("stats", ServerStatistics)`` for each request, and once more, unasked,
  after the server has stopped, so that no count is lost when a worker is replaced.

Signals: SIGTERM starts a graceful shutdown and a second one stops at once, as in the
single-process server; SIGUSR1 reopens log files. SIGINT and SIGHUP are ignored: a terminal's
Ctrl-C or hangup reaches the whole process group, and only the supervisor decides what they
mean. End of file on the control socket means the supervisor is gone: the worker shuts down
gracefully rather than serve unsupervised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import trio

from zerocopy.server.metrics import sum_statistics
from zerocopy.server.serve import Server
from zerocopy.server.stopping import Stopper

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from zerocopy.server.config import ServerConfig

__all__ = ["MESSAGE_SIZE", "WorkerInit", "main", "plain_statistics"]

MESSAGE_SIZE: Final = 1 << 20
"""Largest control message read (a statistics snapshot is a few KiB)."""

logger = logging.getLogger("zerocopy.worker")


@final
@dataclass(frozen=True, slots=True)
class WorkerInit:
    """What a worker is told before it starts.

    Attributes:
        index: The worker's slot, 0 to N-1; the ``worker`` label of its metrics.
        config: The server configuration.
        cpu: Pin the process to this CPU (``--cpu-affinity``), or ``None``.
        log_level: The logging threshold name (``"info"``).
    """

    index: int
    config: ServerConfig
    cpu: int | None
    log_level: str


def plain_statistics(server: Server) -> Any:
    """The server's statistics as plain, picklable values (mappings become dicts)."""
    stats = server.statistics()
    return sum_statistics([stats], stats)


async def _run(server: Server, raw_control: socket.socket, early: list[int]) -> None:
    control = trio.socket.from_stdlib_socket(raw_control)

    def send_final_counts() -> None:
        # The process ends without unwinding (threads still busy): send its last counts now,
        # without waiting (the socket is non-blocking), so that none is lost.
        with contextlib.suppress(OSError):
            raw_control.send(pickle.dumps(("stats", plain_statistics(server))))

    stopper = Stopper(server, before_exit=send_final_counts)
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGUSR1) as signals:
                if early:
                    stopper.stop()
                async for signum in signals:
                    if signum == signal.SIGUSR1:
                        logger.info("SIGUSR1: reopening log files")
                        server.reopen_logs()
                    else:
                        stopper.stop()

        async def answer_control() -> None:
            while message := await control.recv(MESSAGE_SIZE):
                if pickle.loads(message)[0] == "stats":
                    await control.send(pickle.dumps(("stats", plain_statistics(server))))
            logger.warning("supervisor gone: shutting down")
            stopper.stop()

        nursery.start_soon(watch_signals)
        await nursery.start(server.serve)
        await control.send(pickle.dumps(("ready", os.getpid())))
        nursery.start_soon(answer_control)
        await stopper.wait_stopped()
        nursery.cancel_scope.cancel()
    with contextlib.suppress(OSError):
        await control.send(pickle.dumps(("stats", plain_statistics(server))))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker; returns the exit status (0 after a shutdown, 2 if it cannot start)."""
    for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(ignored, signal.SIG_IGN)
    early: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        early.append(signum)

    # A SIGTERM that arrives before the event loop listens for it still means "stop".
    signal.signal(signal.SIGTERM, remember)
    control_fd, listen = (sys.argv[1:] if argv is None else argv)[:2]
    control = socket.socket(fileno=int(control_fd))
    sockets = [socket.socket(fileno=int(fd)) for fd in listen.split(",")]
    init: WorkerInit = pickle.loads(control.recv(MESSAGE_SIZE))[1]
    logging.basicConfig(
        level=init.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[worker {init.index}]: %(message)s",
        stream=sys.stderr,
    )
    if init.cpu is not None:
        os.sched_setaffinity(0, {init.cpu})
    for sock in sockets:
        sock.setblocking(False)
    try:
        server = Server(init.config, sockets=sockets)
    except (OSError, RuntimeError, KeyError) as exc:
        control.send(pickle.dumps(("error", str(exc))))
        return 2
    trio.run(_run, server, control, early)
    return 0


if __name__ == "__main__":
    sys.exit(main())
