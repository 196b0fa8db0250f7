"""``hardening.md`` from ``hardening.json``: the cold-cache, slow-client, idle-connection,
directory-listing and tar-download cases, each against its target or beside nginx or its
reference. Pure: reads the record, writes Markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from bench.harness.names import NGINX_AIO_THREADS
from bench.harness.sizes import MiB
from bench.harness.stats import paired_ratio
from bench.reporting.markdown import MISSING, fixed, number, table

if TYPE_CHECKING:
    from pathlib import Path

    from bench.harness.schema import (
        ColdResult,
        HardeningResults,
        IdleResult,
        ListingResult,
        SlowResult,
        TarResult,
    )

__all__ = ["COLD_TARGET", "render", "write_markdown"]

COLD_TARGET: Final = 2.0
"""Hot p99 with cold downloads running, at most this many times the p99 without them."""
COLD_JUDGED: Final = "zerocopy-offload"
"""The server the cold-cache target is about: zerocopy as shipped."""


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


def _loaded_p99(cold: ColdResult, server: str) -> dict[int, float | None]:
    return {run.rep: run.with_cold_downloads.p99_ms for run in cold.runs if run.server == server}


def _cold(cold: ColdResult) -> list[str]:
    rows = []
    anchor = _loaded_p99(cold, NGINX_AIO_THREADS)
    for server, median in cold.medians.items():
        judged = median.p99_ratio is not None and median.p99_ratio <= COLD_TARGET
        rows.append(
            (
                server,
                fixed(median.p99_baseline_ms),
                fixed(median.p99_cold_ms),
                fixed(median.p99_ratio, 1, "x"),
                fixed(paired_ratio(_loaded_p99(cold, server), anchor), 2, "x"),
                number(median.probe_requests),
                _verdict(judged) if server == COLD_JUDGED else "(reference)",
            )
        )
    settings = [f"- {server}: {text}" for server, text in cold.settings.items()]
    return [
        "## Cold page cache",
        "",
        f"Hot 4 KiB p99 while {cold.downloads} unthrottled downloads of cold "
        f"{cold.file_size // MiB} MiB files run (page cache evicted before each run), median "
        f"over alternated repetitions. Target: p99 with cold downloads ≤ {COLD_TARGET:g}x the "
        "p99 without, for zerocopy as shipped; nginx with `aio threads` (its answer to a cold "
        "cache) and with plain `sendfile on` run the same test as the anchor: the fifth column "
        "divides each server's p99 with cold downloads by nginx's with `aio threads`, "
        "repetition by repetition. The probe's request count during the downloads shows how "
        "often the event loop got to it.",
        "",
        *table(
            (
                "server",
                "p99 idle (ms)",
                "p99 with cold downloads (ms)",
                "ratio",
                "p99 with downloads vs nginx aio threads",
                "probe requests during downloads",
                "target",
            ),
            rows,
        ),
        *settings,
        "",
    ]


def _slow(slow: SlowResult) -> list[str]:
    lines = ["## Slow clients (slowhttptest)", ""]
    if slow.skipped is not None:
        return [*lines, f"Skipped: {slow.skipped}", ""]
    rows = [
        (
            name,
            str(attack.max_connected),
            fixed(
                None
                if attack.service_available_fraction is None
                else 100 * attack.service_available_fraction,
                0,
                "% of seconds",
            ),
            fixed(attack.probe.p99_ms, 1),
            str(attack.probe_errors),
        )
        for name, attack in slow.attacks.items()
    ]
    return [
        *lines,
        *table(
            (
                "attack",
                "attack connections (max)",
                "service available",
                "probe p99 (ms)",
                "probe errors",
            ),
            rows,
        ),
    ]


def _idle(idle: IdleResult) -> list[str]:
    p99 = idle.probe_while_held.p99_ms
    per = idle.rss_per_connection_kib
    held_all = idle.still_open >= 5000 and idle.hold_seconds >= 60
    return [
        "## Idle-connection capacity",
        "",
        *table(
            ("measure", "figure", "target", "verdict"),
            [
                (
                    "connections held",
                    f"{idle.still_open} of {idle.connections} for {idle.hold_seconds:g} s",
                    "5000 for 60 s",
                    _verdict(held_all),
                ),
                (
                    "probe p99 while held",
                    f"{fixed(p99)} ms",
                    "< 100 ms",
                    _verdict(p99 is not None and p99 < 100),
                ),
                ("RSS per idle connection", f"{per:.1f} KiB", "≤ 32 KiB", _verdict(per <= 32)),
            ],
        ),
    ]


def _listing_p99(listing: ListingResult, server: str) -> dict[int, float | None]:
    return {run.rep: run.probe.p99_ms for run in listing.runs if run.server == server}


def _listing(listing: ListingResult) -> list[str]:
    reference = next((name for name in listing.medians if name.startswith("nginx")), None)
    rows = []
    for server, median in listing.medians.items():
        runs = [run for run in listing.runs if run.server == server]
        vs = (
            paired_ratio(_listing_p99(listing, server), _listing_p99(listing, reference))
            if reference is not None
            else None
        )
        rows.append(
            (
                server,
                fixed(median.probe_p99_ms, 1),
                fixed(median.probe_max_ms, 1),
                MISSING if vs is None else f"{number(vs)}x",
                fixed(median.peak_rss_kib / 1024 if median.peak_rss_kib else None, 0, " MiB"),
                fixed(median.page_bytes / 1e6 if median.page_bytes else None, 1, " MB"),
                fixed(median.listings_per_s, 2),
                str(sum(run.client_errors for run in runs)),
            )
        )
    idle = [run.baseline.p99_ms for run in listing.runs if run.baseline.p99_ms is not None]
    settings = [f"- {server}: {text}" for server, text in listing.settings.items()]
    return [
        "## Directory listings",
        "",
        f"A 4 KiB probe while {listing.clients} clients fetch the listing of one directory of "
        f"{listing.entries:,} entries again and again for {listing.window_s:g} s; a fresh "
        "server per run, servers alternated, medians over repetitions. The probe's p99 and "
        "longest request are its stall (on the idle servers its p99 was "
        f"{fixed(min(idle, default=None))}-{fixed(max(idle, default=None))} ms); the peak RSS "
        "is the serving process's high-water mark (VmHWM) after the run; the page size shows "
        "whether a listing was cut short. The fourth column divides each server's probe p99 "
        "by nginx's, repetition by repetition.",
        "",
        *table(
            (
                "server",
                "probe p99 (ms)",
                "probe max (ms)",
                "p99 vs nginx",
                "peak RSS",
                "page",
                "listings per s",
                "errors",
            ),
            rows,
        ),
        *settings,
        "",
    ]


def _tar(result: TarResult) -> list[str]:
    rows = [
        (
            strategy,
            fixed(median.tar_cpu_per_gib_s, 3, " s"),
            fixed(median.single_cpu_per_gib_s, 3, " s"),
            MISSING if median.tar_over_single is None else f"{median.tar_over_single:.2f}x",
            fixed(median.tar_copied_per_byte, 4),
            fixed(median.single_copied_per_byte, 4),
            fixed(median.tar_syscalls_per_gib, 0),
            fixed(median.single_syscalls_per_gib, 0),
        )
        for strategy, median in result.medians.items()
    ]
    return [
        "## Directory downloads as tar",
        "",
        f"A directory of {result.files} files of {result.file_bytes / MiB:g} MiB "
        f"({result.data_bytes / MiB:,.0f} MiB of data, hot page cache) downloaded by curl as "
        "one `?download=tar` archive and as every file by a GET on one keep-alive connection, "
        f"alternated, {result.repetitions} repetitions per strategy; the server's CPU (user + "
        "sys clock ticks of its process group, whose worker threads walk the directory) per "
        "GiB of file data. tar / single is the median of the per-repetition ratios. Bytes "
        "through user space per data byte come from the server's counters: the tar headers "
        "and padding, and the response heads, are the whole of it with sendfile and splice. "
        "Syscalls per GiB are the transfer path's (the server's counters): where they are the "
        "same and the CPU is not, the difference is in the kernel (on loopback, an archive "
        "that streams without a pause puts more of TCP's send and of the client's receive on "
        "the server's CPU than files with a request's pause between them).",
        "",
        *table(
            (
                "strategy",
                "CPU per GiB, tar",
                "CPU per GiB, single files",
                "tar / single",
                "copied per byte, tar",
                "copied per byte, single",
                "syscalls per GiB, tar",
                "syscalls per GiB, single",
            ),
            rows,
        ),
    ]


def render(results: HardeningResults) -> str:
    """The whole of ``hardening.md``."""
    machine = results.machine
    lines = [
        "# Hardening benchmarks",
        "",
        f"Measured on {machine.hostname} ({machine.cpu_model}, {machine.cpu_count} CPUs, Linux "
        f"{machine.kernel}, Python {machine.python}), last run {machine.date_utc}.",
        "",
    ]
    if results.cold is not None:
        lines += _cold(results.cold)
    if results.slow is not None:
        lines += _slow(results.slow)
    if results.idle is not None:
        lines += _idle(results.idle)
    if results.listing is not None:
        lines += _listing(results.listing)
    if results.tar is not None:
        lines += _tar(results.tar)
    lines.append("Percentiles come from a closed-loop probe and suffer from coordinated omission.")
    return "\n".join(lines) + "\n"


def write_markdown(results: HardeningResults, path: Path) -> Path:
    """Write :func:`render`'s text to ``path``; return it."""
    path.write_text(render(results))
    return path
