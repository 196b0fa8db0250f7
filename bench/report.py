"""Render ``report.md`` and the charts from a results directory: ``python -m bench.report DIR``.

Reads what is there and says what is not: the pyperf files and ``measurements.json`` that
``bench.run`` writes, and, when present, ``load.json`` (``make bench-load``) and
``peers.json`` (``make bench-peers``). It can be re-run at any time, for instance after the
load or peers benchmarks, without measuring anything again.

Summaries are medians over the alternating repetitions; ratios compare strategies measured in
the same run. The summary functions are pure and unit-tested.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

import pyperf

from bench import charts
from bench.agreement import TOLERANCE, AgreementRow, compare, relative_difference
from bench.plan import GiB, parse_size
from bench.prom import CounterDelta
from bench.targets import NOT_MET, TargetResult, evaluate_targets
from bench.tracers import BpfCounts, StraceCounts

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = [
    "CHARTS",
    "SECTIONS",
    "CpuSummary",
    "agreement_rows",
    "alias_notes",
    "load_optional",
    "main",
    "probe_note",
    "summarise_cpu",
    "write_report",
]

CHARTS: Final = ("latency.png", "cpu_per_gib.png", "syscalls_copies.png")
SECTIONS: Final = (
    "## Environment",
    "## Headline: copies and context switches",
    "## Targets",
    "## Latency",
    "## Server CPU",
    "## Syscalls and copies",
    "## Kernel copy routines (perf)",
    "## Load (wrk)",
    "## Peers",
    "## Profile",
    "## Method",
)
# The textbook figures (e.g. the classic "zero copy" articles): DMA + CPU copies and
# user/kernel mode switches for one read()+write() or one sendfile() of a buffer.
TEXTBOOK: Final = {
    "readwrite": ("4 (2 DMA + 2 CPU)", "4"),
    "sendfile": ("2 (DMA only, with SG-DMA)", "2"),
    "splice": ("— (not in the textbook figure)", "—"),
}
# Which profiles explain which target when it is missed: auto sends 4 KiB by read/write and
# 1 MiB by sendfile; the 256 MiB target is about the zero-copy strategies.
PROFILES_FOR_TARGET: Final = {
    "4 KiB, 1 worker, 16 connections": (("readwrite", "4KiB"), ("sendfile", "4KiB")),
    "1 MiB": (("sendfile", "1MiB"), ("readwrite", "1MiB")),
    "256 MiB": (("sendfile", "256MiB"), ("splice", "256MiB"), ("readwrite", "256MiB")),
    "4 KiB vs aiohttp": (("readwrite", "4KiB"),),
}
PROFILE_ROWS: Final = 10


# -- summaries (pure) ----------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class CpuSummary:
    """The CPU phase for one strategy and case, over all repetitions.

    Attributes:
        cpu_per_request: Median over repetitions of server CPU seconds per request.
        user_share: utime / (utime + stime), from clock ticks summed over repetitions.
        requests: Requests over all repetitions.
        repetitions: Windows that went into the medians.
        voluntary: Voluntary context switches per request (all repetitions).
        involuntary: Involuntary context switches per request.
        syscalls: Returned syscalls per request, by name.
        eagain: EAGAIN failures per request, by name.
        copy_in: Bytes copied kernel → user per payload byte.
        copy_out: Bytes copied user → kernel per payload byte.
        zero_copy: Bytes moved by sendfile/splice per payload byte.
    """

    strategy: str
    case: str
    size: int
    cpu_per_request: float
    user_share: float
    requests: int
    repetitions: int
    voluntary: float
    involuntary: float
    syscalls: dict[str, float] = field(default_factory=dict)
    eagain: dict[str, float] = field(default_factory=dict)
    copy_in: float = 0.0
    copy_out: float = 0.0
    zero_copy: float = 0.0

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_per_request * GiB / self.size

    @property
    def user_per_gib(self) -> float:
        return self.cpu_per_gib * self.user_share

    @property
    def sys_per_gib(self) -> float:
        return self.cpu_per_gib * (1.0 - self.user_share)

    @property
    def syscalls_per_request(self) -> float:
        return sum(self.syscalls.values())


def _per_byte(rows: Sequence[Mapping[str, Any]], name: str, body: int) -> float:
    total = sum(row["counters"][name] for row in rows)
    return total / body if body else 0.0


def summarise_cpu(windows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], CpuSummary]:
    """Summarise CPU-phase windows by (strategy, case). Windows with no requests are skipped."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for window in windows:
        if window["requests"] > 0:
            groups.setdefault((window["strategy"], window["case"]), []).append(window)
    result = {}
    for key, rows in groups.items():
        requests = sum(row["requests"] for row in rows)
        body = sum(row["counters"]["body"] for row in rows)
        ticks_user = sum(row["utime_s"] for row in rows)
        ticks_sys = sum(row["stime_s"] for row in rows)
        ticks = ticks_user + ticks_sys
        syscalls: dict[str, float] = {}
        eagain: dict[str, float] = {}
        for row in rows:
            for name, count in row["counters"]["syscalls"].items():
                syscalls[name] = syscalls.get(name, 0.0) + count / requests
            for name, count in row["counters"]["eagain"].items():
                eagain[name] = eagain.get(name, 0.0) + count / requests

        result[key] = CpuSummary(
            strategy=key[0],
            case=key[1],
            size=rows[0]["size"],
            cpu_per_request=statistics.median(row["cpu_s"] / row["requests"] for row in rows),
            user_share=ticks_user / ticks if ticks else 0.5,
            requests=requests,
            repetitions=len(rows),
            voluntary=sum(row["voluntary"] for row in rows) / requests,
            involuntary=sum(row["involuntary"] for row in rows) / requests,
            syscalls=syscalls,
            eagain=eagain,
            copy_in=_per_byte(rows, "copy_in", body),
            copy_out=_per_byte(rows, "copy_out", body),
            zero_copy=_per_byte(rows, "zero_copy", body),
        )
    return result


def _server_delta(data: Mapping[str, Any]) -> CounterDelta:
    return CounterDelta(
        syscalls=dict(data.get("syscalls", {})),
        eagain=dict(data.get("eagain", {})),
        copy_in=data.get("copy_in", 0),
        copy_out=data.get("copy_out", 0),
        zero_copy=data.get("zero_copy", 0),
        body=data.get("body", 0),
        responses=dict(data.get("responses", {})),
        connections=data.get("connections", 0),
    )


def agreement_rows(record: Mapping[str, Any]) -> list[AgreementRow]:
    """Agreement rows for one traced window of ``measurements.json``."""
    strace = record.get("strace")
    bpf = record.get("bpftrace")
    return compare(
        _server_delta(record["server"]),
        StraceCounts(dict(strace["calls"]), dict(strace["errors"])) if strace else None,
        BpfCounts(
            dict(bpf["returned"]),
            dict(bpf["eagain"]),
            dict(bpf["bytes_in"]),
            dict(bpf["bytes_out"]),
        )
        if bpf
        else None,
    )


def alias_notes(rows: Sequence[AgreementRow]) -> list[str]:
    """Explain disagreements that vanish when two syscall names are read as one.

    CPython 3.11's ``os.preadv`` calls ``preadv2`` (flags 0) where the C library has it, so a
    counter named ``preadv`` meets the kernel's ``preadv2``.
    """
    by_name = {row.quantity.split(" ", 1)[0]: row for row in rows if " calls " in row.quantity}
    notes = []
    for a, b in (("preadv", "preadv2"),):
        if a not in by_name or b not in by_name:
            continue
        first, second = by_name[a], by_name[b]
        if first.agree and second.agree:
            continue
        server = first.server + second.server
        outside = [
            x + y
            for x, y in ((first.strace, second.strace), (first.bpftrace, second.bpftrace))
            if x is not None and y is not None
        ]
        if outside and all(relative_difference(server, value) <= TOLERANCE for value in outside):
            notes.append(
                f"`{a}` and `{b}` agree as a pair: the server counts CPython's `os.preadv` as "
                f"`{a}`, but CPython 3.11 issues the `{b}` syscall (flags 0) where the C library "
                f"has it. The counter's name is wrong, not its count."
            )
    return notes


def probe_note(record: Mapping[str, Any]) -> str | None:
    """Explain a kernel → user byte gap that equals the window's returned ``preadv2`` calls.

    The zero-copy strategies probe the page cache with 1-byte ``preadv2(RWF_NOWAIT)`` reads;
    bpftrace sums their return values, and a server that leaves them out of its "in" counter
    falls short by exactly one byte per probe that returned.
    """
    bpf = record.get("bpftrace")
    server = record.get("server", {})
    if not bpf:
        return None
    gap = sum(bpf["bytes_in"].values()) - server.get("copy_in", 0)
    probes = server.get("syscalls", {}).get("preadv2", 0)
    if gap <= 0 or gap != probes or server.get("zero_copy", 0) == 0:
        return None
    return (
        "the kernel → user gap equals the number of `preadv2` calls that returned: the "
        "server's 1-byte `RWF_NOWAIT` page-cache probes copy a byte each into user space, "
        'and its `zerocopy_user_copy_bytes_total{direction="in"}` leaves them out'
    )


def load_optional(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Load a JSON file that another target writes; ``(None, reason)`` when unusable."""
    if not path.exists():
        return None, "absent"
    try:
        with path.open() as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        return None, f"unreadable: {exc}"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


# -- formatting ----------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _percent(value: object) -> str:
    return f"{float(value):.0f}%" if isinstance(value, int | float) else "—"


def _ratio_text(value: object) -> str:
    return f"{float(value):.2f}x" if isinstance(value, int | float) else "—"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _case_order(labels: Iterable[str]) -> list[str]:
    def key(label: str) -> tuple[int, bool]:
        size, _, cold = label.partition("_")
        return parse_size(size), bool(cold)

    return sorted(set(labels), key=key)


# -- sections ------------------------------------------------------------------------------


@final
@dataclass
class _Context:
    out: Path
    measurements: dict[str, Any]
    suites: dict[str, Any]
    cpu: dict[tuple[str, str], CpuSummary]
    load: dict[str, Any] | None
    load_reason: str | None
    peers: dict[str, Any] | None
    peers_reason: str | None

    @property
    def strategies(self) -> list[str]:
        return list(self.measurements["strategies"])

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.measurements["meta"])

    @property
    def cpu_cases(self) -> list[str]:
        """The CPU phase's cases, in size order."""
        return _case_order(case for (_, case) in self.cpu)

    def cpu_cells(self) -> Iterator[tuple[str, str, CpuSummary]]:
        """``(case, strategy, summary)`` for every CPU-phase summary, in table order."""
        for case in self.cpu_cases:
            for strategy in self.strategies:
                summary = self.cpu.get((strategy, case))
                if summary is not None:
                    yield case, strategy, summary

    def benchmark(self, strategy: str, name: str) -> Any:
        suite = self.suites.get(strategy)
        if suite is None:
            return None
        try:
            return suite.get_benchmark(name)
        except KeyError:
            return None


def _environment(ctx: _Context) -> list[str]:
    meta = ctx.meta
    pyperf_meta: dict[str, Any] = {}
    for strategy in ctx.strategies:
        suite = ctx.suites.get(strategy)
        if suite is not None and suite.get_benchmarks():
            pyperf_meta = suite.get_benchmarks()[0].get_metadata()
            break
    pin = (
        f"server on CPU {meta['server_cpu']}, client on CPU {meta['client_cpu']}"
        if meta.get("server_cpu") is not None
        else "unpinned (fewer than two CPUs)"
    )
    eviction = {True: "verified (RWF_NOWAIT read fails after eviction)", False: "NOT verified"}
    verified = meta.get("eviction_verified")
    eviction_text = "not needed" if verified is None else eviction[bool(verified)]
    rows = [
        ("machine", f"{meta['hostname']}: {meta['cpu_model']}, {meta['cpu_count']} CPUs"),
        ("kernel", meta["kernel"]),
        ("Python", f"{meta['python_implementation']} {meta['python']}"),
        ("pyperf / trio / zerocopy", f"{meta['pyperf']} / {meta['trio']} / {meta['zerocopy']}"),
        ("commit", meta.get("git_commit") or "unknown"),
        ("pinning", pin),
        (
            "files",
            f"{meta['filesystem']} (cold-cache eviction {eviction_text})",
        ),
        (
            "tracers",
            f"strace: {meta.get('strace') or 'absent'}; bpftrace: "
            f"{meta.get('bpftrace') or 'absent'}; perf: {meta.get('perf') or 'absent'}",
        ),
        (
            "run",
            f"{meta['started']} → {meta.get('finished', '?')}, {meta.get('duration_s', '?')} s,"
            f" profile {meta['profile']}",
        ),
        (
            "load average",
            f"{meta['loadavg_start']} at start, {meta.get('loadavg_end', '?')} at end",
        ),
    ]
    if meta.get("metrics_port_not_announced"):
        rows.append(
            (
                "note",
                "the servers' ready line named no metrics port; it was found among their "
                "listening sockets",
            )
        )
    keys = ("cpu_freq", "cpu_config", "platform", "timer", "aslr", "python_executable")
    rows += [(f"pyperf {key}", str(pyperf_meta[key])) for key in keys if key in pyperf_meta]
    settings = meta.get("profile_settings", {})
    rows.append(("settings", ", ".join(f"{k}={v}" for k, v in settings.items())))
    return ["## Environment", "", *_table(("", ""), rows)]


def _headline_case(ctx: _Context) -> str | None:
    cases = {case for (_, case) in ctx.cpu if not case.endswith("_cold")}
    if "1MiB" in cases:
        return "1MiB"
    return _case_order(cases)[-1] if cases else None


def _headline(ctx: _Context) -> list[str]:
    lines = ["## Headline: copies and context switches", ""]
    case = _headline_case(ctx)
    if case is None:
        return [*lines, "No CPU phase was recorded.", ""]
    lines += [
        f"Per {case} request, hot page cache, from the server's own counters (cross-checked by "
        "bpftrace below) and /proc. On loopback the client is the NIC: it copies every byte "
        "once more, kernel → user, whatever the server does.",
        "",
    ]
    rows = []
    for strategy in ctx.strategies:
        summary = ctx.cpu.get((strategy, case))
        if summary is None:
            continue
        copies, switches = TEXTBOOK.get(strategy, ("—", "—"))
        calls = summary.syscalls_per_request
        rows.append(
            (
                strategy,
                copies,
                switches,
                f"{summary.copy_in + summary.copy_out:.2f} "
                f"(in {summary.copy_in:.2f}, out {summary.copy_out:.2f})",
                f"{calls:.1f} → {2 * calls:.0f} mode switches",
                f"{summary.voluntary + summary.involuntary:.2f} "
                f"({summary.voluntary:.2f} vol., {summary.involuntary:.2f} invol.)",
                f"{summary.cpu_per_gib:.3g} s",
            )
        )
    lines += _table(
        (
            "strategy",
            "textbook copies",
            "textbook context switches",
            "measured CPU copies by the server (bytes through user space per payload byte)",
            "measured syscalls per request",
            "measured scheduler context switches per request",
            "server CPU per GiB",
        ),
        rows,
    )
    rw = ctx.cpu.get(("readwrite", case))
    zc = ctx.cpu.get(("sendfile", case))
    if rw is not None and zc is not None:
        lines += [
            f"Loopback has no DMA, so the textbook's DMA copies do not exist here: the server "
            f"copies {rw.copy_in + rw.copy_out:.2f} bytes through user space per payload byte with "
            f"read/write and {zc.copy_in + zc.copy_out:.3f} with sendfile (the remainder is the "
            f"request head), and the receiving client copies once more in either case, so the "
            f"machine-wide count is 3 CPU copies against 1, not 4 against 2. The textbook's "
            f"context switches are user/kernel mode switches, two per syscall "
            f"({rw.syscalls_per_request:.1f} syscalls per request with read/write, "
            f"{zc.syscalls_per_request:.1f} with sendfile), while real scheduler switches "
            f"({rw.voluntary + rw.involuntary:.2f} and {zc.voluntary + zc.involuntary:.2f} per "
            f"request) come from the event loop blocking in epoll_wait between requests, not "
            f"from the number of syscalls.",
            "",
        ]
    return lines


def _targets_section(ctx: _Context, results: Sequence[TargetResult]) -> list[str]:
    lines = ["## Targets", ""]
    lines += _table(
        ("case", "target", "measured", "status"),
        ((r.case, r.target, r.measured, f"**{r.status}**") for r in results),
    )
    lines += [
        "Peer targets use `zerocopy-auto` (the default strategy) from `peers.json`; the other "
        "strategies are shown in brackets. The 256 MiB target uses this run's CPU phase "
        "(medians over repetitions).",
        "",
    ]
    if ctx.peers is not None:
        date = ctx.peers.get("meta", {}).get("date_utc")
        if date:
            lines += [
                f"peers.json was measured at {date} (`make bench-peers`), this suite at "
                f"{ctx.meta['started']}.",
                "",
            ]
        connections = ctx.peers.get("meta", {}).get("connections")
        if connections is not None and connections != 16:
            lines += [f"Note: peers.json was measured with {connections} connections, not 16.", ""]
    return lines


def _latency(ctx: _Context) -> list[str]:
    lines = ["## Latency", ""]
    cases = list(ctx.measurements["cases"]["latency"])
    rows = []
    chart: dict[str, dict[str, tuple[float, float, float]]] = {s: {} for s in ctx.strategies}
    for case in cases:
        base = ctx.benchmark("readwrite", f"latency_{case}")
        base_median = base.median() if base is not None else None
        row = [case]
        for strategy in ctx.strategies:
            bench = ctx.benchmark(strategy, f"latency_{case}")
            if bench is None:
                row.append("—")
                continue
            median = bench.median()
            p25, p75 = bench.percentile(25), bench.percentile(75)
            chart[strategy][case] = (p25, median, p75)
            ratio = (
                f" ({median / base_median:.2f}x)" if base_median and strategy != "readwrite" else ""
            )
            row.append(
                f"{_seconds(median)}{ratio} [{_seconds(p25)}-{_seconds(p75)}], "
                f"{bench.get_nvalue()} values"
            )
        rows.append(row)
    lines += [
        "Time per request to the last byte over one keep-alive loopback connection, pyperf "
        "median [p25-p75] over all worker processes of all rounds; ratios against readwrite. "
        "Compare with `python -m pyperf compare_to readwrite.json sendfile.json splice.json "
        "--table` in this directory.",
        "",
        *_table(("case", *ctx.strategies), rows),
        "![latency by file size](latency.png)",
        "",
    ]
    charts.latency_chart(ctx.out / "latency.png", cases, chart)
    return lines


def _cpu_section(ctx: _Context) -> list[str]:
    lines = ["## Server CPU", ""]
    rows = []
    chart: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in ctx.strategies}
    for case, strategy, summary in ctx.cpu_cells():
        base = ctx.cpu.get(("readwrite", case))
        chart[strategy][case] = (summary.user_per_gib, summary.sys_per_gib)
        ratio = (
            f"{summary.cpu_per_gib / base.cpu_per_gib:.2f}x"
            if base is not None and base.cpu_per_gib > 0
            else "—"
        )
        rows.append(
            (
                case,
                strategy,
                _seconds(summary.cpu_per_request),
                f"{summary.user_per_gib:.3g} + {summary.sys_per_gib:.3g} "
                f"= {summary.cpu_per_gib:.3g}",
                ratio,
                f"{summary.voluntary:.2f} / {summary.involuntary:.2f}",
                f"{summary.requests} in {summary.repetitions}",
            )
        )
    lines += [
        "Server CPU (user + sys, all threads) per request: median over repetitions of the "
        "schedstat run time; the user/sys split comes from /proc/PID/stat clock ticks summed "
        "over the repetitions. Also in the pyperf files as `cpu_<case>`.",
        "",
        *_table(
            (
                "case",
                "strategy",
                "CPU per request",
                "CPU s per GiB (user + sys)",
                "vs readwrite",
                "ctx switches per request (vol. / invol.)",
                "requests in windows",
            ),
            rows,
        ),
        "![server CPU per GiB](cpu_per_gib.png)",
        "",
    ]
    charts.cpu_chart(ctx.out / "cpu_per_gib.png", ctx.cpu_cases, chart)
    return lines


def _syscalls_section(ctx: _Context) -> list[str]:
    lines = ["## Syscalls and copies", ""]
    rows = []
    calls_chart: dict[str, dict[str, float]] = {s: {} for s in ctx.strategies}
    copies_chart: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in ctx.strategies}
    for case, strategy, summary in ctx.cpu_cells():
        calls_chart[strategy][case] = summary.syscalls_per_request
        copies_chart[strategy][case] = (summary.copy_in, summary.copy_out)
        kinds = ", ".join(f"{name} {count:.3g}" for name, count in sorted(summary.syscalls.items()))
        eagain = ", ".join(f"{name} {count:.3g}" for name, count in sorted(summary.eagain.items()))
        rows.append(
            (
                case,
                strategy,
                kinds or "0",
                eagain or "0",
                f"{summary.copy_in:.3f}",
                f"{summary.copy_out:.3f}",
                f"{summary.zero_copy:.3f}",
            )
        )
    lines += [
        "Per request, from the server's counters over the CPU phase (no tracer attached). "
        "Copies are bytes through user space per payload (file) byte; the request head the "
        'server receives counts in "in", the response head in "out". Zero is a measurement, '
        "not a placeholder.",
        "",
        *_table(
            (
                "case",
                "strategy",
                "syscalls per request (returned)",
                "EAGAIN per request",
                "in (kernel → user)",
                "out (user → kernel)",
                "zero-copy",
            ),
            rows,
        ),
        "![syscalls and copies](syscalls_copies.png)",
        "",
    ]
    charts.syscalls_chart(ctx.out / "syscalls_copies.png", ctx.cpu_cases, calls_chart, copies_chart)
    lines += _agreement(ctx)
    return lines


def _agreement(ctx: _Context) -> list[str]:
    lines = ["### Agreement: server counters, strace -c, bpftrace", ""]
    records = ctx.measurements.get("counts") or []
    skipped = ctx.measurements.get("skipped", {})
    for tool in ("strace", "bpftrace", "counts"):
        if tool in skipped:
            lines += [f"- {tool}: {skipped[tool]}"]
    if not records:
        return [*lines, "", "No traced window was recorded.", ""]
    rows = []
    notes: dict[str, list[str]] = {}
    compared = flagged = 0
    for record in records:
        window_rows = agreement_rows(record)
        window = f"{record['strategy']} {record['case']}"
        for note in alias_notes(window_rows):
            notes.setdefault(note, []).append(window)
        if (probe := probe_note(record)) is not None:
            notes.setdefault(probe, []).append(window)
        for row in window_rows:
            compared += 1
            flagged += not row.agree
            rows.append(
                (
                    record["strategy"],
                    record["case"],
                    str(record["requests"]),
                    row.quantity,
                    str(row.server),
                    "—" if row.strace is None else str(row.strace),
                    "—" if row.bpftrace is None else str(row.bpftrace),
                    "agree" if row.agree else f"**DISAGREE ({row.worst:.1%}, by {row.spread})**",
                )
            )
    lines += [
        "",
        f"Each window is traced by both tools at once and bracketed by two scrapes of the "
        f"server's counters, so all three describe the same requests. strace's calls include "
        f"failed calls, so they are compared with the server's returned + EAGAIN. "
        f"{compared} figures compared, **{flagged} differ by more than {TOLERANCE:.0%}**.",
        "",
        *_table(
            ("strategy", "case", "requests", "quantity", "server", "strace", "bpftrace", ""),
            rows,
        ),
    ]
    lines += [f"- {note} (windows: {', '.join(windows)})" for note, windows in notes.items()]
    return [*lines, ""]


def _perf_section(ctx: _Context) -> list[str]:
    lines = ["## Kernel copy routines (perf)", ""]
    records = ctx.measurements.get("perf") or []
    if not records:
        reason = ctx.measurements.get("skipped", {}).get("perf", "no recording")
        return [*lines, f"Not recorded: {reason}.", ""]
    rows = [
        (
            r["strategy"],
            r["case"],
            r["samples"],
            f"{r['copy_to_iter_pct']:.1f}%",
            f"{r['copy_from_iter_pct']:.1f}%",
            _percent(r.get("kernel_pct")),
            _percent(r.get("python_pct")),
        )
        for r in records
    ]
    lines += [
        "`perf record -e cpu-clock -g -p SERVER` during a sequential load; share of the "
        "server's samples in `_copy_to_iter` (kernel → user) and `_copy_from_iter` "
        "(user → kernel), callees included.",
        "",
        *_table(
            (
                "strategy",
                "case",
                "samples",
                "_copy_to_iter",
                "_copy_from_iter",
                "kernel (self)",
                "Python interpreter (self)",
            ),
            rows,
        ),
    ]
    return lines


def _load_section(ctx: _Context) -> list[str]:
    lines = ["## Load (wrk)", ""]
    if ctx.load is None:
        return [*lines, f"Not run (make bench-load): load.json {ctx.load_reason}.", ""]
    order = {strategy: i for i, strategy in enumerate(("auto", *ctx.strategies))}

    def run_key(run: Mapping[str, Any]) -> tuple[int, int, int]:
        size = run.get("size", "0B")
        try:
            size_bytes = parse_size(str(size))
        except ValueError:
            size_bytes = 0
        return size_bytes, order.get(run.get("strategy", ""), 99), int(run.get("connections", 0))

    runs = sorted(ctx.load.get("runs", []), key=run_key)
    rows = [
        (
            r.get("strategy", "?"),
            r.get("size", "?"),
            str(r.get("connections", "?")),
            _number(float(r.get("rps", 0.0))),
            f"{float(r.get('p50_ms', 0.0)):.3g}",
            f"{float(r.get('p99_ms', 0.0)):.3g}",
            f"{float(r.get('server_cpu_s', 0.0)):.3g}",
            _number(float(r.get("requests", 0))),
        )
        for r in runs
    ]
    lines += [
        "From `load.json` (`make bench-load`). wrk is a closed-loop generator: its latency "
        "percentiles suffer from coordinated omission and understate the tail.",
        "",
        *_table(
            (
                "strategy",
                "size",
                "connections",
                "req/s",
                "p50 ms",
                "p99 ms (coordinated omission)",
                "server CPU s",
                "requests",
            ),
            rows,
        ),
    ]
    knee = ctx.load.get("knee") or {}
    if knee:
        sizes = _case_order({size for per in knee.values() for size in per})
        lines += ["Knee (connections where throughput stops growing):", ""]
        lines += _table(
            ("strategy", *sizes),
            (
                (strategy, *("—" if per.get(s) is None else str(per.get(s)) for s in sizes))
                for strategy, per in knee.items()
            ),
        )
    return lines


def _peers_section(ctx: _Context) -> list[str]:
    lines = ["## Peers", ""]
    if ctx.peers is None:
        return [*lines, f"Not run (make bench-peers): peers.json {ctx.peers_reason}.", ""]
    peers = ctx.peers
    sizes = list(peers.get("sizes", []))
    medians: dict[tuple[str, str], dict[str, float]] = {}
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in peers.get("repetitions", []):
        grouped.setdefault((row["candidate"], row["size"]), []).append(row)
    for key, rows in grouped.items():
        medians[key] = {
            field_name: statistics.median(float(r[field_name]) for r in rows)
            for field_name in ("rps", "p99_ms", "server_cpu_per_req_us")
            if all(r.get(field_name) is not None for r in rows)
        }
    table_rows = []
    for candidate in peers.get("candidates", []):
        for size in sizes:
            m = medians.get((candidate, size))
            ratio = peers.get("ratios", {}).get(candidate, {}).get(size, {})
            if m is None and not ratio:
                continue
            table_rows.append(
                (
                    candidate,
                    size,
                    _number(m["rps"]) if m and "rps" in m else "—",
                    f"{m['p99_ms']:.3g}" if m and "p99_ms" in m else "—",
                    f"{m['server_cpu_per_req_us']:.3g}"
                    if m and "server_cpu_per_req_us" in m
                    else "—",
                    _ratio_text(ratio.get("rps_vs_nginx")),
                    _ratio_text(ratio.get("cpu_vs_nginx")),
                )
            )
    meta = peers.get("meta", {})
    lines += [
        "From `peers.json` (`make bench-peers`): medians over alternating repetitions; ratios "
        "are medians of per-repetition ratios against nginx's best configuration. "
        + _peers_settings(meta),
        "",
        *_table(
            (
                "candidate",
                "size",
                "req/s",
                "p99 ms",
                "server CPU µs/req",
                "req/s vs nginx",
                "CPU vs nginx",
            ),
            table_rows,
        ),
    ]
    for candidate, reason in (peers.get("skipped") or {}).items():
        lines.append(f"- {candidate}: skipped ({reason})")
    return [*lines, ""]


def _peers_settings(meta: Mapping[str, Any]) -> str:
    keys = ("connections", "duration_s", "repetitions_planned", "wrk_threads", "nginx", "date_utc")
    shown = [f"{key} {meta[key]}" for key in keys if key in meta]
    return f"Settings: {', '.join(shown)} (the rest in peers.json)." if shown else ""


def _profile_section(ctx: _Context, results: Sequence[TargetResult]) -> list[str]:
    lines = ["## Profile", ""]
    records = {(r["strategy"], r["case"]): r for r in ctx.measurements.get("perf") or []}
    missed = [r for r in results if r.status == NOT_MET]
    if missed:
        wanted: list[tuple[str, str]] = []
        for result in missed:
            wanted += PROFILES_FOR_TARGET.get(result.case, ())
        lines += [
            "Targets missed: " + "; ".join(f"{r.case}: {r.target}" for r in missed) + ". "
            "Top of the server's profile (self time) in the matching cases, recorded by this "
            "suite's perf phase (one sequential connection, not wrk's load):",
            "",
        ]
    else:
        wanted = [("readwrite", "4KiB"), ("sendfile", "1MiB")]
        lines += [
            "No target is missed on the data available. For reference, the top of the "
            "server's profile (self time) where `auto` sends by read/write (4 KiB) and by "
            "sendfile (1 MiB):",
            "",
        ]
    if not records:
        reason = ctx.measurements.get("skipped", {}).get("perf", "no recording")
        return [*lines, f"No profile recorded: {reason}.", ""]
    shown = 0
    for key in dict.fromkeys(wanted):
        record = records.get(key)
        if record is None:
            continue
        shown += 1
        shares = ""
        if "kernel_pct" in record:
            shares = (
                f"; kernel {record['kernel_pct']:.0f}%, Python interpreter "
                f"{record['python_pct']:.0f}%, other user space "
                f"{max(0.0, 100 - record['kernel_pct'] - record['python_pct']):.0f}%"
            )
        lines += [f"**{key[0]}, {key[1]}** ({record['samples']} samples{shares})", ""]
        lines += _table(
            ("self %", "object", "symbol"),
            (
                (f"{e['percent']:.2f}", e["dso"], f"`{e['symbol']}`")
                for e in record["top"][:PROFILE_ROWS]
            ),
        )
    if not shown:
        lines += ["No recording matches these cases.", ""]
    return lines


def _method(ctx: _Context) -> list[str]:
    settings = ctx.meta.get("profile_settings", {})
    return [
        "## Method",
        "",
        "- One zerocopy server per strategy (`python -m zerocopy serve DIR --port 0 "
        "--metrics-port 0 --strategy S`), each in its own process group, pinned to the server "
        "CPU; the client and the tools run on the other CPU.",
        f"- Latency: pyperf, {settings.get('rounds')} rounds x "
        f"{settings.get('processes_per_round')} worker processes per benchmark x "
        f"{settings.get('values')} values (+ {settings.get('warmups')} warmup); each round "
        "runs every strategy, in rotated order (A B C, B C A, …). Each value is the mean of "
        "`inner_loops` requests, calibrated once so a value lasts about "
        f"{settings.get('value_time_s')} s. Cold cases evict the file with "
        "`posix_fadvise(DONTNEED)` before each request, outside the timed region.",
        f"- CPU: {settings.get('cpu_repetitions')} repetitions, strategies rotated; each window "
        f"is at least {settings.get('cpu_window_s')} s of sequential requests; /proc read "
        "after the first scrape and before the second, so scrapes are not billed.",
        "- Counts: `strace -f -c -p` and bpftrace (`tracepoint:syscalls:sys_exit_*`, pid "
        "filter) over the same untimed window; the server's counters are scraped before and "
        "after it.",
        "- This machine is shared and noisy: read ratios between strategies measured in the "
        "same run, not absolute figures across runs.",
        "",
    ]


def write_report(out: Path) -> Path:
    """Render ``out/report.md`` and the charts from the files in ``out``.

    Raises:
        FileNotFoundError: ``measurements.json`` is missing (``bench.run`` has not run).
    """
    with (out / "measurements.json").open() as f:
        measurements = json.load(f)
    suites = {}
    for strategy in measurements["strategies"]:
        path = out / f"{strategy}.json"
        if path.exists():
            suites[strategy] = pyperf.BenchmarkSuite.load(str(path))
    load, load_reason = load_optional(out / "load.json")
    peers, peers_reason = load_optional(out / "peers.json")
    ctx = _Context(
        out=out,
        measurements=measurements,
        suites=suites,
        cpu=summarise_cpu(measurements["cpu_windows"]),
        load=load,
        load_reason=load_reason,
        peers=peers,
        peers_reason=peers_reason,
    )
    cpu_per_gib: dict[str, dict[str, float]] = {}
    for (strategy, case), summary in ctx.cpu.items():
        cpu_per_gib.setdefault(strategy, {})[case] = summary.cpu_per_gib
    results = evaluate_targets(peers, cpu_per_gib)
    meta = ctx.meta
    lines = [
        f"# zerocopy benchmark report ({meta['profile']} run)",
        "",
        f"Measured {meta['started']} on {meta['hostname']} (Linux {meta['kernel']}, Python "
        f"{meta['python']}), {meta.get('duration_s', '?')} s. Strategies: "
        f"{', '.join(ctx.strategies)}. Sizes: "
        f"{', '.join(_case_order(measurements['cases']['cpu']))}.",
        "",
        *_environment(ctx),
        *_headline(ctx),
        *_targets_section(ctx, results),
        *_latency(ctx),
        *_cpu_section(ctx),
        *_syscalls_section(ctx),
        *_perf_section(ctx),
        *_load_section(ctx),
        *_peers_section(ctx),
        *_profile_section(ctx, results),
        *_method(ctx),
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("results", type=Path, nargs="?", default=Path("bench/results"))
    args = parser.parse_args(argv)
    try:
        path = write_report(args.results)
    except FileNotFoundError as exc:
        print(f"bench.report: {exc}; run `make bench` first", file=sys.stderr)
        return 2
    print(f"bench.report: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
