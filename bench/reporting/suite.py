"""The sections of ``report.md`` that come from the strategy suite (``measurements.json`` and
the pyperf files), and its charts. Pure: reads records, writes Markdown lines and PNGs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final

from bench.harness.names import BASELINE_STRATEGY, PERF_PATHS
from bench.harness.stats import median_or_none, paired_ratio
from bench.reporting import charts
from bench.reporting.agreement import TOLERANCE, assess, unexplained
from bench.reporting.findings import SPLICE_FINDING
from bench.reporting.markdown import MISSING, case_order, number, percent, ratio, seconds, table
from bench.reporting.summary import summarise_cpu, summarise_whole_process
from bench.reporting.targets import NOT_MET

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from bench.harness.schema import Measurements, PerfRecord, TlsRecord
    from bench.reporting.summary import CpuSummary, WholeProcess
    from bench.reporting.targets import TargetResult

__all__ = ["UNEXPLAINED", "SuiteView", "sections"]

TEXTBOOK: Final = {
    "readwrite": ("4 (2 DMA + 2 CPU)", "4"),
    "sendfile": ("2 (DMA only, with SG-DMA)", "2"),
    "splice": ("— (not in the textbook figure)", "—"),
    "auto": ("as sendfile (auto sends every span by sendfile)", "2"),
}
"""The textbook figures (the classic "zero copy" articles): DMA + CPU copies and user/kernel
mode switches for one read()+write() or one sendfile() of a buffer."""
TLS_TEXTBOOK: Final = (
    "4 with read/write (the body is read into user space to be encrypted); 2 with kTLS "
    "and sendfile",
    "4",
)
"""User-space TLS is read/write plus encryption: the textbook's read()+write() figure."""
PROFILES_FOR_TARGET: Final = {
    "4 KiB, 1 worker, 16 connections": (("auto", "4KiB"), ("readwrite", "4KiB")),
    "4 KiB vs aiohttp": (("auto", "4KiB"),),
    "Many files (random GETs, 1-4 KiB)": (("auto", "4KiB"),),
    "1 MiB": (("auto", "1MiB"), ("sendfile", "1MiB")),
    "256 MiB": (("sendfile", "256MiB"), ("splice", "256MiB"), ("readwrite", "256MiB")),
}
"""Which profiles explain which target when it is missed."""
PROFILE_ROWS: Final = 10
SMALL_REQUEST: Final = ("auto", "4KiB")
"""The request the profile section always explains (the fast path's)."""
UNEXPLAINED: Final = "(unexplained)"
"""How the agreement table marks a disagreement no note explains; ``bench.check`` fails on it."""
WHOLE_NAMES: Final = 8
"""Syscall names shown per row of the whole-process table; the rest are summed as "others"."""


@final
class SuiteView:
    """The suite's records, summarised once for every section.

    Args:
        out: The results directory (where the charts go).
        measurements: ``measurements.json``.
        suites: pyperf's ``BenchmarkSuite`` per strategy (absent files left out).
    """

    def __init__(self, out: Path, measurements: Measurements, suites: dict[str, Any]) -> None:
        self.out = out
        self.measurements = measurements
        self.suites = suites
        self._cpu = summarise_cpu(measurements.cpu_windows)
        self._whole = summarise_whole_process(measurements.counts)

    @property
    def strategies(self) -> tuple[str, ...]:
        return self.measurements.strategies

    @property
    def servers(self) -> tuple[str, ...]:
        """Strategies, the nginx configurations of the CPU phase, then the TLS server."""
        tls = self.measurements.tls
        return (
            *self.measurements.strategies,
            *self.measurements.nginx,
            *((tls.server,) if tls is not None else ()),
        )

    def cpu(self) -> dict[tuple[str, str], CpuSummary]:
        """CPU-phase summaries by (server, case)."""
        return self._cpu

    def whole(self) -> dict[tuple[str, str], WholeProcess]:
        """Whole-process syscall summaries by (strategy, case)."""
        return self._whole

    def cpu_cases(self) -> list[str]:
        return case_order(self.measurements.cases.cpu)

    def cpu_cells(self) -> Iterator[tuple[str, str, CpuSummary]]:
        """``(case, server, summary)`` for every CPU-phase summary, in table order."""
        cpu = self.cpu()
        for case in self.cpu_cases():
            for server in self.servers:
                summary = cpu.get((server, case))
                if summary is not None:
                    yield case, server, summary

    def benchmark(self, strategy: str, name: str) -> Any:
        suite = self.suites.get(strategy)
        if suite is None:
            return None
        try:
            return suite.get_benchmark(name)
        except KeyError:
            return None

    def cpu_per_gib(self) -> dict[str, dict[str, float]]:
        result: dict[str, dict[str, float]] = {}
        for (server, case), summary in self.cpu().items():
            result.setdefault(server, {})[case] = summary.cpu_per_gib
        return result


def _environment(view: SuiteView) -> list[str]:
    meta = view.measurements.meta
    machine = meta.machine
    pyperf_meta: dict[str, Any] = {}
    for strategy in view.strategies:
        suite = view.suites.get(strategy)
        if suite is not None and suite.get_benchmarks():
            pyperf_meta = suite.get_benchmarks()[0].get_metadata()
            break
    eviction = {
        None: "not needed",
        True: "verified (RWF_NOWAIT read fails after eviction)",
        False: "NOT verified",
    }[meta.eviction_verified]
    tools = "; ".join(f"{tool}: {version or 'absent'}" for tool, version in machine.tools.items())
    packages = ", ".join(
        f"{name} {version}" for name, version in machine.packages.items() if version
    )
    rows = [
        ("machine", f"{machine.hostname}: {machine.cpu_model}, {machine.cpu_count} CPUs"),
        ("kernel", machine.kernel),
        ("Python", f"{machine.python_implementation} {machine.python}"),
        ("packages", packages),
        ("commit", machine.git_commit or "unknown"),
        ("pinning", meta.pinning.note),
        ("files", f"{meta.filesystem} (cold-cache eviction {eviction})"),
        ("tools", tools),
        (
            "run",
            f"{machine.date_utc} → {meta.finished}, {meta.duration_s:g} s, profile {meta.profile}",
        ),
        (
            "load average",
            f"{' '.join(map(str, machine.loadavg_start))} at start, "
            f"{' '.join(map(str, meta.loadavg_end))} at end",
        ),
    ]
    if meta.metrics_port_not_announced:
        rows.append(
            (
                "note",
                "the servers' ready line named no metrics port; it was found among their "
                "listening sockets",
            )
        )
    keys = ("cpu_freq", "cpu_config", "platform", "timer", "aslr", "python_executable")
    rows += [(f"pyperf {key}", str(pyperf_meta[key])) for key in keys if key in pyperf_meta]
    settings = meta.settings
    rows.append(
        (
            "settings",
            f"rounds={settings.rounds}, processes_per_round={settings.processes_per_round}, "
            f"values={settings.values}, warmups={settings.warmups}, "
            f"value_time_s={settings.value_time_s:g}, cpu_repetitions={settings.cpu_repetitions},"
            f" cpu_window_s={settings.cpu_window_s:g}",
        )
    )
    return ["## Environment", "", *table(("", ""), rows)]


def _headline_case(view: SuiteView) -> str | None:
    """1 MiB where it was both CPU-measured and traced, else the largest such hot case."""
    traced = {case for (_, case) in view.whole()}
    cases = [case for case in view.cpu_cases() if not case.endswith("_cold")]
    both = [case for case in cases if case in traced] or cases
    if "1MiB" in both:
        return "1MiB"
    return both[-1] if both else None


def _headline(view: SuiteView) -> list[str]:
    lines = ["## Headline: copies and context switches", ""]
    case = _headline_case(view)
    if case is None:
        return [*lines, "No CPU phase was recorded.", ""]
    cpu, whole = view.cpu(), view.whole()
    lines += [
        f"Per {case} request, hot page cache. Copies come from the server's own counters "
        "(cross-checked by bpftrace below); syscalls from both the server's counters (its "
        "transfer path) and an outside tracer that sees every syscall of the process "
        "(bpftrace, else strace). On loopback the client is the NIC: it copies every byte once "
        "more, kernel → user, whatever the server does.",
        "",
    ]
    rows = []
    tls = view.measurements.tls
    for strategy in (*view.strategies, *((tls.server,) if tls is not None else ())):
        summary = cpu.get((strategy, case))
        if summary is None:
            continue
        copies, switches = TEXTBOOK.get(strategy, TLS_TEXTBOOK)
        traced = whole.get((strategy, case))
        whole_text = (
            f"{traced.per_request:.1f} → {traced.mode_switches:.0f} mode switches"
            if traced is not None
            else f"not traced ({view.measurements.skipped.get('counts', 'no window')})"
        )
        label = strategy
        if tls is not None and strategy == tls.server:
            label = f"{tls.plain} over TLS ({tls.strategy})"
        rows.append(
            (
                label,
                copies,
                switches,
                f"{summary.copy_in + summary.copy_out:.2f} "
                f"(in {summary.copy_in:.2f}, out {summary.copy_out:.2f})",
                f"{summary.syscalls_per_request:.1f}",
                whole_text,
                f"{summary.voluntary + summary.involuntary:.2f} "
                f"({summary.voluntary:.2f} vol., {summary.involuntary:.2f} invol.)",
                f"{summary.cpu_per_gib:.3g} s",
            )
        )
    lines += table(
        (
            "strategy",
            "textbook copies",
            "textbook mode switches",
            "measured CPU copies by the server (bytes through user space per payload byte)",
            "transfer-path syscalls per request (server counters)",
            "all syscalls per request (outside tracer) → mode switches",
            "scheduler context switches per request",
            "server CPU per GiB",
        ),
        rows,
    )
    rw = cpu.get((BASELINE_STRATEGY, case))
    zc = cpu.get(("sendfile", case))
    rw_whole, zc_whole = whole.get((BASELINE_STRATEGY, case)), whole.get(("sendfile", case))
    if rw is not None and zc is not None:
        if rw_whole is not None and zc_whole is not None:
            switches = (
                f"The textbook's context switches are user/kernel mode switches, two per syscall. "
                f"Counting every syscall the process makes, not only the transfer path, a "
                f"request costs {rw_whole.per_request:.1f} syscalls with read/write and "
                f"{zc_whole.per_request:.1f} with sendfile, so {rw_whole.mode_switches:.0f} and "
                f"{zc_whole.mode_switches:.0f} mode switches, where the textbook counts 4 and 2: "
                f"a server also waits for the socket (`epoll_wait`), receives the request, "
                f"checks the file and probes the page cache."
            )
        else:
            switches = (
                "The textbook's context switches are user/kernel mode switches, two per "
                "syscall; no outside tracer ran here, so only the transfer path is counted: "
                f"{rw.syscalls_per_request:.1f} syscalls per request with read/write and "
                f"{zc.syscalls_per_request:.1f} with sendfile."
            )
        lines += [
            f"Loopback has no DMA, so the textbook's DMA copies do not exist here: the server "
            f"copies {rw.copy_in + rw.copy_out:.2f} bytes through user space per payload byte with "
            f"read/write and {zc.copy_in + zc.copy_out:.3f} with sendfile (the remainder is the "
            f"request head), and the receiving client copies once more in either case, so the "
            f"machine-wide count is 3 CPU copies against 1, not 4 against 2. {switches} Real "
            f"scheduler switches ({rw.voluntary + rw.involuntary:.2f} and "
            f"{zc.voluntary + zc.involuntary:.2f} per request) come from the event loop "
            f"blocking in epoll_wait between requests, not from the number of syscalls.",
            "",
        ]
    return lines


def _latency(view: SuiteView) -> list[str]:
    lines = ["## Latency", ""]
    cases = list(view.measurements.cases.latency)
    rows = []
    chart: dict[str, dict[str, tuple[float, float, float]]] = {s: {} for s in view.strategies}
    for case in cases:
        base = view.benchmark(BASELINE_STRATEGY, f"latency_{case}")
        base_median = base.median() if base is not None else None
        row = [case]
        for strategy in view.strategies:
            bench = view.benchmark(strategy, f"latency_{case}")
            if bench is None:
                row.append(MISSING)
                continue
            median = bench.median()
            p25, p75 = bench.percentile(25), bench.percentile(75)
            chart[strategy][case] = (p25, median, p75)
            ratio = (
                f" ({median / base_median:.2f}x)"
                if base_median and strategy != BASELINE_STRATEGY
                else ""
            )
            row.append(
                f"{seconds(median)}{ratio} [{seconds(p25)}-{seconds(p75)}], "
                f"{bench.get_nvalue()} values"
            )
        rows.append(row)
    files = " ".join(f"{strategy}.json" for strategy in view.strategies)
    lines += [
        "Time per request to the last byte over one keep-alive loopback connection, pyperf "
        "median [p25-p75] over all worker processes of all rounds; ratios against readwrite. "
        f"Compare with `python -m pyperf compare_to {files} --table` in this directory.",
        "",
        *table(("case", *view.strategies), rows),
        "![latency by file size](latency.png)",
        "",
    ]
    charts.latency_chart(view.out / "latency.png", cases, chart)
    return lines


def _cpu_section(view: SuiteView) -> list[str]:
    lines = ["## Server CPU", ""]
    rows = []
    cpu = view.cpu()
    chart: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in view.servers}
    for case, server, summary in view.cpu_cells():
        base = cpu.get((BASELINE_STRATEGY, case))
        chart[server][case] = (summary.user_per_gib, summary.sys_per_gib)
        ratio = (
            f"{summary.cpu_per_gib / base.cpu_per_gib:.2f}x"
            if base is not None and base.cpu_per_gib > 0
            else MISSING
        )
        rows.append(
            (
                case,
                server,
                seconds(summary.cpu_per_request),
                f"{summary.user_per_gib:.3g} + {summary.sys_per_gib:.3g} "
                f"= {summary.cpu_per_gib:.3g}",
                ratio,
                f"{summary.voluntary:.2f} / {summary.involuntary:.2f}",
                f"{summary.requests} in {summary.repetitions}",
            )
        )
    nginx = view.measurements.nginx
    reference = (
        f" nginx ({', '.join(nginx)}: `sendfile on` and `off`, one worker, pinned like the "
        "strategies) takes its turn in the same rotation, as the reference; its CPU is its "
        "master's and worker's together."
        if nginx
        else f" nginx: {view.measurements.skipped.get('nginx', 'not measured')}."
    )
    lines += [
        "Server CPU (user + sys, all threads) per request: median over repetitions of the "
        "schedstat run time; the user/sys split comes from /proc/PID/stat clock ticks summed "
        "over the repetitions. Also in the pyperf files as `cpu_<case>`." + reference,
        "",
        *table(
            (
                "case",
                "server",
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
    charts.cpu_chart(view.out / "cpu_per_gib.png", view.cpu_cases(), chart)
    return lines


def _syscalls_section(view: SuiteView) -> list[str]:
    lines = ["## Syscalls and copies", ""]
    rows = []
    calls_chart: dict[str, dict[str, float]] = {s: {} for s in view.strategies}
    copies_chart: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in view.strategies}
    for case, server, summary in view.cpu_cells():
        if not summary.counted:
            continue
        calls_chart.setdefault(server, {})[case] = summary.syscalls_per_request
        copies_chart.setdefault(server, {})[case] = (summary.copy_in, summary.copy_out)
        kinds = ", ".join(f"{name} {count:.3g}" for name, count in sorted(summary.syscalls.items()))
        eagain = ", ".join(f"{name} {count:.3g}" for name, count in sorted(summary.eagain.items()))
        rows.append(
            (
                case,
                server,
                kinds or "0",
                eagain or "0",
                f"{summary.copy_in:.3f}",
                f"{summary.copy_out:.3f}",
                f"{summary.zero_copy:.3f}",
            )
        )
    lines += [
        "### Transfer path (the server's counters)",
        "",
        "Per request, from the server's counters over the CPU phase (no tracer attached): the "
        "calls that move the request and the response. Copies are bytes through user space per "
        'payload (file) byte; the request head the server receives counts in "in", the response '
        'head in "out". Zero is a measurement, not a placeholder.',
        "",
        *table(
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
    charts.syscalls_chart(
        view.out / "syscalls_copies.png", view.cpu_cases(), calls_chart, copies_chart
    )
    lines += _whole_process(view)
    lines += _agreement(view)
    return lines


def _whole_process(view: SuiteView) -> list[str]:
    lines = ["### The whole process (outside tracer)", ""]
    whole = view.whole()
    if not whole:
        reason = view.measurements.skipped.get("counts") or "no traced window"
        return [*lines, f"Not traced: {reason}.", ""]
    rows = []
    for case in case_order(case for (_, case) in whole):
        for strategy in view.strategies:
            traced = whole.get((strategy, case))
            if traced is None:
                continue
            names = list(traced.by_name.items())
            shown = ", ".join(f"{name} {count:.3g}" for name, count in names[:WHOLE_NAMES])
            rest = sum(count for _, count in names[WHOLE_NAMES:])
            if rest:
                shown += f", others {rest:.3g}"
            rows.append(
                (
                    case,
                    strategy,
                    traced.source,
                    str(traced.requests),
                    f"{traced.transfer_path:.1f}",
                    f"**{traced.per_request:.1f}**",
                    shown,
                )
            )
    lines += [
        "Every syscall of the server's process (all threads) per request, over the traced "
        "windows: bpftrace on `raw_syscalls:sys_exit` filtered on the server's pid, counting "
        "only once the tracer had confirmed it was attached (strace's `-c` table where bpftrace "
        "did not run). Beside it, the transfer path the server counts itself: the difference is "
        "the event loop (`epoll_wait`, `epoll_ctl`), the file's open path (`openat`, "
        "`newfstatat`, `readlink`, `close`), the page-cache probes the transfer path counts "
        "too, and anything else the process does per request. Each window is one keep-alive "
        "connection, so its accept and close are spread over its requests.",
        "",
        *table(
            (
                "case",
                "strategy",
                "source",
                "requests",
                "transfer path per request",
                "all syscalls per request",
                "by name, per request",
            ),
            rows,
        ),
    ]
    return lines


def _agreement(view: SuiteView) -> list[str]:
    lines = ["### Agreement: server counters, strace -c, bpftrace", ""]
    measurements = view.measurements
    lines += [
        f"- {tool}: {measurements.skipped[tool]}"
        for tool in ("strace", "bpftrace", "syscall names", "counts")
        if tool in measurements.skipped
    ]
    losses = measurements.tracer_losses
    lines += [
        "",
        f"Tracer attach: {len(losses)} window(s) thrown away and run again because a tracer "
        "saw none of the server's syscalls (it had not attached); such a window is never "
        "compared." + ("" if not losses else " They were:"),
        "",
    ]
    lines += [
        f"- {loss.strategy} {loss.case}, attempt {loss.attempt}: {loss.tracer} {loss.reason}"
        for loss in losses
    ]
    if losses:
        lines.append("")
    if not measurements.counts:
        return [*lines, "No traced window was recorded.", ""]
    rows = []
    notes: dict[str, list[str]] = {}
    compared = flagged = open_ = 0
    for window in measurements.counts:
        assessed = assess(window)
        open_ += len(unexplained(assessed))
        for row in assessed:
            compared += 1
            flagged += not row.agree
            if row.note is not None:
                notes.setdefault(row.note, []).append(f"{window.strategy} {window.case}")
            verdict = "agree"
            if not row.agree:
                verdict = f"**DISAGREE ({row.worst:.1%}, by {row.spread})**"
                verdict += " (explained below)" if row.note else f" {UNEXPLAINED}"
            rows.append(
                (
                    window.strategy,
                    window.case,
                    str(window.requests),
                    row.quantity,
                    MISSING if row.server is None else str(row.server),
                    MISSING if row.strace is None else str(row.strace),
                    MISSING if row.bpftrace is None else str(row.bpftrace),
                    verdict,
                )
            )
    lines += [
        "Each window is traced by both tools at once and bracketed by two scrapes of the "
        "server's counters, so all three describe the same requests. strace's calls include "
        "failed calls, so they are compared with the server's returned + EAGAIN; the last row "
        "of each window compares the two tracers' totals for the whole process. "
        f"{compared} figures compared, **{flagged} differ by more than {TOLERANCE:.0%}, "
        f"{open_} of them unexplained** (`make bench-check` fails on any unexplained one).",
        "",
        *table(
            ("strategy", "case", "requests", "quantity", "server", "strace", "bpftrace", ""),
            rows,
        ),
    ]
    lines += [f"- {note} (windows: {', '.join(dict.fromkeys(ws))})" for note, ws in notes.items()]
    return [*lines, ""]


def _perf_section(view: SuiteView) -> list[str]:
    lines = ["## Kernel copy routines (perf)", ""]
    records = view.measurements.perf
    if not records:
        reason = view.measurements.skipped.get("perf", "no recording")
        return [*lines, f"Not recorded: {reason}.", ""]
    rows = [
        (
            r.strategy,
            r.case,
            r.samples,
            f"{r.copy_to_iter_pct:.1f}%",
            f"{r.copy_from_iter_pct:.1f}%",
            percent(r.kernel_pct),
            percent(r.python_pct),
        )
        for r in records
    ]
    lines += [
        "`perf record -e cpu-clock -g -p SERVER` during a sequential load; share of the "
        "server's samples in `_copy_to_iter` (kernel → user) and `_copy_from_iter` "
        "(user → kernel), callees included.",
        "",
        *table(
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


def _splice_section(view: SuiteView) -> list[str]:
    """splice against sendfile at 256 MiB: this run's figures, then the investigation."""
    lines = ["## splice against sendfile (256 MiB)", ""]
    cpu = view.cpu()
    rw = cpu.get((BASELINE_STRATEGY, "256MiB"))
    measured = []
    for strategy in ("sendfile", "splice"):
        summary = cpu.get((strategy, "256MiB"))
        if summary is None or rw is None or rw.cpu_per_gib <= 0:
            continue
        calls = ", ".join(f"{name} {count:.0f}" for name, count in sorted(summary.syscalls.items()))
        measured.append(
            (
                strategy,
                f"{summary.cpu_per_gib:.3g} s",
                f"{summary.cpu_per_gib / rw.cpu_per_gib:.2f}x",
                calls,
            )
        )
    if measured:
        lines += [
            "This run, from the CPU phase (medians over its alternated repetitions):",
            "",
            *table(
                ("strategy", "CPU per GiB", "vs readwrite", "syscalls per 256 MiB request"),
                measured,
            ),
        ]
    else:
        lines += ["This run has no 256 MiB CPU phase (the quick profile stops at 1 MiB).", ""]
    records = {(r.strategy, r.case): r for r in view.measurements.perf}
    profiled = [
        records[s, "256MiB"]
        for s in ("sendfile", "splice", BASELINE_STRATEGY)
        if (s, "256MiB") in records
    ]
    if profiled:
        lines += _paths_table(profiled)
    lines += [*SPLICE_FINDING, ""]
    return lines


def _paths_table(records: Sequence[PerfRecord]) -> list[str]:
    rows = [
        (f"`{name}`: {label}", *(f"{record.paths.get(name, 0.0):.1f}%" for record in records))
        for name, label in PERF_PATHS.items()
    ]
    rows.append(("Python interpreter (self)", *(f"{r.python_pct:.1f}%" for r in records)))
    return [
        "Where each strategy's server CPU goes at 256 MiB, in this run's perf recordings "
        "(percent of samples, callees included, so the rows overlap):",
        "",
        *table(("kernel path", *(r.strategy for r in records)), rows),
    ]


def _profile_section(view: SuiteView, results: Sequence[TargetResult]) -> list[str]:
    lines = ["## Profile", "", *_request_profile(view)]
    records = {(r.strategy, r.case): r for r in view.measurements.perf}
    missed = [r for r in results if r.status == NOT_MET]
    wanted: list[tuple[str, str]] = []
    for result in missed:
        wanted += PROFILES_FOR_TARGET.get(result.case, ())
    wanted = [key for key in dict.fromkeys(wanted) if key != SMALL_REQUEST]
    if missed:
        lines += [
            "Targets missed: " + "; ".join(f"{r.case}: {r.target}" for r in missed) + ". "
            "Top of the server's profile (self time) in the matching cases, recorded by this "
            "suite's perf phase (one sequential connection, not wrk's load):",
            "",
        ]
    else:
        lines += ["No target is missed on the data available.", ""]
    if not records:
        reason = view.measurements.skipped.get("perf", "no recording")
        return [*lines, f"No perf profile recorded: {reason}.", ""]
    for key in wanted:
        if key in records:
            lines += _perf_top(records[key])
    return lines


def _perf_top(record: PerfRecord) -> list[str]:
    other = max(0.0, 100 - record.kernel_pct - record.python_pct)
    return [
        f"**{record.strategy}, {record.case}** ({record.samples} samples; kernel "
        f"{record.kernel_pct:.0f}%, Python interpreter {record.python_pct:.0f}%, other user space "
        f"{other:.0f}%)",
        "",
        *table(
            ("self %", "object", "symbol"),
            ((f"{e.percent:.2f}", e.dso, f"`{e.symbol}`") for e in record.top[:PROFILE_ROWS]),
        ),
    ]


def _request_profile(view: SuiteView) -> list[str]:
    """Where a 4 KiB request of the default strategy goes: perf for kernel against
    interpreter, py-spy for which Python."""
    strategy, case = SMALL_REQUEST
    lines = [f"### Where a {case} request of `{strategy}` goes", ""]
    perf_record = next(
        (r for r in view.measurements.perf if (r.strategy, r.case) == SMALL_REQUEST), None
    )
    if perf_record is None:
        reason = view.measurements.skipped.get("perf", "no recording")
        lines += [f"perf: not recorded ({reason}).", ""]
    else:
        lines += [
            "perf (`perf record -e cpu-clock -g`, one sequential keep-alive connection):",
            "",
            *_perf_top(perf_record),
        ]
    spy = next((r for r in view.measurements.pyspy if (r.strategy, r.case) == SMALL_REQUEST), None)
    if spy is None:
        reason = view.measurements.skipped.get("py-spy", "no recording")
        return [*lines, f"py-spy: not recorded ({reason}).", ""]
    lines += [
        f"py-spy (`py-spy record --nonblocking`, {spy.samples:,} samples of a working thread "
        f"over {spy.requests:,} requests on {spy.connections} concurrent keep-alive "
        "connections from the harness's client), by self time. The innermost Python frame of "
        "a sample carries the C code it called: the socket syscalls land on "
        "`zerocopy/transfer` (`sockio.py`) and on the connection loop's receive, httptools' "
        "parser on `zerocopy/http`; a sample in a trio checkpoint is the scheduler's pass, and "
        "one in `epoll_wait` (`get_events`) is the server waiting for the client. Lines are "
        "approximate: `--nonblocking` reads the frames while they change, so part of a "
        "call's time can land on the line after it.",
        "",
        *table(
            ("component", "share of samples"),
            ((name, f"{share:.1f}%") for name, share in spy.components.items()),
        ),
        *table(
            ("self %", "file", "function:line"),
            ((f"{e.percent:.1f}", e.dso, f"`{e.symbol}`") for e in spy.top[:PROFILE_ROWS]),
        ),
    ]
    return lines


def _tls_cells(view: SuiteView, tls: TlsRecord) -> list[tuple[str, ...]]:
    """Per TLS case: the plain server's row, the TLS server's, and TLS / plain per repetition."""
    cpu = view.cpu()
    per_rep: dict[tuple[str, str], dict[int, float | None]] = {}
    for window in view.measurements.cpu_windows:
        if window.server in (tls.plain, tls.server) and window.requests:
            key = (window.server, window.case)
            per_rep.setdefault(key, {})[window.rep] = window.cpu_s / window.requests
    rows: list[tuple[str, ...]] = []
    for case in case_order(tls.cases):
        plain, secure = cpu.get((tls.plain, case)), cpu.get((tls.server, case))
        if plain is None or secure is None:
            continue
        paired = paired_ratio(per_rep.get((tls.server, case), {}), per_rep[tls.plain, case])
        for name, summary in ((f"{tls.plain} (plain)", plain), (f"{tls.plain} over TLS", secure)):
            is_tls = summary is secure
            rows.append(
                (
                    case,
                    name,
                    seconds(summary.cpu_per_request),
                    f"{summary.cpu_per_gib:.3g} s",
                    f"{summary.copy_in + summary.copy_out:.3f} "
                    f"(in {summary.copy_in:.3f}, out {summary.copy_out:.3f})",
                    f"{summary.zero_copy:.3f}",
                    f"{summary.syscalls_per_request:.1f}",
                    ratio(paired) if is_tls else "1",
                )
            )
    return rows


def _tls_section(view: SuiteView) -> list[str]:
    lines = ["## TLS against plain", ""]
    tls = view.measurements.tls
    if tls is None:
        reason = view.measurements.skipped.get("tls", "no TLS server ran")
        return [*lines, f"Not measured: {reason}.", ""]
    lines += [
        f"The default strategy with `--tls-cert/--tls-key` ({tls.certificate}) against the same "
        f"server without TLS, in the same rotation of the CPU phase, on the same files. The "
        f"TLS server announced `{tls.strategy}`"
        + (
            ": without kTLS every body byte is read into user space, encrypted by OpenSSL and "
            "written out, so sendfile and splice cannot be used."
            if tls.strategy != "ktls-sendfile"
            else ": kTLS is active, so bodies go by sendfile on the kTLS socket."
        )
        + " Bytes through user space per payload byte come from the server's own counters "
        "(plaintext read and handed to OpenSSL; the ciphertext's record overhead is not "
        "counted). The client decrypts on its own CPU. TLS / plain is server CPU per request, "
        "per repetition, median.",
        "",
        *table(
            (
                "case",
                "server",
                "CPU per request",
                "CPU per GiB",
                "bytes through user space per payload byte",
                "zero-copy per payload byte",
                "transfer-path syscalls per request",
                "TLS / plain CPU",
            ),
            _tls_cells(view, tls),
        ),
    ]
    runs = tls.handshakes
    if not runs:
        return [*lines, f"Handshakes: {tls.handshake_tool}.", ""]
    achieved = median_or_none(run.per_second for run in runs)
    per = median_or_none(run.cpu_per_handshake_s for run in runs)
    rows = [
        (
            str(run.rep + 1),
            f"{run.handshakes:,}",
            f"{run.seconds:.1f} s",
            f"{run.per_second:,.0f}",
            seconds(run.cpu_per_handshake_s),
            number(1 / run.cpu_per_handshake_s) if run.cpu_per_handshake_s else MISSING,
        )
        for run in runs
    ]
    lines += [
        f"**Handshakes**: TLS 1.3, full handshakes, no resumption ({tls.handshake_tool}). "
        f"Median: {number(achieved)} handshakes/s achieved, {seconds(per)} of server CPU per "
        f"handshake, so one worker at 100 % of a CPU would complete "
        f"{number(1 / per) if per else MISSING} per second.",
        "",
        *table(
            (
                "repetition",
                "handshakes",
                "window",
                "achieved per s",
                "server CPU per handshake",
                "one worker at 100 % CPU, per s",
            ),
            rows,
        ),
    ]
    return lines


def _method(view: SuiteView) -> list[str]:
    settings = view.measurements.meta.settings
    return [
        "## Method",
        "",
        "- One zerocopy server per strategy (`python -m zerocopy serve DIR --port 0 "
        "--metrics-port 0 --strategy S`), each in its own process group, pinned to the server "
        "CPU; the client and the tools run on the other CPU. nginx, where installed, serves "
        "the same directory in the CPU phase.",
        f"- Latency: pyperf, {settings.rounds} rounds x {settings.processes_per_round} worker "
        f"processes per benchmark x {settings.values} values (+ {settings.warmups} warmup); "
        "each round runs every strategy, in rotated order (A B C D, B C D A, …). Each value is "
        "the mean of `inner_loops` requests, calibrated once so a value lasts about "
        f"{settings.value_time_s:g} s. Cold cases evict the file with "
        "`posix_fadvise(DONTNEED)` before each request, outside the timed region.",
        f"- CPU: {settings.cpu_repetitions} repetitions, servers rotated; each window is at "
        f"least {settings.cpu_window_s:g} s of sequential requests; /proc read after the first "
        "scrape and before the second, so scrapes are not billed.",
        "- Counts: `strace -f -c -p` and bpftrace (`tracepoint:raw_syscalls:sys_exit`, pid "
        "filter, armed by a sentinel syscall once attached) over the same untimed window; the "
        "server's counters are scraped before and after it. A window in which a tracer saw "
        "nothing is run again, and listed.",
        "- This machine is shared and noisy: read ratios between servers measured in the same "
        "run, not absolute figures across runs.",
        "",
    ]


def sections(view: SuiteView, results: Sequence[TargetResult]) -> dict[str, list[str]]:
    """Every suite section, by heading (``## Latency``), in report order."""
    parts = [
        _environment(view),
        _headline(view),
        _latency(view),
        _cpu_section(view),
        _syscalls_section(view),
        _perf_section(view),
        _splice_section(view),
        _tls_section(view),
        _profile_section(view, results),
        _method(view),
    ]
    return {part[0]: part for part in parts}
