"""The strategy suite: latency, server CPU, syscall counts and perf profiles per strategy.

Phases, each alternating the servers (A B C D, then B C D A, …) so that drift on this shared
machine spreads over all of them instead of favouring one:

1. **latency**: pyperf workers (``bench.suite.latency``) time requests to the last byte over
   a keep-alive connection, client pinned to one CPU, server to the other;
2. **cpu**: the harness runs bounded request loops itself and reads the server's CPU time
   (/proc) and its counters (the metrics endpoint) around each one; nginx with ``sendfile``
   on and off takes its turn in the same rotation, as the reference;
3. **counts**: the same loops under ``strace -f -c`` and bpftrace at once, never timed; a
   window in which a tracer saw nothing is run again (``bench.suite.tracers``);
4. **perf**: ``perf record -e cpu-clock -g`` during a load, for the copy routines' and the
   kernel paths' share of server CPU and the top of the profile (full runs only);
5. **handshakes**: full TLS 1.3 handshakes against the TLS server (``bench.suite.tls``).

A TLS server (the default strategy with a trustme certificate) takes its turn in the CPU
phase's rotation on the profile's TLS cases, so TLS and plain are measured alike.

One server per strategy (and per nginx configuration) runs for the whole suite, in its own
process group, and is stopped on every exit path. The pyperf files get the CPU benchmarks,
``measurements.json`` (:class:`bench.harness.schema.Measurements`) everything else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import trio

from bench.harness import client, files, metrics, procfs
from bench.harness.machine import choose_pinning, loadavg_now, machine_info, pin_self
from bench.harness.names import NGINX_BASELINES, STRATEGIES, TLS_SERVER
from bench.harness.nginx import CONFIGS, nginx_binary, start_nginx
from bench.harness.progress import Progress
from bench.harness.results import REPO_ROOT, RESULTS_DIR, write_record
from bench.harness.schema import (
    Calibration,
    CaseLists,
    CountWindow,
    CpuWindow,
    LatencyCase,
    LatencyPlan,
    Measurements,
    PerfRecord,
    ProfileSettings,
    PySpyRecord,
    SuiteMeta,
    TlsRecord,
    TracerLoss,
)
from bench.harness.servers import ServerSet, start_zerocopy
from bench.suite import perf, pyspy, tls, tracers
from bench.suite.latency import PROGRAM
from bench.suite.pyperf_files import add_cpu_benchmarks

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

    from bench.harness.schema import (
        BpfCounts,
        CounterDelta,
        HandshakeRun,
        Pinning,
        StraceCounts,
    )
    from bench.harness.servers import RunningServer, ServerInfo
    from bench.suite.plan import Case, Profile

__all__ = ["CHARTS_AND_REPORT", "default_out", "pyperf_files", "run"]

CHARTS_AND_REPORT: Final = ("report.md", "latency.png", "cpu_per_gib.png", "syscalls_copies.png")
"""What the reporting stack writes into the same directory (removed before a new run)."""
PYPERF_TIMEOUT: Final = 900.0
WINDOW_CAP: Final = 20.0
"""A loop in the CPU phase stops at this many times its planned window, whatever its count."""
MAX_TRACED_REQUESTS: Final = 200
TRACE_ATTEMPTS: Final = 3
"""A traced window in which a tracer saw nothing is run again, this many times at most."""
SLOW_WINDOW: Final = 10.0
SETTLE: Final = 0.2
"""Seconds for the server to see the client's close and go back to epoll_wait before the
tracers stop counting."""
PERF_CASES: Final = ("4KiB", "1MiB", "256MiB")
PERF_SECONDS: Final = 1.5
PYSPY_CASE: Final = ("auto", "4KiB")
"""The request the report's Python profile explains: the default strategy, a small file."""
PYSPY_CONNECTIONS: Final = 8


def default_out(quick: bool) -> Path:
    """``bench/results`` for full runs, ``bench/results/quick`` for quick ones."""
    return RESULTS_DIR / "quick" if quick else RESULTS_DIR


def pyperf_files() -> tuple[str, ...]:
    """The suite's pyperf files, one per strategy."""
    return tuple(f"{strategy}.json" for strategy in STRATEGIES)


def _rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


@final
@dataclass(frozen=True, slots=True)
class _Session:
    """What every phase works with.

    Attributes:
        profile: How much to measure.
        servers: One running zerocopy server per strategy.
        nginx: One running nginx per configuration measured (may be empty).
        root: The directory every server serves.
        progress: One step per unit of work.
        skipped: What was not measured, and why (``measurements.json``'s ``skipped``).
        tls: The TLS server and the client's context for it, when one runs.
    """

    profile: Profile
    servers: dict[str, ServerInfo]
    nginx: dict[str, RunningServer]
    root: str
    progress: Progress
    skipped: dict[str, str]
    tls: tuple[ServerInfo, ssl.SSLContext] | None = None

    def requests(
        self,
        port: int,
        case: Case,
        *,
        count: int,
        min_time: float = 0.0,
        max_time: float = math.inf,
        tls: ssl.SSLContext | None = None,
    ) -> tuple[int, float]:
        """Sequential GETs of ``case``'s file on one connection: ``client.run_requests``."""
        evict = os.path.join(self.root, case.filename) if case.cold else None
        return trio.run(
            lambda: client.run_requests(
                port,
                case.filename,
                count=count,
                min_time=min_time,
                max_time=max_time,
                evict_path=evict,
                tls=tls,
            )
        )

    def scrape(self, server: ServerInfo) -> metrics.Samples:
        if server.metrics_port is None:
            raise RuntimeError(f"the {server.strategy} server announced no metrics port")
        return metrics.scrape(server.metrics_port)


# -- latency -----------------------------------------------------------------------------------


def _calibrate(session: _Session) -> dict[str, Calibration]:
    """Pick ``inner_loops`` per case so a pyperf value lasts about ``value_time``."""
    calibration = {}
    for case in session.profile.latency_cases:
        estimates = []
        for server in session.servers.values():
            session.requests(server.port, case, count=1)
            done, elapsed = session.requests(server.port, case, count=2 if case.cold else 3)
            estimates.append(elapsed / done)
        slowest = max(estimates)
        inner = max(1, min(100_000, round(session.profile.value_time / slowest)))
        calibration[case.label] = Calibration(estimate_s=slowest, inner_loops=inner)
        session.progress.advance(f"calibrate {case.label}: inner_loops {inner}")
    return calibration


def _latency_phase(
    session: _Session, out: Path, calibration: dict[str, Calibration], pinning: Pinning
) -> None:
    profile, root = session.profile, session.root
    plans = {}
    for strategy, server in session.servers.items():
        plan = LatencyPlan(
            strategy=strategy,
            port=server.port,
            root=root,
            server_cpu=pinning.server_cpu,
            client_cpu=pinning.client_cpu,
            cases=tuple(
                LatencyCase(
                    name=case.latency_name,
                    filename=case.filename,
                    size=case.size,
                    cold=case.cold,
                    inner_loops=calibration[case.label].inner_loops,
                )
                for case in profile.latency_cases
            ),
        )
        path = Path(root) / f"plan-{strategy}.json"
        write_record(path, plan)
        plans[strategy] = path
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log = out / "logs" / "pyperf.log"
    for round_ in range(profile.rounds):
        for strategy in _rotated(list(session.servers), round_):
            command = [
                sys.executable,
                *PROGRAM,
                "--plan",
                str(plans[strategy]),
                "--append",
                str(out / f"{strategy}.json"),
                "--processes",
                str(profile.processes),
                "--values",
                str(profile.values),
                "--warmups",
                str(profile.warmups),
                "--loops",
                "1",
                "--quiet",
            ]
            if pinning.client_cpu is not None:
                command += ["--affinity", str(pinning.client_cpu)]
            with open(log, "a") as log_file:
                log_file.write(f"$ {' '.join(command)}\n")
                log_file.flush()
                completed = subprocess.run(
                    command,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    timeout=PYPERF_TIMEOUT,
                    check=False,
                )
            if completed.returncode != 0:
                raise RuntimeError(f"pyperf run failed ({completed.returncode}); see {log}")
            session.progress.advance(f"latency round {round_ + 1}/{profile.rounds}: {strategy}")


# -- cpu ---------------------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class _Target:
    """One server of the CPU phase: what to read, where to send, which cases, over TLS?"""

    name: str
    pid: int
    port: int
    info: ServerInfo | None
    """zerocopy's (with counters); ``None`` for nginx."""
    cases: tuple[Case, ...]
    tls: ssl.SSLContext | None = None


def _cpu_window(session: _Session, target: _Target, case: Case, rep: int) -> CpuWindow:
    profile = session.profile
    server = target.info
    before_metrics = session.scrape(server) if server is not None else None
    if target.tls is not None:
        # The handshake and the file's first read are not what the window measures.
        session.requests(target.port, case, count=1, tls=target.tls)
    before = procfs.sample_group(target.pid)
    started = datetime.datetime.now(datetime.UTC).isoformat()
    done, elapsed = session.requests(
        target.port,
        case,
        count=profile.cpu_min_requests,
        min_time=profile.cpu_window,
        max_time=profile.cpu_window * WINDOW_CAP,
        tls=target.tls,
    )
    used = procfs.sample_group(target.pid) - before
    counters = None
    if server is not None and before_metrics is not None:
        counters = metrics.counter_delta(before_metrics, session.scrape(server))
    return CpuWindow(
        server=target.name,
        case=case.label,
        size=case.size,
        cold=case.cold,
        rep=rep,
        date=started,
        requests=done,
        elapsed_s=elapsed,
        utime_s=used.utime_s,
        stime_s=used.stime_s,
        runtime_s=used.runtime_s,
        cpu_s=used.cpu_s,
        voluntary=used.voluntary,
        involuntary=used.involuntary,
        counters=counters,
    )


def _cpu_phase(session: _Session) -> list[CpuWindow]:
    """Every server (strategies, nginx configurations, the TLS server) in a rotated order per
    repetition.

    The scrapes of the metrics endpoint happen outside the /proc readings, so they are not
    billed; nginx has no counters, and only its /proc readings are taken. The TLS server runs
    its own cases only, each window on a connection whose handshake is done beforehand.
    """
    profile = session.profile
    cases = profile.cpu_cases
    targets = {
        name: _Target(name, info.pid, info.port, info, cases)
        for name, info in session.servers.items()
    }
    targets |= {
        name: _Target(name, server.pgid, server.port, None, cases)
        for name, server in session.nginx.items()
    }
    if session.tls is not None:
        info, context = session.tls
        targets[TLS_SERVER] = _Target(
            TLS_SERVER, info.pid, info.port, info, profile.tls_cases, context
        )
    windows = []
    for rep in range(profile.cpu_repetitions):
        for name in _rotated(list(targets), rep):
            target = targets[name]
            windows += [_cpu_window(session, target, case, rep) for case in target.cases]
            session.progress.advance(f"cpu repetition {rep + 1}/{profile.cpu_repetitions}: {name}")
    return windows


# -- handshakes ----------------------------------------------------------------------------------


def _handshake_phase(session: _Session, ca: Path) -> tuple[str, tuple[HandshakeRun, ...]]:
    """Full TLS 1.3 handshakes against the TLS server: (how, runs), or why not (no runs)."""
    profile = session.profile
    if session.tls is None or not profile.handshake_repetitions:
        return f"not in the {profile.name} profile", ()
    openssl = tls.handshake_tool()
    if openssl is None:
        session.skipped["handshakes"] = "openssl is not installed"
        for _ in range(profile.handshake_repetitions):
            session.progress.advance("handshakes: skipped (no openssl)")
        return "not measured: openssl is not installed", ()
    info, _ = session.tls
    runs = []
    for rep in range(profile.handshake_repetitions):
        run = tls.measure_handshakes(openssl, info, ca, rep=rep, seconds=profile.handshake_seconds)
        runs.append(run)
        session.progress.advance(
            f"handshakes {rep + 1}/{profile.handshake_repetitions}: {run.per_second:,.0f}/s"
        )
    how = (
        f"`openssl s_time -new -tls1_3 -time {profile.handshake_seconds}` "
        f"({tls.version(openssl)}), {tls.HANDSHAKE_CLIENTS} clients on the client CPU, "
        "against one worker"
    )
    return how, tuple(runs)


# -- counts ------------------------------------------------------------------------------------


def _traced(
    session: _Session, server: ServerInfo, case: Case, requests: int, use: tuple[bool, bool]
) -> tuple[int, CounterDelta, StraceCounts | None, BpfCounts | None]:
    """One window under the tracers in ``use`` (strace, bpftrace), bracketed by scrapes.

    A window slower than :data:`SLOW_WINDOW` says on the progress display where its time went
    (each wait on a tracer is bounded, but a stuck one costs its whole bound).
    """
    session.requests(server.port, case, count=1)
    before = session.scrape(server)
    marks = [("start", time.monotonic())]
    with contextlib.ExitStack() as stack:
        strace_out = bpf_out = None
        if use[0]:
            strace_out = stack.enter_context(tracers.trace_strace(server.pid))
            marks.append(("strace attached", time.monotonic()))
        if use[1]:
            bpf_out = stack.enter_context(tracers.trace_bpftrace(server.pid))
            marks.append(("bpftrace armed", time.monotonic()))
        done, _ = session.requests(server.port, case, count=requests, max_time=300.0)
        marks.append(("requests done", time.monotonic()))
        time.sleep(SETTLE)
    marks.append(("tracers stopped", time.monotonic()))
    if marks[-1][1] - marks[0][1] > SLOW_WINDOW:
        steps = ", ".join(
            f"{name} +{t - marks[i][1]:.1f} s" for i, (name, t) in enumerate(marks[1:])
        )
        session.progress.note(f"slow traced window ({server.strategy} {case.label}): {steps}")
    delta = metrics.counter_delta(before, session.scrape(server))
    return (
        done,
        delta,
        strace_out[0] if strace_out else None,
        bpf_out[0] if bpf_out else None,
    )


def _count_window(
    session: _Session,
    server: ServerInfo,
    case: Case,
    use: tuple[bool, bool],
    losses: list[TracerLoss],
) -> CountWindow:
    """A traced window, run again while a tracer saw none of the server's syscalls.

    A tracer that saw nothing had not attached: that is a loss of the tracer, recorded, and
    never a disagreement of the server. A tracer that failed (did not attach, arm or report
    in time) is a loss too.

    Raises:
        RuntimeError: Every one of :data:`TRACE_ATTEMPTS` attempts was lost; the count phase
            records the window under ``skipped``.
    """
    requests = max(2, min(MAX_TRACED_REQUESTS, session.profile.count_requests_bytes // case.size))
    use_strace, use_bpf = use
    for attempt in range(1, TRACE_ATTEMPTS + 1):
        try:
            done, delta, strace, bpf = _traced(session, server, case, requests, use)
        except RuntimeError as exc:
            losses.append(TracerLoss(server.strategy, case.label, attempt, "tracers", str(exc)))
            session.progress.note(f"tracing {server.strategy} {case.label} failed: {exc}")
            continue
        lost = []
        if use_strace and strace is not None and strace.total == 0:
            lost.append("strace")
        if use_bpf and bpf is not None and bpf.total == 0:
            lost.append("bpftrace")
        if not lost or delta.total == 0:
            return CountWindow(
                server.strategy, case.label, case.size, done, attempt, delta, strace, bpf
            )
        reason = f"saw no syscall while the server counted {delta.total}"
        losses.extend(
            TracerLoss(server.strategy, case.label, attempt, tracer, reason) for tracer in lost
        )
        session.progress.note(
            f"{'/'.join(lost)} saw nothing ({server.strategy} {case.label}): once more"
        )
    raise RuntimeError(
        f"the tracers saw nothing in {TRACE_ATTEMPTS} attempts ({server.strategy} {case.label})"
    )


def _count_phase(session: _Session) -> tuple[list[CountWindow], list[TracerLoss]]:
    profile, skipped = session.profile, session.skipped
    use_strace = tracers.strace_available()
    if not use_strace:
        skipped["strace"] = "not used: strace is not installed"
    use_bpftrace = profile.bpftrace and tracers.bpftrace_available()
    if profile.bpftrace and not use_bpftrace:
        skipped["bpftrace"] = "not used: needs bpftrace, root and tracefs"
    elif not profile.bpftrace:
        skipped["bpftrace"] = f"not used: not in the {profile.name} profile"
    if use_bpftrace and not tracers.syscall_table():
        skipped["syscall names"] = (
            "no asm/unistd_64.h (apt-get install linux-libc-dev): bpftrace's syscalls are "
            "shown by number"
        )
    records: list[CountWindow] = []
    losses: list[TracerLoss] = []
    if not (use_strace or use_bpftrace):
        return records, losses
    for strategy, server in session.servers.items():
        for case in profile.count_cases:
            try:
                records.append(
                    _count_window(session, server, case, (use_strace, use_bpftrace), losses)
                )
            except RuntimeError as exc:
                skipped.setdefault("counts", str(exc))
            session.progress.advance(f"trace {strategy} {case.label}")
    return records, losses


# -- perf --------------------------------------------------------------------------------------


def _perf_phase(session: _Session) -> list[PerfRecord]:
    profile, skipped = session.profile, session.skipped
    if not profile.perf:
        skipped["perf"] = f"not in the {profile.name} profile"
        return []
    if not perf.perf_available():
        skipped["perf"] = "perf is not installed"
        return []
    cases = [case for case in profile.cpu_cases if case.label in PERF_CASES]
    records: list[PerfRecord] = []
    for strategy, server in session.servers.items():
        for case in cases:
            try:
                with perf.record(server.pid) as result:
                    done, _ = session.requests(
                        server.port,
                        case,
                        count=2,
                        min_time=PERF_SECONDS,
                        max_time=PERF_SECONDS * WINDOW_CAP,
                    )
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                session.progress.note(f"perf failed: {exc}")
                skipped["perf"] = str(exc)
                return records
            profile_ = result[0]
            records.append(
                PerfRecord(
                    strategy=strategy,
                    case=case.label,
                    requests=done,
                    samples=profile_.samples,
                    copy_to_iter_pct=profile_.copy_to_iter,
                    copy_from_iter_pct=profile_.copy_from_iter,
                    kernel_pct=profile_.kernel,
                    python_pct=profile_.python,
                    paths=profile_.paths,
                    top=tuple(profile_.top),
                )
            )
            session.progress.advance(f"perf {strategy} {case.label}")
    return records


async def _concurrent_requests(port: int, filename: str, seconds: float) -> int:
    """:data:`PYSPY_CONNECTIONS` keep-alive connections of sequential GETs for ``seconds``,
    so that the server, as under wrk, finds work waiting whenever it looks."""
    done: list[int] = []

    async def one() -> None:
        count, _ = await client.run_requests(
            port, filename, count=2, min_time=seconds, max_time=seconds * WINDOW_CAP
        )
        done.append(count)

    async with trio.open_nursery() as nursery:
        for _ in range(PYSPY_CONNECTIONS):
            nursery.start_soon(one)
    return sum(done)


def _pyspy_phase(session: _Session) -> list[PySpyRecord]:
    profile, skipped = session.profile, session.skipped
    strategy, label = PYSPY_CASE
    cases = [case for case in profile.cpu_cases if case.label == label]
    server = session.servers.get(strategy)
    if profile.pyspy_seconds <= 0 or not cases or server is None:
        skipped["py-spy"] = f"not in the {profile.name} profile"
        session.progress.advance("py-spy: skipped")
        return []
    try:
        with pyspy.record(server.pid) as result:
            done = trio.run(
                _concurrent_requests, server.port, cases[0].filename, profile.pyspy_seconds
            )
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        session.progress.note(f"py-spy failed: {exc}")
        skipped["py-spy"] = str(exc)
        return []
    finally:
        session.progress.advance(f"py-spy {strategy} {label}")
    found = result[0]
    return [
        PySpyRecord(
            strategy=strategy,
            case=label,
            connections=PYSPY_CONNECTIONS,
            requests=done,
            samples=found.samples,
            components=found.components,
            top=tuple(found.top),
        )
    ]


# -- the run -----------------------------------------------------------------------------------


def _clean(out: Path) -> None:
    for name in (*pyperf_files(), "measurements.json", *CHARTS_AND_REPORT, "logs"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _check_eviction(root: str, profile: Profile) -> bool | None:
    cold = [case for case in profile.cases if case.cold]
    if not cold:
        return None
    path = os.path.join(root, cold[0].filename)
    files.evict(path)
    return files.is_cached(path) is False


def _nginx_wanted(profile: Profile, skipped: dict[str, str]) -> tuple[str, ...]:
    if not profile.nginx:
        skipped["nginx"] = f"not in the {profile.name} profile"
        return ()
    if nginx_binary() is None:
        skipped["nginx"] = "nginx is not installed (apt-get install nginx)"
        return ()
    return NGINX_BASELINES


def _steps(profile: Profile, nginx: int, tls_server: bool) -> int:
    servers = len(STRATEGIES)
    n = len(profile.latency_cases) + profile.rounds * servers
    n += profile.cpu_repetitions * (servers + nginx + tls_server)
    n += profile.handshake_repetitions if tls_server else 0
    n += servers * len(profile.count_cases)
    if profile.perf:
        n += servers * sum(1 for case in profile.cpu_cases if case.label in PERF_CASES)
    return n + 3


def run(profile: Profile, out: Path, *, data_parent: str | None = None) -> Measurements:
    """Measure everything and write the pyperf files and ``measurements.json`` into ``out``.

    Raises:
        ServerStartError: A server did not start.
        RuntimeError: A pyperf run failed.

    Resource handling: every server is stopped (its process group) and the data directory
    removed however this returns or raises.
    """
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    logs = out / "logs"
    logs.mkdir()
    started = time.monotonic()
    pinning = choose_pinning()
    skipped: dict[str, str] = {}
    nginx_names = _nginx_wanted(profile, skipped)
    machine = machine_info(tools=("strace", "bpftrace", "perf", "nginx"))
    tls_record = None
    with (
        files.data_directory(data_parent) as root,
        tempfile.TemporaryDirectory(prefix="zerocopy-bench-tls-") as tls_dir,
    ):
        certificate = tls.make_certificate(Path(tls_dir)) if profile.tls_cases else None
        if certificate is None:
            skipped["tls"] = (
                "trustme is not installed (pip install trustme)"
                if profile.tls_cases
                else f"not in the {profile.name} profile"
            )
        steps = _steps(profile, len(nginx_names), certificate is not None)
        with Progress(steps, "bench") as progress, ServerSet(logs, cpu=pinning.server_cpu) as ss:
            files.write_files(root, {case.filename: case.size for case in profile.cases})
            progress.advance(f"write {len(profile.cases)} files into {root}")
            eviction_verified = _check_eviction(root, profile)
            filesystem = files.filesystem_type(root)
            pin_self(pinning.client_cpu)
            servers = {
                strategy: start_zerocopy(ss, root, strategy, name=f"server-{strategy}")
                for strategy in STRATEGIES
            }
            nginx = {name: start_nginx(ss, Path(root), CONFIGS[name]) for name in nginx_names}
            session = _Session(profile, servers, nginx, root, progress, skipped)
            commands = {s: " ".join(info.command) for s, info in servers.items()}
            commands |= {n: " ".join(server.command) for n, server in nginx.items()}
            if certificate is not None:
                secure = start_zerocopy(
                    ss,
                    root,
                    STRATEGIES[0],
                    name=f"server-{TLS_SERVER}",
                    extra=("--tls-cert", str(certificate.cert), "--tls-key", str(certificate.key)),
                )
                session = dataclasses.replace(
                    session, tls=(secure, tls.client_context(certificate.ca))
                )
                commands[TLS_SERVER] = " ".join(secure.command)
            progress.advance(f"start {len(commands)} servers")
            unannounced = tuple(s for s, info in servers.items() if not info.metrics_announced)
            calibration = _calibrate(session)
            _latency_phase(session, out, calibration, pinning)
            windows = _cpu_phase(session)
            counts, losses = _count_phase(session)
            perf_records = _perf_phase(session)
            pyspy_records = _pyspy_phase(session)
            if certificate is not None and session.tls is not None:
                how, handshakes = _handshake_phase(session, certificate.ca)
                tls_record = TlsRecord(
                    server=TLS_SERVER,
                    plain=STRATEGIES[0],
                    strategy=session.tls[0].strategy,
                    certificate=certificate.description,
                    cases=tuple(case.label for case in profile.tls_cases),
                    handshake_tool=how,
                    handshakes=handshakes,
                )
    for strategy in STRATEGIES:
        add_cpu_benchmarks(out / f"{strategy}.json", strategy, windows)
    measurements = Measurements(
        meta=SuiteMeta(
            profile=profile.name,
            machine=machine,
            pinning=pinning,
            settings=ProfileSettings(
                rounds=profile.rounds,
                processes_per_round=profile.processes,
                values=profile.values,
                warmups=profile.warmups,
                value_time_s=profile.value_time,
                cpu_repetitions=profile.cpu_repetitions,
                cpu_window_s=profile.cpu_window,
            ),
            filesystem=filesystem,
            eviction_verified=eviction_verified,
            servers=commands,
            metrics_port_not_announced=unannounced,
            finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            duration_s=round(time.monotonic() - started, 1),
            loadavg_end=loadavg_now(),
        ),
        strategies=STRATEGIES,
        nginx=tuple(nginx_names),
        cases=CaseLists(
            latency=tuple(case.label for case in profile.latency_cases),
            cpu=tuple(case.label for case in profile.cpu_cases),
            count=tuple(case.label for case in profile.count_cases),
        ),
        calibration=calibration,
        cpu_windows=tuple(windows),
        counts=tuple(counts),
        tracer_losses=tuple(losses),
        perf=tuple(perf_records),
        pyspy=tuple(pyspy_records),
        tls=tls_record,
        skipped=skipped,
    )
    write_record(out / "measurements.json", measurements)
    return measurements
