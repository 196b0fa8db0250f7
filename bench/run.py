"""Run the benchmark suite: ``python -m bench.run [--quick] [--out DIR]``.

Phases, each alternating the strategies (A B C, then B C A, …) so that drift on this shared
machine spreads over all of them instead of favouring one:

1. **latency** — pyperf workers (``bench/latency.py``) time requests to the last byte over a
   keep-alive connection, client pinned to CPU 1, server to CPU 0;
2. **cpu** — the harness runs bounded request loops itself and reads the server's CPU time
   (``/proc``) and its counters (the metrics endpoint) around each one;
3. **counts** — the same loops under ``strace -f -c`` and bpftrace at once, never timed;
4. **perf** — ``perf record -e cpu-clock -g`` during a load, for the copy routines' share of
   server CPU and the top of the profile (full runs only).

One server per strategy runs for the whole suite, in its own process group, and is stopped on
every exit path (errors, Ctrl-C, SIGTERM). Then the pyperf files get the CPU benchmarks,
``measurements.json`` gets everything else, and :mod:`bench.report` renders ``report.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

import pyperf
import trio

from bench import client, dataset, perfprof, procfs, prom, tracers
from bench.latency import LatencyCase, LatencyPlan
from bench.plan import FULL, QUICK, STRATEGIES, Case, Profile
from bench.progress import Progress
from bench.serverproc import ServerSet, signals_raise_keyboard_interrupt, start_zerocopy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.serverproc import ServerInfo

__all__ = ["OWN_ARTEFACTS", "REPO_ROOT", "default_out", "main"]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
# Files this suite writes into the results directory (the load and peers files are not ours).
OWN_ARTEFACTS: Final = (
    *(f"{strategy}.json" for strategy in STRATEGIES),
    "measurements.json",
    "report.md",
    "latency.png",
    "cpu_per_gib.png",
    "syscalls_copies.png",
    "logs",
)
PYPERF_TIMEOUT: Final = 900.0
# A loop in the CPU phase stops at this many times its planned window, whatever its count.
WINDOW_CAP: Final = 20.0
MAX_TRACED_REQUESTS: Final = 200
SETTLE: Final = 0.2
PERF_CASES: Final = ("4KiB", "1MiB", "256MiB")
PERF_SECONDS: Final = 1.5


def default_out(quick: bool) -> Path:
    """``bench/results`` for full runs, ``bench/results/quick`` for quick ones."""
    return REPO_ROOT / "bench" / "results" / ("quick" if quick else "")


def _rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def _pins() -> tuple[int | None, int | None]:
    """Server and client CPUs: 0 and 1 where this process may use both, else unpinned."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        return allowed[0], allowed[1]
    return None, None


def _version(command: Sequence[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[0] if lines else None


def _git(*args: str) -> str:
    command = ["git", "-C", str(REPO_ROOT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout


def _git_commit() -> str | None:
    try:
        head = _git("rev-parse", "--short", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _loadavg() -> str:
    return " ".join(procfs.loadavg()) or "unknown"


def _meta(profile: Profile, root: str, pins: tuple[int | None, int | None]) -> dict[str, Any]:
    import zerocopy

    return {
        "profile": profile.name,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_model": procfs.cpu_model(),
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "pyperf": pyperf.__version__,
        "trio": trio.__version__,
        "zerocopy": zerocopy.__version__,
        "git_commit": _git_commit(),
        "server_cpu": pins[0],
        "client_cpu": pins[1],
        "filesystem": dataset.filesystem_type(root),
        "clock_ticks_per_s": procfs.CLOCK_TICKS,
        "loadavg_start": _loadavg(),
        "strace": _version(["strace", "-V"]),
        "bpftrace": _version(["bpftrace", "--version"]),
        "perf": _version(["perf", "--version"]),
        "euid": os.geteuid(),
        "profile_settings": {
            "rounds": profile.rounds,
            "processes_per_round": profile.processes,
            "values": profile.values,
            "warmups": profile.warmups,
            "value_time_s": profile.value_time,
            "cpu_repetitions": profile.cpu_repetitions,
            "cpu_window_s": profile.cpu_window,
        },
    }


@final
@dataclass(frozen=True, slots=True)
class _Session:
    """What every phase works with: the profile, the running servers, the files, the output.

    Attributes:
        profile: How much to measure.
        servers: One running server per strategy.
        root: The directory the servers serve.
        progress: One step per unit of work.
        skipped: What was not measured, and why (``measurements.json``'s ``skipped``).
    """

    profile: Profile
    servers: dict[str, ServerInfo]
    root: str
    progress: Progress
    skipped: dict[str, str]

    def requests(
        self,
        server: ServerInfo,
        case: Case,
        *,
        count: int,
        min_time: float = 0.0,
        max_time: float = math.inf,
    ) -> tuple[int, float]:
        """Sequential GETs of ``case``'s file on one connection: ``client.run_requests``."""
        evict = os.path.join(self.root, case.filename) if case.cold else None
        return trio.run(
            lambda: client.run_requests(
                server.port,
                case.filename,
                count=count,
                min_time=min_time,
                max_time=max_time,
                evict_path=evict,
            )
        )


# -- latency -------------------------------------------------------------------------------


def _calibrate(session: _Session) -> dict[str, dict[str, float]]:
    """Pick ``inner_loops`` per case so a pyperf value lasts about ``value_time``."""
    calibration = {}
    for case in session.profile.latency_cases:
        estimates = []
        for server in session.servers.values():
            session.requests(server, case, count=1)
            done, elapsed = session.requests(server, case, count=3 if not case.cold else 2)
            estimates.append(elapsed / done)
        slowest = max(estimates)
        inner = max(1, min(100_000, round(session.profile.value_time / slowest)))
        calibration[case.label] = {"estimate_s": slowest, "inner_loops": inner}
        session.progress.advance(f"calibrate {case.label}: inner_loops {inner}")
    return calibration


def _latency_phase(
    session: _Session,
    out: Path,
    calibration: dict[str, dict[str, float]],
    pins: tuple[int | None, int | None],
) -> None:
    profile, root = session.profile, session.root
    plans = {}
    for strategy, server in session.servers.items():
        plan = LatencyPlan(
            strategy=strategy,
            port=server.port,
            root=root,
            server_cpu=pins[0],
            client_cpu=pins[1],
            cases=tuple(
                LatencyCase(
                    name=case.latency_name,
                    filename=case.filename,
                    size=case.size,
                    cold=case.cold,
                    inner_loops=int(calibration[case.label]["inner_loops"]),
                )
                for case in profile.latency_cases
            ),
        )
        path = os.path.join(root, f"plan-{strategy}.json")
        plan.dump(path)
        plans[strategy] = path
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log = out / "logs" / "pyperf.log"
    for round_ in range(profile.rounds):
        for strategy in _rotated(STRATEGIES, round_):
            command = [
                sys.executable,
                "-m",
                "bench.latency",
                "--plan",
                plans[strategy],
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
            if pins[1] is not None:
                command += ["--affinity", str(pins[1])]
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


# -- cpu -----------------------------------------------------------------------------------


def _delta_json(delta: prom.CounterDelta) -> dict[str, Any]:
    return {
        "syscalls": delta.syscalls,
        "eagain": delta.eagain,
        "copy_in": delta.copy_in,
        "copy_out": delta.copy_out,
        "zero_copy": delta.zero_copy,
        "body": delta.body,
        "responses": delta.responses,
        "connections": delta.connections,
    }


def _cpu_window(session: _Session, server: ServerInfo, case: Case) -> dict[str, Any]:
    profile = session.profile
    before_metrics = prom.scrape(_metrics_port(server))
    before = procfs.sample_group(server.pid)
    started = datetime.datetime.now(datetime.UTC).isoformat()
    done, elapsed = session.requests(
        server,
        case,
        count=profile.cpu_min_requests,
        min_time=profile.cpu_window,
        max_time=profile.cpu_window * WINDOW_CAP,
    )
    used = procfs.sample_group(server.pid) - before
    delta = prom.counter_delta(before_metrics, prom.scrape(_metrics_port(server)))
    return {
        "strategy": server.strategy,
        "case": case.label,
        "size": case.size,
        "cold": case.cold,
        "date": started,
        "requests": done,
        "elapsed_s": elapsed,
        "utime_s": used.utime_s,
        "stime_s": used.stime_s,
        "runtime_s": used.runtime_s,
        "cpu_s": used.cpu_s,
        "voluntary": used.voluntary,
        "involuntary": used.involuntary,
        "counters": _delta_json(delta),
    }


def _metrics_port(server: ServerInfo) -> int:
    if server.metrics_port is None:
        raise RuntimeError("the server announced no metrics port")
    return server.metrics_port


def _cpu_phase(session: _Session) -> list[dict[str, Any]]:
    profile = session.profile
    windows = []
    for rep in range(profile.cpu_repetitions):
        for strategy in _rotated(STRATEGIES, rep):
            for case in profile.cpu_cases:
                window = _cpu_window(session, session.servers[strategy], case)
                window["rep"] = rep
                windows.append(window)
            session.progress.advance(
                f"cpu repetition {rep + 1}/{profile.cpu_repetitions}: {strategy}"
            )
    return windows


# -- counts --------------------------------------------------------------------------------


def _count_window(
    session: _Session, server: ServerInfo, case: Case, use_strace: bool, use_bpftrace: bool
) -> dict[str, Any]:
    requests = max(2, min(MAX_TRACED_REQUESTS, session.profile.count_requests_bytes // case.size))
    session.requests(server, case, count=1)
    before = prom.scrape(_metrics_port(server))
    record: dict[str, Any] = {
        "strategy": server.strategy,
        "case": case.label,
        "size": case.size,
        "requests": requests,
        "strace": None,
        "bpftrace": None,
    }
    with contextlib.ExitStack() as stack:
        strace_out = bpf_out = None
        if use_strace:
            strace_out = stack.enter_context(tracers.trace_strace(server.pid))
        if use_bpftrace:
            bpf_out = stack.enter_context(tracers.trace_bpftrace(server.pid))
        done, _ = session.requests(server, case, count=requests, max_time=300.0)
        record["requests"] = done
        # Let the server see the client's close and go back to epoll_wait before detaching.
        time.sleep(SETTLE)
    after = prom.scrape(_metrics_port(server))
    record["server"] = _delta_json(prom.counter_delta(before, after))
    if strace_out:
        record["strace"] = {"calls": strace_out[0].calls, "errors": strace_out[0].errors}
    if bpf_out:
        counts = bpf_out[0]
        record["bpftrace"] = {
            "returned": counts.returned,
            "eagain": counts.eagain,
            "bytes_in": counts.bytes_in,
            "bytes_out": counts.bytes_out,
        }
    return record


def _count_phase(session: _Session) -> list[dict[str, Any]]:
    profile, skipped = session.profile, session.skipped
    use_strace = tracers.strace_available()
    if not use_strace:
        skipped["strace"] = "not used: strace is not installed"
    use_bpftrace = profile.bpftrace and tracers.bpftrace_available()
    if profile.bpftrace and not use_bpftrace:
        skipped["bpftrace"] = "not used: needs bpftrace, root and tracefs"
    elif not profile.bpftrace:
        skipped["bpftrace"] = f"not used: not in the {profile.name} profile"
    if not (use_strace or use_bpftrace):
        return []
    records = []
    bpf_windows = 0
    for strategy in STRATEGIES:
        for case in profile.count_cases:
            bpf = use_bpftrace and (
                not profile.bpftrace_windows or bpf_windows < profile.bpftrace_windows
            )
            bpf_windows += bpf
            if use_bpftrace and not bpf:
                skipped["bpftrace"] = (
                    f"used for the first {profile.bpftrace_windows} window(s) only "
                    f"({profile.name} profile)"
                )
            try:
                records.append(
                    _count_window(session, session.servers[strategy], case, use_strace, bpf)
                )
            except RuntimeError as exc:
                session.progress.note(f"tracing failed: {exc}")
                skipped.setdefault("counts", f"tracing failed: {exc}")
            session.progress.advance(f"trace {strategy} {case.label}")
    return records


# -- perf ----------------------------------------------------------------------------------


def _perf_phase(session: _Session) -> list[dict[str, Any]]:
    profile, skipped = session.profile, session.skipped
    if not profile.perf:
        skipped["perf"] = f"not in the {profile.name} profile"
        return []
    if not perfprof.perf_available():
        skipped["perf"] = "perf is not installed"
        return []
    cases = [case for case in profile.cpu_cases if case.label in PERF_CASES]
    records: list[dict[str, Any]] = []
    for strategy in STRATEGIES:
        for case in cases:
            server = session.servers[strategy]
            try:
                with perfprof.record(server.pid) as result:
                    done, _ = session.requests(
                        server,
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
                {
                    "strategy": strategy,
                    "case": case.label,
                    "requests": done,
                    "samples": profile_.samples,
                    "copy_to_iter_pct": profile_.copy_to_iter,
                    "copy_from_iter_pct": profile_.copy_from_iter,
                    "kernel_pct": profile_.kernel,
                    "python_pct": profile_.python,
                    "top": [
                        {"percent": e.percent, "dso": e.dso, "symbol": e.symbol}
                        for e in profile_.top
                    ],
                }
            )
            session.progress.advance(f"perf {strategy} {case.label}")
    return records


# -- pyperf CPU benchmarks -----------------------------------------------------------------

_BASE_KEYS: Final = (
    "hostname",
    "cpu_model_name",
    "cpu_count",
    "platform",
    "python_implementation",
    "python_version",
    "python_executable",
    "python_unicode",
    "aslr",
    "kernel",
    "server_cpu",
    "client_cpu",
    "filesystem",
    "strategy",
)


def _per_request(value: float, requests: int) -> float:
    return value / requests if requests else 0.0


def add_cpu_benchmarks(path: Path, strategy: str, windows: list[dict[str, Any]]) -> None:
    """Append one ``cpu_<case>`` benchmark per case to a strategy's pyperf file.

    Each CPU-phase window is one pyperf run with one value: server CPU seconds per request
    (schedstat, else utime + stime). Copy counts and context switches ride along as run
    metadata, zeros included; a window with no measurable CPU is left out, never fudged.
    """
    base: dict[str, Any] = {}
    if path.exists():
        suite = pyperf.BenchmarkSuite.load(str(path))
        first = suite.get_benchmarks()[0].get_metadata()
        base = {key: first[key] for key in _BASE_KEYS if key in first}
    base["strategy"] = strategy
    by_case: dict[str, list[dict[str, Any]]] = {}
    for window in windows:
        if window["strategy"] == strategy:
            by_case.setdefault(window["case"], []).append(window)
    for case, rows in by_case.items():
        runs = []
        for row in rows:
            requests = row["requests"]
            value = _per_request(row["cpu_s"], requests)
            if value <= 0:
                continue
            counters = row["counters"]
            syscalls = counters["syscalls"]
            metadata = {
                **base,
                "name": f"cpu_{case}",
                "unit": "second",
                "loops": max(1, requests),
                "date": row["date"],
                "description": "server CPU seconds (user + sys) per request",
                "file_size": row["size"],
                "page_cache": "cold (evicted before each request)" if row["cold"] else "hot",
                "server_user_s_per_request": _per_request(row["utime_s"], requests),
                "server_sys_s_per_request": _per_request(row["stime_s"], requests),
                "cpu_source": "schedstat" if row["runtime_s"] is not None else "stat ticks",
                "syscalls_per_request": _per_request(sum(syscalls.values()), requests),
                "syscalls_by_kind": " ".join(f"{k}={v}" for k, v in sorted(syscalls.items()))
                or "none",
                "user_copy_bytes_in_per_request": _per_request(counters["copy_in"], requests),
                "user_copy_bytes_out_per_request": _per_request(counters["copy_out"], requests),
                "zero_copy_bytes_per_request": _per_request(counters["zero_copy"], requests),
                "voluntary_ctxt_switches_per_request": _per_request(row["voluntary"], requests),
                "involuntary_ctxt_switches_per_request": _per_request(row["involuntary"], requests),
            }
            runs.append(pyperf.Run([value], metadata=metadata, collect_metadata=False))
        if runs:
            pyperf.add_runs(str(path), pyperf.Benchmark(runs))


# -- main ----------------------------------------------------------------------------------


def _clean(out: Path) -> None:
    for name in OWN_ARTEFACTS:
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
    dataset.evict(path)
    return dataset.is_cached(path) is False


def _steps(profile: Profile) -> int:
    n = len(profile.latency_cases) + profile.rounds * len(STRATEGIES)
    n += profile.cpu_repetitions * len(STRATEGIES)
    n += len(STRATEGIES) * len(profile.count_cases)
    if profile.perf:
        n += len(STRATEGIES) * sum(1 for c in profile.cpu_cases if c.label in PERF_CASES)
    return n + 2


def run(profile: Profile, out: Path, *, data_parent: str | None = None) -> Path:
    """Measure everything and write the results into ``out``; return measurements.json.

    Resource handling: every server is stopped (its process group) and the data directory
    removed however this returns or raises.
    """
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    logs = out / "logs"
    logs.mkdir()
    started = time.monotonic()
    pins = _pins()
    skipped: dict[str, str] = {}
    with (
        Progress(_steps(profile), "bench") as progress,
        dataset.data_directory(data_parent) as root,
    ):
        dataset.write_files(root, profile.cases)
        progress.advance(f"write {len(profile.cases)} files into {root}")
        meta = _meta(profile, root, pins)
        meta["eviction_verified"] = _check_eviction(root, profile)
        if pins[1] is not None:
            os.sched_setaffinity(0, {pins[1]})
        with ServerSet(logs, cpu=pins[0]) as server_set:
            servers = {
                strategy: start_zerocopy(server_set, root, strategy, name=f"server-{strategy}")
                for strategy in STRATEGIES
            }
            progress.advance(f"start {len(servers)} servers")
            session = _Session(profile, servers, root, progress, skipped)
            meta["servers"] = {s: " ".join(info.command) for s, info in servers.items()}
            unannounced = [s for s, info in servers.items() if not info.metrics_announced]
            if unannounced:
                meta["metrics_port_not_announced"] = unannounced
                progress.note(
                    "the server's ready line names no metrics port; found it among the "
                    "server's listening sockets"
                )
            calibration = _calibrate(session)
            _latency_phase(session, out, calibration, pins)
            windows = _cpu_phase(session)
            counts = _count_phase(session)
            perf = _perf_phase(session)
    for strategy in STRATEGIES:
        add_cpu_benchmarks(out / f"{strategy}.json", strategy, windows)
    meta["loadavg_end"] = _loadavg()
    meta["duration_s"] = round(time.monotonic() - started, 1)
    meta["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    measurements = {
        "meta": meta,
        "strategies": list(STRATEGIES),
        "cases": {
            "latency": [case.label for case in profile.latency_cases],
            "cpu": [case.label for case in profile.cpu_cases],
            "count": [case.label for case in profile.count_cases],
        },
        "calibration": calibration,
        "cpu_windows": windows,
        "counts": counts,
        "perf": perf,
        "skipped": skipped,
    }
    path = out / "measurements.json"
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as f:
        json.dump(measurements, f, indent=1, sort_keys=True)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few values (smoke test)")
    parser.add_argument(
        "--out", type=Path, help="results directory (default bench/results[/quick])"
    )
    parser.add_argument("--data-dir", help="where to create the served files (default /var/tmp)")
    parser.add_argument("--no-report", action="store_true", help="measure only")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    out = args.out or default_out(args.quick)
    try:
        with signals_raise_keyboard_interrupt():
            run(profile, out, data_parent=args.data_dir)
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        return 130
    if not args.no_report:
        from bench import report

        report.write_report(out)
    print(f"bench: results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
