"""The peer comparison: zerocopy against nginx, aiohttp, uvicorn + Starlette and http.server.

``python -m bench.peers`` (``make bench-peers``) starts every candidate on 127.0.0.1, pinned
to one CPU, with its best-practice settings for static files, checks that each one returns
the right bytes with a 200, then drives them in turn (A B C ... A B C ...) with wrk on another
CPU, at 16 keep-alive connections, on these workloads:

* one 4 KiB file, and one 1 MiB file (``--sizes``);
* **many files**: random GETs over 3,000 distinct files of 1 to 4 KiB (``--many-files``), in
  directories of 100, picked per request by ``bench/data/wrk/random_path.lua``. More files
  than an open-file cache of a few hundred entries holds, so every server pays for opening
  files as a busy web root makes it. Measured for zerocopy's default (``auto``) and both
  nginx configurations, the comparison that matters there.

The **workers axis** (``--workers``, default ``auto``: 1, and the CPUs left once wrk has one;
on a 2-CPU machine also 2, sharing the CPUs with wrk) runs zerocopy's default with
``--workers N`` against both nginx configurations with ``worker_processes N``, on every
workload. One worker is pinned to the server CPU like every other candidate; N workers are
never squeezed onto one CPU (:func:`bench.harness.machine.place_workers`). Each server's CPU is
summed over its process group (supervisor and workers, master and workers), so CPU per request
stays comparable where req/s is the machine's. Scaling efficiency is req/s with N workers /
(N x req/s with 1), per repetition, median.

Within each repetition every candidate is compared with nginx's best configuration measured
in that same repetition with as many workers, and the medians of those ratios are reported.
It writes ``bench/results/peers.json`` (:class:`~bench.harness.schema.PeersResults`). A
candidate that is not installed is skipped with a note. ``--quick`` is a smoke test of about
30 s.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from bench.harness.files import (
    MANY_PER_DIR,
    VerificationError,
    make_docroot,
    make_many_files,
    verify_file,
)
from bench.harness.names import (
    ACCESS_LOG_CANDIDATE,
    AIOHTTP,
    DEFAULT_CANDIDATE,
    HTTP_SERVER,
    MANY_FILES,
    NGINX_BASELINES,
    PEER_CANDIDATES,
    STRATEGIES,
    UVICORN_STARLETTE,
    zerocopy_candidate,
)
from bench.harness.nginx import CONFIGS, nginx_binary, start_nginx
from bench.harness.results import DATA_DIR, write_record
from bench.harness.schema import PeersMeta, PeersResults, Ratios, WorkloadInfo
from bench.harness.servers import ServerStartError, zerocopy_argv
from bench.harness.sizes import KiB
from bench.harness.stats import paired_ratio
from bench.loadtest.common import (
    Job,
    LoadRun,
    add_common_arguments,
    choose,
    medians,
    new_parser,
    scaling,
)
from bench.loadtest.wrk import Workload

if TYPE_CHECKING:
    import argparse
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from pathlib import Path

    from bench.harness.files import DocFile
    from bench.harness.schema import Row, WrkFigures
    from bench.harness.servers import RunningServer, ServerSet

__all__ = [
    "MANY_FILES_CANDIDATES",
    "MANY_FILES_LABEL",
    "MULTI_WORKER_CANDIDATES",
    "Candidate",
    "build_parser",
    "candidates",
    "ratios",
    "run",
]

PEERS_DIR: Final = DATA_DIR / "peers"
RANDOM_PATH_SCRIPT: Final = DATA_DIR / "wrk" / "random_path.lua"
MANY_FILES_LABEL: Final = MANY_FILES
MANY_FILES_CANDIDATES: Final = (DEFAULT_CANDIDATE, *NGINX_BASELINES)
"""Who runs the many-files workload: the server users run, and nginx's two configurations."""
MULTI_WORKER_CANDIDATES: Final = (DEFAULT_CANDIDATE, *NGINX_BASELINES)
"""Who runs with N > 1 workers: the same three (the Python peers have no comparable knob)."""
MANY_FILES_DEFAULT: Final = 3000
MANY_FILES_SIZES: Final = (1 * KiB, 4 * KiB)
MANY_FILES_VERIFIED: Final = 12
"""Files of the tree checked byte for byte on every candidate before measuring."""

HTTP_SERVER_NOTE: Final = (
    "python -m http.server speaks HTTP/1.0 and closes the connection after every response, "
    "so wrk reconnects for every request: its numbers include a TCP handshake per request. "
    "Its listen backlog is socketserver's default of 5, and it logs every request to stderr "
    "(to a file here)."
)
RATIO_NOTE: Final = (
    "Per repetition, workload and worker count, rps_vs_nginx = req/s / the higher req/s of "
    "nginx-sendfile and nginx-nosendfile with as many workers, and cpu_vs_nginx = server CPU "
    "per request / the lower CPU per "
    "request of the two (cpu_irq_vs_nginx likewise, with the server CPU's irq+softirq time "
    "added), all measured in the same repetition; the medians over repetitions are reported. "
    "rps_vs_nginx > 1 is faster than nginx; cpu_vs_nginx < 1 is cheaper."
)


StartWorkers = Callable[["ServerSet", "Path", int, "Collection[int] | None"], "RunningServer"]
"""Start a candidate with N workers, pinned to the given CPUs."""


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
    start_workers: StartWorkers | None = None
    """Start it with N workers pinned to the given CPUs; ``None``: only one worker."""


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AIOHTTP_NOSENDFILE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_name(name: str, workers: int) -> str:
    """A server's log name: ``zerocopy-auto``, ``zerocopy-auto-w2``."""
    return name if workers == 1 else f"{name}-w{workers}"


def _zerocopy(strategy: str) -> Candidate:
    name = zerocopy_candidate(strategy)

    def start(
        ss: ServerSet, root: Path, workers: int, cpus: Collection[int] | None
    ) -> RunningServer:
        argv = zerocopy_argv(root, strategy, "--workers", str(workers))
        return ss.start(worker_name(name, workers), argv, env=_python_env(), cpus=cpus)

    return Candidate(
        name=name,
        settings=f"python -m zerocopy serve DIR --bind 127.0.0.1 --port 0 --strategy {strategy} "
        "[--workers N] (access log off by default)",
        missing=lambda: None,
        start=lambda ss, root: ss.start(name, zerocopy_argv(root, strategy), env=_python_env()),
        start_workers=start,
    )


def _zerocopy_logging() -> Candidate:
    """``auto`` with the access log written to a file beside the document root."""
    name = ACCESS_LOG_CANDIDATE

    def argv(root: Path) -> list[str]:
        log = root.parent / "zerocopy-access.log"
        return zerocopy_argv(root, "auto", "--access-log", str(log))

    return Candidate(
        name=name,
        settings="python -m zerocopy serve DIR --bind 127.0.0.1 --port 0 --strategy auto "
        "--access-log FILE (combined format, to a file on the same disk)",
        missing=lambda: None,
        start=lambda ss, root: ss.start(name, argv(root), env=_python_env()),
    )


def _nginx(name: str) -> Candidate:
    config = CONFIGS[name]

    def start(
        ss: ServerSet, root: Path, workers: int, cpus: Collection[int] | None
    ) -> RunningServer:
        label = worker_name(name, workers)
        return start_nginx(ss, root, config, workers=workers, cpus=cpus, name=label)

    return Candidate(
        name=name,
        settings=config.settings_for(1).replace("worker_processes 1", "worker_processes 1 (N)"),
        missing=lambda: (
            None if nginx_binary() else "nginx is not installed (apt-get install nginx)"
        ),
        start=lambda ss, root: start_nginx(ss, root, config),
        start_workers=start,
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
    return ss.start(HTTP_SERVER, [*argv, str(root)], env=_python_env())


def candidates() -> dict[str, Candidate]:
    """Every candidate, by name, in measuring order."""
    found = [
        *(_zerocopy(strategy) for strategy in STRATEGIES),
        _zerocopy_logging(),
        *(_nginx(name) for name in NGINX_BASELINES),
        Candidate(
            name=AIOHTTP,
            settings="web.static on the default asyncio loop (loop.sendfile), access log off "
            "(bench/data/peers/aiohttp_app.py)",
            missing=_missing_modules("aiohttp"),
            start=_launcher(AIOHTTP, "aiohttp_app.py"),
        ),
        Candidate(
            name=UVICORN_STARLETTE,
            settings="uvicorn, 1 worker, http/loop auto (httptools, uvloop when installed), "
            "access log off, + Starlette StaticFiles (bench/data/peers/starlette_app.py)",
            missing=_missing_modules("uvicorn", "starlette"),
            start=_launcher(UVICORN_STARLETTE, "starlette_app.py"),
        ),
        Candidate(
            name=HTTP_SERVER,
            settings="python -m http.server 0 --bind 127.0.0.1 --directory DIR (HTTP/1.0)",
            missing=lambda: None,
            start=_http_server,
        ),
    ]
    assert tuple(c.name for c in found) == PEER_CANDIDATES
    return {c.name: c for c in found}


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "python -m bench.peers",
        "zerocopy against nginx, aiohttp, uvicorn+Starlette and http.server with wrk "
        "(writes bench/results/peers.json).",
    )
    parser.add_argument(
        "--candidates",
        default=",".join(PEER_CANDIDATES),
        help="comma-separated candidates, measured alternately in this order",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument(
        "--many-files",
        type=int,
        default=MANY_FILES_DEFAULT,
        help="files of 1-4 KiB in the random-GET workload (0: no such workload); measured for "
        + ", ".join(MANY_FILES_CANDIDATES),
    )
    add_common_arguments(
        parser,
        output="peers.json",
        workers="auto",
        workers_note="N > 1 is measured for " + ", ".join(MULTI_WORKER_CANDIDATES),
    )
    return parser


def _figure(name: str) -> Callable[[WrkFigures], float | None]:
    def value(figures: WrkFigures) -> float | None:
        result: float | None = getattr(figures, name)
        return result

    return value


_METRICS: Final = (
    ("rps_vs_nginx", _figure("rps"), True),
    ("cpu_vs_nginx", _figure("server_cpu_per_req_us"), False),
    ("cpu_irq_vs_nginx", _figure("server_cpu_irq_per_req_us"), False),
)


def ratios(rows: Iterable[Row], baselines: Sequence[str] = NGINX_BASELINES) -> tuple[Ratios, ...]:
    """Per-repetition ratios against nginx at its best, and their median over repetitions.

    Within each (repetition, workload, worker count), "nginx at its best" is, for each metric
    separately, the baseline with the *highest* req/s, the *lowest* server CPU per request,
    and the lowest CPU plus irq time per request, measured in that same repetition with as
    many workers.

    Returns:
        One :class:`Ratios` for every (candidate, workload, workers) present, in first-seen
        order; a ratio is ``None`` where no baseline was measured.
    """
    rows = list(rows)
    values: dict[str, dict[tuple[str, str, int], dict[int, float | None]]] = {}
    best: dict[str, dict[tuple[str, int, int], float]] = {}
    for metric, value_of, higher_is_better in _METRICS:
        per_metric = values.setdefault(metric, {})
        bucket = best.setdefault(metric, {})
        pick = max if higher_is_better else min
        for row in rows:
            value = value_of(row.figures)
            per_metric.setdefault((row.server, row.workload, row.workers), {})[row.rep] = value
            if row.server in baselines and value is not None and value > 0:
                key = (row.workload, row.workers, row.rep)
                bucket[key] = pick(bucket.get(key, value), value)
    result = []
    for server, workload, workers in values[_METRICS[0][0]]:
        figures = {}
        for metric, _, _ in _METRICS:
            baseline = {
                rep: value
                for (w, n, rep), value in best[metric].items()
                if (w, n) == (workload, workers)
            }
            figures[metric] = paired_ratio(values[metric][server, workload, workers], baseline)
        result.append(Ratios(candidate=server, workload=workload, workers=workers, **figures))
    return tuple(result)


def _workloads(
    root: Path, sizes: Mapping[str, int], many: int
) -> tuple[list[Workload], list[DocFile]]:
    """The workloads and every file to verify on each candidate before measuring."""
    docs = make_docroot(root, sizes)
    workloads = [Workload.of_file(doc) for doc in docs.values()]
    checked = list(docs.values())
    if many:
        tree = make_many_files(root, many, *MANY_FILES_SIZES)
        low, high = MANY_FILES_SIZES
        info = WorkloadInfo(
            MANY_FILES_LABEL,
            many,
            low,
            high,
            f"random GETs over {many:,} distinct files of {low // KiB}-{high // KiB} KiB, "
            f"{MANY_PER_DIR} per directory (bench/data/wrk/random_path.lua)",
        )
        workloads.append(Workload(info, "/", RANDOM_PATH_SCRIPT, (str(many), str(MANY_PER_DIR))))
        rng = random.Random(1)
        checked += [tree[0], tree[-1], *rng.sample(tree, min(len(tree), MANY_FILES_VERIFIED))]
    return workloads, checked


def _start_all(
    load: LoadRun,
    ss: ServerSet,
    wanted: Sequence[Candidate],
    docs: Sequence[DocFile],
    skipped: dict[str, str],
    verification: dict[str, dict[str, str]],
) -> dict[tuple[str, int], RunningServer]:
    """Start and verify every available candidate at every worker count it runs with; a
    failing peer is skipped, zerocopy fatal."""
    root = ss.workdir / "www"
    servers: dict[tuple[str, int], RunningServer] = {}
    for workers in load.args.workers:
        for candidate in wanted:
            if candidate.name in skipped:
                continue
            if workers > 1 and (
                candidate.start_workers is None or candidate.name not in MULTI_WORKER_CANDIDATES
            ):
                continue
            label = worker_name(candidate.name, workers)
            try:
                if workers == 1:
                    server = candidate.start(ss, root)
                else:
                    assert candidate.start_workers is not None
                    server = candidate.start_workers(ss, root, workers, load.server_cpus(workers))
                checks = {doc.label: verify_file(server.port, doc) for doc in docs}
            except (ServerStartError, VerificationError) as exc:
                if candidate.name.startswith("zerocopy"):
                    raise
                skipped[label] = f"failed to start or verify: {exc}"
                print(f"  skipping {label}: {exc}")
                continue
            verification[label] = checks
            servers[candidate.name, workers] = server
            print(f"  {label} on port {server.port}: {len(checks)} files verified")
    return servers


def run(argv: Sequence[str] | None = None) -> PeersResults:
    """Parse the flags, measure, write ``peers.json`` and return what it holds.

    Raises:
        SystemExit: 2 for bad flags; 1 or 130 when the run fails or is interrupted (the
            servers are stopped, a message printed).
    """
    args = build_parser().parse_args(argv)
    everyone = candidates()
    wanted = choose(args.candidates, list(everyone), "candidates")
    if args.connections < 1 or args.many_files < 0:
        print("--connections must be at least 1, --many-files at least 0", file=sys.stderr)
        raise SystemExit(2)
    many = min(args.many_files, 300) if args.quick else args.many_files
    load = LoadRun(args, "bench-peers", packages=["aiohttp", "uvicorn", "starlette", "uvloop"])
    skipped: dict[str, str] = {}
    for name in wanted:
        if (reason := everyone[name].missing()) is not None:
            skipped[name] = reason
            print(f"  skipping {name}: {reason}")
    verification: dict[str, dict[str, str]] = {}
    with load.servers() as ss:
        workloads, checked = _workloads(ss.workdir / "www", args.sizes, many)
        wanted_candidates = [everyone[n] for n in wanted]
        servers = _start_all(load, ss, wanted_candidates, checked, skipped, verification)
        # Per repetition and workload, every server in turn: one worker, then N workers.
        jobs = [
            Job(rep, name, server, workload, args.connections, workers)
            for rep in range(args.repetitions)
            for workload in workloads
            for (name, workers), server in servers.items()
            if workload.label != MANY_FILES_LABEL or name in MANY_FILES_CANDIDATES
        ]
        rows = load.measure(jobs, warmup_connections=args.connections)
    results = PeersResults(
        meta=PeersMeta(
            run=load.record(
                {
                    "order": "per repetition, per workload: candidates in turn (A B C ... A B C)",
                    "ratios": RATIO_NOTE,
                    "http.server": HTTP_SERVER_NOTE,
                }
            ),
            connections=args.connections,
            settings={name: everyone[name].settings for name in wanted},
            verification=verification,
            placements=tuple(load.placements.values()),
        ),
        candidates=tuple(name for name in wanted if any(n == name for n, _ in servers)),
        workloads=tuple(workload.info for workload in workloads),
        rows=tuple(rows),
        cells=medians(rows),
        ratios=ratios(rows),
        scaling=scaling(rows),
        skipped=skipped,
    )
    write_record(args.output, results)
    load.print_end()
    return results
