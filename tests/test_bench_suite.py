"""The pyperf suite (bench/suite/): its parsers, tracers' scripts, plan and pyperf files.

Nothing here times anything: the inputs are captured tool output. One test runs bpftrace for
real (root, bpftrace and tracefs needed, else skipped) to check that the tracer is armed
before it counts, and that it counts every syscall of the traced process by name; one runs a
TLS server (trustme certificate) for the TLS client and one window of openssl handshakes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyperf
import pytest

from bench.harness import files, metrics
from bench.harness.client import run_requests
from bench.harness.names import PERF_PATHS
from bench.harness.schema import CounterDelta, CpuWindow, HandshakeRun, StraceCounts
from bench.harness.servers import running_server
from bench.suite import tls
from bench.suite.perf import parse_children_report, parse_self_report, parse_shares
from bench.suite.plan import FULL, QUICK, Case
from bench.suite.pyperf_files import add_cpu_benchmarks
from bench.suite.pyspy import OTHER, component_of, parse_raw
from bench.suite.tracers import (
    ARM_SYSCALL,
    DUMP_SYSCALL,
    bpf_counts,
    bpftrace_available,
    bpftrace_script,
    parse_bpftrace_maps,
    parse_strace_summary,
    parse_syscall_table,
    syscall_table,
    trace_bpftrace,
)

# -- strace -c -----------------------------------------------------------------------------------

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
    assert parse_strace_summary("") == StraceCounts({}, {})


# -- bpftrace ------------------------------------------------------------------------------------

UNISTD = """\
#ifndef _ASM_UNISTD_64_H
#define _ASM_UNISTD_64_H

#define __NR_read 0
#define __NR_write 1
#define __NR_sendfile 40
#define __NR_recvfrom 45
#define __NR_sendmsg 46
#define __NR_preadv2 327

#endif /* _ASM_UNISTD_64_H */
"""

# Captured from the script on this machine (numbers only; the table names them).
BPFTRACE_OUTPUT = """\
ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace.
Attaching 3 probes...
ARMED
COUNTS
@calls[232]: 30
@calls[45]: 11
@calls[40]: 10
@calls[327]: 20
@calls[46]: 1
@returned[45]: 10
@returned[40]: 10
@returned[327]: 20
@returned[232]: 30
@returned[46]: 1
@bytes[45]: 780
@bytes[40]: 10485760
@bytes[327]: 20
@bytes[46]: 4200
@bytes[232]: 31
@eagain[45]: 1

DONE
@calls[1]: 99
"""


def test_the_syscall_table_names_numbers():
    assert parse_syscall_table(UNISTD) == {
        0: "read",
        1: "write",
        40: "sendfile",
        45: "recvfrom",
        46: "sendmsg",
        327: "preadv2",
    }


def test_bpftrace_counts_only_what_lies_between_the_sentinels():
    maps = parse_bpftrace_maps(BPFTRACE_OUTPUT)
    assert maps["calls"] == {232: 30, 45: 11, 40: 10, 327: 20, 46: 1}  # not @calls[1] after DONE
    counts = bpf_counts(maps, parse_syscall_table(UNISTD))
    assert counts.calls == {
        "syscall_232": 30,
        "recvfrom": 11,
        "sendfile": 10,
        "preadv2": 20,
        "sendmsg": 1,
    }
    assert counts.total == 72
    # Transfer-path calls by name; bytes only for the copying calls, by direction.
    assert counts.returned == {"recvfrom": 10, "sendfile": 10, "preadv2": 20, "sendmsg": 1}
    assert counts.eagain == {"recvfrom": 1}
    assert counts.bytes_in == {"recvfrom": 780, "preadv2": 20}
    assert counts.bytes_out == {"sendmsg": 4200}
    assert (counts.copy_in, counts.copy_out) == (800, 4200)


def test_nothing_counted_without_the_counting_sentinel():
    assert parse_bpftrace_maps("Attaching 3 probes...\nARMED\n")["calls"] == {}


def test_bpftrace_script_counts_every_syscall_of_one_pid_and_has_two_sentinels():
    script = bpftrace_script(4242, 77)
    assert "tracepoint:raw_syscalls:sys_exit /pid == 4242/" in script
    assert "@calls[args->id] = count();" in script
    assert "if (args->ret == -11) { @eagain[args->id] = count(); }" in script
    arm = f"tracepoint:syscalls:sys_enter_{ARM_SYSCALL} /pid == 77/"
    dump = f"tracepoint:syscalls:sys_enter_{DUMP_SYSCALL} /pid == 77/"
    assert arm in script
    assert dump in script
    arm_line = next(line for line in script.splitlines() if line.startswith(arm))
    assert "clear(@calls);" in arm_line
    assert arm_line.index("clear(@calls)") < arm_line.index('printf("ARMED')
    dump_line = next(line for line in script.splitlines() if line.startswith(dump))
    assert dump_line.index('printf("COUNTS') < dump_line.index("print(@calls)")
    assert dump_line.index("print(@calls)") < dump_line.index('printf("DONE')
    assert dump_line.index('printf("DONE') < dump_line.index("exit();")


@pytest.mark.skipif(not bpftrace_available(), reason="needs bpftrace, root and tracefs")
def test_bpftrace_is_armed_before_it_counts_and_sees_every_syscall_by_name():
    # A child that makes 50 getcwd calls only after a line on stdin, then 7 more later.
    code = (
        "import os, sys\n"
        "sys.stdin.readline()\n"
        "for _ in range(50): os.getcwd()\n"
        "print('done', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            for _ in range(20):  # noise before the window: never counted
                os.getcwd()
            with trace_bpftrace(child.pid) as result:
                child.stdin.write("go\n")
                child.stdin.flush()
                assert child.stdout.readline() == "done\n"
                time.sleep(0.1)
        finally:
            child.kill()
    counts = result[0]
    assert counts.total >= 50
    if syscall_table():
        assert counts.calls["getcwd"] == 50
    else:
        assert any(count == 50 for count in counts.calls.values())


# -- perf -----------------------------------------------------------------------------------------

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
    30.25%     1.83%  [k] splice_to_socket                      -      -
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
    samples, to_iter, from_iter, paths = parse_children_report(PERF_CHILDREN)
    assert samples == "6K"
    assert to_iter == pytest.approx(48.57)
    assert from_iter == pytest.approx(21.60)
    assert paths["splice_to_socket"] == pytest.approx(30.25)
    assert paths["net_rx_action"] == 0.0
    assert set(paths) == set(PERF_PATHS)


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


# -- py-spy ---------------------------------------------------------------------------------------

# Captured from `py-spy record --nonblocking --format raw` of a server under load (shortened):
# one line per distinct stack, outermost frame first, then the sample count.
PYSPY_RAW = "\n".join(
    [
        "WithFallback.send_span (zerocopy/transfer/fallback.py:73);"
        "Memory.send_span (zerocopy/transfer/memory.py:69);"
        "retry_writable (zerocopy/transfer/sockio.py:80) 6",
        "_serve_requests (zerocopy/server/connection.py:204);"
        "CancelScope.__enter__ (/usr/lib/python3/site-packages/trio/_core/_run.py:627) 2",
        "cancel_shielded_checkpoint (trio/_core/_traps.py:95) 3",
        "handle_connection (zerocopy/server/connection.py:91);"
        "_serve_requests (zerocopy/server/connection.py:178) 4",
        "Memory.send_span (zerocopy/transfer/memory.py:72);"
        "retry_writable (zerocopy/transfer/sockio.py:80) 4",
        "_feed_slice (zerocopy/http/parser.py:310) 1",
        "<module> (<frozen runpy>:198) 0",
        "not a stack line",
    ]
)


def test_pyspy_raw_gives_components_by_self_time():
    profile = parse_raw(PYSPY_RAW)
    assert profile.samples == 20
    assert profile.components == {
        "trio: scheduler and I/O waits": pytest.approx(25.0),
        "zerocopy/http: parse, plan, heads": pytest.approx(5.0),
        "zerocopy/server: connection loop, sender, respond": pytest.approx(20.0),
        "zerocopy/transfer: strategies, socket calls": pytest.approx(50.0),
        "zerocopy/files: cache, open, metadata": 0.0,
        OTHER: 0.0,
    }
    assert sum(profile.components.values()) == pytest.approx(100.0)


def test_pyspy_raw_gives_the_hottest_lines_with_short_paths():
    top = parse_raw(PYSPY_RAW, limit=3).top
    assert [(round(e.percent), e.dso, e.symbol) for e in top] == [
        (50, "zerocopy/transfer/sockio.py", "retry_writable:80"),
        (20, "zerocopy/server/connection.py", "_serve_requests:178"),
        (15, "trio/_core/_traps.py", "cancel_shielded_checkpoint:95"),
    ]


def test_pyspy_empty_recording_has_no_samples():
    assert parse_raw("").samples == 0
    assert parse_raw("").top == []


@pytest.mark.parametrize(
    ("file", "component"),
    [
        (
            "/srv/venv/lib/python3.11/site-packages/trio/_core/_run.py",
            "trio: scheduler and I/O waits",
        ),
        ("zerocopy/files/cache.py", "zerocopy/files: cache, open, metadata"),
        ("<frozen runpy>", OTHER),
        ("selectors.py", OTHER),
    ],
)
def test_pyspy_components_follow_the_file(file: str, component: str):
    assert component_of(file) == component


# -- plan -----------------------------------------------------------------------------------------


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


def test_every_profile_traces_and_measures_nginx():
    for profile in (FULL, QUICK):
        assert profile.bpftrace
        assert profile.nginx
    assert {case.label for case in QUICK.count_cases} == {"4KiB", "1MiB"}


# -- the pyperf files ------------------------------------------------------------------------------


def _cpu_window(server: str, rep: int, cpu_s: float, counters: bool = True) -> CpuWindow:
    delta = CounterDelta({"sendfile": 10}, {}, 40, 400, 40960, 40960, {"200": 10}, 1)
    return CpuWindow(
        server=server,
        case="4KiB",
        size=4096,
        cold=False,
        rep=rep,
        date="2026-01-01T00:00:00+00:00",
        requests=10,
        elapsed_s=0.1,
        utime_s=0.01,
        stime_s=0.0,
        runtime_s=cpu_s,
        cpu_s=cpu_s,
        voluntary=5,
        involuntary=1,
        counters=delta if counters else None,
    )


def test_cpu_benchmarks_are_per_request_and_skip_nginx_and_zero_windows(tmp_path: Path):
    path = tmp_path / "sendfile.json"
    windows = [
        _cpu_window("sendfile", 0, 0.002),
        _cpu_window("sendfile", 1, 0.0),  # nothing measurable: left out, never fudged
        _cpu_window("sendfile", 2, 0.004),
        _cpu_window("nginx-sendfile", 0, 0.001, counters=False),
        _cpu_window("splice", 0, 0.003),
    ]
    add_cpu_benchmarks(path, "sendfile", windows)
    bench = pyperf.BenchmarkSuite.load(str(path)).get_benchmark("cpu_4KiB")
    assert sorted(bench.get_values()) == pytest.approx([0.0002, 0.0004])
    metadata = bench.get_runs()[0].get_metadata()
    assert metadata["strategy"] == "sendfile"
    assert metadata["zero_copy_bytes_per_request"] == 4096
    assert metadata["syscalls_by_kind"] == "sendfile=10"


def test_strace_counts_total():
    assert StraceCounts({"a": 2, "b": 3}, {"a": 1}).total == 5


# -- TLS -----------------------------------------------------------------------------------------


def test_the_tls_cases_are_cpu_cases_and_the_issue_s_sizes():
    for profile in (FULL, QUICK):
        assert set(profile.tls_cases) <= set(profile.cpu_cases)
    assert {case.label for case in FULL.tls_cases} == {"4KiB", "1MiB", "256MiB"}
    assert FULL.handshake_repetitions >= 3


def test_handshakes_are_full_tls13_handshakes_without_resumption(tmp_path: Path):
    command = tls.handshake_command("/usr/bin/openssl", 4433, tmp_path / "ca.pem", 3)
    assert command[:2] == ["/usr/bin/openssl", "s_time"]
    assert {"-new", "-tls1_3"} <= set(command)
    assert "-reuse" not in command
    assert command[command.index("-time") + 1] == "3"
    assert command[command.index("-connect") + 1] == "127.0.0.1:4433"
    run = HandshakeRun(rep=0, clients=2, seconds=2.0, handshakes=900, server_cpu_s=0.45)
    assert run.per_second == pytest.approx(450.0)
    assert run.cpu_per_handshake_s == pytest.approx(0.0005)
    assert HandshakeRun(0, 2, 1.0, 0, 0.1).cpu_per_handshake_s is None


async def test_the_client_and_handshakes_over_tls_against_a_real_server(tmp_path: Path):
    pytest.importorskip("trustme")
    certificate = tls.make_certificate(tmp_path)
    assert certificate is not None
    root = tmp_path / "www"
    root.mkdir()
    files.write_files(str(root), {"64KiB.bin": 65536})
    flags = ("--tls-cert", str(certificate.cert), "--tls-key", str(certificate.key))
    with running_server(root, "auto", extra=flags) as server:
        assert server.strategy == "tls-readwrite"  # no kTLS on this kernel (or this Python)
        context = tls.client_context(certificate.ca)
        done, elapsed = await run_requests(server.port, "64KiB.bin", count=3, tls=context)
        assert (done, elapsed > 0) == (3, True)
        counters = metrics.scrape(server.metrics_port or 0)
        # Every body byte went through user space, in and out: the TLS path, counted.
        body = metrics.sample_value(counters, "zerocopy_body_bytes_total")
        assert body == 3 * 65536
        assert metrics.sample_value(counters, "zerocopy_zero_copy_bytes_total") == 0
        openssl = tls.handshake_tool()
        if openssl is None:
            pytest.skip("openssl is not installed: no handshake window")
        run = tls.measure_handshakes(openssl, server, certificate.ca, rep=0, seconds=1)
        assert run.handshakes > 0
        assert run.server_cpu_s > 0
        assert run.seconds >= 1.0
