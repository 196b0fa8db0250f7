"""Every JSON file the benchmarks write, as typed records, and the one strict loader for them.

The writers build these records and :func:`dump` them; the report and ``bench.check`` read them
back with :func:`load`, which accepts exactly the layout written down here: a missing key, an
unexpected (renamed) key, ``null`` where no ``None`` is allowed, or a value of the wrong type
raises :class:`SchemaError` naming the path (``cpu_windows[3].counters.copy_in``). A table can
then never show "—" for a figure that was measured under another name.

Files and their records:

* ``measurements.json`` (``make bench``): :class:`Measurements`;
* the latency plan handed to the pyperf workers: :class:`LatencyPlan`;
* ``load.json`` (``make bench-load``): :class:`LoadResults`;
* ``peers.json`` (``make bench-peers``): :class:`PeersResults`;
* ``hardening.json`` (``make bench-hardening``): :class:`HardeningResults`.

The pyperf files (``auto.json``, ...) are pyperf's own format, read with pyperf.

Numbers that do not exist (no requests, no nginx) are ``null``, never NaN: the writer turns
NaN into ``None`` (:func:`bench.harness.results.write_json`), so such fields are typed
``float | None``. No field has a default: a writer that forgets one fails as loudly as a
reader that meets a file without it.

Why not dacite: it fills a missing ``Optional`` field with ``None`` without a word, which is
exactly the silent "—" this module exists to prevent.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar, final

__all__ = [
    "BpfCounts",
    "Calibration",
    "CaseLists",
    "Cell",
    "ColdMedian",
    "ColdResult",
    "ColdRun",
    "CountWindow",
    "CounterDelta",
    "CpuWindow",
    "HandshakeRun",
    "HardeningResults",
    "IdleResult",
    "Knee",
    "LatencyCase",
    "LatencyPlan",
    "LatencySummary",
    "ListingMedian",
    "ListingResult",
    "ListingRun",
    "LoadMeta",
    "LoadResults",
    "Machine",
    "Measurements",
    "PeersMeta",
    "PeersResults",
    "PerfRecord",
    "Pinning",
    "ProfileEntry",
    "ProfileSettings",
    "PySpyRecord",
    "Ratios",
    "Row",
    "Scaling",
    "SchemaError",
    "SlowAttack",
    "SlowResult",
    "SocketErrors",
    "StraceCounts",
    "SuiteMeta",
    "TarMedian",
    "TarResult",
    "TarRun",
    "TlsRecord",
    "TracerLoss",
    "WorkerPlacement",
    "WorkloadInfo",
    "WrkFigures",
    "WrkRun",
    "dump",
    "load",
]

T = TypeVar("T")


class SchemaError(ValueError):
    """A JSON document does not have the layout its record declares."""


# -- the loader ------------------------------------------------------------------------------


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise SchemaError(f"{where}: null where {tp} is required")
        candidates = [arg for arg in args if arg is not type(None)]
        problems = []
        for candidate in candidates:
            try:
                return _convert(candidate, value, where)
            except SchemaError as exc:
                problems.append(str(exc))
        raise SchemaError(problems[0] if len(problems) == 1 else f"{where}: {value!r} is no {tp}")
    if value is None:
        raise SchemaError(f"{where}: null where {_name(tp)} is required")
    if dataclasses.is_dataclass(tp):
        assert isinstance(tp, type)
        return _record(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SchemaError(f"{where}: {type(value).__name__} where a list is required")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(args) != len(value):
            raise SchemaError(f"{where}: {len(value)} items where {len(args)} are required")
        return tuple(
            _convert(arg, item, f"{where}[{i}]")
            for i, (arg, item) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: {type(value).__name__} where an object is required")
        key_type, value_type = args
        return {
            _key(key_type, key, where): _convert(value_type, item, f"{where}[{key!r}]")
            for key, item in value.items()
        }
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"{where}: the schema uses a type the loader does not know: {tp}")
    raise SchemaError(f"{where}: {value!r} is not a {_name(tp)}")


def _key(key_type: Any, key: Any, where: str) -> Any:
    if key_type is str and isinstance(key, str):
        return key
    if key_type is int:
        try:
            return int(key)
        except ValueError:
            pass
    raise SchemaError(f"{where}: key {key!r} is not a {_name(key_type)}")


def _record(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise SchemaError(
            f"{where or cls.__name__}: {type(value).__name__} where an object is required"
        )
    hints = _hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    prefix = f"{where}." if where else ""
    unexpected = sorted(set(value) - set(names))
    if unexpected:
        raise SchemaError(f"{where or cls.__name__}: unexpected key(s) {unexpected}")
    missing = [name for name in names if name not in value]
    if missing:
        raise SchemaError(f"{where or cls.__name__}: missing key(s) {missing}")
    return cls(**{name: _convert(hints[name], value[name], prefix + name) for name in names})


def load(cls: type[T], data: Any) -> T:
    """Build a ``cls`` record from parsed JSON, accepting exactly the declared layout.

    Raises:
        SchemaError: A key is missing or unexpected, or a value has the wrong type; the
            message names the path.
    """
    result: T = _record(cls, data, "")
    return result


def dump(record: Any) -> dict[str, Any]:
    """The JSON-ready form of a record (tuples become lists when serialised)."""
    data: dict[str, Any] = dataclasses.asdict(record)
    return data


# -- shared by every file ----------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Machine:
    """Where and with what a benchmark ran."""

    date_utc: str
    hostname: str
    machine: str
    cpu_model: str
    cpu_count: int
    affinity: tuple[int, ...]
    kernel: str
    kernel_version: str
    python: str
    python_implementation: str
    clock_ticks_per_s: int
    loadavg_start: tuple[float, ...]
    git_commit: str | None
    packages: dict[str, str | None]
    """Python packages by name, ``None`` when not installed."""
    tools: dict[str, str | None]
    """Command-line tools (strace, bpftrace, perf, wrk, nginx) and their version lines."""


@final
@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPU the servers and the clients were pinned to (``None``: not pinned), and why."""

    server_cpu: int | None
    client_cpu: int | None
    note: str


# -- measurements.json (the pyperf suite) ------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """How much the suite measured (its ``--quick`` or full profile)."""

    rounds: int
    processes_per_round: int
    values: int
    warmups: int
    value_time_s: float
    cpu_repetitions: int
    cpu_window_s: float


@final
@dataclass(frozen=True, slots=True)
class SuiteMeta:
    """The suite's run: profile, machine, pinning, files, servers, duration."""

    profile: str
    machine: Machine
    pinning: Pinning
    settings: ProfileSettings
    filesystem: str
    eviction_verified: bool | None
    """Whether a cold case's file really left the page cache (``None``: no cold case)."""
    servers: dict[str, str]
    """Command line of every server, by strategy or nginx configuration."""
    metrics_port_not_announced: tuple[str, ...]
    finished: str
    duration_s: float
    loadavg_end: tuple[float, ...]


@final
@dataclass(frozen=True, slots=True)
class Calibration:
    """``inner_loops`` of one latency case, from the slowest strategy's estimate."""

    estimate_s: float
    inner_loops: int


@final
@dataclass(frozen=True, slots=True)
class CaseLists:
    """Case labels (``4KiB``, ``64MiB_cold``) of each phase."""

    latency: tuple[str, ...]
    cpu: tuple[str, ...]
    count: tuple[str, ...]


@final
@dataclass(frozen=True, slots=True)
class CounterDelta:
    """What the server counted between two scrapes of its metrics endpoint.

    Attributes:
        syscalls: Transfer-path calls that returned, by kernel syscall name.
        eagain: Calls that failed with EAGAIN, by name.
        copy_in: Bytes copied kernel → user (recv, preadv).
        copy_out: Bytes copied user → kernel (send, sendmsg).
        zero_copy: Bytes moved by sendfile or splice.
        body: File bytes sent.
        responses: Responses by status code.
        connections: Connections accepted.
    """

    syscalls: dict[str, int]
    eagain: dict[str, int]
    copy_in: int
    copy_out: int
    zero_copy: int
    body: int
    responses: dict[str, int]
    connections: int

    def attempts(self, name: str) -> int:
        """Calls of ``name`` that returned or failed with EAGAIN: what strace counts."""
        return self.syscalls.get(name, 0) + self.eagain.get(name, 0)

    @property
    def total(self) -> int:
        """Every transfer-path call the server made, EAGAIN failures included."""
        return sum(self.syscalls.values()) + sum(self.eagain.values())


@final
@dataclass(frozen=True, slots=True)
class CpuWindow:
    """One CPU-phase window: sequential requests to one server, /proc read around them.

    ``server`` is a strategy (``sendfile``) or an nginx configuration (``nginx-sendfile``);
    nginx has no counters (``counters`` is ``None``).
    """

    server: str
    case: str
    size: int
    cold: bool
    rep: int
    date: str
    requests: int
    elapsed_s: float
    utime_s: float
    stime_s: float
    runtime_s: float | None
    cpu_s: float
    voluntary: int
    involuntary: int
    counters: CounterDelta | None


@final
@dataclass(frozen=True, slots=True)
class StraceCounts:
    """``strace -f -c``'s table for the whole process: calls (failed ones included) and
    errors, by syscall name."""

    calls: dict[str, int]
    errors: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@final
@dataclass(frozen=True, slots=True)
class BpfCounts:
    """What bpftrace counted for the server's process (every thread) over one window.

    Attributes:
        calls: Every syscall the process made, by name (``raw_syscalls:sys_exit``).
        returned: Calls that returned (``ret >= 0``), by name.
        eagain: Calls that failed with EAGAIN, by name.
        bytes_in: Sum of the return values of the copy-in syscalls (read, recvfrom, ...).
        bytes_out: Sum of the return values of the copy-out syscalls (write, sendmsg, ...).
    """

    calls: dict[str, int]
    returned: dict[str, int]
    eagain: dict[str, int]
    bytes_in: dict[str, int]
    bytes_out: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def copy_in(self) -> int:
        return sum(self.bytes_in.values())

    @property
    def copy_out(self) -> int:
        return sum(self.bytes_out.values())


@final
@dataclass(frozen=True, slots=True)
class CountWindow:
    """One traced window: strace and bpftrace at once, bracketed by two counter scrapes.

    ``attempts`` is how many times the window ran: one, unless a tracer saw nothing (it had
    not attached) and the window was run again (:class:`TracerLoss`).
    """

    strategy: str
    case: str
    size: int
    requests: int
    attempts: int
    server: CounterDelta
    strace: StraceCounts | None
    bpftrace: BpfCounts | None


@final
@dataclass(frozen=True, slots=True)
class TracerLoss:
    """A traced window thrown away because a tracer saw none of the server's syscalls."""

    strategy: str
    case: str
    attempt: int
    tracer: str
    reason: str


@final
@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """One row of a flat profile: percent of samples, where (dso), and what (symbol)."""

    percent: float
    dso: str
    symbol: str


@final
@dataclass(frozen=True, slots=True)
class PerfRecord:
    """What one ``perf record -e cpu-clock -g`` of a server says.

    Attributes:
        samples: Samples recorded, as perf prints the count (``6K``).
        copy_to_iter_pct: Percent of samples in ``_copy_to_iter*`` and its callees.
        copy_from_iter_pct: Percent of samples in ``_copy_from_iter*`` and its callees.
        kernel_pct: Percent of samples in the kernel (self time).
        python_pct: Percent of samples in the Python interpreter (self time).
        paths: Percent of samples in each of the kernel paths that tell the strategies
            apart (:data:`bench.harness.names.PERF_PATHS`), callees included.
        top: The first entries by self time.
    """

    strategy: str
    case: str
    requests: int
    samples: str
    copy_to_iter_pct: float
    copy_from_iter_pct: float
    kernel_pct: float
    python_pct: float
    paths: dict[str, float]
    top: tuple[ProfileEntry, ...]


@final
@dataclass(frozen=True, slots=True)
class PySpyRecord:
    """What one ``py-spy record --nonblocking`` of a server says (by self time).

    Attributes:
        samples: Samples of a working (not idle) thread.
        components: Percent of samples per part of the process (trio, zerocopy/http, ...).
        top: The source lines with the most samples (``symbol`` is ``function:line``).
    """

    strategy: str
    case: str
    connections: int
    """Concurrent keep-alive connections of sequential GETs during the recording."""
    requests: int
    samples: int
    components: dict[str, float]
    top: tuple[ProfileEntry, ...]


@final
@dataclass(frozen=True, slots=True)
class HandshakeRun:
    """One window of full TLS handshakes against the TLS server.

    Attributes:
        rep: The repetition.
        clients: Handshaking client processes, on the client CPU.
        seconds: Wall-clock length of the window.
        handshakes: Connections the server accepted in the window (its own counter).
        server_cpu_s: The server's CPU time over the window (schedstat, every thread).
    """

    rep: int
    clients: int
    seconds: float
    handshakes: int
    server_cpu_s: float

    @property
    def per_second(self) -> float:
        """Handshakes the clients achieved per second."""
        return self.handshakes / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_handshake_s(self) -> float | None:
        return self.server_cpu_s / self.handshakes if self.handshakes else None


@final
@dataclass(frozen=True, slots=True)
class TlsRecord:
    """The suite's TLS server: zerocopy's default strategy with ``--tls-cert/--tls-key``,
    measured in the CPU phase beside the plain one, and its handshakes.

    Attributes:
        server: Its name in ``cpu_windows`` (``auto-tls``).
        plain: The plain server it is compared with (``auto``).
        strategy: The strategy it announced (``tls-readwrite``; ``ktls-sendfile`` where the
            kernel and Python have kTLS).
        certificate: What the certificate is, and where it came from.
        cases: The cases measured over TLS.
        handshake_tool: How the handshakes were made, or why they were not.
        handshakes: One run per repetition (empty when not measured).
    """

    server: str
    plain: str
    strategy: str
    certificate: str
    cases: tuple[str, ...]
    handshake_tool: str
    handshakes: tuple[HandshakeRun, ...]


@final
@dataclass(frozen=True, slots=True)
class Measurements:
    """``measurements.json``: everything the suite measured besides the pyperf files."""

    meta: SuiteMeta
    strategies: tuple[str, ...]
    nginx: tuple[str, ...]
    """nginx configurations measured in the CPU phase (none when nginx is missing)."""
    cases: CaseLists
    calibration: dict[str, Calibration]
    cpu_windows: tuple[CpuWindow, ...]
    counts: tuple[CountWindow, ...]
    tracer_losses: tuple[TracerLoss, ...]
    perf: tuple[PerfRecord, ...]
    pyspy: tuple[PySpyRecord, ...]
    """py-spy profiles of the Python side (``skipped["py-spy"]`` says why there are none)."""
    tls: TlsRecord | None
    """The TLS server, when one ran (``skipped["tls"]`` says why not)."""
    skipped: dict[str, str]
    """What was not measured, and why, by phase or tool."""


@final
@dataclass(frozen=True, slots=True)
class LatencyCase:
    """One pyperf benchmark: its name, the file to GET, and how many requests make a value."""

    name: str
    filename: str
    size: int
    cold: bool
    inner_loops: int


@final
@dataclass(frozen=True, slots=True)
class LatencyPlan:
    """What a pyperf latency worker measures: a server (strategy, port, root) and the cases."""

    strategy: str
    port: int
    root: str
    server_cpu: int | None
    client_cpu: int | None
    cases: tuple[LatencyCase, ...]


# -- load.json and peers.json (wrk) -----------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class SocketErrors:
    """wrk's "Socket errors" line; all zero when wrk did not print it."""

    connect: int
    read: int
    write: int
    timeout: int

    @property
    def total(self) -> int:
        return self.connect + self.read + self.write + self.timeout


@final
@dataclass(frozen=True, slots=True)
class WrkFigures:
    """One wrk run and what the server's CPU did meanwhile (``bench.loadtest.wrk``)."""

    rps: float
    p50_ms: float | None
    p75_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    latency_avg_ms: float | None
    latency_max_ms: float | None
    duration_s: float | None
    bytes_read: int
    requests: int
    socket_errors: SocketErrors
    non_2xx_3xx: int
    errors: int
    server_cpu_s: float
    server_cpu_per_req_us: float | None
    server_cpu_irq_per_req_us: float | None
    server_involuntary_switches: int
    pinned_cpu_other_pct: float | None
    pinned_cpu_steal_pct: float | None
    pinned_cpu_irq_pct: float | None


@final
@dataclass(frozen=True, slots=True)
class Row:
    """One wrk run of one server (a strategy or a peer candidate, with ``workers`` worker
    processes) on one workload."""

    rep: int
    server: str
    workers: int
    workload: str
    connections: int
    figures: WrkFigures


@final
@dataclass(frozen=True, slots=True)
class Cell:
    """The medians of one (server, workers, workload, connections) cell over its repetitions."""

    server: str
    workers: int
    workload: str
    connections: int
    repetitions: int
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_per_req_us: float | None
    server_cpu_irq_per_req_us: float | None
    pinned_cpu_other_pct: float | None
    requests: int
    errors: int


@final
@dataclass(frozen=True, slots=True)
class WorkloadInfo:
    """What one workload requests: one file of ``size_min`` bytes, or random GETs over
    ``files`` distinct files of ``size_min`` to ``size_max`` bytes."""

    label: str
    files: int
    size_min: int
    size_max: int
    description: str


@final
@dataclass(frozen=True, slots=True)
class WrkRun:
    """How a wrk benchmark ran: machine, pinning, wrk's settings, and whether it finished."""

    machine: Machine
    pinning: Pinning
    duration_s: int
    warmup_s: int
    repetitions: int
    quick: bool
    wrk_threads: int
    wrk_timeout_s: int
    wall_time_s: float
    complete: bool
    notes: dict[str, str]
    """Definitions that travel with the figures (CPU columns, ratios, knee, latency caveat)."""


@final
@dataclass(frozen=True, slots=True)
class WorkerPlacement:
    """Where the servers with ``workers`` worker processes ran.

    Attributes:
        workers: Worker processes (nginx's ``worker_processes``, zerocopy's ``--workers``).
        cpus: The CPUs the server was pinned to (``None``: not pinned).
        shares_with_load: Whether wrk ran on one of those CPUs (N workers on a machine with N
            CPUs): req/s then measures the machine, while CPU per request stays comparable.
        note: The same in words, for the report.
    """

    workers: int
    cpus: tuple[int, ...] | None
    shares_with_load: bool
    note: str


@final
@dataclass(frozen=True, slots=True)
class Scaling:
    """One server with N workers against itself with one, median of per-repetition ratios.

    Attributes:
        efficiency: req/s with N workers / (N x req/s with 1 worker); 1.0 is linear scaling.
        rps_ratio: req/s with N workers / req/s with 1.
        cpu_ratio: Server CPU per request with N workers / with 1 (summed over the process
            group: a supervisor and its workers, nginx's master and its workers).
    """

    server: str
    workload: str
    connections: int
    workers: int
    efficiency: float | None
    rps_ratio: float | None
    cpu_ratio: float | None


@final
@dataclass(frozen=True, slots=True)
class Knee:
    """The knee of one server's concurrency sweep on one workload (``None``: no knee)."""

    server: str
    workers: int
    workload: str
    connections: int | None


@final
@dataclass(frozen=True, slots=True)
class LoadMeta:
    """The load sweep's run and what it swept."""

    run: WrkRun
    strategies: tuple[str, ...]
    connections: tuple[int, ...]
    placements: tuple[WorkerPlacement, ...]
    """One per worker count swept."""


@final
@dataclass(frozen=True, slots=True)
class LoadResults:
    """``load.json``: the concurrency sweep of every strategy, at every worker count."""

    meta: LoadMeta
    workloads: tuple[WorkloadInfo, ...]
    cells: tuple[Cell, ...]
    knees: tuple[Knee, ...]
    scaling: tuple[Scaling, ...]
    rows: tuple[Row, ...]


@final
@dataclass(frozen=True, slots=True)
class Ratios:
    """A candidate with N workers against nginx at its best with N workers, on one workload:
    medians of per-repetition ratios."""

    candidate: str
    workload: str
    workers: int
    rps_vs_nginx: float | None
    cpu_vs_nginx: float | None
    cpu_irq_vs_nginx: float | None


@final
@dataclass(frozen=True, slots=True)
class PeersMeta:
    """The peer comparison's run and its candidates' settings."""

    run: WrkRun
    connections: int
    settings: dict[str, str]
    """How each candidate was configured."""
    verification: dict[str, dict[str, str]]
    """What each candidate answered to one GET per checked file, before measuring."""
    placements: tuple[WorkerPlacement, ...]
    """One per worker count measured."""


@final
@dataclass(frozen=True, slots=True)
class PeersResults:
    """``peers.json``: zerocopy against nginx and the Python servers."""

    meta: PeersMeta
    candidates: tuple[str, ...]
    """Candidates measured, in order."""
    workloads: tuple[WorkloadInfo, ...]
    rows: tuple[Row, ...]
    cells: tuple[Cell, ...]
    ratios: tuple[Ratios, ...]
    scaling: tuple[Scaling, ...]
    skipped: dict[str, str]

    def ratio(self, candidate: str, workload: str, workers: int = 1) -> Ratios | None:
        """The ratios of one (candidate, workload, workers), or ``None``."""
        for item in self.ratios:
            if (item.candidate, item.workload, item.workers) == (candidate, workload, workers):
                return item
        return None


# -- hardening.json ---------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class LatencySummary:
    """A probe's sequential request latencies (``None``: no request completed)."""

    requests: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@final
@dataclass(frozen=True, slots=True)
class ColdRun:
    """One cold-cache run of one server: the probe idle, then during the cold downloads."""

    rep: int
    server: str
    evicted: bool
    baseline: LatencySummary
    with_cold_downloads: LatencySummary
    download_seconds: tuple[float, ...]
    p99_ratio: float | None
    offloaded_chunks: int | None
    """zerocopy's ``zerocopy_offloaded_total`` after the run (``None``: nginx)."""


@final
@dataclass(frozen=True, slots=True)
class ColdMedian:
    """Medians over a server's cold-cache runs."""

    p99_baseline_ms: float | None
    p99_cold_ms: float | None
    p99_ratio: float | None
    probe_requests: float | None


@final
@dataclass(frozen=True, slots=True)
class ColdResult:
    """Hot p99 while cold 256 MiB downloads run, per server configuration."""

    file_size: int
    downloads: int
    settings: dict[str, str]
    runs: tuple[ColdRun, ...]
    medians: dict[str, ColdMedian]


@final
@dataclass(frozen=True, slots=True)
class SlowAttack:
    """One slowhttptest attack and the probe during it."""

    seconds: int
    max_connected: int
    service_available_fraction: float | None
    probe: LatencySummary
    probe_errors: int
    command: str


@final
@dataclass(frozen=True, slots=True)
class SlowResult:
    """slowhttptest's attacks, or why they were skipped."""

    skipped: str | None
    attacks: dict[str, SlowAttack]


@final
@dataclass(frozen=True, slots=True)
class IdleResult:
    """Idle keep-alive connections held open while a probe measures."""

    connections: int
    hold_seconds: float
    still_open: int
    rss_before_kib: int
    rss_with_kib: int
    rss_end_kib: int
    rss_per_connection_kib: float
    probe_baseline: LatencySummary
    probe_while_held: LatencySummary
    probe_errors: int


@final
@dataclass(frozen=True, slots=True)
class ListingRun:
    """One server, freshly started, while concurrent clients fetch a huge directory listing.

    Attributes:
        rep: The repetition.
        server: ``zerocopy`` or ``nginx-autoindex``.
        page_bytes: The size of one listing page as the server sent it (``None``: no client
            completed a page).
        listings: Listings completed by all clients together, the window's and those that
            finished after it.
        listings_per_s: ``listings`` over the time from the start to the last one's end.
        client_errors: Fetches that failed (a reset, a status other than 200, a timeout).
        baseline: The probe on the idle server just before.
        probe: The probe during the window.
        peak_rss_kib: The serving process's peak RSS (``VmHWM``) at the end of the run.
    """

    rep: int
    server: str
    page_bytes: int | None
    listings: int
    listings_per_s: float
    client_errors: int
    baseline: LatencySummary
    probe: LatencySummary
    peak_rss_kib: int


@final
@dataclass(frozen=True, slots=True)
class ListingMedian:
    """Medians over a server's listing runs."""

    probe_p99_ms: float | None
    probe_max_ms: float | None
    peak_rss_kib: float | None
    listings_per_s: float | None
    page_bytes: float | None


@final
@dataclass(frozen=True, slots=True)
class ListingResult:
    """A 4 KiB probe's stall while concurrent clients list a directory of ``entries`` files."""

    entries: int
    clients: int
    window_s: float
    settings: dict[str, str]
    runs: tuple[ListingRun, ...]
    medians: dict[str, ListingMedian]


@final
@dataclass(frozen=True, slots=True)
class TarRun:
    """One download of the tar case's directory: as one archive, or file by file.

    Attributes:
        download: ``tar`` (``?download=tar``) or ``single`` (every file by a GET).
        received_bytes: What curl received (the archive, or the files together).
        cpu_s: The server's CPU (user + sys clock ticks of its process group).
        copied_bytes: Bytes the server copied through user space (its counters: in + out).
        zero_copy_bytes: Bytes it moved by sendfile or splice.
        syscalls: Transfer-path syscalls that returned or failed with EAGAIN (its counters).
    """

    rep: int
    strategy: str
    download: str
    received_bytes: int
    cpu_s: float
    wall_s: float
    copied_bytes: int
    zero_copy_bytes: int
    syscalls: int


@final
@dataclass(frozen=True, slots=True)
class TarMedian:
    """One strategy's medians over repetitions; per byte and per GiB of file data."""

    tar_cpu_per_gib_s: float | None
    single_cpu_per_gib_s: float | None
    tar_over_single: float | None
    """Median of the per-repetition ratios of CPU per GiB, tar / single files."""
    tar_copied_per_byte: float | None
    single_copied_per_byte: float | None
    tar_syscalls_per_gib: float | None
    single_syscalls_per_gib: float | None


@final
@dataclass(frozen=True, slots=True)
class TarResult:
    """A directory of ``files`` files of ``file_bytes`` as one tar, against file by file."""

    files: int
    file_bytes: int
    data_bytes: int
    repetitions: int
    runs: tuple[TarRun, ...]
    medians: dict[str, TarMedian]


@final
@dataclass(frozen=True, slots=True)
class HardeningResults:
    """``hardening.json``: whichever of the five cases have run (``None``: not yet)."""

    machine: Machine
    cold: ColdResult | None
    slow: SlowResult | None
    idle: IdleResult | None
    listing: ListingResult | None
    tar: TarResult | None
