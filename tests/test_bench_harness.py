"""The harness (bench/harness/): the plumbing every benchmark stands on. No timing.

/proc on captured files and a fake /proc, the metrics parser, sizes, the strict schema
loader and the result files, statistics, the nginx template, the many-files tree (which
must name its files as the wrk script does), progress lines, and the server processes and
the client against real servers on loopback, whose process groups must be gone afterwards.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import trio

from bench.harness import files, machine, schema, stats
from bench.harness.client import run_requests
from bench.harness.files import DocFile, VerificationError, many_files_path, verify_file
from bench.harness.metrics import counter_delta, parse_samples, sample_value
from bench.harness.names import PEER_CANDIDATES, STRATEGIES, ZEROCOPY_CANDIDATES
from bench.harness.nginx import CONFIGS, TEMPLATE, render_template
from bench.harness.procfs import (
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
from bench.harness.progress import Progress
from bench.harness.results import DATA_DIR, read_record, write_json, write_record
from bench.harness.servers import (
    ServerSet,
    ServerStartError,
    parse_listening_ports,
    parse_ready_line,
    running_server,
)
from bench.harness.sizes import format_size, parse_size, parse_size_list

# -- /proc -------------------------------------------------------------------------------------


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


# -- the server's counters ---------------------------------------------------------------------

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


def test_sample_value_of_an_absent_counter_is_zero():
    samples = parse_samples(SCRAPE_AFTER)
    assert sample_value(samples, "zerocopy_syscalls_total", syscall="sendfile") == 5.0
    assert sample_value(samples, "zerocopy_offloaded_total") == 0.0


# -- ready lines, sizes --------------------------------------------------------------------------


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


def test_size_lists_normalise_labels():
    assert parse_size_list("4k, 1MiB") == {"4KiB": 4096, "1MiB": 1 << 20}
    with pytest.raises(ValueError, match="no sizes"):
        parse_size_list(" , ")


# -- names ---------------------------------------------------------------------------------------


def test_names_are_defined_once_and_consistently():
    assert STRATEGIES[0] == "auto"  # the default users run comes first in every table
    assert tuple(f"zerocopy-{s}" for s in STRATEGIES) == ZEROCOPY_CANDIDATES
    assert len(set(PEER_CANDIDATES)) == len(PEER_CANDIDATES)
    assert set(CONFIGS) == {"nginx-sendfile", "nginx-nosendfile", "nginx-aio-threads"}


# -- the schema, and result files ----------------------------------------------------------------


def _delta(**changes) -> dict[str, object]:
    base = {
        "syscalls": {"sendfile": 2},
        "eagain": {},
        "copy_in": 1,
        "copy_out": 2,
        "zero_copy": 3,
        "body": 3,
        "responses": {"200": 2},
        "connections": 1,
    }
    return base | changes


def test_schema_round_trips_a_record():
    record = schema.load(schema.CounterDelta, _delta())
    assert record.attempts("sendfile") == 2
    assert schema.load(schema.CounterDelta, json.loads(json.dumps(schema.dump(record)))) == record


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({k: v for k, v in _delta().items() if k != "copy_in"}, r"missing key\(s\) \['copy_in'\]"),
        (
            {**{k: v for k, v in _delta().items() if k != "copy_in"}, "bytes_in": 1},
            r"unexpected key\(s\) \['bytes_in'\]",
        ),
        (_delta(copy_in=None), r"copy_in: null where int is required"),
        (_delta(copy_in=1.5), r"copy_in: 1.5 is not a int"),
        (_delta(copy_in=True), r"copy_in: True is not a int"),
        (_delta(syscalls={"sendfile": "2"}), r"syscalls\['sendfile'\]: '2' is not a int"),
        (_delta(syscalls=[]), r"syscalls: list where an object is required"),
    ],
)
def test_schema_rejects_every_drift_with_its_path(data, message):
    with pytest.raises(schema.SchemaError, match=message):
        schema.load(schema.CounterDelta, data)


def test_schema_nested_paths_optionals_and_tuples():
    summary = {"requests": 3, "p50_ms": 1, "p99_ms": None, "max_ms": 2.5}
    loaded = schema.load(schema.LatencySummary, summary)
    assert loaded.p50_ms == 1.0
    assert isinstance(loaded.p50_ms, float)
    assert loaded.p99_ms is None
    plan = {
        "strategy": "auto",
        "port": 1,
        "root": "/r",
        "server_cpu": None,
        "client_cpu": 1,
        "cases": [{"name": "latency_4KiB", "filename": "4KiB.bin", "size": 4096, "cold": False}],
    }
    with pytest.raises(schema.SchemaError, match=r"cases\[0\]: missing key\(s\) \['inner_loops'\]"):
        schema.load(schema.LatencyPlan, plan)
    plan["cases"][0]["inner_loops"] = 5  # type: ignore[index]
    assert schema.load(schema.LatencyPlan, plan).cases[0].inner_loops == 5


def test_write_json_is_atomic_and_spells_nan_as_null(tmp_path: Path):
    path = tmp_path / "sub" / "x.json"
    write_json(path, {"a": math.nan, "b": [math.inf, 1.0], "c": {"d": -math.inf}})
    assert json.loads(path.read_text()) == {"a": None, "b": [None, 1.0], "c": {"d": None}}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_read_record_names_the_file_and_the_key(tmp_path: Path):
    summary = schema.LatencySummary(requests=1, p50_ms=1.0, p99_ms=math.nan, max_ms=None)
    path = tmp_path / "summary.json"
    write_record(path, summary)
    assert read_record(path, schema.LatencySummary).p99_ms is None
    path.write_text(path.read_text().replace("p99_ms", "p99"))
    with pytest.raises(schema.SchemaError, match=r"summary.json: .*unexpected key"):
        read_record(path, schema.LatencySummary)
    path.write_text("{")
    with pytest.raises(schema.SchemaError, match="not JSON"):
        read_record(path, schema.LatencySummary)
    with pytest.raises(FileNotFoundError):
        read_record(tmp_path / "absent.json", schema.LatencySummary)


# -- statistics ----------------------------------------------------------------------------------


def test_median_ignores_nan_and_none():
    assert stats.median([3.0, math.nan, None, 1.0, 2.0]) == 2.0
    assert math.isnan(stats.median([math.nan, None]))
    assert stats.median_or_none([]) is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0], 99, 1.0), ([float(i) for i in range(1, 101)], 50, 51.0), ([3.0, 1.0, 2.0], 100, 3.0)],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert stats.percentile(values, q) == expected
    assert math.isnan(stats.percentile([], 50))


def test_paired_ratio_is_the_median_of_ratios_within_repetitions():
    # Per repetition: 1.0, 2.2, 2.0 -> 2.0; the ratio of the medians (110 / 100) would mix
    # repetitions measured under different conditions.
    values = {0: 100.0, 1: 110.0, 2: 1000.0}
    baselines = {0: 100.0, 1: 50.0, 2: 500.0}
    assert stats.paired_ratio(values, baselines) == pytest.approx(2.0)
    # A repetition without a baseline, or with a zero one, does not count.
    assert stats.paired_ratio(values, {0: 100.0, 1: 0.0}) == pytest.approx(1.0)
    assert stats.paired_ratio({0: None}, {0: 1.0}) is None


# -- machine and pinning -------------------------------------------------------------------------


def test_pinning_needs_two_distinct_allowed_cpus():
    assert machine.choose_pinning(enabled=False).server_cpu is None
    same = machine.choose_pinning(0, 0)
    assert (same.server_cpu, same.client_cpu) == (None, None)
    assert "not pinned" in same.note
    if os.sched_getaffinity(0) >= {0, 1} and machine.tool_version(("taskset", "--version")):
        assert machine.choose_pinning(0, 1).client_cpu == 1


def test_machine_info_records_versions():
    info = machine.machine_info(packages=("no-such-distribution-here",), tools=("strace",))
    assert info.packages["no-such-distribution-here"] is None
    assert info.packages["trio"] == trio.__version__
    assert set(info.tools) == {"strace"}
    assert schema.load(schema.Machine, json.loads(json.dumps(schema.dump(info)))) == info


# -- nginx's template ----------------------------------------------------------------------------


def test_nginx_template_renders_completely() -> None:
    template = TEMPLATE.read_text()
    values = {
        "PREFIX": "/tmp/p",
        "PORT": "12345",
        "ROOT": "/tmp/www",
        "SENDFILE": "off",
        "AIO": "threads",
        "WORKERS": "2",
        "AUTOINDEX": "off",
    }
    conf = render_template(template, values)
    assert "@" not in conf
    assert "listen 127.0.0.1:12345;" in conf
    assert "root /tmp/www;" in conf
    assert "pid /tmp/p/nginx.pid;" in conf
    assert "sendfile off;" in conf
    assert "aio threads;" in conf
    assert "access_log off;" in conf
    assert "tcp_nopush on;" in conf
    assert "worker_processes 2;" in conf
    assert "daemon off;" in conf
    with pytest.raises(KeyError, match="without a value"):
        render_template(template, {"PORT": "1"})
    with pytest.raises(KeyError, match="no placeholder"):
        render_template(template, {**values, "EXTRA": "x"})


# -- files ---------------------------------------------------------------------------------------


def test_many_files_are_named_as_the_wrk_script_picks_them(tmp_path: Path):
    docs = files.make_many_files(tmp_path, 250, 1024, 4096, seed=3)
    assert [doc.name for doc in docs] == [many_files_path(i) for i in range(250)]
    assert {doc.size for doc in docs} <= set(range(1024, 4097))
    assert len({doc.size for doc in docs}) > 50
    assert all((tmp_path / doc.name).stat().st_mode & 0o777 == 0o644 for doc in docs)
    assert (tmp_path / "many" / "02").stat().st_mode & 0o777 == 0o755
    # The Lua script builds the same path for index i: /many/%02d/%04d.bin with floor(i/100).
    lua = (DATA_DIR / "wrk" / "random_path.lua").read_text()
    assert 'string.format("/many/%02d/%04d.bin", math.floor(i / per_dir), i)' in lua
    assert re.search(r"per_dir = 3000, 100", lua)
    assert many_files_path(1234) == "many/12/1234.bin"


def test_docroot_files_are_hot_and_checked_by_digest(tmp_path: Path):
    docs = files.make_docroot(tmp_path / "www", {"4KiB": 4096})
    doc = docs["4KiB"]
    assert (doc.path, doc.size) == ("/4KiB.bin", 4096)
    assert files.is_cached(str(tmp_path / "www" / doc.name)) in (True, None)


# -- progress, servers and the client (real processes on loopback) -------------------------------


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


async def test_the_client_reads_whole_responses_from_a_real_server(tmp_path: Path):
    files.write_files(str(tmp_path), {"64KiB.bin": 65536})
    with running_server(tmp_path, "auto") as server:
        assert server.metrics_port is not None
        done, elapsed = await run_requests(server.port, "64KiB.bin", count=3)
        assert done == 3
        assert elapsed > 0
        doc = DocFile("64KiB", 65536, files_digest(tmp_path / "64KiB.bin"), "64KiB.bin")
        assert verify_file(server.port, doc).startswith("200, HTTP/1.1")
        with pytest.raises(VerificationError, match="differs"):
            verify_file(server.port, DocFile("x", 65536, "0" * 64, "64KiB.bin"))
    assert group_pids(server.pid) == []


def files_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
