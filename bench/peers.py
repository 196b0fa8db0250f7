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

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from bench._load_run import (
    COORDINATED_OMISSION_NOTE,
    Cell,
    LoadRun,
    add_common_arguments,
    new_parser,
    write_json,
)
from bench._load_stats import NGINX_BASELINES, Sample, format_cell, median_ratios, medians_by
from bench.dataset import VerificationError, make_docroot, verify_file
from bench.serverproc import ServerSet, ServerStartError, zerocopy_argv

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence

    from bench._load_wrk import Measurement
    from bench.dataset import DocFile
    from bench.serverproc import RunningServer

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


_MEDIAN_FIELDS: Final = (
    "rps",
    "p50_ms",
    "p99_ms",
    "server_cpu_per_req_us",
    "server_cpu_irq_per_req_us",
    "requests",
    "errors",
    "pinned_cpu_other_pct",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot bind 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace ``@NAME@`` placeholders; nginx's own ``$variables`` are left alone.

    Raises:
        KeyError: if a placeholder has no value, or a value is never used.
    """
    names = set(re.findall(r"@([A-Z_]+)@", template))
    if missing := names - set(values):
        raise KeyError(f"template placeholders without a value: {sorted(missing)}")
    if unused := set(values) - names:
        raise KeyError(f"values for no placeholder: {sorted(unused)}")
    return re.sub(r"@([A-Z_]+)@", lambda match: values[match[1]], template)


def nginx_binary() -> str | None:
    """nginx from PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def nginx_version(binary: str) -> str:
    """``nginx/1.22.1`` (nginx prints its version on stderr)."""
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


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
    parser = new_parser(
        "python -m bench.peers",
        "zerocopy against nginx, aiohttp, uvicorn+Starlette and http.server with wrk "
        "(writes bench/results/peers.json).",
    )
    parser.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        help="comma-separated candidates, measured alternately in this order",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    add_common_arguments(parser, output="peers.json")
    return parser


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
                f"| {cell['candidate']} | {format_cell(cell['rps'])} "
                f"| {format_cell(cell['p99_ms'], 2)} "
                f"| {format_cell(cell['server_cpu_per_req_us'], 1)} "
                f"| {format_cell(cell.get('server_cpu_irq_per_req_us'), 1)} "
                f"| {format_cell(ratio.get('rps_vs_nginx'), 2, 'x')} "
                f"| {format_cell(ratio.get('cpu_vs_nginx'), 2, 'x')} "
                f"| {format_cell(ratio.get('cpu_irq_vs_nginx'), 2, 'x')} "
                f"| {format_cell(cell.get('pinned_cpu_other_pct'), 0, '%')} | {cell['errors']} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    everyone = candidates()
    wanted = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if unknown := sorted(set(wanted) - set(everyone)):
        print(f"unknown candidates: {unknown}; choose from {list(everyone)}", file=sys.stderr)
        return 2
    if args.connections < 1:
        print("--connections must be at least 1", file=sys.stderr)
        return 2
    sizes: dict[str, int] = args.sizes
    run = LoadRun(args, "bench-peers")

    skipped: dict[str, str] = {}
    for name in wanted:
        if (reason := everyone[name].missing()) is not None:
            skipped[name] = reason
            print(f"  skipping {name}: {reason}")
    nginx = nginx_binary()
    meta = run.meta("peers", packages=["aiohttp", "uvicorn", "starlette", "uvloop", "httptools"])
    meta |= {
        "nginx": nginx_version(nginx) if nginx else None,
        "connections": args.connections,
        "repetitions_planned": args.repetitions,
        "sizes_bytes": sizes,
        "order": "per repetition, per size: candidates in turn (A B C ... A B C ...)",
        "server_cpu": "utime+stime summed over the server's process group (nginx master and "
        "worker) from /proc/PID/stat, difference around each wrk run, per request",
        "settings": {name: everyone[name].settings for name in wanted},
        "ratio_definition": RATIO_NOTE,
        "http_server_note": HTTP_SERVER_NOTE,
    }
    verification: dict[str, dict[str, str]] = {}
    with run.servers() as ss:
        docs = make_docroot(ss.workdir / "www", sizes)
        servers = _start_all(ss, [everyone[n] for n in wanted], docs, skipped, verification)
        cells = [
            Cell(rep, name, server, doc, args.connections)
            for rep in range(args.repetitions)
            for doc in docs.values()
            for name, server in servers.items()
        ]
        results = run.measure(cells, warmup_connections=args.connections)
    rows = [_row(cell, measurement) for cell, measurement in results]

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
    medians = medians_by(rows, ("candidate", "size"), _MEDIAN_FIELDS)
    run.finish(meta)
    meta["verification"] = verification
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
    run.print_end()
    return 0


def _row(cell: Cell, measurement: Measurement) -> dict[str, Any]:
    """One row of ``peers.json``'s ``repetitions``."""
    return {
        "rep": cell.rep,
        "candidate": cell.name,
        "size": cell.doc.label,
        "connections": cell.connections,
        **measurement.fields(),
    }


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


if __name__ == "__main__":
    sys.exit(main())
