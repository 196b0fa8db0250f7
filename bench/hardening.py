"""Hardening benchmarks: cold page cache, slow clients, and idle-connection capacity.

``python -m bench.hardening {cold,slow,idle,all} [--quick]`` writes
``bench/results/hardening.json`` and ``bench/results/hardening.md``. None of it runs in CI:
each case takes a minute or more, and its figures are only meaningful on an idle machine.

* **cold**: the p99 of hot 4 KiB requests while 4 downloads of cold 256 MiB files run, with
  the page cache evicted (``posix_fadvise(DONTNEED)``) before each run, against the same
  request stream with no downloads. Measured for the server as shipped (cold chunks offloaded
  to worker threads) and with ``--offload-threads 0``, alternately. Target: hot p99 with cold
  downloads within 2x the p99 without them.
* **slow**: slowhttptest's slowloris (slow headers) and slow-read attacks against the server,
  with a concurrent probe: is the service still available, and how fast?
* **idle**: 5,000 idle keep-alive connections held for 60 s while a probe measures p99; the
  server's RSS per idle connection. Targets: probe p99 < 100 ms, <= 32 KiB per connection.

The probe is a closed loop of sequential keep-alive GETs of a 4 KiB file, timed per request
with ``perf_counter``: like wrk's, its percentiles suffer from coordinated omission (a stall
delays the requests that would have been sent during it, so they are never measured). The
server is pinned to CPU 0, and the probe and load to CPU 1, where there are two.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from bench import dataset, procfs
from bench.plan import MiB
from bench.prom import scrape
from bench.serverproc import running_server, signals_raise_keyboard_interrupt

RESULTS: Final = Path(__file__).resolve().parent / "results"
HOT: Final = "hot.bin"


def _pin_client() -> None:
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _summary(latencies: list[float]) -> dict[str, float]:
    ms = [value * 1000 for value in latencies]
    return {
        "requests": len(ms),
        "p50_ms": _percentile(ms, 50),
        "p99_ms": _percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
    }


class Probe:
    """Sequential keep-alive GETs of the hot file in a thread, each one timed."""

    def __init__(self, port: int, path: str = HOT) -> None:
        self._port = port
        self._request = f"GET /{path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode()
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.errors = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _run(self) -> None:
        sock = self._connect()
        buffer = bytearray(65536)
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    sock.sendall(self._request)
                    _read_response(sock, buffer)
                except OSError:
                    self.errors += 1
                    sock.close()
                    sock = self._connect()
                    continue
                self.latencies.append(time.perf_counter() - start)
        finally:
            sock.close()


def _read_response(sock: socket.socket, buffer: bytearray) -> None:
    view = memoryview(buffer)
    got = 0
    while True:
        count = sock.recv_into(view[got:])
        if not count:
            raise ConnectionError("closed")
        got += count
        end = bytes(view[:got]).find(b"\r\n\r\n")
        if end >= 0:
            break
    head = bytes(view[:end])
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    remaining = length - (got - end - 4)
    while remaining > 0:
        count = sock.recv_into(view, min(remaining, len(view)))
        if not count:
            raise ConnectionError("closed")
        remaining -= count


def _meta() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# --- cold page cache -----------------------------------------------------------------------


def _make_file(path: Path, size: int) -> None:
    """Write the file unless it is there with this size already (``--data`` keeps them)."""
    if not (path.exists() and path.stat().st_size == size):
        dataset.write_file(path, size)


def _evict(path: Path) -> bool:
    """Drop the file's pages; True if its first page is then not cached."""
    dataset.evict(str(path))
    return dataset.is_cached(str(path)) is False


DOWNLOADER_NICE: Final = 19
"""The downloads run as ``nice -n 19`` curl processes. They share CPU 1 with the probe, and at
full speed they would otherwise delay the probe itself, which would then measure the client
instead of the server. They are not rate-limited: capped downloads let readahead stay ahead
of them, and then no read misses the page cache and nothing is left to measure."""


def _download(port: int, path: str, results: list[float]) -> None:
    """Fetch ``path`` in a separate process (curl), so the probe's process is not loaded."""
    start = time.perf_counter()
    url = f"http://127.0.0.1:{port}/{path}"
    curl = shutil.which("curl")
    if curl is not None:
        subprocess.run(
            ["nice", "-n", str(DOWNLOADER_NICE), curl, "-s", "-o", "/dev/null", url],
            check=True,
            timeout=300,
            preexec_fn=_pin_client,
        )
    else:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(
                f"GET /{path} HTTP/1.1\r\nHost: cold\r\nConnection: close\r\n\r\n".encode()
            )
            buffer = bytearray(4 * MiB)
            while sock.recv_into(buffer):
                pass
    results.append(time.perf_counter() - start)


def run_cold(root: Path, *, quick: bool) -> dict[str, Any]:
    size = 32 * MiB if quick else 256 * MiB
    downloads = 4
    reps = 1 if quick else 3
    baseline_seconds = 1.0 if quick else 3.0
    names = [f"cold{i}.bin" for i in range(downloads)]
    for name in names:
        _make_file(root / name, size)
    configs = {"offload": [], "no-offload": ["--offload-threads", "0"]}
    runs: list[dict[str, Any]] = []
    for rep in range(reps):
        for config, extra in configs.items():  # alternate: A B A B ...
            with running_server(str(root), "auto", cpu=0, extra=extra) as server:
                with Probe(server.port) as warm:
                    time.sleep(0.2)
                del warm
                with Probe(server.port) as probe:
                    time.sleep(baseline_seconds)
                baseline = _summary(probe.latencies)
                evicted = all(_evict(root / name) for name in names)
                durations: list[float] = []
                threads = [
                    threading.Thread(target=_download, args=(server.port, name, durations))
                    for name in names
                ]
                with Probe(server.port) as probe:
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join(300)
                loaded = _summary(probe.latencies)
                offloaded = (
                    scrape(server.metrics_port).get(("zerocopy_offloaded_total", ()), 0.0)
                    if server.metrics_port is not None
                    else None
                )
            run = {
                "rep": rep,
                "config": config,
                "evicted": evicted,
                "baseline": baseline,
                "with_cold_downloads": loaded,
                "download_seconds": sorted(durations),
                "p99_ratio": loaded["p99_ms"] / baseline["p99_ms"],
                "offloaded_chunks": offloaded,
            }
            runs.append(run)
            print(
                f"cold rep {rep} {config:10}: p99 {baseline['p99_ms']:.2f} ms idle, "
                f"{loaded['p99_ms']:.2f} ms with {downloads} cold downloads "
                f"(x{run['p99_ratio']:.1f}), {loaded['requests']} probe requests; downloads "
                f"{max(durations, default=0):.2f} s; {offloaded} chunks offloaded",
                flush=True,
            )
    medians = {
        config: {
            "p99_baseline_ms": statistics.median(
                r["baseline"]["p99_ms"] for r in runs if r["config"] == config
            ),
            "p99_cold_ms": statistics.median(
                r["with_cold_downloads"]["p99_ms"] for r in runs if r["config"] == config
            ),
            "p99_ratio": statistics.median(r["p99_ratio"] for r in runs if r["config"] == config),
            "probe_requests": statistics.median(
                r["with_cold_downloads"]["requests"] for r in runs if r["config"] == config
            ),
        }
        for config in configs
    }
    return {"file_size": size, "downloads": downloads, "runs": runs, "medians": medians}


# --- slow clients --------------------------------------------------------------------------


def parse_slowhttptest_csv(text: str) -> dict[str, Any]:
    """Summarise slowhttptest's ``-g`` CSV.

    Its columns are ``Seconds,Closed,Pending,Connected,Service Available``; the last one is
    drawn as a step in its chart, so it holds a non-zero number (the target connection count)
    while its probe got an answer, and 0 while it did not.
    """
    rows = [line.split(",") for line in text.splitlines()[1:] if line.strip()]
    available = [int(row[4]) != 0 for row in rows]
    connected = [int(row[3]) for row in rows]
    return {
        "seconds": len(rows),
        "max_connected": max(connected, default=0),
        "service_available_fraction": (
            sum(available) / len(available) if available else float("nan")
        ),
    }


def run_slow(root: Path, *, quick: bool) -> dict[str, Any]:
    tool = shutil.which("slowhttptest")
    if tool is None:
        return {"skipped": "slowhttptest is not installed (apt-get install slowhttptest)"}
    length = 10 if quick else 60
    connections = 200 if quick else 1000
    _make_file(root / "big.bin", 64 * MiB)
    attacks = {
        "slowloris": ["-H", "-i", "10", "-r", "200", "-t", "GET", "-x", "24"],
        "slow-read": [
            "-X",
            "-r",
            "200",
            "-w",
            "512",
            "-y",
            "1024",
            "-n",
            "5",
            "-z",
            "32",
            "-k",
            "3",
        ],
    }
    results: dict[str, Any] = {}
    for name, flags in attacks.items():
        with (
            running_server(str(root), "auto", cpu=0) as server,
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
                    preexec_fn=_pin_client,
                )
            report = parse_slowhttptest_csv(prefix.with_suffix(".csv").read_text())
            report["probe"] = _summary(probe.latencies)
            report["probe_errors"] = probe.errors
            report["command"] = " ".join(command[1:])
            results[name] = report
            print(
                f"slow {name}: max {report['max_connected']} attack connections, "
                f"service available {100 * report['service_available_fraction']:.0f}% of "
                f"seconds, probe p99 {report['probe']['p99_ms']:.1f} ms",
                flush=True,
            )
    return results


# --- idle connections ----------------------------------------------------------------------


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections, each completing one request, then idle."""
    request = b"GET /" + HOT.encode() + b" HTTP/1.1\r\nHost: idle\r\n\r\n"
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
                    if len(data) >= 4096 and b"\r\n\r\n" in data:
                        selector.unregister(ready)
                        pending.discard(ready)
            if pending:
                raise RuntimeError(f"{len(pending)} connections got no response")
            socks.extend(batch)
    return socks


def run_idle(root: Path, *, quick: bool) -> dict[str, Any]:
    count = 500 if quick else 5000
    hold = 5.0 if quick else 60.0
    extra = ["--idle-timeout", str(hold * 4), "--head-timeout", "30"]
    with running_server(str(root), "auto", cpu=0, extra=extra) as server:
        with Probe(server.port) as warm:
            time.sleep(0.5)
        del warm
        rss_before = procfs.rss_kib(server.pid)
        with Probe(server.port) as probe:
            time.sleep(1.0 if quick else 3.0)
        baseline = _summary(probe.latencies)
        socks = _open_idle(server.port, count)
        try:
            rss_with = procfs.rss_kib(server.pid)
            with Probe(server.port) as probe:
                time.sleep(hold)
            held = _summary(probe.latencies)
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
    result = {
        "connections": count,
        "hold_seconds": hold,
        "still_open": alive,
        "rss_before_kib": rss_before,
        "rss_with_kib": rss_with,
        "rss_end_kib": rss_end,
        "rss_per_connection_kib": per_connection,
        "probe_baseline": baseline,
        "probe_while_held": held,
        "probe_errors": probe.errors,
    }
    print(
        f"idle: {alive}/{count} connections held {hold:g} s; probe p99 "
        f"{held['p99_ms']:.2f} ms (idle server {baseline['p99_ms']:.2f} ms); "
        f"{per_connection:.1f} KiB RSS per connection",
        flush=True,
    )
    return result


# --- report --------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    lines = ["# Hardening benchmarks", "", f"Machine: {json.dumps(results['meta'])}", ""]
    cold = results.get("cold")
    if cold:
        lines += [
            "## Cold page cache",
            "",
            f"Hot 4 KiB p99 while {cold['downloads']} unthrottled downloads of cold "
            f"{cold['file_size'] // MiB} MiB files run (page cache evicted before each run), "
            "median over alternated repetitions. Target: p99 with cold downloads <= 2x p99 "
            "without. The probe's request count during the downloads shows how often the "
            "event loop got to it.",
            "",
            "| server | p99 idle (ms) | p99 with cold downloads (ms) | ratio | probe requests "
            "during downloads | target |",
            "|---|---|---|---|---|---|",
        ]
        for config, row in cold["medians"].items():
            verdict = "met" if row["p99_ratio"] <= 2 else "not met"
            lines.append(
                f"| {config} | {row['p99_baseline_ms']:.2f} | {row['p99_cold_ms']:.2f} | "
                f"{row['p99_ratio']:.1f}x | {row.get('probe_requests', float('nan')):.0f} | "
                f"{verdict if config == 'offload' else '(reference)'} |"
            )
        lines.append("")
    slow = results.get("slow")
    if slow:
        lines += ["## Slow clients (slowhttptest)", ""]
        if "skipped" in slow:
            lines.append(f"Skipped: {slow['skipped']}")
        else:
            lines += [
                "| attack | attack connections (max) | service available | probe p99 (ms) "
                "| probe errors |",
                "|---|---|---|---|---|",
            ]
            for name, row in slow.items():
                lines.append(
                    f"| {name} | {row['max_connected']} | "
                    f"{100 * row['service_available_fraction']:.0f}% of seconds | "
                    f"{row['probe']['p99_ms']:.1f} | {row['probe_errors']} |"
                )
        lines.append("")
    idle = results.get("idle")
    if idle:
        p99 = idle["probe_while_held"]["p99_ms"]
        per = idle["rss_per_connection_kib"]
        held_all = idle["still_open"] >= 5000 and idle["hold_seconds"] >= 60
        lines += [
            "## Idle-connection capacity",
            "",
            "| measure | figure | target | verdict |",
            "|---|---|---|---|",
            f"| connections held | {idle['still_open']} of {idle['connections']} for "
            f"{idle['hold_seconds']:g} s | 5000 for 60 s | "
            f"{'met' if held_all else 'not met'} |",
            f"| probe p99 while held | {p99:.2f} ms | < 100 ms | "
            f"{'met' if p99 < 100 else 'not met'} |",
            f"| RSS per idle connection | {per:.1f} KiB | <= 32 KiB | "
            f"{'met' if per <= 32 else 'not met'} |",
            "",
        ]
    lines.append("Percentiles come from a closed-loop probe and suffer from coordinated omission.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=["cold", "slow", "idle", "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes and short holds")
    parser.add_argument("--data", type=Path, default=None, help="where to keep the test files")
    args = parser.parse_args(argv)
    _pin_client()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "hardening.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results["meta"] = _meta()
    with signals_raise_keyboard_interrupt(), contextlib.ExitStack() as stack:
        root = args.data or Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/var/tmp")))
        root.mkdir(parents=True, exist_ok=True)
        _make_file(root / HOT, 4096)
        cases = ["cold", "slow", "idle"] if args.case == "all" else [args.case]
        for case in cases:
            runner = {"cold": run_cold, "slow": run_slow, "idle": run_idle}[case]
            results[case] = runner(root, quick=args.quick)
            out.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "hardening.md").write_text(render(results))
    print(f"wrote {out} and {RESULTS / 'hardening.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
