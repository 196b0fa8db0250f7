"""The supervisor of ``zerocopy serve --workers N`` (N > 1): it starts, watches and replaces
worker processes, and never serves a file itself.

Theory of operation:

* **Sockets.** The supervisor binds the listening sockets once and keeps them open for its
  whole life; each worker gets inherited copies (``pass_fds``). By default there is one
  ``SO_REUSEPORT`` socket per worker slot, so the kernel spreads new connections over the
  workers' own accept queues (no thundering herd, no single queue lock). Sockets from systemd
  socket activation are shared by every worker instead: systemd bound them, and a second
  ``SO_REUSEPORT`` socket would not be in the ``.socket`` unit. A worker that exits closes
  only its copies: what waits in a queue stays there for the next worker, which is why a
  reload refuses and resets nothing, with or without ``net.ipv4.tcp_migrate_req``.
* **Workers** are fresh interpreters (``python -m zerocopy.server.worker``), not forks: the
  supervisor runs trio, and a fork of a running event loop (its threads, its wakeup fd) is
  not a clean start. Each has a private control socket (see :mod:`zerocopy.server.worker`):
  it reports ``ready`` once it accepts, answers statistics requests, and sends its final
  counts when it stops. The supervisor opens no file under the root.
* **Generations.** A generation is N workers started from one configuration. The first must
  all report ready, or the supervisor exits with the workers' error (status 2). SIGHUP
  re-reads the configuration, starts a new generation on the same sockets, waits until every
  new worker accepts, and only then asks the old generation to drain (SIGTERM: stop accepting,
  finish what is in flight within ``shutdown_grace``). If the new configuration is invalid or
  its workers cannot start, the old generation keeps serving and the error is logged.
  Settings that shape the sockets (``bind``, ``port``, ``metrics-bind``, ``metrics-port``,
  ``workers``) take a restart; a reload keeps them, with a warning.
* **Restarts.** A worker that exits on its own is replaced at once, then with a backoff that
  doubles from 0.1 s. More than :data:`RESTART_LIMIT` exits of one slot within
  :data:`RESTART_WINDOW` seconds is a crash loop: the supervisor stops everything and exits 1
  with the reason, instead of spinning.
* **Signals.** SIGTERM or SIGINT: graceful stop of every worker, then exit 0; a second one
  stops the workers at once (SIGTERM again, which they take as "now", and SIGKILL for any
  still there a second later). SIGHUP: reload. SIGUSR1: forwarded to every worker, which
  reopens its log files.
* **Metrics.** The supervisor serves ``--metrics-port``: it asks every live worker for its
  statistics at scrape time and renders the sum (plus the final counts of workers that have
  gone, so counters never go backwards) and one ``worker``-labelled series per worker of the
  current generation.
* **systemd.** ``READY=1`` once the first generation accepts, ``RELOADING=1`` and ``READY=1``
  around a reload, ``STOPPING=1`` on stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import pickle
import signal
import socket
import sys
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import trio

from zerocopy.files import Root
from zerocopy.server import systemd
from zerocopy.server.listener import bind_siblings, bind_sockets
from zerocopy.server.metrics import (
    Gauge,
    MetricsPort,
    check_available,
    render_metrics,
    sum_statistics,
)
from zerocopy.server.serve import ServerStatistics, content_policy
from zerocopy.server.worker import MESSAGE_SIZE, WorkerInit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from zerocopy.server.config import ServerConfig

__all__ = [
    "RESTART_LIMIT",
    "RESTART_WINDOW",
    "START_TIMEOUT",
    "Supervisor",
    "SupervisorConfig",
    "WorkerFailed",
]

logger = logging.getLogger("zerocopy.supervisor")

RESTART_LIMIT: Final = 5
"""Exits of one worker slot tolerated within :data:`RESTART_WINDOW`; one more is a crash loop."""
RESTART_WINDOW: Final = 10.0
BACKOFF_FIRST: Final = 0.1
"""The first restart is immediate; the next ones wait 0.1 s, 0.2 s, 0.4 s ..."""
BACKOFF_MAX: Final = 2.0
START_TIMEOUT: Final = 30.0
"""Seconds a new worker has to report that it accepts (an interpreter starts in well under 1 s)."""
KILL_AFTER: Final = 1.0
"""Seconds between "stop now" and SIGKILL for a worker that has not exited."""
GRACE_MARGIN: Final = 5.0
"""Seconds past ``shutdown_grace`` before a draining worker is killed: it bounds its own
shutdown by the grace period, so this only catches a worker that hangs."""
STATS_TIMEOUT: Final = 2.0
"""Seconds a worker has to answer a statistics request during a scrape."""

_RESTART_ONLY: Final = ("bind", "port", "metrics_bind", "metrics_port")


@final
@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """One generation's configuration.

    Attributes:
        server: What each worker serves, and how.
        workers: How many worker processes.
        cpu_affinity: Pin worker i to the i-th CPU of the supervisor's affinity mask.
        log_level: The workers' logging threshold.
    """

    server: ServerConfig
    workers: int
    cpu_affinity: bool = False
    log_level: str = "info"


class WorkerFailed(Exception):
    """A worker could not start, or crashed in a loop.

    Attributes:
        status: The exit status the supervisor should end with (2: configuration, 1: crash).
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def describe_exit(returncode: int | None) -> str:
    """``exit status 3`` or ``signal SIGKILL``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def _count_exit(exits: deque[float]) -> int:
    """Record an exit now; return how many fell within the last :data:`RESTART_WINDOW`."""
    now = trio.current_time()
    exits.append(now)
    while exits[0] < now - RESTART_WINDOW:
        exits.popleft()
    return len(exits)


@final
class _Worker:
    """One worker process and its end of the control socket (owned; closed by :meth:`close`)."""

    def __init__(self, index: int, process: trio.Process, control: socket.socket) -> None:
        self.index = index
        self.process = process
        self._raw = control
        self.control = trio.socket.from_stdlib_socket(control)
        self.lock = trio.Lock()
        self.ready = False
        self.stats: ServerStatistics | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def receive(self) -> tuple[Any, ...] | None:
        """The next message, or ``None`` at end of file (the worker is gone)."""
        try:
            data = await self.control.recv(MESSAGE_SIZE)
        except OSError:
            return None
        return pickle.loads(data) if data else None

    async def collect(self) -> None:
        """Ask for statistics; keeps the last answer in :attr:`stats`."""
        async with self.lock:
            if self.control.fileno() == -1:
                return
            with trio.move_on_after(STATS_TIMEOUT):
                try:
                    await self.control.send(pickle.dumps(("stats",)))
                except OSError:
                    return
                message = await self.receive()
                if message is not None and message[0] == "stats":
                    self.stats = message[1]

    def drain_final(self) -> None:
        """After exit: take the final statistics the worker sent, if any, and close."""
        while True:
            try:
                data = self._raw.recv(MESSAGE_SIZE)
            except OSError:  # BlockingIOError: nothing more
                break
            if not data:
                break
            message = pickle.loads(data)
            if message[0] == "stats":
                self.stats = message[1]
        self.close()

    def close(self) -> None:
        self.control.close()


@final
class _Generation:
    def __init__(self, number: int, config: SupervisorConfig) -> None:
        self.number = number
        self.config = config
        self.workers: dict[int, _Worker] = {}
        self.retired = False
        self.ready_slots: set[int] = set()
        self.settled = trio.Event()
        self.failure: WorkerFailed | None = None
        self.done = trio.Event()

    def live(self) -> list[_Worker]:
        return [w for w in self.workers.values() if w.process.returncode is None]


def _check(config: SupervisorConfig) -> None:
    """Refuse a configuration a worker would refuse (the root, header fields, pages, the TLS
    pair and realm), before any worker starts; opens nothing that stays open."""
    Root(config.server.root).close()
    content_policy(config.server)


@final
class Supervisor:
    """Runs N worker processes on shared listening sockets; see the module docstring.

    Args:
        config: The first generation's configuration.
        reload: Called on SIGHUP for the next configuration (re-reading ``--config``); an
            exception keeps the running one, and is logged as its message.
        sockets: Listening sockets from systemd, shared by every worker, instead of binding.
            The supervisor owns them.

    Raises:
        OSError: The root is unusable.
        MetricsUnavailable: ``--metrics-port`` without prometheus-client.
    """

    def __init__(
        self,
        config: SupervisorConfig,
        *,
        reload: Callable[[], SupervisorConfig] | None = None,
        sockets: Sequence[socket.socket] = (),
    ) -> None:
        _check(config)
        if config.server.metrics_port is not None:
            check_available()
        self.config = config
        self._reload_config = reload
        self._inherited = list(sockets)
        self._groups: list[list[socket.socket]] = []
        self._metrics_sockets: list[socket.socket] = []
        self._metrics_port: int | None = None
        self._generations: list[_Generation] = []
        self._current: _Generation | None = None
        self._retired_stats: list[ServerStatistics] = []
        self._stopping = False
        self._restarts = 0
        self._reloads = 0
        self._fatal: WorkerFailed | None = None
        self._hurry = False
        self._drain_scope: trio.CancelScope | None = None
        self.failure: str | None = None
        self._commands, self._command_queue = trio.open_memory_channel[str](math.inf)
        self._cpus = sorted(os.sched_getaffinity(0))

    # --- sockets ------------------------------------------------------------------------

    def bind(self) -> None:
        """Bind the listening sockets now (outside trio, so the CLI reports errors itself).

        Raises:
            OSError: An address cannot be bound.
        """
        if self._groups:
            return
        server = self.config.server
        try:
            if self._inherited:
                self._groups = [self._inherited]
            else:
                first = bind_sockets(server.bind, server.port, reuse_port=True)
                self._groups = [first]
                for _ in range(1, self.config.workers):
                    self._groups.append(bind_siblings(first))
            if server.metrics_port is not None:
                self._metrics_sockets = bind_sockets(server.metrics_bind, server.metrics_port)
                self._metrics_port = int(self._metrics_sockets[0].getsockname()[1])
        except BaseException:
            self._close_sockets()
            raise

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs the workers accept on."""
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self._groups[0]]

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port, if metrics are on."""
        return self._metrics_port

    @property
    def inherited(self) -> bool:
        """Whether the sockets came from systemd."""
        return bool(self._inherited)

    def _close_sockets(self) -> None:
        for group in self._groups:
            for sock in group:
                sock.close()
        for sock in self._metrics_sockets:
            sock.close()

    # --- running ------------------------------------------------------------------------

    async def run(self, *, on_ready: Callable[[], None] | None = None) -> int:
        """Start the first generation, supervise until stopped, and return the exit status.

        Args:
            on_ready: Called once every worker of the first generation accepts.

        Returns:
            0 after a stop by signal; 1 after a crash loop; 2 if the first workers could not
            start. :attr:`failure` then says why, in one line.

        Resource handling: every worker is reaped and every socket closed before it returns.
        """
        self.bind()
        status = 0
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals)
                if self._metrics_sockets:
                    metrics = MetricsPort(self._metrics_sockets, self._render, self._healthy)
                    self._metrics_sockets = []
                    await nursery.start(metrics.serve)
                try:
                    self._current = await self._start_generation(nursery, self.config)
                except WorkerFailed as exc:
                    self.failure = str(exc)
                    status = exc.status
                else:
                    if on_ready is not None:
                        on_ready()
                    systemd.notify("READY=1", f"STATUS=serving with {self.config.workers} workers")
                    status = await self._command_loop(nursery)
                self._stopping = True
                await self._stop_all()
                nursery.cancel_scope.cancel()
        finally:
            self._close_sockets()
        return status

    async def _command_loop(self, nursery: trio.Nursery) -> int:
        async for command in self._command_queue:
            if command == "reload":
                await self._reload(nursery)
            elif command == "stop":
                return 0
            elif command == "fatal":
                assert self._fatal is not None
                self.failure = str(self._fatal)
                return self._fatal.status
        return 0  # pragma: no cover (the channel is never closed)

    async def _watch_signals(self) -> None:
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        with trio.open_signal_receiver(*signals) as received:
            async for signum in received:
                name = signal.Signals(signum).name
                if signum == signal.SIGUSR1:
                    for generation in self._generations:
                        for worker in generation.live():
                            worker.signal(signal.SIGUSR1)
                elif signum == signal.SIGHUP:
                    if self._stopping:
                        logger.warning("%s while stopping: ignored", name)
                    else:
                        self._commands.send_nowait("reload")
                elif self._stopping:
                    logger.warning("%s again: stopping every worker now", name)
                    self._stop_now()
                else:
                    logger.info(
                        "%s: stopping %d workers gracefully (up to %g s); send it again to "
                        "stop now",
                        name,
                        self.config.workers,
                        self.config.server.shutdown_grace,
                    )
                    self._stopping = True
                    systemd.notify("STOPPING=1")
                    self._commands.send_nowait("stop")

    def _healthy(self) -> bool:
        current = self._current
        return (
            not self._stopping
            and current is not None
            and any(worker.ready for worker in current.live())
        )

    # --- generations --------------------------------------------------------------------

    async def _start_generation(
        self, nursery: trio.Nursery, config: SupervisorConfig
    ) -> _Generation:
        """Start N workers and wait until each accepts.

        Raises:
            WorkerFailed: A worker could not start; the others are stopped again.
        """
        generation = _Generation(len(self._generations) + 1, config)
        self._generations.append(generation)
        nursery.start_soon(self._run_generation, generation)
        await generation.settled.wait()
        if generation.failure is not None:
            await generation.done.wait()
            raise generation.failure
        return generation

    async def _run_generation(self, generation: _Generation) -> None:
        try:
            async with trio.open_nursery() as slots:
                for index in range(generation.config.workers):
                    slots.start_soon(self._run_slot, generation, index)
        finally:
            generation.done.set()
            self._generations.remove(generation)

    def _settle(self, generation: _Generation, failure: WorkerFailed | None = None) -> None:
        if generation.settled.is_set():
            return
        if failure is not None:
            generation.failure = failure
            self._retire(generation)
            generation.settled.set()
        elif len(generation.ready_slots) == generation.config.workers:
            generation.settled.set()

    async def _run_slot(self, generation: _Generation, index: int) -> None:
        """Keep worker ``index`` of ``generation`` running until the generation retires."""
        exits: deque[float] = deque()
        while not generation.retired:
            try:
                worker = await self._spawn(generation, index)
            except OSError as exc:
                # fork or exec failed (EAGAIN, ENOMEM, EMFILE ...): a start that failed.
                worker = None
                spawn_error = f"worker {index} could not be spawned: {exc}"
            if worker is None:
                if generation.retired or self._stopping:
                    return
                if not generation.settled.is_set():
                    self._settle(generation, WorkerFailed(spawn_error))
                    return
                logger.error("%s", spawn_error)
                if _count_exit(exits) > RESTART_LIMIT:
                    self._fatal = WorkerFailed(spawn_error)
                    self._commands.send_nowait("fatal")
                    return
                await trio.sleep(BACKOFF_MAX)
                continue
            try:
                message = None
                with trio.move_on_after(START_TIMEOUT):
                    message = await worker.receive()
                if message is not None and message[0] == "ready":
                    worker.ready = True
                    generation.ready_slots.add(index)
                    logger.info("worker %d started (pid %d)", index, worker.pid)
                    self._settle(generation)
                    await worker.process.wait()
                else:
                    error = message[1] if message is not None and message[0] == "error" else None
                    if message is None and worker.process.returncode is None:
                        error = f"worker {index} did not accept within {START_TIMEOUT:g} s"
                        worker.signal(signal.SIGKILL)
                    await self._reap(worker)
                    if not generation.settled.is_set():
                        # The generation is still starting: a configuration or start-up error,
                        # not a crash to retry.
                        self._settle(
                            generation,
                            WorkerFailed(error, 2)
                            if error
                            else WorkerFailed(
                                f"worker {index} exited with "
                                f"{describe_exit(worker.process.returncode)} before it accepted"
                            ),
                        )
                        return
                    if error:
                        logger.error("worker %d cannot start: %s", index, error)
            finally:
                if worker.process.returncode is None:
                    worker.signal(signal.SIGKILL)
                with trio.CancelScope(shield=True):
                    await self._reap(worker)
            if generation.retired or self._stopping:
                logger.info(
                    "worker %d (pid %d) stopped with %s",
                    index,
                    worker.pid,
                    describe_exit(worker.process.returncode),
                )
                return
            if _count_exit(exits) > RESTART_LIMIT:
                self._fatal = WorkerFailed(
                    f"worker {index} exited {len(exits)} times within {RESTART_WINDOW:g} s "
                    f"(last: {describe_exit(worker.process.returncode)}): crash loop"
                )
                self._commands.send_nowait("fatal")
                return
            logger.warning(
                "worker %d (pid %d) exited with %s; restarting",
                index,
                worker.pid,
                describe_exit(worker.process.returncode),
            )
            self._restarts += 1
            if len(exits) > 1:
                await trio.sleep(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(exits) - 2)))

    async def _spawn(self, generation: _Generation, index: int) -> _Worker:
        config = generation.config
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listen = self._groups[index % len(self._groups)]
        fds = [sock.fileno() for sock in listen]
        cpu = self._cpus[index % len(self._cpus)] if config.cpu_affinity else None
        init = WorkerInit(
            index=index,
            config=dataclasses.replace(config.server, metrics_port=None),
            cpu=cpu,
            log_level=config.log_level,
        )
        try:
            with theirs:
                process = await trio.lowlevel.open_process(
                    [
                        sys.executable,
                        "-m",
                        "zerocopy.server.worker",
                        str(theirs.fileno()),
                        ",".join(map(str, fds)),
                    ],
                    pass_fds=[theirs.fileno(), *fds],
                )
            ours.send(pickle.dumps(("init", init)))
        except BaseException:
            ours.close()
            raise
        worker = _Worker(index, process, ours)
        generation.workers[index] = worker
        return worker

    async def _reap(self, worker: _Worker) -> None:
        """Wait for ``worker`` to exit and fold its final counts into the totals. Idempotent."""
        if worker.control.fileno() == -1:
            return
        if worker.process.returncode is None:
            await worker.process.wait()
        async with worker.lock:
            worker.drain_final()
        if worker.stats is not None:
            self._retired_stats.append(dataclasses.replace(worker.stats, connections_open=0))
            worker.stats = None

    def _retire(self, generation: _Generation) -> None:
        """Ask every worker of ``generation`` to drain and exit; nothing restarts them."""
        generation.retired = True
        for worker in generation.live():
            worker.signal(signal.SIGTERM)

    async def _reload(self, nursery: trio.Nursery) -> None:
        systemd.notify("RELOADING=1")
        try:
            await self._reload_now(nursery)
        finally:
            systemd.notify("READY=1")

    async def _reload_now(self, nursery: trio.Nursery) -> None:
        old = self._current
        assert old is not None
        try:
            config = self._reload_config() if self._reload_config else old.config
            _check(config)
        except Exception as exc:  # the reload callback reports any failure by raising
            logger.error("reload: %s; the running workers go on", exc)
            return
        kept = {name: getattr(old.config.server, name) for name in _RESTART_ONLY}
        for name, value in kept.items():
            if getattr(config.server, name) != value:
                logger.warning(
                    "reload: %s changed; it takes a restart (keeping %r)",
                    name.replace("_", "-"),
                    value,
                )
        if config.workers != old.config.workers:
            logger.warning(
                "reload: workers changed; it takes a restart (keeping %d)", old.config.workers
            )
        config = dataclasses.replace(
            config,
            workers=old.config.workers,
            server=dataclasses.replace(config.server, **kept),
        )
        logging.getLogger("zerocopy").setLevel(config.log_level.upper())
        logger.info("reload: starting %d new workers", config.workers)
        try:
            new = await self._start_generation(nursery, config)
        except WorkerFailed as exc:
            logger.error("reload: %s; the running workers go on", exc)
            return
        self._current = new
        self.config = config
        self._reloads += 1
        self._retire(old)
        logger.info("reload: new workers accept; the old ones finish their responses and exit")

    async def _stop_all(self) -> None:
        """Drain every generation within the grace period (plus a margin), then kill."""
        for generation in list(self._generations):
            self._retire(generation)
        # Stopping, unlike a reload, refuses new clients: once the workers have closed their
        # copies too, the sockets are gone and connecting fails at once (a load balancer moves
        # on), rather than queueing for nobody.
        for group in self._groups:
            for sock in group:
                sock.close()
        grace = max(
            [g.config.server.shutdown_grace for g in self._generations]
            + [self.config.server.shutdown_grace]
        )
        with trio.move_on_after(grace + GRACE_MARGIN) as self._drain_scope:
            if self._hurry:
                self._drain_scope.deadline = trio.current_time() + KILL_AFTER
            for generation in list(self._generations):
                await generation.done.wait()
        if self._drain_scope.cancelled_caught:
            if not self._hurry:
                logger.error("workers still running %g s after the grace period", GRACE_MARGIN)
            for generation in self._generations:
                for worker in generation.live():
                    logger.warning("killing worker %d (pid %d)", worker.index, worker.pid)
                    worker.signal(signal.SIGKILL)
            for generation in list(self._generations):
                await generation.done.wait()

    def _stop_now(self) -> None:
        """The second stop signal: every worker stops at once, or is killed a second later."""
        self._hurry = True
        for generation in self._generations:
            self._retire(generation)  # the workers' second SIGTERM: stop at once
        if self._drain_scope is not None:
            self._drain_scope.deadline = min(
                self._drain_scope.deadline, trio.current_time() + KILL_AFTER
            )

    # --- metrics ------------------------------------------------------------------------

    async def _render(self) -> bytes:
        workers = [w for g in list(self._generations) for w in g.live() if w.ready]
        async with trio.open_nursery() as nursery:
            for worker in workers:
                nursery.start_soon(worker.collect)
        live = [w.stats for g in list(self._generations) for w in g.workers.values() if w.stats]
        total = sum_statistics([*self._retired_stats, *live], ServerStatistics(0, 0))
        if self._retired_stats:
            # Keep the history compact: gone workers are one entry, not one per worker.
            self._retired_stats = [sum_statistics(self._retired_stats, ServerStatistics(0, 0))]
        current = self._current
        per_worker = {}
        if current is not None:
            per_worker = {
                str(index): worker.stats
                for index, worker in sorted(current.workers.items())
                if worker.stats is not None and worker.process.returncode is None
            }
        extra = [
            Gauge(
                "zerocopy_supervisor_workers",
                "Worker processes of the current generation that accept connections.",
                len([w for w in current.live() if w.ready]) if current else 0,
            ),
            Gauge(
                "zerocopy_supervisor_restarts",
                "Workers restarted after an unexpected exit.",
                self._restarts,
                kind="counter",
            ),
            Gauge(
                "zerocopy_supervisor_reloads",
                "Completed reloads (SIGHUP).",
                self._reloads,
                kind="counter",
            ),
        ]
        return render_metrics(total, per_worker, extra)
