"""The peer comparison: zerocopy against nginx, aiohttp, uvicorn + Starlette and http.server.

``python -m bench.peers`` (``make bench-peers``) starts every candidate on 127.0.0.1, pinned
to one CPU, with its best-practice settings for static files, checks that each one returns
the right bytes with a 200, then drives them in turn (A B C ... A B C ...) with wrk on another
CPU, at 16 keep-alive connections, on a 4 KiB and a 1 MiB file. Within each repetition every
candidate is compared with nginx's best config measured in that same repetition; the summary
quotes the medians of those ratios. It writes ``bench/results/peers.json`` and prints a
markdown table. A candidate that is not installed is skipped with a note. ``--quick`` is a
smoke test of about 30 s.

See ``bench/LOAD.md`` for the settings of each peer and the caveats.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from bench._load_env import (
    COORDINATED_OMISSION_NOTE,
    Budget,
    Pinning,
    add_common_arguments,
    choose_pinning,
    line_buffered_stdout,
    machine_meta,
    parse_size_list,
    signals_raise_keyboard_interrupt,
    write_json,
)
from bench._load_progress import Progress
from bench._load_servers import (
    ServerSet,
    ServerStartError,
    VerificationError,
    free_port,
    make_docroot,
    measure,
    nginx_binary,
    nginx_version,
    render_template,
    verify_file,
    zerocopy_argv,
)
from bench._load_stats import NGINX_BASELINES, Sample, finite_or_none, median_ratios, medians_by
from bench._load_wrk import WrkError, wrk_version

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from bench._load_servers import DocFile, RunningServer

PEERS_DIR: Final = Path(__file__).resolve().parent / "peers"

CANDIDATES: Final = (
    "zerocopy-auto",
    "zerocopy-sendfile",
    "zerocopy-splice",
    "zerocopy-readwrite",
    "nginx-sendfile",
    "nginx-nosendfile",
    "aiohttp",
    "uvicorn-starlette",
    "http.server",
)

NGINX_PORT_ATTEMPTS: Final = 5
"""The free-port dance can lose a race with another process; a few retries always suffice."""

HTTP_SERVER_NOTE: Final = (
    "python -m http.server speaks HTTP/1.0 and closes the connection after every response, "
    "so wrk reconnects for every request: its numbers include a TCP handshake per request. "
    "Its listen backlog is socketserver's default of 5, and it logs every request to stderr "
    "(to a file here)."
)

RATIO_NOTE: Final = (
    "Per repetition and size, rps_vs_nginx = req/s / the higher req/s of nginx-sendfile and "
    "nginx-nosendfile, and cpu_vs_nginx = server CPU per request / the lower CPU per request "
    "of the two (cpu_irq_vs_nginx likewise, with the server CPU's irq+softirq time added), all "
    "measured in the same repetition; the medians over repetitions are reported. "
    "rps_vs_nginx > 1 is faster than nginx; cpu_vs_nginx < 1 is cheaper."
)


@final
@dataclass(frozen=True, slots=True)
class Candidate:
    """A server to compare: how to tell whether it is installed, and how to start it."""

    name: str
    settings: str
    missing: Callable[[], str | None]
    """None when the candidate can run, else why it is skipped."""
    start: Callable[[ServerSet, Path], RunningServer]
    """Start it serving the given document root (``ServerSet.start`` waits until ready)."""


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AIOHTTP_NOSENDFILE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _zerocopy(strategy: str) -> Candidate:
    return Candidate(
        name=f"zerocopy-{strategy}",
        settings=f"python -m zerocopy serve DIR --bind 127.0.0.1 --port 0 --strategy {strategy} "
        "(access log off by default)",
        missing=lambda: None,
        start=lambda ss, root: ss.start(
            f"zerocopy-{strategy}", zerocopy_argv(root, strategy), env=_python_env()
        ),
    )


def _missing_nginx() -> str | None:
    return None if nginx_binary() else "nginx is not installed (apt-get install nginx)"


def _start_nginx(ss: ServerSet, root: Path, *, name: str, sendfile: bool) -> RunningServer:
    """nginx in the foreground, in a prefix of its own, on a port picked for it.

    nginx cannot bind port 0, so: bind port 0, close, give nginx that port; when another
    process took the port meanwhile (EADDRINUSE in nginx's log), retry with a fresh one.
    """
    binary = nginx_binary()
    if binary is None:
        raise ServerStartError("nginx disappeared")
    template = (PEERS_DIR / "nginx.conf").read_text()
    for attempt in range(NGINX_PORT_ATTEMPTS):
        port = free_port()
        prefix = ss.workdir / f"{name}.{attempt}"
        prefix.mkdir()
        prefix.chmod(0o755)
        conf = prefix / "nginx.conf"
        error_log = prefix / "error.log"
        values = {
            "PREFIX": str(prefix),
            "PORT": str(port),
            "ROOT": str(root),
            "SENDFILE": "on" if sendfile else "off",
        }
        conf.write_text(render_template(template, values))
        try:
            return ss.start(
                name,
                [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(error_log)],
                port=port,
                pidfile=prefix / "nginx.pid",
                extra_logs=[error_log],
            )
        except ServerStartError as exc:
            if "Address already in use" not in exc.log_tail or attempt + 1 == NGINX_PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _nginx(sendfile: bool) -> Candidate:
    name = "nginx-sendfile" if sendfile else "nginx-nosendfile"
    return Candidate(
        name=name,
        settings=f"worker_processes 1; sendfile {'on' if sendfile else 'off'}; tcp_nopush on; "
        "tcp_nodelay on; access_log off; keepalive_requests 1000000 (bench/peers/nginx.conf)",
        missing=_missing_nginx,
        start=lambda ss, root: _start_nginx(ss, root, name=name, sendfile=sendfile),
    )


def _missing_modules(*modules: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        absent = [m for m in modules if importlib.util.find_spec(m) is None]
        if absent:
            return f"{', '.join(absent)} not installed (pip install {' '.join(absent)})"
        return None

    return missing


def _launcher(name: str, script: str) -> Callable[[ServerSet, Path], RunningServer]:
    def start(ss: ServerSet, root: Path) -> RunningServer:
        return ss.start(
            name, [sys.executable, str(PEERS_DIR / script), str(root)], env=_python_env()
        )

    return start


def _http_server(ss: ServerSet, root: Path) -> RunningServer:
    argv = [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"]
    return ss.start("http.server", [*argv, str(root)], env=_python_env())


def candidates() -> dict[str, Candidate]:
    """Every candidate, by name, in measuring order."""
    found = [
        *(_zerocopy(strategy) for strategy in ("auto", "sendfile", "splice", "readwrite")),
        _nginx(sendfile=True),
        _nginx(sendfile=False),
        Candidate(
            name="aiohttp",
            settings="web.static on the default asyncio loop (loop.sendfile), access log off "
            "(bench/peers/aiohttp_app.py)",
            missing=_missing_modules("aiohttp"),
            start=_launcher("aiohttp", "aiohttp_app.py"),
        ),
        Candidate(
            name="uvicorn-starlette",
            settings="uvicorn, 1 worker, http/loop auto (httptools, uvloop when installed), "
            "access log off, + Starlette StaticFiles (bench/peers/starlette_app.py)",
            missing=_missing_modules("uvicorn", "starlette"),
            start=_launcher("uvicorn-starlette", "starlette_app.py"),
        ),
        Candidate(
            name="http.server",
            settings="python -m http.server 0 --bind 127.0.0.1 --directory DIR (HTTP/1.0)",
            missing=lambda: None,
            start=_http_server,
        ),
    ]
    assert tuple(c.name for c in found) == CANDIDATES
    return {c.name: c for c in found}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="zerocopy against nginx, aiohttp, uvicorn+Starlette and http.server with "
        "wrk (writes bench/results/peers.json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        help="comma-separated candidates, measured alternately in this order",
    )
    parser.add_argument(
        "--sizes", type=parse_size_list, default="4KiB,1MiB", help="comma-separated file sizes"
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    add_common_arguments(parser, output="peers.json")
    return parser


def _fmt(value: object, digits: int = 0, suffix: str = "") -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def summary_markdown(
    medians: Sequence[Mapping[str, Any]],
    ratios: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    sizes: Sequence[str],
    connections: int,
) -> str:
    """One table per size: medians and median ratios to nginx's best, a row per candidate."""
    lines = []
    for size in sizes:
        lines += [
            f"### {size}, {connections} connections",
            "",
            "| candidate | req/s | p99 ms | server CPU µs/req | CPU+irq µs/req "
            "| req/s vs nginx | CPU vs nginx | CPU+irq vs nginx | other load on server CPU "
            "| errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for cell in medians:
            if cell["size"] != size:
                continue
            ratio = ratios.get(str(cell["candidate"]), {}).get(size, {})
            lines.append(
                f"| {cell['candidate']} | {_fmt(cell['rps'])} | {_fmt(cell['p99_ms'], 2)} "
                f"| {_fmt(cell['server_cpu_per_req_us'], 1)} "
                f"| {_fmt(cell.get('server_cpu_irq_per_req_us'), 1)} "
                f"| {_fmt(ratio.get('rps_vs_nginx'), 2, 'x')} "
                f"| {_fmt(ratio.get('cpu_vs_nginx'), 2, 'x')} "
                f"| {_fmt(ratio.get('cpu_irq_vs_nginx'), 2, 'x')} "
                f"| {_fmt(cell.get('pinned_cpu_other_pct'), 0, '%')} | {cell['errors']} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    line_buffered_stdout()
    everyone = candidates()
    wanted = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if unknown := sorted(set(wanted) - set(everyone)):
        print(f"unknown candidates: {unknown}; choose from {list(everyone)}", file=sys.stderr)
        return 2
    sizes: dict[str, int] = args.sizes
    if args.quick:
        args.duration, args.repetitions, args.warmup = 1, 1, 0
    if args.duration < 1 or args.repetitions < 1 or args.warmup < 0 or args.connections < 1:
        print("--duration, --repetitions and --connections must be at least 1", file=sys.stderr)
        return 2
    wrk = wrk_version()
    if wrk is None:
        print("wrk is not installed (apt-get install wrk); nothing measured", file=sys.stderr)
        return 1
    pinning = choose_pinning(args.server_cpu, args.wrk_cpu, enabled=args.pin)
    print(f"bench-peers: {pinning.note}; {wrk}", flush=True)

    skipped: dict[str, str] = {}
    for name in wanted:
        if (reason := everyone[name].missing()) is not None:
            skipped[name] = reason
            print(f"  skipping {name}: {reason}")
    nginx = nginx_binary()
    meta: dict[str, Any] = machine_meta(
        packages=["aiohttp", "uvicorn", "starlette", "uvloop", "httptools"]
    )
    meta |= {
        "benchmark": "peers",
        "wrk": wrk,
        "nginx": nginx_version(nginx) if nginx else None,
        "wrk_threads": args.threads,
        "wrk_timeout_s": args.wrk_timeout,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repetitions_planned": args.repetitions,
        "sizes_bytes": sizes,
        "quick": args.quick,
        "pinning": {
            "server_cpu": pinning.server_cpu,
            "wrk_cpu": pinning.wrk_cpu,
            "note": pinning.note,
        },
        "order": "per repetition, per size: candidates in turn (A B C ... A B C ...)",
        "page_cache": "hot: files written, read back and fetched once before measuring",
        "server_cpu": "utime+stime summed over the server's process group (nginx master and "
        "worker) from /proc/PID/stat, difference around each wrk run, per request",
        "pinned_cpu_other_pct": "time the server's CPU (/proc/stat) gave to other processes or "
        "to the hypervisor (steal), in % of the run; high = disturbed run",
        "pinned_cpu_irq_pct": "time the server's CPU spent in irq+softirq (its ksoftirqd thread "
        "included), in % of the run: mostly loopback TCP processing, not in server CPU",
        "server_cpu_irq_per_req_us": "server CPU + that irq/softirq time, per request",
        "settings": {name: everyone[name].settings for name in wanted},
        "ratio_definition": RATIO_NOTE,
        "latency_note": COORDINATED_OMISSION_NOTE,
        "http_server_note": HTTP_SERVER_NOTE,
    }
    budget = Budget(args.time_limit)
    workdir = Path(tempfile.mkdtemp(prefix="zerocopy-bench-peers-"))
    workdir.chmod(0o755)
    rows: list[dict[str, Any]] = []
    verification: dict[str, dict[str, str]] = {}
    keep_logs = False
    try:
        with signals_raise_keyboard_interrupt(), ServerSet(workdir, cpu=pinning.server_cpu) as ss:
            docs = make_docroot(workdir / "www", sizes)
            servers = _start_all(ss, [everyone[n] for n in wanted], docs, skipped, verification)
            rows = _compare(args, servers, docs, budget, pinning)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ServerStartError, VerificationError, WrkError) as exc:
        keep_logs = True
        print(
            f"bench-peers failed: {exc}\nservers stopped; logs kept in {workdir}", file=sys.stderr
        )
        return 1
    finally:
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    measured = [name for name in wanted if name not in skipped]
    samples = [
        Sample(
            rep=row["rep"],
            candidate=row["candidate"],
            size=row["size"],
            rps=row["rps"],
            p99_ms=row["p99_ms"],
            cpu_per_req_us=row["server_cpu_per_req_us"],
            cpu_irq_per_req_us=row["server_cpu_irq_per_req_us"],
        )
        for row in rows
    ]
    ratios = median_ratios(samples)
    medians = medians_by(
        rows,
        ("candidate", "size"),
        (
            "rps",
            "p50_ms",
            "p99_ms",
            "server_cpu_per_req_us",
            "server_cpu_irq_per_req_us",
            "requests",
            "errors",
            "pinned_cpu_other_pct",
        ),
    )
    meta["wall_time_s"] = round(budget.elapsed, 1)
    meta["complete"] = not budget.hit
    meta["verification"] = verification
    if budget.hit:
        meta["incomplete_reason"] = f"--time-limit {args.time_limit:g} s reached"
    if not any(name in measured for name in NGINX_BASELINES):
        meta["ratio_note"] = "nginx was not measured: no ratios"
    write_json(
        args.output,
        {
            "meta": meta,
            "candidates": measured,
            "sizes": list(sizes),
            "repetitions": rows,
            "medians": medians,
            "ratios": ratios,
            "skipped": skipped,
        },
    )
    print()
    print(summary_markdown(medians, ratios, list(sizes), args.connections))
    print()
    for name, reason in skipped.items():
        print(f"Skipped {name}: {reason}")
    print(f"Ratios: {RATIO_NOTE}")
    print(f"Latency: {COORDINATED_OMISSION_NOTE}")
    if "http.server" in measured:
        print(f"http.server: {HTTP_SERVER_NOTE}")
    if budget.hit:
        print(f"Stopped early: --time-limit {args.time_limit:g} s reached.")
    print(f"Wrote {args.output} in {budget.elapsed:.0f} s.")
    return 0


def _start_all(
    ss: ServerSet,
    wanted: Sequence[Candidate],
    docs: Mapping[str, DocFile],
    skipped: dict[str, str],
    verification: dict[str, dict[str, str]],
) -> dict[str, RunningServer]:
    """Start and verify every available candidate; a failing peer is skipped, zerocopy fatal."""
    root = ss.workdir / "www"
    servers: dict[str, RunningServer] = {}
    for candidate in wanted:
        if candidate.name in skipped:
            continue
        try:
            server = candidate.start(ss, root)
            checks = {label: verify_file(server.port, doc) for label, doc in docs.items()}
        except (ServerStartError, VerificationError) as exc:
            if candidate.name.startswith("zerocopy"):
                raise
            skipped[candidate.name] = f"failed to start or verify: {exc}"
            print(f"  skipping {candidate.name}: {exc}")
            continue
        verification[candidate.name] = checks
        servers[candidate.name] = server
        print(f"  {candidate.name} on port {server.port}: " + "; ".join(checks.values()))
    return servers


def _compare(
    args: argparse.Namespace,
    servers: Mapping[str, RunningServer],
    docs: Mapping[str, DocFile],
    budget: Budget,
    pinning: Pinning,
) -> list[dict[str, Any]]:
    """The measuring loops, candidates alternating; bounded by their counts and ``budget``."""
    common = {
        "connections": args.connections,
        "threads": args.threads,
        "wrk_timeout_s": args.wrk_timeout,
        "wrk_cpu": pinning.wrk_cpu,
        "server_cpu": pinning.server_cpu,
    }
    if args.warmup:
        for doc in docs.values():
            for server in servers.values():
                measure(server, doc, duration_s=args.warmup, **common)
    rows: list[dict[str, Any]] = []
    total = args.repetitions * len(docs) * len(servers)
    with Progress(total, "bench-peers", style=args.progress) as progress:
        for rep in range(args.repetitions):
            for doc in docs.values():
                for name, server in servers.items():
                    if budget.exceeded():
                        progress.note("time limit reached: stopping")
                        return rows
                    started = time.monotonic()
                    m = measure(server, doc, duration_s=args.duration, **common)
                    row = {
                        "rep": rep,
                        "candidate": name,
                        "size": doc.label,
                        "rps": m.wrk.rps,
                        "p50_ms": m.wrk.p50_ms,
                        "p99_ms": m.wrk.p99_ms,
                        "server_cpu_per_req_us": m.cpu_per_req_us,
                        "server_cpu_irq_per_req_us": m.cpu_irq_per_req_us,
                        "server_cpu_s": m.server_cpu_s,
                        "requests": m.wrk.requests,
                        "connections": args.connections,
                        "socket_errors": {
                            "connect": m.wrk.socket_errors.connect,
                            "read": m.wrk.socket_errors.read,
                            "write": m.wrk.socket_errors.write,
                            "timeout": m.wrk.socket_errors.timeout,
                        },
                        "non_2xx_3xx": m.wrk.non_2xx_3xx,
                        "errors": m.wrk.errors,
                        "server_involuntary_switches": m.involuntary_switches,
                        "pinned_cpu_other_pct": m.pinned_cpu_other_pct,
                        "pinned_cpu_steal_pct": m.pinned_cpu_steal_pct,
                        "pinned_cpu_irq_pct": m.pinned_cpu_irq_pct,
                    }
                    rows.append(row)
                    warn = f" ERRORS {m.wrk.errors}" if m.wrk.errors else ""
                    cpu = finite_or_none(m.cpu_per_req_us) or 0.0
                    progress.advance(
                        f"rep {rep + 1} {doc.label} {name}: {m.wrk.rps:,.0f} req/s, "
                        f"p99 {m.wrk.p99_ms:.2f} ms, {cpu:.1f} µs CPU/req{warn} "
                        f"({time.monotonic() - started:.1f} s)"
                    )
    return rows


if __name__ == "__main__":
    sys.exit(main())
