"""The listing case: a 4 KiB probe's stall while eight clients list a directory of 200,000
entries, and the server's peak memory, beside nginx's ``autoindex`` on the same directory.

A listing of a huge directory is work the server does for one request that other clients
must not pay for: rendering 200,000 entries makes a page of about 60 MB, and a server that
builds it on its event loop, or holds it whole in memory, stalls every other connection and
grows by the page's size per listing in flight. The case measures what a user would see:

- a fresh server per run, pinned to the server CPU, alternated repetition by repetition:
  zerocopy as shipped (its default strategy, and whatever its listing code does today: it
  lists at most ``--max-listing-entries`` entries, 10,000 by default); zerocopy told to list
  every entry (``--max-listing-entries`` = the directory's size), the same page as nginx's;
  and nginx with ``sendfile on`` and ``autoindex on``;
- the probe (:class:`~bench.hardening.probe.Probe`: sequential keep-alive GETs of a hot
  4 KiB file) first on the idle server, then during the window in which
  :data:`LISTING_CLIENTS` clients (``bench/data/clients/fetch_loop.py``, each a process of its
  own on the client CPU) fetch the listing again and again. Reported: the probe's p50, p99
  and longest request within the window (closed loop: coordinated omission applies, so a
  stall counts once however long it is), listings completed per second, the page size, and
  the serving process's peak RSS (``VmHWM``) once the clients are done.

nginx streams its autoindex page; the comparison shows what that buys.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench.hardening.probe import Probe
from bench.harness import files, procfs
from bench.harness.names import NGINX_SENDFILE
from bench.harness.nginx import CONFIGS, start_nginx
from bench.harness.results import DATA_DIR
from bench.harness.schema import ListingMedian, ListingResult, ListingRun
from bench.harness.servers import ServerSet, start_zerocopy
from bench.harness.stats import median_or_none

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from bench.harness.schema import Pinning
    from bench.harness.servers import RunningServer

__all__ = [
    "BIG_DIR",
    "LISTING_CLIENTS",
    "LISTING_SERVERS",
    "fetch_command",
    "listing_medians",
    "parse_fetch_output",
    "run_listing",
]

BIG_DIR: Final = "big"
"""The huge directory, under the case's document root."""
LISTING_CLIENTS: Final = 8
FETCH_LOOP: Final = DATA_DIR / "clients" / "fetch_loop.py"
FETCH_TIMEOUT_S: Final = 120.0
"""One listing may take this long before the client gives up on it (an error)."""
ZEROCOPY: Final = "zerocopy"
ZEROCOPY_ALL: Final = "zerocopy-all-entries"
NGINX_AUTOINDEX: Final = "nginx-autoindex"
LISTING_SERVERS: Final = {
    ZEROCOPY: "python -m zerocopy serve DIR --strategy auto (listings on, its defaults)",
    ZEROCOPY_ALL: "the same with --max-listing-entries set to the directory's size: every "
    "entry listed, as nginx lists them",
    NGINX_AUTOINDEX: CONFIGS[NGINX_SENDFILE].settings.replace(
        " (bench/data", "; autoindex on (bench/data"
    ),
}
"""The servers of the listing case, in measuring order, and how each is configured."""


@contextlib.contextmanager
def _serve(name: str, root: Path, cpu: int | None, entries: int) -> Iterator[RunningServer]:
    """Run one server of :data:`LISTING_SERVERS`, fresh, pinned to ``cpu``, for the block."""
    with (
        tempfile.TemporaryDirectory(prefix="zerocopy-listing-") as logs,
        ServerSet(Path(logs), cpu=cpu) as servers,
    ):
        if name == ZEROCOPY:
            yield start_zerocopy(servers, root, "auto").server
        elif name == ZEROCOPY_ALL:
            extra = ("--max-listing-entries", str(entries))
            yield start_zerocopy(servers, root, "auto", name=name, extra=extra).server
        else:
            yield start_nginx(servers, root, CONFIGS[NGINX_SENDFILE], autoindex=True, name=name)


def fetch_command(port: int, path: str, seconds: float) -> list[str]:
    """One listing client: ``fetch_loop.py`` in a Python of its own."""
    return [
        sys.executable,
        str(FETCH_LOOP),
        str(port),
        path,
        f"{seconds:g}",
        f"{FETCH_TIMEOUT_S:g}",
    ]


def parse_fetch_output(text: str) -> tuple[int, int, int | None, float]:
    """``(listings, errors, page bytes, when the last one ended)`` from a client's line.

    Raises:
        ValueError: Not the client's JSON line.
    """
    try:
        data = json.loads(text.strip().splitlines()[-1])
        page = data["page_bytes"]
        return int(data["listings"]), int(data["errors"]), page, float(data["ended"])
    except (IndexError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a fetch_loop.py report: {text[-200:]!r}") from exc


def _one_run(
    name: str,
    root: Path,
    rep: int,
    *,
    window: float,
    baseline_s: float,
    cpu: int | None,
    entries: int,
) -> ListingRun:
    with _serve(name, root, cpu, entries) as server:
        with Probe(server.port):
            time.sleep(0.2)  # warm-up: the open-file cache, the connection; not recorded
        with Probe(server.port) as idle:
            time.sleep(baseline_s)
        started = time.monotonic()
        command = fetch_command(server.port, f"/{BIG_DIR}/", window)
        clients = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(LISTING_CLIENTS)
        ]
        try:
            with Probe(server.port) as probe:
                time.sleep(window)
            outputs = [
                client.communicate(timeout=window + 2 * FETCH_TIMEOUT_S) for client in clients
            ]
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                    client.wait()
        peak = procfs.group_peak_rss_kib(server.pgid)
    reports = [parse_fetch_output(out or err) for out, err in outputs]
    listings = sum(report[0] for report in reports)
    ended = max(report[3] for report in reports)
    pages = [report[2] for report in reports if report[2] is not None]
    return ListingRun(
        rep=rep,
        server=name,
        page_bytes=max(pages) if pages else None,
        listings=listings,
        listings_per_s=listings / (ended - started) if ended > started else 0.0,
        client_errors=sum(report[1] for report in reports) + probe.errors,
        baseline=idle.summary,
        probe=probe.summary,
        peak_rss_kib=peak,
    )


def listing_medians(runs: Sequence[ListingRun]) -> dict[str, ListingMedian]:
    """Medians over each server's runs, servers in first-seen order."""
    result = {}
    for name in dict.fromkeys(run.server for run in runs):
        mine = [run for run in runs if run.server == name]
        result[name] = ListingMedian(
            probe_p99_ms=median_or_none(run.probe.p99_ms for run in mine),
            probe_max_ms=median_or_none(run.probe.max_ms for run in mine),
            peak_rss_kib=median_or_none(float(run.peak_rss_kib) for run in mine),
            listings_per_s=median_or_none(run.listings_per_s for run in mine),
            page_bytes=median_or_none(
                None if run.page_bytes is None else float(run.page_bytes) for run in mine
            ),
        )
    return result


def run_listing(root: Path, *, quick: bool, pinning: Pinning) -> ListingResult:
    """Measure the case (:data:`LISTING_SERVERS` alternated); ``quick``: 20,000 entries, one
    short repetition.

    ``root`` holds the probe's hot file already; the servers go on ``pinning``'s server CPU,
    and this process must already run on its client CPU (the clients inherit it).
    """
    entries = 20_000 if quick else 200_000
    window = 3.0 if quick else 10.0
    reps = 1 if quick else 3
    baseline_s = 1.0 if quick else 2.0
    started = time.monotonic()
    files.make_big_directory(root / BIG_DIR, entries)
    print(f"listing: {entries:,} entries ready in {time.monotonic() - started:.1f} s", flush=True)
    runs = []
    for rep in range(reps):
        for name in LISTING_SERVERS:  # alternate: A B A B ...
            run = _one_run(
                name,
                root,
                rep,
                window=window,
                baseline_s=baseline_s,
                cpu=pinning.server_cpu,
                entries=entries,
            )
            runs.append(run)
            print(
                f"listing rep {rep} {name:20}: probe p99 {run.probe.p99_ms or 0:.1f} ms, max "
                f"{run.probe.max_ms or 0:.1f} ms (idle p99 {run.baseline.p99_ms or 0:.2f} ms); "
                f"{run.listings} listings of {(run.page_bytes or 0) / 1e6:.1f} MB, "
                f"{run.listings_per_s:.2f}/s; peak RSS {run.peak_rss_kib / 1024:.0f} MiB; "
                f"errors {run.client_errors}",
                flush=True,
            )
    return ListingResult(
        entries=entries,
        clients=LISTING_CLIENTS,
        window_s=window,
        settings=dict(LISTING_SERVERS),
        runs=tuple(runs),
        medians=listing_medians(runs),
    )
