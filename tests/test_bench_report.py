"""The benchmark suite's pure parts: parsers, agreement, summaries, targets, report, check.

Nothing here times anything or starts a server: the inputs are captured tool output and
synthetic measurements.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pyperf
import pytest

from bench import check as bench_check
from bench.agreement import TOLERANCE, AgreementRow, compare, relative_difference
from bench.perfprof import parse_children_report, parse_self_report, parse_shares
from bench.plan import FULL, QUICK, STRATEGIES, Case, format_size, parse_size
from bench.prom import CounterDelta, counter_delta, parse_samples
from bench.report import (
    CHARTS,
    SECTIONS,
    alias_notes,
    probe_note,
    summarise_cpu,
    write_report,
)
from bench.serverproc import parse_listening_ports, parse_ready_line
from bench.targets import MET, NOT_MET, NOT_RUN, evaluate_targets, peer_ratio
from bench.tracers import (
    BpfCounts,
    StraceCounts,
    bpftrace_script,
    parse_bpftrace_output,
    parse_strace_summary,
)

if TYPE_CHECKING:
    from pathlib import Path

# -- Prometheus deltas ---------------------------------------------------------------------

SCRAPE_BEFORE = """\
# HELP zerocopy_connections_accepted_total Connections accepted.
# TYPE zerocopy_connections_accepted_total counter
zerocopy_connections_accepted_total 3.0
# HELP zerocopy_responses_total Responses sent, by status.
# TYPE zerocopy_responses_total counter
zerocopy_responses_total{status="200"} 10.0
# HELP zerocopy_syscalls_total Transfer-path syscalls that returned, by kernel name.
# TYPE zerocopy_syscalls_total counter
zerocopy_syscalls_total{syscall="recvfrom"} 11.0
zerocopy_syscalls_total{syscall="sendto"} 10.0
# HELP zerocopy_user_copy_bytes_total Bytes copied between kernel and user space.
# TYPE zerocopy_user_copy_bytes_total counter
zerocopy_user_copy_bytes_total{direction="in"} 400.0
zerocopy_user_copy_bytes_total{direction="out"} 2500.0
# HELP zerocopy_zero_copy_bytes_total Bytes moved by sendfile or splice.
# TYPE zerocopy_zero_copy_bytes_total counter
zerocopy_zero_copy_bytes_total 40960.0
# HELP zerocopy_body_bytes_total File bytes the kernel accepted for sending.
# TYPE zerocopy_body_bytes_total counter
zerocopy_body_bytes_total 40960.0
"""

SCRAPE_AFTER = """\
# HELP zerocopy_connections_accepted_total Connections accepted.
# TYPE zerocopy_connections_accepted_total counter
zerocopy_connections_accepted_total 4.0
# HELP zerocopy_responses_total Responses sent, by status.
# TYPE zerocopy_responses_total counter
zerocopy_responses_total{status="200"} 15.0
zerocopy_responses_total{status="404"} 1.0
# HELP zerocopy_syscalls_total Transfer-path syscalls that returned, by kernel name.
# TYPE zerocopy_syscalls_total counter
zerocopy_syscalls_total{syscall="recvfrom"} 17.0
zerocopy_syscalls_total{syscall="sendfile"} 5.0
zerocopy_syscalls_total{syscall="sendto"} 16.0
# HELP zerocopy_syscalls_eagain_total Transfer-path syscalls that failed with EAGAIN.
# TYPE zerocopy_syscalls_eagain_total counter
zerocopy_syscalls_eagain_total{syscall="recvfrom"} 5.0
# HELP zerocopy_user_copy_bytes_total Bytes copied between kernel and user space.
# TYPE zerocopy_user_copy_bytes_total counter
zerocopy_user_copy_bytes_total{direction="in"} 640.0
zerocopy_user_copy_bytes_total{direction="out"} 4000.0
# HELP zerocopy_zero_copy_bytes_total Bytes moved by sendfile or splice.
# TYPE zerocopy_zero_copy_bytes_total counter
zerocopy_zero_copy_bytes_total 61440.0
# HELP zerocopy_body_bytes_total File bytes the kernel accepted for sending.
# TYPE zerocopy_body_bytes_total counter
zerocopy_body_bytes_total 61440.0
"""


def test_prometheus_samples_are_keyed_by_name_and_labels():
    samples = parse_samples(SCRAPE_AFTER)
    assert samples[("zerocopy_syscalls_total", (("syscall", "sendfile"),))] == 5.0
    assert samples[("zerocopy_connections_accepted_total", ())] == 4.0


def test_prometheus_delta_counts_new_labels_from_zero():
    delta = counter_delta(parse_samples(SCRAPE_BEFORE), parse_samples(SCRAPE_AFTER))
    assert delta.syscalls == {"recvfrom": 6, "sendfile": 5, "sendto": 6}
    assert delta.eagain == {"recvfrom": 5}
    assert delta.responses == {"200": 5, "404": 1}
    assert (delta.copy_in, delta.copy_out) == (240, 1500)
    assert delta.zero_copy == delta.body == 20480
    assert delta.connections == 1
    assert delta.attempts("recvfrom") == 11
    assert delta.attempts("splice") == 0


def test_prometheus_delta_omits_unchanged_counters():
    samples = parse_samples(SCRAPE_BEFORE)
    delta = counter_delta(samples, samples)
    assert delta.syscalls == {}
    assert delta.body == 0


# -- strace -c -----------------------------------------------------------------------------

# Captured from `strace -f -c -p` on a readwrite server (Debian strace 6.1), trimmed.
STRACE_SAMPLE = """\
strace: Process 16582 attached
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 41.12    0.004011          20       200           sendmsg
 30.03    0.002929          14       200           preadv2
 17.11    0.001669          32        51         3 recvfrom
  6.77    0.000660           6       101           epoll_wait
  2.55    0.000249         249         1         1 accept4
  2.42    0.000236         236         1         1 epoll_ctl
------ ----------- ----------- --------- --------- ----------------
100.00    0.009754          17       554         5 total
"""


def test_strace_summary_parses_calls_and_errors():
    counts = parse_strace_summary(STRACE_SAMPLE)
    assert counts.calls == {
        "sendmsg": 200,
        "preadv2": 200,
        "recvfrom": 51,
        "epoll_wait": 101,
        "accept4": 1,
        "epoll_ctl": 1,
    }
    assert counts.errors == {"recvfrom": 3, "accept4": 1, "epoll_ctl": 1}
    assert "total" not in counts.calls


def test_strace_summary_of_nothing_is_empty():
    assert parse_strace_summary("") == StraceCounts()


# -- bpftrace ------------------------------------------------------------------------------

BPFTRACE_SAMPLE = """\
Attaching 27 probes...
READY



@bytes_in[recvfrom]: 1950
@bytes_in[preadv2]: 204800

@bytes_out[sendmsg]: 216900

@eagain[recvfrom]: 7

@returned[preadv2]: 50
@returned[sendmsg]: 50
@returned[recvfrom]: 51
"""


def test_bpftrace_output_parses_every_map():
    counts = parse_bpftrace_output(BPFTRACE_SAMPLE)
    assert counts.returned == {"preadv2": 50, "sendmsg": 50, "recvfrom": 51}
    assert counts.eagain == {"recvfrom": 7}
    assert counts.copy_in == 1950 + 204800
    assert counts.copy_out == 216900


def test_bpftrace_output_accepts_quoted_keys():
    counts = parse_bpftrace_output('@returned["sendfile"]: 3\n')
    assert counts.returned == {"sendfile": 3}


def test_bpftrace_script_filters_by_pid_and_names_sendfile64():
    script = bpftrace_script(4242)
    assert "sys_exit_sendfile64 /pid == 4242 && args->ret >= 0/" in script
    assert '@returned["sendfile"]' in script
    assert "sys_exit_sendfile " not in script
    assert 'BEGIN { printf("READY\\n"); }' in script
    # Bytes are summed for copies only: zero-copy calls are counted, not summed.
    assert '@bytes_in["splice"]' not in script
    assert '@bytes_out["sendto"] = sum(args->ret)' in script


# -- agreement -----------------------------------------------------------------------------


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
    row = AgreementRow("x", server, outside, None)
    assert row.agree is agree


def test_agreement_uses_the_worst_pair():
    row = AgreementRow("x", 100, 100, 90)
    assert not row.agree
    assert row.worst == pytest.approx(0.1)
    assert row.spread == 10


def test_compare_lines_up_sources_and_counts_eagain_as_strace_does():
    server = CounterDelta(
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
    assert all(row.agree for row in rows.values())
    # Syscalls nobody saw get no row; epoll_wait is not a transfer syscall.
    assert not any("splice" in q or "epoll" in q for q in rows)


def test_compare_without_tracers_has_only_server_figures():
    rows = compare(CounterDelta(syscalls={"sendto": 2}), None, None)
    assert [(r.quantity, r.strace, r.bpftrace) for r in rows] == [
        ("sendto calls (returned + EAGAIN)", None, None),
        ("bytes kernel → user", None, None),
        ("bytes user → kernel", None, None),
    ]
    assert all(row.agree for row in rows)


def test_a_misnamed_counter_is_flagged_and_explained():
    server = CounterDelta(syscalls={"preadv": 128, "sendmsg": 128})
    strace = StraceCounts(calls={"preadv2": 128, "sendmsg": 128})
    bpf = BpfCounts(returned={"preadv2": 128, "sendmsg": 128})
    rows = compare(server, strace, bpf)
    flagged = [row.quantity for row in rows if not row.agree]
    assert flagged == ["preadv calls (returned + EAGAIN)", "preadv2 calls (returned + EAGAIN)"]
    notes = alias_notes(rows)
    assert len(notes) == 1
    assert "`preadv` and `preadv2` agree as a pair" in notes[0]


def test_no_alias_note_when_the_pair_disagrees_too():
    rows = compare(
        CounterDelta(syscalls={"preadv": 100}), StraceCounts(calls={"preadv2": 50}), None
    )
    assert alias_notes(rows) == []


def _traced(copy_in: int, bytes_in: int, preadv2: int, zero_copy: int = 65536) -> dict[str, Any]:
    return {
        "server": {"syscalls": {"preadv2": preadv2}, "copy_in": copy_in, "zero_copy": zero_copy},
        "bpftrace": {"returned": {}, "eagain": {}, "bytes_in": {"recvfrom": bytes_in}},
    }


def test_probe_note_explains_a_gap_of_one_byte_per_probe():
    assert probe_note(_traced(copy_in=2496, bytes_in=2624, preadv2=128)) is not None
    assert probe_note(_traced(copy_in=2496, bytes_in=2625, preadv2=128)) is None
    assert probe_note(_traced(copy_in=2496, bytes_in=2496, preadv2=128)) is None
    assert probe_note(_traced(copy_in=2496, bytes_in=2624, preadv2=128, zero_copy=0)) is None
    assert probe_note({"server": {}, "bpftrace": None}) is None


# -- ready line, perf ----------------------------------------------------------------------
# (/proc is tested in test_bench_load.py, on a fake /proc.)


def test_ready_line():
    line = (
        "zerocopy 0.1.0: serving /tmp/www on http://127.0.0.1:36857/ (strategy auto); "
        "metrics on http://127.0.0.1:42939/metrics"
    )
    assert parse_ready_line(line) == (36857, 42939, "auto")
    assert parse_ready_line(
        "zerocopy 0.1.0: serving /srv on http://127.0.0.1:8000/ (strategy splice)"
    ) == (8000, None, "splice")
    with pytest.raises(ValueError, match="not a zerocopy ready line"):
        parse_ready_line("Traceback (most recent call last):")


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:8D59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 0
   1: 0100007F:A3EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5002 1 0
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0
   3: 0100007F:8D59 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 5003 1 0
"""


def test_listening_ports_are_matched_by_socket_inode():
    # Another process's listener (inode 7777) and an established connection are ignored.
    assert parse_listening_ports(PROC_NET_TCP, {5001, 5002, 5003}) == {0x8D59, 0xA3EB}
    assert parse_listening_ports(PROC_NET_TCP, set()) == set()


PERF_CHILDREN = """\
# Samples: 6K of event 'cpu-clock'
# Event count (approx.): 341750000
#
# Children      Self  Symbol                                  IPC   [IPC Coverage]
# ........  ........  ......................................  ....................
#
    72.06%     0.44%  [k] do_syscall_64                       -      -
    50.99%     2.34%  [k] copy_page_to_iter                   -      -
    48.57%    48.28%  [k] _copy_to_iter                       -      -
    20.10%    19.00%  [k] _copy_from_iter                     -      -
     1.50%     1.50%  [k] _copy_from_iter_nocache             -      -
     5.56%     0.00%  [.] 0000000000000000                    -      -
"""

PERF_SELF = """\
# Overhead  Shared Object                            Symbol                                 IPC
# ........  .......................................  .....................................
#
    48.28%  [kernel.kallsyms]                        [k] _copy_to_iter                      -
     4.75%  [kernel.kallsyms]                        [k] filemap_get_read_batch             -
     0.73%  libpython3.11.so.1.0                     [.] _PyEval_EvalFrameDefault           -
"""


def test_perf_children_report_gives_copy_shares():
    samples, to_iter, from_iter = parse_children_report(PERF_CHILDREN)
    assert samples == "6K"
    assert to_iter == pytest.approx(48.57)
    assert from_iter == pytest.approx(21.60)


def test_perf_self_report_gives_kernel_and_python_shares():
    kernel, python = parse_shares(PERF_SELF)
    assert kernel == pytest.approx(53.03)
    assert python == pytest.approx(0.73)


def test_perf_self_report_gives_top_entries():
    top = parse_self_report(PERF_SELF, limit=2)
    assert [(e.percent, e.dso, e.symbol) for e in top] == [
        (48.28, "[kernel.kallsyms]", "_copy_to_iter"),
        (4.75, "[kernel.kallsyms]", "filemap_get_read_batch"),
    ]


# -- plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size", "label"),
    [
        ("4KiB", 4096, "4KiB"),
        ("4k", 4096, "4KiB"),
        ("64KiB", 65536, "64KiB"),
        ("64 KiB", 65536, "64KiB"),
        ("1MiB", 1 << 20, "1MiB"),
        ("256MiB", 256 << 20, "256MiB"),
        ("2g", 2 << 30, "2GiB"),
        ("4096", 4096, "4KiB"),
        ("1000", 1000, "1000B"),
        ("1000B", 1000, "1000B"),
        ("1536", 1536, "1536B"),
    ],
)
def test_sizes(text: str, size: int, label: str) -> None:
    assert parse_size(text) == size
    assert format_size(size) == label
    assert parse_size(label) == size


@pytest.mark.parametrize("text", ["", "0", "0B", "4 kb/s", "-1k", "1.5MiB"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError; the message is for humans
        parse_size(text)


def test_benchmark_names_are_unique_and_cover_the_issue():
    for profile in (FULL, QUICK):
        names = [c.latency_name for c in profile.latency_cases]
        names += [c.cpu_name for c in profile.cpu_cases]
        assert len(names) == len(set(names))
    assert {c.latency_name for c in FULL.latency_cases} == {
        "latency_4KiB",
        "latency_64KiB",
        "latency_1MiB",
        "latency_64MiB",
        "latency_64MiB_cold",
    }
    assert Case(256 << 20) in FULL.cpu_cases
    assert Case(64 << 20, cold=True).filename == "64MiB_cold.bin"


# -- summaries and targets -----------------------------------------------------------------


def _window(
    strategy: str, case: str, size: int, rep: int, cpu_s: float, **counters
) -> dict[str, Any]:
    base = {
        "syscalls": {},
        "eagain": {},
        "copy_in": 0,
        "copy_out": 0,
        "zero_copy": 0,
        "body": size * 10,
        "responses": {"200": 10},
        "connections": 1,
    }
    base.update(counters)
    return {
        "strategy": strategy,
        "case": case,
        "size": size,
        "cold": False,
        "rep": rep,
        "date": "2026-01-01T00:00:00+00:00",
        "requests": 10,
        "elapsed_s": 0.5,
        "utime_s": 0.03,
        "stime_s": 0.01,
        "runtime_s": cpu_s,
        "cpu_s": cpu_s,
        "voluntary": 10,
        "involuntary": 2,
        "counters": base,
    }


def test_cpu_summary_takes_medians_and_splits_by_ticks():
    size = 1 << 20
    windows = [
        _window("readwrite", "1MiB", size, 0, 0.010, copy_in=size * 10, copy_out=size * 10),
        _window("readwrite", "1MiB", size, 1, 0.030, copy_in=size * 10, copy_out=size * 10),
        _window(
            "readwrite",
            "1MiB",
            size,
            2,
            0.020,
            copy_in=size * 10,
            copy_out=size * 10,
            syscalls={"preadv2": 40, "sendmsg": 40},
        ),
        _window("sendfile", "1MiB", size, 0, 0.0),
    ]
    windows[-1]["requests"] = 0
    summary = summarise_cpu(windows)
    assert set(summary) == {("readwrite", "1MiB")}
    rw = summary[("readwrite", "1MiB")]
    assert rw.cpu_per_request == pytest.approx(0.002)
    assert rw.cpu_per_gib == pytest.approx(0.002 * 1024)
    assert rw.user_share == pytest.approx(0.75)
    assert rw.user_per_gib + rw.sys_per_gib == pytest.approx(rw.cpu_per_gib)
    assert (rw.copy_in, rw.copy_out, rw.zero_copy) == (1.0, 1.0, 0.0)
    assert rw.syscalls == {"preadv2": pytest.approx(40 / 30), "sendmsg": pytest.approx(40 / 30)}
    assert rw.voluntary == pytest.approx(1.0)
    assert rw.requests == 30


def _peers(**overrides) -> dict[str, Any]:
    peers = {
        "meta": {"connections": 16},
        "candidates": ["zerocopy-auto", "zerocopy-sendfile", "nginx-sendfile", "aiohttp"],
        "sizes": ["4KiB", "1MiB"],
        "repetitions": [
            {"rep": 0, "candidate": "zerocopy-auto", "size": "4KiB", "rps": 9000.0},
            {"rep": 0, "candidate": "aiohttp", "size": "4KiB", "rps": 1000.0},
            {"rep": 1, "candidate": "zerocopy-auto", "size": "4KiB", "rps": 8000.0},
            {"rep": 1, "candidate": "aiohttp", "size": "4KiB", "rps": 1000.0},
            {"rep": 2, "candidate": "zerocopy-auto", "size": "4KiB", "rps": 7000.0},
            {"rep": 2, "candidate": "aiohttp", "size": "4KiB", "rps": 2000.0},
        ],
        "ratios": {
            "zerocopy-auto": {
                "4KiB": {"rps_vs_nginx": 0.85, "cpu_vs_nginx": 1.4},
                "1MiB": {"rps_vs_nginx": 0.95, "cpu_vs_nginx": 0.9},
            },
            "zerocopy-sendfile": {
                "4KiB": {"rps_vs_nginx": 0.7, "cpu_vs_nginx": 1.5},
                "1MiB": {"rps_vs_nginx": None, "cpu_vs_nginx": None},
            },
            "aiohttp": {"4KiB": {"rps_vs_nginx": 0.1, "cpu_vs_nginx": 5.0}},
        },
        "skipped": {},
    }
    peers.update(overrides)
    return peers


def test_peer_ratio_pairs_repetitions():
    # 9, 8, 3.5 → median 8
    assert peer_ratio(_peers(), "zerocopy-auto", "aiohttp", "4KiB") == pytest.approx(8.0)


def test_peer_ratio_falls_back_to_nginx_ratios():
    peers = _peers(repetitions=[])
    assert peer_ratio(peers, "zerocopy-auto", "aiohttp", "4KiB") == pytest.approx(8.5)
    assert peer_ratio(peers, "zerocopy-auto", "uvicorn-starlette", "4KiB") is None


def test_targets_without_peers_json_are_not_run():
    cpu = {"readwrite": {"256MiB": 1.0}, "sendfile": {"256MiB": 0.3}, "splice": {"256MiB": 0.7}}
    results = evaluate_targets(None, cpu)
    assert [r.status for r in results] == [NOT_RUN, NOT_RUN, NOT_RUN, MET, NOT_RUN]
    assert all("make bench-peers" in r.measured for r in results if r.status == NOT_RUN)
    assert results[3].measured == "sendfile 0.30x, splice 0.70x"


def test_targets_with_peers_json():
    cpu = {"readwrite": {"256MiB": 1.0}, "sendfile": {"256MiB": 0.3}, "splice": {"256MiB": 0.8}}
    results = evaluate_targets(_peers(), cpu)
    assert [r.status for r in results] == [MET, NOT_MET, MET, NOT_MET, MET]
    assert results[0].measured == "auto 0.85x nginx (sendfile 0.70x)"
    assert results[4].measured == "auto 8.0x aiohttp"


def test_targets_with_a_skipped_peer_or_no_cpu_phase():
    peers = _peers(skipped={"aiohttp": "not installed"})
    results = evaluate_targets(peers, {})
    assert results[3].status == NOT_RUN
    assert "no 256 MiB" in results[3].measured
    assert results[4].status == NOT_RUN
    assert "aiohttp skipped (not installed)" in results[4].measured


# -- report and check, end to end on synthetic results -------------------------------------


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


def _measurements(cases: list[str]) -> dict[str, Any]:
    sizes = {label: parse_size(label) for label in cases}
    windows = []
    for strategy in STRATEGIES:
        for label, size in sizes.items():
            counters = (
                {"copy_in": size * 10, "copy_out": size * 10, "syscalls": {"preadv2": 10}}
                if strategy == "readwrite"
                else {"zero_copy": size * 10, "syscalls": {strategy: 10}}
            )
            windows.append(_window(strategy, label, size, 0, 0.01, **counters))
    return {
        "meta": {
            "profile": "quick",
            "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:00:30+00:00",
            "duration_s": 30.0,
            "hostname": "test",
            "cpu_model": "Test CPU",
            "cpu_count": 2,
            "kernel": "6.18",
            "python": "3.11.7",
            "python_implementation": "CPython",
            "pyperf": "2.11.0",
            "trio": "0.35.0",
            "zerocopy": "0.1.0",
            "git_commit": None,
            "server_cpu": 0,
            "client_cpu": 1,
            "filesystem": "ext4",
            "eviction_verified": None,
            "loadavg_start": "0.1 0.1 0.1",
            "loadavg_end": "0.2 0.1 0.1",
            "strace": None,
            "bpftrace": None,
            "perf": None,
            "profile_settings": {"rounds": 2},
        },
        "strategies": list(STRATEGIES),
        "cases": {"latency": cases, "cpu": cases, "count": cases[:1]},
        "calibration": {},
        "cpu_windows": windows,
        "counts": [
            {
                "strategy": "readwrite",
                "case": cases[0],
                "size": sizes[cases[0]],
                "requests": 2,
                "server": {"syscalls": {"preadv": 2, "sendmsg": 2}, "copy_in": 10, "copy_out": 9},
                "strace": {"calls": {"preadv2": 2, "sendmsg": 2}, "errors": {}},
                "bpftrace": None,
            }
        ],
        "perf": [],
        "skipped": {"bpftrace": "not installed", "perf": "not in the quick profile"},
    }


def test_report_and_check_on_synthetic_results(tmp_path: Path):
    cases = ["4KiB", "1MiB"]
    for strategy in STRATEGIES:
        names = [f"latency_{c}" for c in cases] + [f"cpu_{c}" for c in cases]
        _suite_file(tmp_path / f"{strategy}.json", strategy, names)
    (tmp_path / "measurements.json").write_text(json.dumps(_measurements(cases)))
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    for section in SECTIONS:
        assert section in text
    assert "Not run (make bench-load)" in text
    assert "Not run (make bench-peers)" in text
    assert "**DISAGREE (100.0%, by 2)**" in text
    assert "agree as a pair" in text
    assert bench_check.check(tmp_path) == []


def test_report_reads_peers_json_when_present(tmp_path: Path):
    cases = ["4KiB", "1MiB"]
    for strategy in STRATEGIES:
        names = [f"latency_{c}" for c in cases] + [f"cpu_{c}" for c in cases]
        _suite_file(tmp_path / f"{strategy}.json", strategy, names)
    (tmp_path / "measurements.json").write_text(json.dumps(_measurements(cases)))
    (tmp_path / "peers.json").write_text(json.dumps(_peers()))
    (tmp_path / "load.json").write_text(
        json.dumps(
            {
                "meta": {},
                "runs": [
                    {
                        "strategy": "sendfile",
                        "size": "4KiB",
                        "connections": 16,
                        "rps": 12345.0,
                        "p50_ms": 1.2,
                        "p99_ms": 5.0,
                        "server_cpu_s": 4.5,
                        "requests": 60000,
                    }
                ],
                "knee": {"sendfile": {"4KiB": 16, "1MiB": None}},
            }
        )
    )
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "auto 0.85x nginx" in text
    assert "12,345" in text
    assert "coordinated omission" in text
    assert "| sendfile | 16 | — |" in text


def test_check_reports_every_missing_artefact(tmp_path: Path):
    problems = bench_check.check(tmp_path)
    assert any("measurements.json" in p for p in problems)
    assert any("readwrite.json" in p for p in problems)
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
