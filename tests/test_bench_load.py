"""The pure parts of the load benchmarks (bench/load.py, bench/peers.py): no timing, no network.

wrk output parsing on captured reports, the knee on synthetic sweeps, median ratios against
nginx with alternating repetitions, /proc (``bench/procfs.py``, shared with the suite) on
captured files and a fake /proc, the pinned CPU's other load, the nginx template, the rows of
the JSON files, and progress lines. One test starts and stops a real process (``http.server``,
on loopback) to check that a server set leaves nothing of a process group behind.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import cast

import pytest

from bench import load, peers
from bench._load_run import Cell
from bench._load_stats import KneePoint, Sample, find_knee, median, median_ratios, medians_by
from bench._load_wrk import Measurement, WrkError, parse_wrk, parse_wrk_time_ms, wrk_command
from bench.dataset import DocFile, VerificationError
from bench.procfs import (
    CLOCK_TICKS,
    CpuTimes,
    ProcSample,
    ProcStat,
    cpu_model,
    group_pids,
    ksoftirqd_pid,
    loadavg,
    parse_cpu_times,
    parse_proc_stat,
    parse_schedstat,
    parse_status_switches,
    rss_kib,
    sample,
    sample_group,
)
from bench.progress import Progress
from bench.serverproc import RunningServer, ServerSet, ServerStartError, taskset_prefix

# Captured from Debian's wrk 4.1 on this machine: keep-alive to zerocopy, 4 KiB, --latency.
WRK_LATENCY = """\
Running 1s test @ http://127.0.0.1:34059/4k.bin
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.24ms   11.73ms  76.99ms   91.47%
    Req/Sec     6.16k     3.01k    9.56k    60.00%
  Latency Distribution
     50%  488.00us
     75%    0.92ms
     90%   11.32ms
     99%   63.17ms
  6138 requests in 1.02s, 25.39MB read
Requests/sec:   6016.14
Transfer/sec:     24.89MB
"""

# A 404 run: the "Non-2xx or 3xx" line must not go unnoticed.
WRK_NON_2XX = """\
Running 1s test @ http://127.0.0.1:34059/nonexist
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   472.29us  746.45us   8.16ms   93.46%
    Req/Sec    12.51k     2.69k   14.56k    80.00%
  Latency Distribution
     50%  268.00us
     75%  390.00us
     90%  692.00us
     99%    4.40ms
  12473 requests in 1.00s, 1.86MB read
  Non-2xx or 3xx responses: 12473
Requests/sec:  12445.14
Transfer/sec:      1.85MB
"""

# An overloaded server: seconds in the tail, socket errors, gigabytes read.
WRK_SLOW = """\
Running 5s test @ http://127.0.0.1:8080/1MiB.bin
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   180.33ms  300.10ms   1.99s    90.00%
    Req/Sec     1.20k   200.00     1.50k    70.00%
  Latency Distribution
     50%   90.12ms
     75%  150.00ms
     90%  500.00ms
     99%    1.50s
  6000 requests in 5.01s, 5.86GB read
  Socket errors: connect 3, read 2, write 1, timeout 17
Requests/sec:   1197.60
Transfer/sec:      1.17GB
"""

# Without --latency there is no distribution block.
WRK_NO_LATENCY = """\
Running 2s test @ http://127.0.0.1:8080/
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.00m    0.00us   1.00h     0.00%
    Req/Sec     0.00      0.00     0.00      0.00%
  12 requests in 2.00s, 512.00B read
Requests/sec:      6.00
Transfer/sec:     256.00B
"""


def test_parse_wrk_with_latency_distribution() -> None:
    result = parse_wrk(WRK_LATENCY)
    assert result.requests == 6138
    assert result.duration_s == pytest.approx(1.02)
    assert result.bytes_read == round(25.39 * 2**20)
    assert result.rps == pytest.approx(6016.14)
    assert result.latency_avg_ms == pytest.approx(4.24)
    assert result.latency_max_ms == pytest.approx(76.99)
    assert result.percentiles_ms == pytest.approx(
        {50.0: 0.488, 75.0: 0.92, 90.0: 11.32, 99.0: 63.17}
    )
    assert result.p50_ms == pytest.approx(0.488)
    assert result.p99_ms == pytest.approx(63.17)
    assert result.errors == 0


def test_parse_wrk_counts_non_2xx_as_errors() -> None:
    result = parse_wrk(WRK_NON_2XX)
    assert result.non_2xx_3xx == 12473
    assert result.errors == 12473
    assert result.p50_ms == pytest.approx(0.268)
    assert result.latency_avg_ms == pytest.approx(0.47229)


def test_parse_wrk_seconds_and_socket_errors() -> None:
    result = parse_wrk(WRK_SLOW)
    assert result.p99_ms == pytest.approx(1500.0)
    assert result.latency_max_ms == pytest.approx(1990.0)
    assert result.bytes_read == round(5.86 * 2**30)
    assert (result.socket_errors.connect, result.socket_errors.read) == (3, 2)
    assert (result.socket_errors.write, result.socket_errors.timeout) == (1, 17)
    assert result.errors == 23


def test_parse_wrk_without_latency_flag() -> None:
    result = parse_wrk(WRK_NO_LATENCY)
    assert result.percentiles_ms == {}
    assert math.isnan(result.p50_ms)
    assert math.isnan(result.p99_ms)
    assert result.latency_avg_ms == pytest.approx(60_000.0)
    assert result.latency_max_ms == pytest.approx(3_600_000.0)
    assert result.bytes_read == 512


@pytest.mark.parametrize(
    ("number", "unit", "ms"),
    [
        ("488.00", "us", 0.488),
        ("0.92", "ms", 0.92),
        ("1.50", "s", 1500.0),
        ("2.00", "m", 120_000.0),
        ("1.00", "h", 3_600_000.0),
    ],
)
def test_wrk_time_units(number: str, unit: str, ms: float) -> None:
    assert parse_wrk_time_ms(number, unit) == pytest.approx(ms)


def test_wrk_time_nan_and_unknown_unit() -> None:
    assert math.isnan(parse_wrk_time_ms("-nan", "us"))
    with pytest.raises(WrkError):
        parse_wrk_time_ms("1.0", "ns")


@pytest.mark.parametrize("text", ["", "unable to connect to 127.0.0.1:1 Connection refused\n"])
def test_parse_wrk_rejects_non_reports(text: str) -> None:
    with pytest.raises(WrkError):
        parse_wrk(text)


def test_wrk_command_pins_and_caps_threads() -> None:
    argv = wrk_command("http://127.0.0.1:1/x", connections=1, duration_s=5, threads=2, cpu=1)
    assert argv[:3] == ["taskset", "-c", "1"]
    assert "-t1" in argv
    assert "-c1" in argv
    assert "-d5s" in argv
    assert "--latency" in argv
    assert argv[-1] == "http://127.0.0.1:1/x"
    assert wrk_command("u", connections=16, duration_s=1)[0] == "wrk"
    with pytest.raises(ValueError, match="whole seconds"):
        wrk_command("u", connections=1, duration_s=0)
    assert taskset_prefix(None) == []


# --- the knee -----------------------------------------------------------------------------


def sweep(*cells: tuple[int, float, float]) -> list[KneePoint]:
    return [KneePoint(c, rps, p99) for c, rps, p99 in cells]


KNEE_CASES = [
    pytest.param(
        # Throughput x3.5 then x3 while p99 grows less; then saturation: rps +5 %, p99 x4.
        sweep((1, 1000, 1.0), (4, 3500, 1.5), (16, 10500, 2.5), (64, 11000, 10.0)),
        16,
        id="saturates-after-16",
    ),
    pytest.param(
        sweep((1, 1000, 1.0), (4, 3900, 1.1), (16, 15000, 1.2)),
        None,
        id="never-saturates",
    ),
    pytest.param(
        # Already saturated at one connection: the knee is the first step.
        sweep((1, 1000, 1.0), (4, 1100, 4.0), (16, 1150, 16.0)),
        1,
        id="saturated-from-the-start",
    ),
    pytest.param(
        # Equal relative growth is not "faster": strictly greater is required.
        sweep((1, 1000, 1.0), (4, 2000, 2.0), (16, 2100, 8.0)),
        4,
        id="tie-is-not-a-knee",
    ),
    pytest.param(
        # Order of the input does not matter.
        sweep((64, 11000, 10.0), (1, 1000, 1.0), (16, 10500, 2.5), (4, 3500, 1.5)),
        16,
        id="unsorted",
    ),
    pytest.param(
        # Throughput falls under overload: p99 growth beats a negative growth.
        sweep((1, 1000, 1.0), (4, 3000, 1.2), (16, 2500, 1.3)),
        4,
        id="throughput-falls",
    ),
    pytest.param(
        # A step from an empty cell is skipped (growth from zero is undefined).
        sweep((1, 0.0, math.nan), (4, 3000, 1.2), (16, 3100, 5.0)),
        4,
        id="skips-empty-cell",
    ),
    pytest.param(sweep((16, 1000, 1.0)), None, id="one-point"),
    pytest.param([], None, id="empty"),
]


@pytest.mark.parametrize(("points", "expected"), KNEE_CASES)
def test_find_knee(points: list[KneePoint], expected: int | None) -> None:
    assert find_knee(points) == expected


def test_knees_per_strategy_and_size_from_median_runs() -> None:
    runs = [
        {"strategy": "sendfile", "size": "4KiB", "connections": 1, "rps": 1000.0, "p99_ms": 1.0},
        {"strategy": "sendfile", "size": "4KiB", "connections": 4, "rps": 1100.0, "p99_ms": 4.0},
        {"strategy": "splice", "size": "4KiB", "connections": 1, "rps": 1000.0, "p99_ms": 1.0},
        {"strategy": "splice", "size": "4KiB", "connections": 4, "rps": 3900.0, "p99_ms": None},
    ]
    assert load.knees(runs, ["sendfile", "splice", "readwrite"], ["4KiB"]) == {
        "sendfile": {"4KiB": 1},
        "splice": {"4KiB": None},
        "readwrite": {"4KiB": None},
    }


# --- medians and ratios -------------------------------------------------------------------


def test_median_ignores_nan() -> None:
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0]) == 1.5
    assert math.isnan(median([math.nan]))
    assert math.isnan(median([]))


def _rep(rep: int, **cells: tuple[float, float]) -> list[Sample]:
    return [
        Sample(rep=rep, candidate=name.replace("_", "-"), size="4KiB", rps=rps, p99_ms=1.0,
               cpu_per_req_us=cpu)
        for name, (rps, cpu) in cells.items()
    ]  # fmt: skip


def test_ratios_use_the_best_nginx_within_each_repetition() -> None:
    # The machine got 2x slower in repetition 1 (drift); within each repetition zerocopy is
    # at 80 % of the better nginx. Ratios taken across repetitions would be badly off.
    samples = [
        *_rep(0, zerocopy_sendfile=(8000, 30.0), nginx_sendfile=(10000, 20.0),
              nginx_nosendfile=(9000, 25.0)),
        *_rep(1, zerocopy_sendfile=(4000, 60.0), nginx_sendfile=(4500, 40.0),
              nginx_nosendfile=(5000, 50.0)),
        *_rep(2, zerocopy_sendfile=(7200, 33.0), nginx_sendfile=(9000, 22.0),
              nginx_nosendfile=(8000, 30.0)),
    ]  # fmt: skip
    ratios = median_ratios(samples)
    zc = ratios["zerocopy-sendfile"]["4KiB"]
    assert zc["rps_vs_nginx"] == pytest.approx(0.8)
    # CPU: against the *cheaper* nginx in each repetition: 30/20, 60/40, 33/22 -> all 1.5.
    assert zc["cpu_vs_nginx"] == pytest.approx(1.5)
    # nginx against itself: the best config is 1.0 in each repetition.
    best = [ratios[n]["4KiB"]["rps_vs_nginx"] for n in ("nginx-sendfile", "nginx-nosendfile")]
    assert max(b for b in best if b is not None) == pytest.approx(1.0)
    # nginx-sendfile: 1.0, 0.9, 1.0 -> median 1.0; nginx-nosendfile: 0.9, 1.0, 8/9 -> 0.9.
    assert ratios["nginx-nosendfile"]["4KiB"]["rps_vs_nginx"] == pytest.approx(0.9)


def test_ratios_median_is_per_repetition_not_ratio_of_medians() -> None:
    samples = [
        *_rep(0, zerocopy_auto=(100, 1.0), nginx_sendfile=(100, 1.0)),
        *_rep(1, zerocopy_auto=(110, 1.0), nginx_sendfile=(50, 1.0)),
        *_rep(2, zerocopy_auto=(1000, 1.0), nginx_sendfile=(500, 1.0)),
    ]
    # Per repetition: 1.0, 2.2, 2.0 -> median 2.0 (the ratio of the medians, 110 / 100,
    # would mix repetitions measured under different conditions).
    assert median_ratios(samples)["zerocopy-auto"]["4KiB"]["rps_vs_nginx"] == pytest.approx(2.0)
    # A repetition without nginx gives no ratio; the others still count: 1.0, 2.0 -> 1.5.
    del samples[3]
    assert median_ratios(samples)["zerocopy-auto"]["4KiB"]["rps_vs_nginx"] == pytest.approx(1.5)


def test_ratios_without_nginx_are_null() -> None:
    ratios = median_ratios(_rep(0, zerocopy_auto=(100, 1.0), aiohttp=(50, 2.0)))
    none = {"rps_vs_nginx": None, "cpu_vs_nginx": None, "cpu_irq_vs_nginx": None}
    assert ratios == {"zerocopy-auto": {"4KiB": none}, "aiohttp": {"4KiB": none}}


def test_ratios_keep_sizes_apart() -> None:
    samples = [
        Sample(0, "zerocopy-auto", "4KiB", 100.0, 1.0, 10.0, 12.0),
        Sample(0, "nginx-sendfile", "4KiB", 200.0, 1.0, 5.0, 8.0),
        Sample(0, "zerocopy-auto", "1MiB", 30.0, 1.0, 100.0, 150.0),
        Sample(0, "nginx-sendfile", "1MiB", 20.0, 1.0, 200.0, 300.0),
    ]
    ratios = median_ratios(samples)["zerocopy-auto"]
    assert ratios["4KiB"] == {"rps_vs_nginx": 0.5, "cpu_vs_nginx": 2.0, "cpu_irq_vs_nginx": 1.5}
    assert ratios["1MiB"] == {"rps_vs_nginx": 1.5, "cpu_vs_nginx": 0.5, "cpu_irq_vs_nginx": 0.5}


def test_medians_by_groups_in_first_seen_order() -> None:
    rows = [
        {"strategy": "b", "connections": 1, "rps": 10.0, "requests": 100, "p99_ms": math.nan},
        {"strategy": "a", "connections": 1, "rps": 30.0, "requests": 301, "p99_ms": 1.0},
        {"strategy": "b", "connections": 1, "rps": 20.0, "requests": 200, "p99_ms": math.nan},
        {"strategy": "b", "connections": 1, "rps": 90.0, "requests": 900, "p99_ms": math.nan},
    ]
    cells = medians_by(rows, ("strategy", "connections"), ("rps", "requests", "p99_ms"))
    assert cells == [
        {"strategy": "b", "connections": 1, "rps": 20.0, "requests": 200, "p99_ms": None},
        {"strategy": "a", "connections": 1, "rps": 30.0, "requests": 301, "p99_ms": 1.0},
    ]


# --- /proc --------------------------------------------------------------------------------

STAT_NGINX = (
    "4242 (nginx) S 4241 4241 4241 0 -1 4194624 2207 0 0 0 731 1204 0 0 20 0 1 0 "
    "3051 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0\n"
)
# comm may hold spaces and parentheses: split at the last ")".
STAT_ODD_COMM = (
    "77 (a) b (c d)) R 1 77 77 0 -1 4194304 10 0 0 0 5 7 0 0 20 0 3 0 100 0 0 "
    "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
)


def test_parse_proc_stat() -> None:
    stat = parse_proc_stat(STAT_NGINX)
    assert stat == ProcStat(
        pid=4242, comm="nginx", state="S", ppid=4241, pgrp=4241, utime_ticks=731, stime_ticks=1204
    )


def test_parse_proc_stat_odd_comm() -> None:
    stat = parse_proc_stat(STAT_ODD_COMM)
    assert (stat.pid, stat.comm, stat.state, stat.pgrp) == (77, "a) b (c d)", "R", 77)
    assert (stat.utime_ticks, stat.stime_ticks) == (5, 7)


@pytest.mark.parametrize("text", ["", "12 (x) S 1 2", "garbage without parens"])
def test_parse_proc_stat_rejects_truncated(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError; the message is for humans
        parse_proc_stat(text)


STATUS = """\
Name:\tpython
State:\tS (sleeping)
Tgid:\t4242
Threads:\t2
VmRSS:\t   20480 kB
voluntary_ctxt_switches:\t1234
nonvoluntary_ctxt_switches:\t5
"""


def test_parse_status_and_schedstat() -> None:
    assert parse_status_switches(STATUS) == (1234, 5)
    with pytest.raises(ValueError, match="no context switch"):
        parse_status_switches("Name:\tpython\n")
    assert parse_schedstat("509816005 53522101 98\n") == 509816005


def test_proc_sample_difference_and_cpu() -> None:
    a = ProcSample(1.0, 0.5, 2.0, 10, 1)
    b = ProcSample(1.5, 0.75, 2.8, 14, 1)
    delta = b - a
    assert (delta.utime_s, delta.stime_s, delta.voluntary, delta.involuntary) == (0.5, 0.25, 4, 0)
    assert delta.cpu_s == pytest.approx(0.8)  # schedstat wins over ticks
    assert delta.ticks_s == pytest.approx(0.75)
    assert (ProcSample(1.0, 0.5, None, 0, 0) - a).cpu_s == pytest.approx(0.0)


def test_group_sample_sums_over_the_process_group(tmp_path: Path) -> None:
    # A fake /proc: nginx master and worker in group 4241, a stranger, a non-pid entry and
    # a process that vanished (no stat file).
    def write(pid: str, text: str) -> None:
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "stat").write_text(text)

    write("4241", STAT_NGINX.replace("4242 (nginx) S 4241", "4241 (nginx) S 1"))
    write("4242", STAT_NGINX)
    write("77", STAT_ODD_COMM)
    write("15", STAT_ODD_COMM.replace("77 (a) b (c d)) R 1 77 77", "15 (ksoftirqd/1) S 2 0 0"))
    (tmp_path / "self").mkdir()
    (tmp_path / "999").mkdir()
    assert group_pids(4241, proc=tmp_path) == [4241, 4242]
    assert sample_group(4241, proc=tmp_path).ticks_s == pytest.approx(2 * 1935 / CLOCK_TICKS)
    assert sample_group(12345, proc=tmp_path) == ProcSample(0.0, 0.0, 0.0, 0, 0)
    assert ksoftirqd_pid(1, proc=tmp_path) == 15
    assert ksoftirqd_pid(0, proc=tmp_path) is None
    assert sample([15], proc=tmp_path).ticks_s == pytest.approx(12 / CLOCK_TICKS)
    assert sample([999], proc=tmp_path).ticks_s == 0.0
    # Context switches and schedstat: summed over every thread of every process of the group;
    # one thread without schedstat makes the precise figure unknown.
    for pid, tids in (("4241", ("4241",)), ("4242", ("4242", "4250"))):
        for tid in tids:
            (tmp_path / pid / "task" / tid).mkdir(parents=True)
            (tmp_path / pid / "task" / tid / "status").write_text(
                STATUS.replace(
                    "nonvoluntary_ctxt_switches:\t5", f"nonvoluntary_ctxt_switches:\t{tid}"
                )
            )
            if tid != "4241":
                (tmp_path / pid / "task" / tid / "schedstat").write_text(f"{tid}000 0 0\n")
    group = sample_group(4241, proc=tmp_path)
    assert (group.voluntary, group.involuntary) == (3 * 1234, 4241 + 4242 + 4250)
    assert group.runtime_s is None
    assert group.cpu_s == group.ticks_s
    (tmp_path / "4241" / "task" / "4241" / "schedstat").write_text("4241000 0 0\n")
    group = sample_group(4241, proc=tmp_path)
    assert group.runtime_s == pytest.approx((4241 + 4242 + 4250) * 1e-6)
    assert group.cpu_s == group.runtime_s


def test_memory_cpu_model_and_load_from_a_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "status").write_text(STATUS)
    assert rss_kib(4242, proc=tmp_path) == 20480
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "status").write_text("Name:\tkthreadd\n")
    with pytest.raises(ValueError, match="no VmRSS"):
        rss_kib(2, proc=tmp_path)
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n")
    (tmp_path / "loadavg").write_text("0.52 0.48 0.50 2/345 6789\n")
    assert cpu_model(proc=tmp_path) == "AMD EPYC 7B13"
    assert loadavg(proc=tmp_path) == ["0.52", "0.48", "0.50"]
    assert loadavg(proc=tmp_path / "absent") == []


PROC_STAT = """\
cpu  1000 10 500 90000 20 0 30 7 0 0
cpu0 600 5 300 40000 10 0 20 5 0 0
cpu1 400 5 200 50000 10 0 10 2 0 0
intr 123456
ctxt 98765
"""


def test_parse_cpu_times() -> None:
    # Buckets: user + nice + system; irq + softirq; steal; idle + iowait.
    cpu0 = parse_cpu_times(PROC_STAT, 0)
    assert cpu0 == CpuTimes(task_ticks=905, irq_ticks=20, steal_ticks=5, idle_ticks=40010)
    assert cpu0.total_ticks == 40940
    assert parse_cpu_times(PROC_STAT, 1).steal_ticks == 2
    with pytest.raises(ValueError, match="no cpu2"):
        parse_cpu_times(PROC_STAT, 2)
    # Old kernels print fewer columns; the missing ones count as zero.
    assert parse_cpu_times("cpu0 1 2 3 4\n", 0) == CpuTimes(6, 0, 0, 4)
    assert parse_cpu_times(PROC_STAT, 1) - parse_cpu_times(PROC_STAT, 0) == CpuTimes(
        task_ticks=-300, irq_ticks=-10, steal_ticks=-3, idle_ticks=10000
    )


def test_other_load_on_the_pinned_cpu() -> None:
    wrk = parse_wrk(WRK_LATENCY)
    # Over 5 s at 100 Hz: processes ran 3.5 s on the CPU, of which the server 3 s; 0.5 s of
    # softirq; 0.25 s stolen. Other load: 0.5 s + 0.25 s = 15 % of the run.
    core = CpuTimes(task_ticks=350, irq_ticks=50, steal_ticks=25, idle_ticks=75)
    m = Measurement(wrk, server_cpu_s=3.0 * 100 / CLOCK_TICKS, involuntary_switches=0,
                    pinned_cpu=core)  # fmt: skip
    assert m.pinned_cpu_other_pct == pytest.approx(15.0)
    assert m.pinned_cpu_irq_pct == pytest.approx(10.0)
    assert m.pinned_cpu_steal_pct == pytest.approx(5.0)
    assert m.cpu_per_req_us == pytest.approx(m.server_cpu_s / 6138 * 1e6)
    # CPU + irq per request: (3 s + 0.5 s) / 6138 requests.
    assert m.cpu_irq_per_req_us == pytest.approx((m.server_cpu_s + 50 / CLOCK_TICKS) / 6138 * 1e6)
    # Softirq work deferred to ksoftirqd is the benchmark's, not other load: 0.25 s of the
    # 0.5 s of other task time moves from "other" to "irq".
    m = Measurement(wrk, m.server_cpu_s, 0, core, ksoftirqd_s=0.25 * 100 / CLOCK_TICKS)
    assert m.pinned_cpu_other_pct == pytest.approx(10.0)
    assert m.pinned_cpu_irq_pct == pytest.approx(15.0)
    assert m.cpu_irq_per_req_us == pytest.approx(
        (m.server_cpu_s + (50 + 25) / CLOCK_TICKS) / 6138 * 1e6
    )
    unpinned = Measurement(wrk, server_cpu_s=3.0, involuntary_switches=0)
    assert math.isnan(unpinned.pinned_cpu_other_pct)
    assert math.isnan(unpinned.pinned_cpu_irq_pct)
    assert math.isnan(unpinned.cpu_irq_per_req_us)


# --- templates, candidates, summaries -----------------------------------------------------


def test_nginx_template_renders_completely() -> None:
    template = (peers.PEERS_DIR / "nginx.conf").read_text()
    values = {"PREFIX": "/tmp/p", "PORT": "12345", "ROOT": "/tmp/www", "SENDFILE": "off"}
    conf = peers.render_template(template, values)
    assert "@" not in conf
    assert "listen 127.0.0.1:12345;" in conf
    assert "root /tmp/www;" in conf
    assert "pid /tmp/p/nginx.pid;" in conf
    assert "sendfile off;" in conf
    assert "access_log off;" in conf
    assert "tcp_nopush on;" in conf
    assert "worker_processes 1;" in conf
    assert "daemon off;" in conf
    with pytest.raises(KeyError, match="without a value"):
        peers.render_template(template, {"PORT": "1"})
    with pytest.raises(KeyError, match="no placeholder"):
        peers.render_template(template, {**values, "EXTRA": "x"})


def test_candidate_names_are_the_published_ones() -> None:
    assert tuple(peers.candidates()) == (
        "zerocopy-auto",
        "zerocopy-sendfile",
        "zerocopy-splice",
        "zerocopy-readwrite",
        "nginx-sendfile",
        "nginx-nosendfile",
        "aiohttp",
        "uvicorn-starlette",
        "http.server",
    )


def test_load_summary_marks_the_knee() -> None:
    runs = [
        {"strategy": "splice", "size": "4KiB", "connections": c, "rps": r, "p50_ms": 0.1,
         "p99_ms": p, "server_cpu_per_req_us": 10.0, "server_cpu_irq_per_req_us": 12.5,
         "pinned_cpu_other_pct": 3.0, "errors": 0}
        for c, r, p in ((1, 1000.0, 1.0), (4, 1100.0, 4.0))
    ]  # fmt: skip
    text = load.summary_markdown(runs, {"splice": {"4KiB": 1}}, ["4KiB"])
    assert "| splice | 1 ← knee | 1,000 | 0.10 | 1.00 | 10.0 | 12.5 | 3% | 0 |" in text
    assert "| splice | 4 | 1,100 |" in text
    assert "- splice: 4KiB 1" in text


def test_peers_summary_quotes_median_ratios() -> None:
    medians = [
        {"candidate": "zerocopy-auto", "size": "1MiB", "rps": 1500.0, "p99_ms": 20.0,
         "server_cpu_per_req_us": 250.0, "pinned_cpu_other_pct": None, "errors": 0},
    ]  # fmt: skip
    ratios = {"zerocopy-auto": {"1MiB": {"rps_vs_nginx": 1.04, "cpu_vs_nginx": None}}}
    text = peers.summary_markdown(medians, ratios, ["1MiB"], 16)
    assert "### 1MiB, 16 connections" in text
    assert "| zerocopy-auto | 1,500 | 20.00 | 250.0 | - | 1.04x | - | - | - | 0 |" in text


def test_a_failing_peer_is_skipped_but_a_failing_zerocopy_is_fatal(tmp_path: Path) -> None:
    def broken(ss: ServerSet, root: Path) -> RunningServer:
        raise VerificationError("GET /4KiB.bin: status 404 Not Found")

    def candidate(name: str) -> peers.Candidate:
        return peers.Candidate(name=name, settings="", missing=lambda: None, start=broken)

    skipped: dict[str, str] = {"uvicorn-starlette": "uvicorn not installed"}
    verification: dict[str, dict[str, str]] = {}
    with ServerSet(tmp_path, cpu=None) as ss:
        wanted = [candidate("aiohttp"), candidate("uvicorn-starlette")]
        assert peers._start_all(ss, wanted, {}, skipped, verification) == {}
        assert skipped["aiohttp"].endswith("status 404 Not Found")
        assert skipped["uvicorn-starlette"] == "uvicorn not installed"
        assert verification == {}
        with pytest.raises(VerificationError):
            peers._start_all(ss, [candidate("zerocopy-auto")], {}, skipped, verification)


# --- the JSON rows, progress, and one real server's lifecycle -----------------------------

LOAD_RAW_KEYS = {
    "rep", "strategy", "size", "size_bytes", "connections", "rps", "p50_ms", "p75_ms", "p90_ms",
    "p99_ms", "latency_avg_ms", "latency_max_ms", "server_cpu_s", "server_cpu_per_req_us",
    "server_cpu_irq_per_req_us", "requests", "duration_s", "bytes_read", "socket_errors",
    "non_2xx_3xx", "errors", "server_involuntary_switches", "pinned_cpu_other_pct",
    "pinned_cpu_steal_pct", "pinned_cpu_irq_pct",
}  # fmt: skip
PEERS_REPETITION_KEYS = {
    "rep", "candidate", "size", "rps", "p50_ms", "p99_ms", "server_cpu_per_req_us",
    "server_cpu_irq_per_req_us", "server_cpu_s", "requests", "connections", "socket_errors",
    "non_2xx_3xx", "errors", "server_involuntary_switches", "pinned_cpu_other_pct",
    "pinned_cpu_steal_pct", "pinned_cpu_irq_pct",
}  # fmt: skip


def test_rows_keep_the_published_schema() -> None:
    # bench/report.py reads load.json and peers.json by these names.
    measurement = Measurement(parse_wrk(WRK_SLOW), server_cpu_s=1.5, involuntary_switches=7)
    server = cast("RunningServer", None)  # the rows never look at the server
    doc = DocFile(label="1MiB", size=1 << 20, sha256="")
    load_row = load._row(Cell(2, "splice", server, doc, 256), measurement)
    assert set(load_row) == LOAD_RAW_KEYS
    assert (load_row["rep"], load_row["strategy"], load_row["connections"]) == (2, "splice", 256)
    assert load_row["p90_ms"] == pytest.approx(500.0)
    assert load_row["socket_errors"] == {"connect": 3, "read": 2, "write": 1, "timeout": 17}
    peers_row = peers._row(Cell(0, "aiohttp", server, doc, 16), measurement)
    assert set(peers_row) == PEERS_REPETITION_KEYS
    assert peers_row["errors"] == 23
    assert measurement.describe() == (
        "1,198 req/s, p50 90.12 ms, p99 1500.00 ms, 250.0 µs CPU/req ERRORS 23"
    )


def test_progress_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    # Under pytest stderr is not a terminal: "auto" draws no bar.
    with Progress(2, "bench-test") as progress:
        assert progress.style == "plain"
        progress.advance("first")
        progress.note("a note")
        progress.advance("second")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "bench-test: 2 steps"
    assert lines[1] == "[1/2 0m00s, ETA 0m00s] first"
    assert lines[2] == "  a note"
    assert lines[3] == "[2/2 0m00s, ETA 0m00s] second"
    with pytest.raises(ValueError, match="unknown progress style"):
        Progress(1, "x", style="fancy")


def test_a_server_set_stops_the_whole_process_group(tmp_path: Path) -> None:
    # http.server announces http://127.0.0.1:PORT/ on stdout, as every peer does.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"]
    with ServerSet(tmp_path, cpu=None) as servers:
        server = servers.start("http.server", argv, env=env)
        assert server.port > 0
        assert server.command == tuple(argv)
        assert group_pids(server.pgid) == [server.pgid]
    assert server.stopped
    assert server.proc.returncode is not None
    assert group_pids(server.pgid) == []
    assert (tmp_path / "http.server.log").exists()


def test_a_server_that_exits_is_a_start_error(tmp_path: Path) -> None:
    with ServerSet(tmp_path, cpu=None) as servers:
        with pytest.raises(ServerStartError, match="exited with status 3") as info:
            servers.start("broken", [sys.executable, "-c", "print('no luck'); raise SystemExit(3)"])
        assert "no luck" in info.value.log_tail
