"""The reporting stack (bench/reporting/): agreement, summaries, targets, the report, the
check, and the Markdown of the wrk and hardening benchmarks.

Nothing here measures or starts a process: the inputs are synthetic records, written as the
benchmarks write them. The check must fail on every way a results directory can drift: a
missing artefact, a renamed key, an unexplained disagreement between the server and the
tracers.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import pyperf
import pytest

from bench.hardening.listing import listing_medians
from bench.hardening.tar import tar_medians
from bench.harness import schema
from bench.harness.names import STRATEGIES
from bench.harness.results import write_record
from bench.harness.schema import (
    BpfCounts,
    CounterDelta,
    CountWindow,
    CpuWindow,
    Measurements,
    StraceCounts,
)
from bench.reporting import check as bench_check
from bench.reporting.agreement import (
    ALIAS_NOTE,
    PROBE_NOTE,
    TOLERANCE,
    WHOLE_PROCESS,
    AgreementRow,
    assess,
    compare,
    relative_difference,
    unexplained,
)
from bench.reporting.hardening import render
from bench.reporting.load import peers_summary, sweep_summary
from bench.reporting.report import CHARTS, SECTIONS, write_report
from bench.reporting.summary import summarise_cpu, summarise_whole_process
from bench.reporting.targets import MET, NOT_MET, NOT_RUN, evaluate_targets

MiB = 1 << 20


def _delta(**changes) -> CounterDelta:
    base = CounterDelta({}, {}, 0, 0, 0, 0, {"200": 10}, 1)
    return dataclasses.replace(base, **changes)


# -- agreement -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(0, 0, 0.0), (100, 100, 0.0), (100, 99, 0.01), (0, 5, 1.0), (99, 100, 0.01)],
)
def test_relative_difference(a, b, expected):
    assert relative_difference(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("server", "outside", "agree"),
    [(100, 100, True), (100, 99, True), (1000, 989, False), (0, 0, True), (0, 1, False)],
)
def test_agreement_flags_differences_over_one_percent(server, outside, agree):
    assert TOLERANCE == 0.01
    assert AgreementRow("x", server, outside, None).agree is agree


def test_agreement_uses_the_worst_pair_and_ignores_absent_sources():
    row = AgreementRow("x", 100, 100, 90)
    assert not row.agree
    assert row.worst == pytest.approx(0.1)
    assert row.spread == 10
    assert AgreementRow(WHOLE_PROCESS, None, 1000, 995).agree


def test_compare_lines_up_sources_and_counts_eagain_as_strace_does():
    server = _delta(
        syscalls={"recvfrom": 51, "sendto": 50, "sendfile": 50},
        eagain={"recvfrom": 4},
        copy_in=1950,
        copy_out=12100,
    )
    strace = StraceCounts(
        calls={"recvfrom": 55, "sendto": 50, "sendfile": 50, "epoll_wait": 90},
        errors={"recvfrom": 4},
    )
    bpf = BpfCounts(
        calls={"recvfrom": 55, "sendto": 50, "sendfile": 50, "epoll_wait": 90},
        returned={"recvfrom": 51, "sendto": 50, "sendfile": 50},
        eagain={"recvfrom": 4},
        bytes_in={"recvfrom": 1950},
        bytes_out={"sendto": 12100},
    )
    rows = {row.quantity: row for row in compare(server, strace, bpf)}
    assert rows["recvfrom calls (returned + EAGAIN)"] == AgreementRow(
        "recvfrom calls (returned + EAGAIN)", 55, 55, 55
    )
    assert rows["recvfrom EAGAIN"].bpftrace == 4
    assert rows["bytes kernel → user"] == AgreementRow("bytes kernel → user", 1950, None, 1950)
    assert rows[WHOLE_PROCESS] == AgreementRow(WHOLE_PROCESS, None, 245, 245)
    assert all(row.agree for row in rows.values())
    assert not any("splice" in q or "epoll" in q for q in rows)


def test_compare_without_tracers_has_only_server_figures():
    rows = compare(_delta(syscalls={"sendto": 2}), None, None)
    assert [(r.quantity, r.strace, r.bpftrace) for r in rows] == [
        ("sendto calls (returned + EAGAIN)", None, None),
        ("bytes kernel → user", None, None),
        ("bytes user → kernel", None, None),
    ]


def _window(server: CounterDelta, strace=None, bpf=None, strategy="sendfile") -> CountWindow:
    return CountWindow(strategy, "64KiB", 65536, 128, 1, server, strace, bpf)


def test_a_misnamed_counter_is_flagged_and_explained():
    window = _window(
        _delta(syscalls={"preadv": 128, "sendmsg": 128}),
        StraceCounts(calls={"preadv2": 128, "sendmsg": 128}, errors={}),
    )
    rows = assess(window)
    flagged = [row for row in rows if not row.agree]
    assert [row.quantity for row in flagged] == [
        "preadv calls (returned + EAGAIN)",
        "preadv2 calls (returned + EAGAIN)",
    ]
    assert all(row.note == ALIAS_NOTE for row in flagged)
    assert unexplained(rows) == []


def test_no_alias_note_when_the_pair_disagrees_too():
    window = _window(_delta(syscalls={"preadv": 100}), StraceCounts({"preadv2": 50}, {}))
    assert len(unexplained(assess(window))) == 2


def _bpf(bytes_in: int) -> BpfCounts:
    return BpfCounts({"recvfrom": 1}, {}, {}, {"recvfrom": bytes_in}, {})


@pytest.mark.parametrize(
    ("copy_in", "bytes_in", "zero_copy", "explained"),
    [(2496, 2624, 65536, True), (2496, 2625, 65536, False), (2496, 2624, 0, False)],
)
def test_the_probe_note_explains_a_gap_of_one_byte_per_probe(
    copy_in, bytes_in, zero_copy, explained
):
    window = _window(
        _delta(syscalls={"preadv2": 128}, copy_in=copy_in, zero_copy=zero_copy), bpf=_bpf(bytes_in)
    )
    row = next(r for r in assess(window) if r.quantity == "bytes kernel → user")
    assert not row.agree
    assert (row.note == PROBE_NOTE) is explained
    assert (row in unexplained(assess(window))) is not explained


# -- summaries -----------------------------------------------------------------------------------


def _cpu(server: str, case: str, size: int, rep: int, cpu_s: float, **counters) -> CpuWindow:
    delta = None
    if not server.startswith("nginx"):
        delta = _delta(body=size * 10, **counters)
    return CpuWindow(
        server=server,
        case=case,
        size=size,
        cold=False,
        rep=rep,
        date="2026-01-01T00:00:00+00:00",
        requests=10,
        elapsed_s=0.5,
        utime_s=0.03,
        stime_s=0.01,
        runtime_s=cpu_s,
        cpu_s=cpu_s,
        voluntary=10,
        involuntary=2,
        counters=delta,
    )


def test_cpu_summary_takes_medians_and_splits_by_ticks():
    windows = [
        _cpu("readwrite", "1MiB", MiB, 0, 0.010, copy_in=MiB * 10, copy_out=MiB * 10),
        _cpu("readwrite", "1MiB", MiB, 1, 0.030, copy_in=MiB * 10, copy_out=MiB * 10),
        _cpu("readwrite", "1MiB", MiB, 2, 0.020, copy_in=MiB * 10, copy_out=MiB * 10,
             syscalls={"sendmsg": 40}),
        _cpu("nginx-sendfile", "1MiB", MiB, 0, 0.005),
    ]  # fmt: skip
    summary = summarise_cpu(windows)
    rw = summary["readwrite", "1MiB"]
    assert rw.cpu_per_request == pytest.approx(0.002)
    assert rw.cpu_per_gib == pytest.approx(2.048)
    assert rw.user_share == pytest.approx(0.75)
    assert (rw.copy_in, rw.copy_out, rw.zero_copy) == (1.0, 1.0, 0.0)
    assert rw.syscalls == {"sendmsg": pytest.approx(40 / 30)}
    assert rw.counted
    nginx = summary["nginx-sendfile", "1MiB"]
    assert not nginx.counted
    assert nginx.cpu_per_gib == pytest.approx(0.512)


def test_whole_process_prefers_bpftrace_and_counts_per_request():
    bpf = BpfCounts({"epoll_wait": 300, "sendfile": 100, "recvfrom": 101}, {}, {}, {}, {})
    strace = StraceCounts({"epoll_wait": 1}, {})
    windows = [
        CountWindow("auto", "4KiB", 4096, 100, 1, _delta(syscalls={"sendfile": 100}), strace, bpf),
        CountWindow("readwrite", "4KiB", 4096, 100, 2, _delta(), strace, None),
        CountWindow("splice", "4KiB", 4096, 100, 1, _delta(), None, None),
    ]
    whole = summarise_whole_process(windows)
    auto = whole["auto", "4KiB"]
    assert (auto.source, auto.per_request, auto.transfer_path) == ("bpftrace", 5.01, 1.0)
    assert list(auto.by_name) == ["epoll_wait", "recvfrom", "sendfile"]
    assert auto.mode_switches == pytest.approx(10.02)
    assert whole["readwrite", "4KiB"].source == "strace"
    assert ("splice", "4KiB") not in whole


# -- targets -------------------------------------------------------------------------------------


def _figures(rps: float, cpu: float) -> schema.WrkFigures:
    return schema.WrkFigures(
        rps=rps, p50_ms=1.0, p75_ms=None, p90_ms=None, p99_ms=2.0, latency_avg_ms=None,
        latency_max_ms=None, duration_s=5.0, bytes_read=0, requests=int(rps * 5),
        socket_errors=schema.SocketErrors(0, 0, 0, 0), non_2xx_3xx=0, errors=0,
        server_cpu_s=1.0, server_cpu_per_req_us=cpu, server_cpu_irq_per_req_us=None,
        server_involuntary_switches=0, pinned_cpu_other_pct=3.0, pinned_cpu_steal_pct=None,
        pinned_cpu_irq_pct=None,
    )  # fmt: skip


def _machine() -> schema.Machine:
    return schema.Machine(
        date_utc="2026-01-01T00:00:00+00:00", hostname="vm", machine="x86_64",
        cpu_model="AMD EPYC", cpu_count=2, affinity=(0, 1), kernel="6.18", kernel_version="#1",
        python="3.11.7", python_implementation="CPython", clock_ticks_per_s=100,
        loadavg_start=(0.1, 0.1, 0.1), git_commit=None, packages={"trio": "0.35"},
        tools={"nginx": "nginx/1.22.1"},
    )  # fmt: skip


PINNING = schema.Pinning(0, 1, "server on CPU 0")


def _run(repetitions: int, notes: dict[str, str]) -> schema.WrkRun:
    return schema.WrkRun(_machine(), PINNING, 5, 1, repetitions, False, 1, 2, 30.0, True, notes)


def _peers(skipped: dict[str, str] | None = None) -> schema.PeersResults:
    from bench.harness.machine import place_workers
    from bench.loadtest.common import medians, scaling
    from bench.loadtest.peers import ratios

    rows = []
    for rep in range(3):
        for server, workers, workload, rps, cpu in (
            ("zerocopy-auto", 1, "4KiB", 8500.0, 40.0),
            ("zerocopy-auto-log", 1, "4KiB", 7650.0 + rep, 44.0),
            ("zerocopy-sendfile", 1, "4KiB", 8000.0, 42.0),
            ("nginx-sendfile", 1, "4KiB", 10000.0, 20.0),
            ("nginx-nosendfile", 1, "4KiB", 9000.0, 18.0),
            ("aiohttp", 1, "4KiB", 850.0, 300.0),
            ("zerocopy-auto", 1, "1MiB", 1100.0, 200.0),
            ("nginx-sendfile", 1, "1MiB", 1000.0, 250.0),
            ("zerocopy-auto", 1, "many-files", 3000.0, 90.0),
            ("nginx-sendfile", 1, "many-files", 10000.0, 15.0),
            ("zerocopy-auto", 2, "4KiB", 12750.0, 44.0),
            ("nginx-sendfile", 2, "4KiB", 16000.0, 21.0),
        ):
            rows.append(schema.Row(rep, server, workers, workload, 16, _figures(rps, cpu)))
    pinning = schema.Pinning(0, 1, "server on CPU 0")
    placements = tuple(place_workers(n, pinning, [0, 1]) for n in (1, 2))
    meta = schema.PeersMeta(_run(3, {"ratios": "per repetition"}), 16, {}, {}, placements)
    workloads = tuple(
        schema.WorkloadInfo(label, files, low, high, label)
        for label, files, low, high in (
            ("4KiB", 1, 4096, 4096),
            ("1MiB", 1, MiB, MiB),
            ("many-files", 3000, 1024, 4096),
        )
    )
    return schema.PeersResults(
        meta=meta,
        candidates=(
            "zerocopy-auto", "zerocopy-auto-log", "zerocopy-sendfile", "nginx-sendfile",
            "nginx-nosendfile", "aiohttp",
        ),
        workloads=workloads,
        rows=tuple(rows),
        cells=medians(rows),
        ratios=ratios(rows),
        scaling=scaling(rows),
        skipped=skipped or {},
    )  # fmt: skip


CPU_PER_GIB = {
    "readwrite": {"256MiB": 1.0},
    "sendfile": {"256MiB": 0.68},
    "splice": {"256MiB": 0.88},
    "nginx-sendfile": {"256MiB": 0.6},
}


def test_the_access_log_cost_is_reported_against_auto():
    from bench.reporting.load import peers_summary

    summary = peers_summary(_peers())
    # 7651 / 8500 (the median repetition) and 44 / 40: on the 4 KiB workload only, where
    # both ran.
    line = next(line for line in summary.splitlines() if "Access log cost" in line)
    assert "4KiB" in line
    assert "0.90x" in line
    assert "1.10x" in line
    assert sum("Access log cost" in line for line in summary.splitlines()) == 1


def test_targets_without_peers_json_are_not_run():
    results = evaluate_targets(None, {})
    assert [r.status for r in results] == [NOT_RUN] * len(results)
    assert "make bench-peers" in results[0].measured


def test_targets_with_peers_json():
    results = {(r.case, r.target): r for r in evaluate_targets(_peers(), CPU_PER_GIB)}
    four = "4 KiB, 1 worker, 16 connections"
    cpu = results[four, "server CPU per request ≤ 2.0x nginx's"]
    assert cpu.measured.startswith("auto 2.22x nginx (sendfile 2.33x")  # 40 / 18
    assert cpu.status == NOT_MET
    rps = results[four, "req/s ≥ 0.5x nginx's"]
    assert (rps.measured.split(" (")[0], rps.status) == ("auto 0.85x nginx", MET)
    assert results["4 KiB vs aiohttp", "req/s ≥ 10x aiohttp's"].measured == "auto 10.0x aiohttp"
    many = results["Many files (random GETs, 1-4 KiB)", "req/s ≥ 0.35x nginx's"]
    assert (many.measured, many.status) == ("auto 0.30x nginx", NOT_MET)
    assert results["1 MiB", "req/s ≥ 1.0x nginx's"].status == MET
    big = results["256 MiB", "server CPU per GiB for sendfile and splice ≤ 0.7x readwrite"]
    assert big.measured == "sendfile 0.68x, splice 0.88x (nginx-sendfile 0.60x, same run)"
    assert big.status == NOT_MET


def test_a_skipped_peer_makes_its_targets_not_run():
    results = evaluate_targets(_peers(skipped={"aiohttp": "not installed"}), {})
    aiohttp = next(r for r in results if r.case == "4 KiB vs aiohttp")
    assert aiohttp.status == NOT_RUN
    assert "aiohttp skipped (not installed)" in aiohttp.measured
    assert results[-1].status == NOT_RUN  # no 256 MiB CPU phase


# -- the report and the check --------------------------------------------------------------------


def _suite_file(path: Path, strategy: str, names: list[str]) -> None:
    for name in names:
        runs = [
            pyperf.Run(
                [0.001 * (i + 1), 0.0012 * (i + 1)],
                metadata={"name": name, "unit": "second", "strategy": strategy, "loops": 1},
                collect_metadata=False,
            )
            for i in range(3)
        ]
        pyperf.add_runs(str(path), pyperf.Benchmark(runs))


def _measurements(counts: tuple[CountWindow, ...]) -> Measurements:
    cases = ("4KiB", "1MiB")
    sizes = {"4KiB": 4096, "1MiB": MiB}
    windows = tuple(
        _cpu(server, case, sizes[case], rep, 0.001 * (i + 1), zero_copy=sizes[case] * 10)
        if not server.startswith("nginx")
        else _cpu(server, case, sizes[case], rep, 0.001)
        for i, server in enumerate((*STRATEGIES, "nginx-sendfile"))
        for case in cases
        for rep in range(2)
    ) + tuple(
        # Over TLS: every body byte read in and written out; 3x auto's CPU in both repetitions.
        _cpu("auto-tls", case, sizes[case], rep, 0.003, copy_in=sizes[case] * 10,
             copy_out=sizes[case] * 10, syscalls={"ssl_write": 10, "preadv": 10})
        for case in cases
        for rep in range(2)
    )  # fmt: skip
    tls = schema.TlsRecord(
        server="auto-tls",
        plain="auto",
        strategy="tls-readwrite",
        certificate="trustme: a test leaf",
        cases=cases,
        handshake_tool="openssl s_time -new -tls1_3",
        handshakes=(schema.HandshakeRun(0, 2, 2.0, 1000, 0.5),),
    )
    meta = schema.SuiteMeta(
        profile="quick",
        machine=_machine(),
        pinning=PINNING,
        settings=schema.ProfileSettings(2, 1, 2, 1, 0.02, 2, 0.1),
        filesystem="ext4",
        eviction_verified=None,
        servers={"auto": "python -m zerocopy serve"},
        metrics_port_not_announced=(),
        finished="2026-01-01T00:01:00+00:00",
        duration_s=60.0,
        loadavg_end=(0.2, 0.1, 0.1),
    )
    return Measurements(
        meta=meta,
        strategies=STRATEGIES,
        nginx=("nginx-sendfile",),
        cases=schema.CaseLists(latency=cases, cpu=cases, count=cases[:1]),
        calibration={"4KiB": schema.Calibration(0.0001, 100)},
        cpu_windows=windows,
        counts=counts,
        tracer_losses=(
            schema.TracerLoss(
                "auto", "4KiB", 1, "bpftrace", "saw no syscall while the server counted 900"
            ),
        ),
        perf=(),
        pyspy=(
            schema.PySpyRecord(
                strategy="auto",
                case="4KiB",
                connections=8,
                requests=900,
                samples=1200,
                components={"trio: scheduler and I/O waits": 20.0, "zerocopy/http": 80.0},
                top=(
                    schema.ProfileEntry(31.7, "zerocopy/transfer/sockio.py", "retry_writable:80"),
                ),
            ),
        ),
        tls=tls,
        skipped={"perf": "not in the quick profile"},
    )


AGREEING = CountWindow(
    "auto",
    "4KiB",
    4096,
    200,
    2,
    _delta(syscalls={"sendfile": 200, "recvfrom": 201}),
    StraceCounts({"sendfile": 200, "recvfrom": 201, "epoll_wait": 600}, {}),
    BpfCounts(
        {"sendfile": 200, "recvfrom": 201, "epoll_wait": 600},
        {"sendfile": 200, "recvfrom": 201},
        {},
        {},
        {},
    ),
)
MISNAMED = CountWindow(
    "readwrite",
    "4KiB",
    4096,
    2,
    1,
    _delta(syscalls={"preadv": 2, "sendmsg": 2}, copy_in=10, copy_out=9),
    StraceCounts({"preadv2": 2, "sendmsg": 2}, {}),
    None,
)
DISAGREEING = CountWindow(
    "sendfile",
    "4KiB",
    4096,
    200,
    1,
    _delta(syscalls={"sendfile": 200}),
    StraceCounts({"sendfile": 150}, {}),
    None,
)


def _results(tmp_path: Path, counts=(AGREEING, MISNAMED)) -> Path:
    for strategy in STRATEGIES:
        names = [f"{kind}_{case}" for kind in ("latency", "cpu") for case in ("4KiB", "1MiB")]
        _suite_file(tmp_path / f"{strategy}.json", strategy, names)
    write_record(tmp_path / "measurements.json", _measurements(tuple(counts)))
    return tmp_path


def test_report_and_check_on_synthetic_results(tmp_path: Path):
    write_report(_results(tmp_path))
    text = (tmp_path / "report.md").read_text()
    for section in SECTIONS:
        assert section in text
    assert "Not run (make bench-load)" in text
    assert "Not run (make bench-peers)" in text
    assert "**DISAGREE (100.0%, by 2)** (explained below)" in text
    assert "agree as a pair" in text
    assert "Tracer attach: 1 window(s) thrown away" in text
    assert "- auto 4KiB, attempt 1: bpftrace saw no syscall" in text
    # The whole process: 1001 syscalls in 200 requests, beside the transfer path's 2.0.
    assert (
        "| 4KiB | auto | bpftrace | 200 | 2.0 | **5.0** | epoll_wait 3, recvfrom 1, sendfile 1 |"
        in text
    )
    assert "| 4KiB | nginx-sendfile |" in text
    # TLS: a row in the copy table, and TLS against plain with the handshakes.
    assert "| auto over TLS (tls-readwrite) | 4 with read/write" in text
    assert (
        "| 1MiB | auto over TLS | 300 µs | 0.307 s | 2.000 (in 1.000, out 1.000) | 0.000 | 2.0 "
        "| 3.00x |" in text
    )
    assert "| 1MiB | auto (plain) | 100 µs |" in text
    assert "500 handshakes/s achieved, 500 µs of server CPU per handshake" in text
    assert "would complete 2,000 per second" in text
    # The 4 KiB request's profile: perf was not recorded, py-spy was.
    assert "### Where a 4KiB request of `auto` goes" in text
    assert "perf: not recorded (not in the quick profile)." in text
    assert "1,200 samples of a working thread over 900 requests on 8 concurrent" in text
    assert "| trio: scheduler and I/O waits | 20.0% |" in text
    assert "| 31.7 | zerocopy/transfer/sockio.py | `retry_writable:80` |" in text
    assert bench_check.check(tmp_path) == []


def test_check_fails_on_an_unexplained_tracer_disagreement(tmp_path: Path):
    write_report(_results(tmp_path, counts=(AGREEING, DISAGREEING)))
    assert "(unexplained)" in (tmp_path / "report.md").read_text()
    problems = bench_check.check(tmp_path)
    assert problems == [
        "measurements.json: sendfile 4KiB: unexplained tracer disagreement on 'sendfile calls "
        "(returned + EAGAIN)': server 200, strace 150, bpftrace None (25.0%)",
        "report.md: shows an unexplained tracer disagreement",
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [('"copy_in"', '"copy_into"'), ('"requests"', '"reqs"'), ('"inner_loops"', '"loops"')],
)
def test_a_renamed_key_fails_the_check_and_the_report(tmp_path: Path, old: str, new: str):
    _results(tmp_path)
    write_report(tmp_path)
    path = tmp_path / "measurements.json"
    path.write_text(path.read_text().replace(old, new, 1))
    problems = bench_check.check(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("measurements.json: ")
    assert "unexpected key" in problems[0]
    with pytest.raises(schema.SchemaError):
        write_report(tmp_path)


def test_a_drifted_optional_file_fails_the_check(tmp_path: Path):
    write_report(_results(tmp_path))
    peers = json.loads(json.dumps(schema.dump(_peers())))
    del peers["cells"][0]["rps"]
    (tmp_path / "peers.json").write_text(json.dumps(peers))
    assert bench_check.check(tmp_path) == ["peers.json: cells[0]: missing key(s) ['rps']"]


def test_report_reads_peers_and_load_json_when_present(tmp_path: Path):
    _results(tmp_path)
    write_record(tmp_path / "peers.json", _peers())
    write_record(tmp_path / "load.json", _load())
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "auto 0.85x nginx" in text
    assert "| zerocopy-auto | 1 | 3,000 | 2.00 | 90.0 | — | 0.30x | 6.00x | — | 3% | 0 |" in text
    assert "| sendfile | 1 | 16 ← knee | 12,345 |" in text
    assert "coordinated omission" in text
    assert bench_check.check(tmp_path) == []


def test_check_reports_every_missing_artefact(tmp_path: Path):
    problems = bench_check.check(tmp_path)
    assert "measurements.json: missing" in problems
    assert any("report.md" in p for p in problems)
    assert sum(chart in p for p in problems for chart in CHARTS) == len(CHARTS)


def test_check_png(tmp_path: Path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a" + b"\0" * 40)
    assert bench_check.check_png(bad) == "bad.png: not a PNG"
    empty = tmp_path / "empty.png"
    empty.write_bytes(bench_check.PNG_SIGNATURE + b"\0\0\0\rIHDR" + b"\0" * 8 + b"\0" * 9)
    assert bench_check.check_png(empty) == "empty.png: empty image (0x0)"
    assert bench_check.check_png(tmp_path / "missing.png") is not None


# -- the wrk summaries ---------------------------------------------------------------------------


def _load() -> schema.LoadResults:
    from bench.loadtest.common import medians
    from bench.loadtest.sweep import knees

    rows = [
        schema.Row(0, "sendfile", 1, "4KiB", conns, replace(_figures(rps, 10.0), p99_ms=p99))
        for conns, rps, p99 in ((1, 1000.0, 1.0), (16, 12345.0, 2.0), (64, 12400.0, 9.0))
    ]
    cells = medians(rows)
    placement = schema.WorkerPlacement(1, (0,), False, "1 worker on CPU 0")
    meta = schema.LoadMeta(_run(1, {}), ("sendfile",), (1, 16, 64), (placement,))
    return schema.LoadResults(
        meta=meta,
        workloads=(schema.WorkloadInfo("4KiB", 1, 4096, 4096, "one file"),),
        cells=cells,
        knees=knees(cells),
        scaling=(),
        rows=tuple(rows),
    )


def test_sweep_summary_marks_the_knee():
    text = sweep_summary(_load())
    assert "| sendfile | 1 | 16 ← knee | 12,345 | 1.00 | 2.00 | 10.0 | — | 3% | 0 |" in text
    assert "- sendfile: 4KiB 16" in text


def test_peers_summary_quotes_median_ratios():
    text = peers_summary(_peers())
    assert "### many-files, 16 connections" in text
    assert "| nginx-sendfile | 1 | 10,000 | 2.00 | 15.0 | — | 1.00x | 1.00x | — | 3% | 0 |" in text
    # Two workers against nginx with two; scaling against one worker; where they ran.
    assert "| zerocopy-auto | 2 | 12,750 | 2.00 | 44.0 | — | 0.80x | 2.10x | — | 3% | 0 |" in text
    assert "| zerocopy-auto | 4KiB | 16 | 2 | 1.50x | 0.75 | 1.10x |" in text
    assert "shared with wrk" in text
    assert "CPU per request, summed" in text


# -- hardening.md --------------------------------------------------------------------------------


def _summary(p99: float | None) -> schema.LatencySummary:
    return schema.LatencySummary(100, 0.5, p99, 3.0)


def test_hardening_markdown_states_targets_and_verdicts():
    cold = schema.ColdResult(
        file_size=256 * MiB,
        downloads=4,
        settings={"zerocopy-offload": "as shipped", "nginx-aio-threads": "aio threads"},
        runs=(
            schema.ColdRun(0, "zerocopy-offload", True, _summary(1.0), _summary(1.5), (), 1.5, 9),
            schema.ColdRun(
                0, "nginx-aio-threads", True, _summary(0.5), _summary(2.5), (), 5.0, None
            ),
        ),
        medians={
            "zerocopy-offload": schema.ColdMedian(1.0, 1.5, 1.5, 4000.0),
            "nginx-aio-threads": schema.ColdMedian(0.5, 2.5, 5.0, 3000.0),
        },
    )
    idle = schema.IdleResult(
        5000, 60.0, 5000, 1000, 201000, 201000, 40.0, _summary(1.0), _summary(3.0), 0
    )
    listing_runs = tuple(
        schema.ListingRun(
            rep, server, page, 8, 0.5, 0, _summary(0.5),
            schema.LatencySummary(900, 1.0, p99, p99 * 3), rss,
        )
        for rep in range(2)
        for server, page, p99, rss in (
            ("zerocopy", 60_000_000, 1400.0 + rep * 200, 1_400_000),
            ("nginx-autoindex", 58_000_000, 700.0 + rep * 100, 9_000),
        )
    )  # fmt: skip
    listing = schema.ListingResult(
        entries=200_000,
        clients=8,
        window_s=10.0,
        settings={"zerocopy": "defaults", "nginx-autoindex": "autoindex on"},
        runs=listing_runs,
        medians=listing_medians(listing_runs),
    )
    tar_runs = tuple(
        schema.TarRun(rep, "sendfile", download, 1 << 30, cpu, 1.0, copied, 1 << 30, 1600)
        for rep, download, cpu, copied in (
            (0, "tar", 0.30, 64 * 1536),
            (0, "single", 0.25, 64 * 200),
            (1, "single", 0.20, 64 * 200),
            (1, "tar", 0.30, 64 * 1536),
        )
    )  # fmt: skip
    tar = schema.TarResult(
        files=64,
        file_bytes=16 << 20,
        data_bytes=1 << 30,
        repetitions=2,
        runs=tar_runs,
        medians=tar_medians(tar_runs, 1 << 30),
    )
    results = schema.HardeningResults(
        machine=_machine(), cold=cold, slow=None, idle=idle, listing=listing, tar=tar
    )
    text = render(results)
    # Medians 1500 and 750 ms; per repetition 1400/700 and 1600/800: 2.0x nginx.
    assert "| zerocopy | 1,500.0 | 4,500.0 | 2x | 1,367 MiB | 60.0 MB | 0.50 | 0 |" in text
    assert "| nginx-autoindex | 750.0 | 2,250.0 | 1x | 9 MiB | 58.0 MB | 0.50 | 0 |" in text
    assert "200,000 entries" in text
    assert "| zerocopy-offload | 1.00 | 1.50 | 1.5x | 0.60x | 4,000 | met |" in text
    assert "| nginx-aio-threads | 0.50 | 2.50 | 5.0x | 1.00x | 3,000 | (reference) |" in text
    assert "- nginx-aio-threads: aio threads" in text
    assert "| probe p99 while held | 3.00 ms | < 100 ms | met |" in text
    assert "| RSS per idle connection | 40.0 KiB | ≤ 32 KiB | not met |" in text
    # tar: medians 0.30 and 0.225 s per GiB; per repetition 1.2 and 1.5, median 1.35.
    assert "| sendfile | 0.300 s | 0.225 s | 1.35x | 0.0001 | 0.0000 | 1,600 | 1,600 |" in text
    assert "64 files of 16 MiB (1,024 MiB of data" in text
    assert "coordinated omission" in text
