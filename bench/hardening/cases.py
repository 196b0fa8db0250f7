"""The hardening cases, and the run that records them in ``hardening.json``.

* **cold**: the p99 of hot 4 KiB requests while 4 downloads of cold 256 MiB files run, with
  the page cache evicted (``posix_fadvise(DONTNEED)``) before each run, against the same
  request stream with no downloads. Measured, alternately, for zerocopy as shipped (cold chunks
  offloaded to worker threads), zerocopy with ``--offload-threads 0``, and nginx with
  ``sendfile on; aio threads`` and with plain ``sendfile on``: the anchor for the target (hot
  p99 with cold downloads within 2x the p99 without them).
* **slow**: slowhttptest's slowloris (slow headers) and slow-read attacks against the server,
  with a concurrent probe: is the service still available, and how fast?
* **idle**: 5,000 idle keep-alive connections held for 60 s while a probe measures p99; the
  server's RSS per idle connection. Targets: probe p99 < 100 ms, <= 32 KiB per connection.
* **listing**: a probe's stall while eight clients list a directory of 200,000 entries, and
  the server's peak RSS, beside nginx's autoindex (:mod:`bench.hardening.listing`).
* **tar**: server CPU per GiB of a directory downloaded as a tar archive against the same
  files one by one, per strategy, and the bytes each copied (:mod:`bench.hardening.tar`).

Every server is pinned to the server CPU, and the probe and the load to the other, where there
are two (:func:`bench.harness.machine.choose_pinning`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import trio

from bench.hardening.listing import run_listing
from bench.hardening.probe import HOT, Probe
from bench.hardening.tar import run_tar
from bench.harness import client, files, metrics, procfs
from bench.harness.machine import choose_pinning, machine_info, pin_self
from bench.harness.names import NGINX_AIO_THREADS, NGINX_SENDFILE
from bench.harness.nginx import CONFIGS, start_nginx
from bench.harness.results import RESULTS_DIR, read_record, write_record
from bench.harness.schema import (
    ColdMedian,
    ColdResult,
    ColdRun,
    HardeningResults,
    IdleResult,
    SchemaError,
    SlowAttack,
    SlowResult,
)
from bench.harness.servers import ServerSet, running_server, start_zerocopy
from bench.harness.sizes import KiB, MiB
from bench.harness.stats import median_or_none

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = [
    "CASES",
    "COLD_SERVERS",
    "RESULTS",
    "measure",
    "parse_slowhttptest_csv",
    "run_cold",
    "run_idle",
    "run_slow",
]

RESULTS: Final = RESULTS_DIR / "hardening.json"
CASES: Final = ("cold", "slow", "idle", "listing", "tar")
PINNING: Final = choose_pinning()
"""Servers on one CPU, the probe and the load on the other (decided once, at import)."""


# -- cold page cache -----------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class _Served:
    """A server under test: where it listens, and its metrics port (zerocopy only)."""

    port: int
    metrics_port: int | None


COLD_SERVERS: Final = {
    "zerocopy-offload": "python -m zerocopy serve DIR --strategy auto (cold chunks offloaded "
    "to worker threads, the default)",
    "zerocopy-no-offload": "the same with --offload-threads 0 (cold reads block the event loop)",
    NGINX_AIO_THREADS: CONFIGS[NGINX_AIO_THREADS].settings,
    NGINX_SENDFILE: CONFIGS[NGINX_SENDFILE].settings,
}
"""The servers of the cold-cache case, in measuring order, and how each is configured."""
_ZEROCOPY_EXTRA: Final = {"zerocopy-offload": (), "zerocopy-no-offload": ("--offload-threads", "0")}


@contextlib.contextmanager
def _serve(name: str, root: Path) -> Iterator[_Served]:
    """Run one server of :data:`COLD_SERVERS` for the block; stopped however it ends."""
    with (
        tempfile.TemporaryDirectory(prefix="zerocopy-hardening-") as logs,
        ServerSet(Path(logs), cpu=PINNING.server_cpu) as servers,
    ):
        if name in _ZEROCOPY_EXTRA:
            info = start_zerocopy(servers, root, "auto", extra=_ZEROCOPY_EXTRA[name])
            yield _Served(info.port, info.metrics_port)
        else:
            yield _Served(start_nginx(servers, root, CONFIGS[name]).port, None)


DOWNLOADER_NICE: Final = 19
"""The downloads run as ``nice -n 19`` curl processes. They share the client CPU with the
probe, and at full speed they would otherwise delay the probe itself, which would then measure
the client instead of the server. They are not rate-limited: capped downloads let readahead
stay ahead of them, and then no read misses the page cache and nothing is left to measure."""


def _pin_child() -> None:
    pin_self(PINNING.client_cpu)


def _download(port: int, path: str, durations: list[float]) -> None:
    """Fetch ``path`` with curl (a process of its own, so the probe's is not loaded), or with
    the harness's client where curl is missing."""
    start = time.perf_counter()
    curl = shutil.which("curl")
    if curl is not None:
        subprocess.run(
            [
                *("nice", "-n", str(DOWNLOADER_NICE), curl, "-s", "-o", "/dev/null"),
                f"http://127.0.0.1:{port}/{path}",
            ],
            check=True,
            timeout=300,
            preexec_fn=_pin_child,
        )
    else:
        trio.run(lambda: client.run_requests(port, path, count=1))
    durations.append(time.perf_counter() - start)


def _evict(path: Path) -> bool:
    """Drop the file's pages; True if its first page is then not cached."""
    files.evict(str(path))
    return files.is_cached(str(path)) is False


def run_cold(root: Path, *, quick: bool) -> ColdResult:
    size = 32 * MiB if quick else 256 * MiB
    downloads = 4
    reps = 1 if quick else 3
    baseline_seconds = 1.0 if quick else 3.0
    names = [f"cold{i}.bin" for i in range(downloads)]
    for name in names:
        _make_file(root / name, size)
    runs: list[ColdRun] = []
    for rep in range(reps):
        for server_name in COLD_SERVERS:  # alternate: A B C D A B C D ...
            with _serve(server_name, root) as served:
                with Probe(served.port):
                    time.sleep(0.2)  # warm-up, not recorded
                with Probe(served.port) as probe:
                    time.sleep(baseline_seconds)
                baseline = probe.summary
                evicted = all(_evict(root / name) for name in names)
                durations: list[float] = []
                threads = [
                    threading.Thread(target=_download, args=(served.port, name, durations))
                    for name in names
                ]
                with Probe(served.port) as probe:
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join(300)
                loaded = probe.summary
                offloaded = None
                if served.metrics_port is not None:
                    samples = metrics.scrape(served.metrics_port)
                    offloaded = round(metrics.sample_value(samples, "zerocopy_offloaded_total"))
            ratio = (
                loaded.p99_ms / baseline.p99_ms
                if loaded.p99_ms is not None and baseline.p99_ms
                else None
            )
            runs.append(
                ColdRun(
                    rep=rep,
                    server=server_name,
                    evicted=evicted,
                    baseline=baseline,
                    with_cold_downloads=loaded,
                    download_seconds=tuple(sorted(durations)),
                    p99_ratio=ratio,
                    offloaded_chunks=offloaded,
                )
            )
            print(
                f"cold rep {rep} {server_name:20}: p99 {baseline.p99_ms or 0:.2f} ms idle, "
                f"{loaded.p99_ms or 0:.2f} ms with {downloads} cold downloads "
                f"(x{ratio or 0:.1f}), {loaded.requests} probe requests; downloads "
                f"{max(durations, default=0):.2f} s; offloaded chunks {offloaded}",
                flush=True,
            )
    medians = {
        name: ColdMedian(
            p99_baseline_ms=median_or_none(r.baseline.p99_ms for r in runs if r.server == name),
            p99_cold_ms=median_or_none(
                r.with_cold_downloads.p99_ms for r in runs if r.server == name
            ),
            p99_ratio=median_or_none(r.p99_ratio for r in runs if r.server == name),
            probe_requests=median_or_none(
                float(r.with_cold_downloads.requests) for r in runs if r.server == name
            ),
        )
        for name in COLD_SERVERS
    }
    return ColdResult(
        file_size=size,
        downloads=downloads,
        settings=dict(COLD_SERVERS),
        runs=tuple(runs),
        medians=medians,
    )


# -- slow clients --------------------------------------------------------------------------------


def parse_slowhttptest_csv(text: str) -> tuple[int, int, float | None]:
    """``(seconds, max connected, fraction of seconds the service was available)`` from
    slowhttptest's ``-g`` CSV.

    Its columns are ``Seconds,Closed,Pending,Connected,Service Available``; the last one is
    drawn as a step in its chart, so it holds a non-zero number (the target connection count)
    while its probe got an answer, and 0 while it did not.
    """
    rows = [line.split(",") for line in text.splitlines()[1:] if line.strip()]
    available = [int(row[4]) != 0 for row in rows]
    connected = [int(row[3]) for row in rows]
    fraction = sum(available) / len(available) if available else None
    return len(rows), max(connected, default=0), fraction


SLOW_ATTACKS: Final = {
    "slowloris": ("-H", "-i", "10", "-r", "200", "-t", "GET", "-x", "24"),
    "slow-read": ("-X", "-r", "200", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3"),
}


def run_slow(root: Path, *, quick: bool) -> SlowResult:
    tool = shutil.which("slowhttptest")
    if tool is None:
        return SlowResult(
            skipped="slowhttptest is not installed (apt-get install slowhttptest)", attacks={}
        )
    length = 10 if quick else 60
    connections = 200 if quick else 1000
    _make_file(root / "big.bin", 64 * MiB)
    attacks: dict[str, SlowAttack] = {}
    for name, flags in SLOW_ATTACKS.items():
        with (
            running_server(str(root), "auto", cpu=PINNING.server_cpu) as server,
            tempfile.TemporaryDirectory() as tmp,
        ):
            target = "big.bin" if name == "slow-read" else ""
            prefix = Path(tmp) / name
            command = [
                tool,
                *flags,
                "-c",
                str(connections),
                "-g",
                "-o",
                str(prefix),
                "-u",
                f"http://127.0.0.1:{server.port}/{target}",
                "-p",
                "3",
                "-l",
                str(length),
            ]
            with Probe(server.port) as probe:
                subprocess.run(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=length + 60,
                    check=False,
                    preexec_fn=_pin_child,
                )
            seconds, connected, available = parse_slowhttptest_csv(
                prefix.with_suffix(".csv").read_text()
            )
            attack = SlowAttack(
                seconds=seconds,
                max_connected=connected,
                service_available_fraction=available,
                probe=probe.summary,
                probe_errors=probe.errors,
                command=" ".join(command[1:]),
            )
            attacks[name] = attack
            print(
                f"slow {name}: max {connected} attack connections, service available "
                f"{100 * (available or 0):.0f}% of seconds, probe p99 "
                f"{attack.probe.p99_ms or 0:.1f} ms",
                flush=True,
            )
    return SlowResult(skipped=None, attacks=attacks)


# -- idle connections ----------------------------------------------------------------------------


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections, each completing one request, then idle.

    A selector over raw sockets, not the keep-alive client: thousands of connections at once,
    each only read until its 4 KiB response is in.
    """
    request = client.request_bytes(HOT)
    socks: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        for start in range(0, count, 500):
            batch = []
            for _ in range(min(500, count - start)):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(request)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, bytearray())
                batch.append(sock)
            pending = set(batch)
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for key, _ in selector.select(1):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    data: bytearray = key.data
                    data += ready.recv(65536)
                    if len(data) >= 4 * KiB and b"\r\n\r\n" in data:
                        selector.unregister(ready)
                        pending.discard(ready)
            if pending:
                raise RuntimeError(f"{len(pending)} connections got no response")
            socks.extend(batch)
    return socks


def run_idle(root: Path, *, quick: bool) -> IdleResult:
    count = 500 if quick else 5000
    hold = 5.0 if quick else 60.0
    extra = ["--idle-timeout", str(hold * 4), "--head-timeout", "30"]
    with running_server(str(root), "auto", cpu=PINNING.server_cpu, extra=extra) as server:
        with Probe(server.port):
            time.sleep(0.5)
        rss_before = procfs.rss_kib(server.pid)
        with Probe(server.port) as probe:
            time.sleep(1.0 if quick else 3.0)
        baseline = probe.summary
        socks = _open_idle(server.port, count)
        try:
            rss_with = procfs.rss_kib(server.pid)
            with Probe(server.port) as probe:
                time.sleep(hold)
            held = probe.summary
            rss_end = procfs.rss_kib(server.pid)
            alive = 0
            for sock in socks:  # still open: a read would block, not return EOF
                try:
                    alive += sock.recv(1) != b""
                except BlockingIOError:
                    alive += 1
        finally:
            for sock in socks:
                sock.close()
    per_connection = (max(rss_with, rss_end) - rss_before) / count
    print(
        f"idle: {alive}/{count} connections held {hold:g} s; probe p99 "
        f"{held.p99_ms or 0:.2f} ms (idle server {baseline.p99_ms or 0:.2f} ms); "
        f"{per_connection:.1f} KiB RSS per connection",
        flush=True,
    )
    return IdleResult(
        connections=count,
        hold_seconds=hold,
        still_open=alive,
        rss_before_kib=rss_before,
        rss_with_kib=rss_with,
        rss_end_kib=rss_end,
        rss_per_connection_kib=per_connection,
        probe_baseline=baseline,
        probe_while_held=held,
        probe_errors=probe.errors,
    )


# -- the run -------------------------------------------------------------------------------------


def _make_file(path: Path, size: int) -> None:
    """Write the file unless it is there with this size already (``--data`` keeps them)."""
    if not (path.exists() and path.stat().st_size == size):
        files.write_file(path, size)


def _previous(path: Path) -> HardeningResults | None:
    """The results of earlier cases, kept beside the new ones; a file of another layout is
    replaced (with a note), never half-read."""
    try:
        return read_record(path, HardeningResults)
    except FileNotFoundError:
        return None
    except SchemaError as exc:
        print(f"hardening: starting {path.name} afresh: {exc}", flush=True)
        return None


def measure(cases: Sequence[str], *, quick: bool, data: Path | None) -> HardeningResults:
    """Run ``cases`` and write ``hardening.json`` after each, keeping earlier cases' results.

    Raises:
        KeyboardInterrupt: On Ctrl-C (servers stopped; what finished is written).
    """
    pin_self(PINNING.client_cpu)
    previous = _previous(RESULTS)
    results = HardeningResults(
        machine=machine_info(tools=("nginx", "curl", "slowhttptest")),
        cold=previous.cold if previous else None,
        slow=previous.slow if previous else None,
        idle=previous.idle if previous else None,
        listing=previous.listing if previous else None,
        tar=previous.tar if previous else None,
    )
    with contextlib.ExitStack() as stack:
        if data is None:
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/var/tmp")))
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o755)  # nginx's worker runs unprivileged
        _make_file(data / HOT, 4 * KiB)
        for case in cases:
            if case == "cold":
                results = dataclasses.replace(results, cold=run_cold(data, quick=quick))
            elif case == "slow":
                results = dataclasses.replace(results, slow=run_slow(data, quick=quick))
            elif case == "idle":
                results = dataclasses.replace(results, idle=run_idle(data, quick=quick))
            elif case == "listing":
                listing = run_listing(data, quick=quick, pinning=PINNING)
                results = dataclasses.replace(results, listing=listing)
            else:
                results = dataclasses.replace(
                    results, tar=run_tar(data, quick=quick, pinning=PINNING)
                )
            write_record(RESULTS, results)
    return results
