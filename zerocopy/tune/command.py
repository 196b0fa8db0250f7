"""``zerocopy tune [DIR]``: measure the ``--auto-threshold`` crossover here, print it, save it.

See :mod:`zerocopy.tune.measure` for what is measured and how, and :mod:`zerocopy.tune.store`
for the file it writes and how ``zerocopy serve`` reads it.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import os
import platform
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, final

import trio

from zerocopy import __version__
from zerocopy.tune.client import KeepAliveClient, request_bytes
from zerocopy.tune.measure import (
    CANDIDATES,
    MEMORY,
    SENDFILE,
    ClientLoad,
    ServerProcess,
    WrkLoad,
    find_crossover,
    find_wrk,
    measure,
    summarise,
)
from zerocopy.tune.sizes import MiB, format_size
from zerocopy.tune.store import TuneFile, tune_path, write_tune_file

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from types import TracebackType

    from zerocopy.tune.measure import Crossover, Load, SizeFigures, Window

__all__ = ["main"]

WARMUP_REQUESTS: Final = 20
"""Sequential GETs per file and server before measuring: the open-file cache and its memory
are filled by the first, the rest settle the server's own caches."""


@final
class _Progress:
    """tqdm's bar on a terminal when tqdm is installed; plain lines otherwise (a bar written
    to a file or a pipe is a mess of carriage returns). tqdm is optional: it is looked up by
    name at run time."""

    def __init__(self, total: int, title: str) -> None:
        self.total = total
        self.done = 0
        self._bar: Any = None
        if sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None:
            tqdm = importlib.import_module("tqdm")
            self._bar = tqdm.tqdm(total=total, desc=title, file=sys.stderr, leave=False)
        else:
            print(f"{title}: {total} windows", file=sys.stderr, flush=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()

    def step(self, message: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(message, refresh=False)
            self._bar.update(1)
        else:
            print(f"[{self.done}/{self.total}] {message}", file=sys.stderr, flush=True)


def _pinning() -> tuple[int | None, int | None, str]:
    """(server CPU, load CPU, a sentence): one CPU each where this process may use two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, "one CPU: the server and the load share it"
    return cpus[0], cpus[1], f"server on CPU {cpus[0]}, load on CPU {cpus[1]}"


def _choose_load(kind: str, connections: int) -> Load:
    wrk = find_wrk()
    if kind == "wrk" and wrk is None:
        raise SystemExit("zerocopy tune: error: --load wrk: wrk is not installed")
    if kind != "client" and wrk is not None:
        return WrkLoad(connections, wrk)
    return ClientLoad(connections, "--load client" if kind == "client" else "wrk is not installed")


def _write_files(root: Path, sizes: Mapping[str, int]) -> dict[int, str]:
    files = {}
    for label, size in sizes.items():
        name = f"tune-{label}.bin"
        (root / name).write_bytes(os.urandom(size))
        files[size] = name
    return files


def _check_and_warm(servers: Mapping[str, ServerProcess], files: Mapping[int, str]) -> None:
    """Every file is served whole by every server; then each is fetched a few more times."""

    async def fetch(port: int) -> None:
        async with await KeepAliveClient.connect(port) as client:
            for size, path in files.items():
                for _ in range(WARMUP_REQUESTS):
                    got = await client.get(request_bytes(path))
                    if got != size:
                        raise RuntimeError(f"/{path}: {got} bytes where {size} were expected")

    for server in servers.values():
        trio.run(fetch, server.port)


def _memory_share(server: ServerProcess) -> float | None:
    """The share of the memory candidate's body bytes that went from memory (its metrics)."""
    sent = server.counter("zerocopy_body_bytes_total")
    held = server.counter("zerocopy_memory_body_bytes_total")
    return held / sent if sent and held is not None else None


def _table(figures: list[SizeFigures]) -> str:
    lines = [
        f"{'size':>8}  {'memory µs/req':>14}  {'sendfile µs/req':>16}  {'sendfile / memory':>18}",
    ]
    lines += [
        f"{format_size(f.size):>8}  {f.memory_us:>14.1f}  {f.sendfile_us:>16.1f}  "
        f"{f.ratio:>17.2f}{'*' if f.ratio > 1 else ' '}"
        for f in figures
    ]
    lines.append("(* memory cheaper; server CPU per request, medians over rounds)")
    return "\n".join(lines)


def _verdict(crossover: Crossover) -> str:
    size = format_size(crossover.threshold)
    if crossover.verdict == "below":
        return "sendfile cost no more than memory even at the smallest size: never from memory"
    if crossover.verdict == "above":
        return f"memory was cheaper at every size measured: up to {size} from memory"
    return f"crossover at {size}: auto sends files up to {size} from memory, larger by sendfile"


def _record(
    crossover: Crossover,
    figures: list[SizeFigures],
    load: Load,
    pinning: str,
    window: float,
    rounds: int,
) -> TuneFile:
    measured: dict[str, str | int | float | list[float]] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "zerocopy": __version__,
        "verdict": crossover.verdict,
        "load": load.description,
        "pinning": pinning,
        "rounds": rounds,
        "window-s": window,
        "sizes": [float(f.size) for f in figures],
        "memory-cpu-us": [round(f.memory_us, 2) for f in figures],
        "sendfile-cpu-us": [round(f.sendfile_us, 2) for f in figures],
        "sendfile-vs-memory": [round(f.ratio, 3) for f in figures],
    }
    return TuneFile(crossover.threshold, measured)


def main(args: argparse.Namespace) -> int:
    """Run ``zerocopy tune``; returns the exit status."""
    sizes: dict[str, int] = args.sizes
    load = _choose_load(args.load, args.connections)
    server_cpu, load_cpu, pinning = _pinning()
    windows_total = len(sizes) * len(CANDIDATES) * args.rounds
    window = load.window(args.duration / windows_total)
    print(
        f"zerocopy tune: server CPU per request, `serve --strategy auto` sending from memory "
        f"against `--strategy sendfile`, at {len(sizes)} sizes, {args.rounds} rounds of "
        f"{window:.3g} s windows (about {window * windows_total:.0f} s of load); load: "
        f"{load.description}; {pinning}",
        flush=True,
    )
    largest = max(sizes.values())
    memory_budget = max(32 * MiB, 2 * sum(sizes.values()))
    metrics = importlib.util.find_spec("prometheus_client") is not None
    with tempfile.TemporaryDirectory(prefix="zerocopy-tune-", dir=args.dir) as scratch:
        root = Path(scratch)
        root.chmod(0o755)
        files = _write_files(root, sizes)
        flags = {
            MEMORY: [
                *("--strategy", "auto", "--auto-threshold", str(largest)),
                *("--memory-cache", str(memory_budget)),
            ],
            SENDFILE: ["--strategy", "sendfile"],
        }
        affinity = os.sched_getaffinity(0)
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        try:
            with (
                ServerProcess(root, flags[MEMORY], cpu=server_cpu, metrics=metrics) as memory,
                ServerProcess(root, flags[SENDFILE], cpu=server_cpu) as sendfile,
            ):
                servers = {MEMORY: memory, SENDFILE: sendfile}
                _check_and_warm(servers, files)
                with _Progress(windows_total, "zerocopy tune") as progress:

                    def report(done: Window) -> None:
                        progress.step(
                            f"{format_size(done.size)} {done.candidate} (round "
                            f"{done.round + 1}/{args.rounds}): {done.rate:,.0f} req/s, "
                            f"{done.cpu_per_request_us:.1f} µs CPU/req"
                        )

                    windows = measure(
                        servers, load, files, rounds=args.rounds, seconds=window, on_window=report
                    )
                share = _memory_share(memory)
        except (OSError, RuntimeError) as exc:
            print(f"zerocopy tune: error: {exc}", file=sys.stderr)
            return 1
        finally:
            os.sched_setaffinity(0, affinity)
    figures = summarise(windows)
    crossover = find_crossover(figures)
    print(_table(figures))
    if share is not None:
        print(f"memory candidate: {share:.1%} of its body bytes were sent from memory")
        if share < 0.99:
            print(
                "warning: the memory candidate did not send everything from memory: its "
                "figures mix in sendfile, and the crossover is not reliable",
                file=sys.stderr,
            )
    print(_verdict(crossover))
    for note in crossover.notes:
        print(f"note: {note}")
    flag = f"--auto-threshold {format_size(crossover.threshold) if crossover.threshold else 0}"
    record = _record(crossover, figures, load, pinning, window, args.rounds)
    if args.dry_run:
        print(f"not written (--dry-run); the same as a flag: {flag}")
        return 0
    path = args.output if args.output is not None else tune_path()
    try:
        write_tune_file(path, record)
    except OSError as exc:
        print(f"zerocopy tune: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        print(f"the same as a flag: {flag}")
        return 1
    print(f"wrote {path}: `zerocopy serve` uses it from now on; the same as a flag: {flag}")
    return 0
