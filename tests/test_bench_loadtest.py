"""The load stack (bench/loadtest/): wrk's reports, the knee, medians and peer ratios. No
timing and no wrk: captured reports and synthetic rows; one test starts and stops servers
(that fail on purpose) to check that a broken peer is skipped and a broken zerocopy is fatal.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import cast

import pytest

from bench.harness.files import VerificationError
from bench.harness.machine import auto_workers, place_workers
from bench.harness.names import PEER_CANDIDATES
from bench.harness.procfs import CLOCK_TICKS, CpuTimes
from bench.harness.schema import Knee, Pinning, Ratios, Row, SocketErrors, WrkFigures
from bench.harness.servers import RunningServer, ServerSet, taskset_prefix
from bench.loadtest import peers
from bench.loadtest.common import Job, LoadRun, medians, parse_workers, row, scaling
from bench.loadtest.sweep import KneePoint, find_knee, knees
from bench.loadtest.wrk import (
    Measurement,
    Workload,
    WrkError,
    parse_wrk,
    parse_wrk_time_ms,
    wrk_command,
)

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


def test_wrk_command_passes_a_script_its_arguments() -> None:
    script = Path("/x/random_path.lua")
    argv = wrk_command(
        "http://h/", connections=4, duration_s=1, script=script, script_args=("3000", "100")
    )
    assert argv[-6:] == ["-s", "/x/random_path.lua", "http://h/", "--", "3000", "100"]


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


def _figures(
    rps: float, p99: float | None = 1.0, cpu: float | None = 10.0, irq: float | None = None
) -> WrkFigures:
    return WrkFigures(
        rps=rps, p50_ms=0.5, p75_ms=None, p90_ms=None, p99_ms=p99, latency_avg_ms=None,
        latency_max_ms=None, duration_s=1.0, bytes_read=0, requests=int(rps),
        socket_errors=SocketErrors(0, 0, 0, 0), non_2xx_3xx=0, errors=0, server_cpu_s=1.0,
        server_cpu_per_req_us=cpu, server_cpu_irq_per_req_us=irq,
        server_involuntary_switches=0, pinned_cpu_other_pct=None, pinned_cpu_steal_pct=None,
        pinned_cpu_irq_pct=None,
    )  # fmt: skip


def _row(
    rep: int,
    server: str,
    rps: float,
    cpu: float | None = 10.0,
    *,
    workload: str = "4KiB",
    connections: int = 16,
    p99: float | None = 1.0,
    irq: float | None = None,
    workers: int = 1,
) -> Row:
    figures = _figures(rps, p99, cpu, irq)
    return Row(rep, server, workers, workload, connections, figures)


def test_knees_per_strategy_workers_and_workload_from_median_cells() -> None:
    cells = medians(
        [
            _row(0, "sendfile", 1000.0, connections=1, p99=1.0),
            _row(0, "sendfile", 1100.0, connections=4, p99=4.0),
            _row(0, "splice", 1000.0, connections=1, p99=1.0),
            _row(0, "splice", 3900.0, connections=4, p99=None),
            # Two workers: throughput still grows faster than p99, so no knee yet.
            _row(0, "sendfile", 1000.0, connections=1, p99=1.0, workers=2),
            _row(0, "sendfile", 3000.0, connections=4, p99=1.5, workers=2),
        ]
    )
    assert knees(cells) == (
        Knee("sendfile", 1, "4KiB", 1),
        Knee("splice", 1, "4KiB", None),
        Knee("sendfile", 2, "4KiB", None),
    )


# --- medians and ratios -------------------------------------------------------------------


def test_medians_group_in_first_seen_order_and_sum_errors() -> None:
    rows = [
        _row(0, "b", 10.0, p99=None),
        _row(0, "a", 30.0),
        _row(1, "b", 20.0, p99=None),
        _row(2, "b", 90.0, p99=None),
    ]
    cells = medians(rows)
    assert [(c.server, c.rps, c.p99_ms, c.repetitions) for c in cells] == [
        ("b", 20.0, None, 3),
        ("a", 30.0, 1.0, 1),
    ]
    assert cells[0].requests == 20


def _rep(rep: int, **servers: tuple[float, float]) -> list[Row]:
    return [_row(rep, name.replace("_", "-"), rps, cpu) for name, (rps, cpu) in servers.items()]


def test_ratios_use_the_best_nginx_within_each_repetition() -> None:
    # The machine got 2x slower in repetition 1 (drift); within each repetition zerocopy is
    # at 80 % of the better nginx. Ratios taken across repetitions would be badly off.
    rows = [
        *_rep(0, zerocopy_sendfile=(8000, 30.0), nginx_sendfile=(10000, 20.0),
              nginx_nosendfile=(9000, 25.0)),
        *_rep(1, zerocopy_sendfile=(4000, 60.0), nginx_sendfile=(4500, 40.0),
              nginx_nosendfile=(5000, 50.0)),
        *_rep(2, zerocopy_sendfile=(7200, 33.0), nginx_sendfile=(9000, 22.0),
              nginx_nosendfile=(8000, 30.0)),
    ]  # fmt: skip
    ratios = _by_key(peers.ratios(rows))
    zc = ratios["zerocopy-sendfile", "4KiB", 1]
    assert zc.rps_vs_nginx == pytest.approx(0.8)
    # CPU: against the *cheaper* nginx in each repetition: 30/20, 60/40, 33/22 -> all 1.5.
    assert zc.cpu_vs_nginx == pytest.approx(1.5)
    assert zc.cpu_irq_vs_nginx is None  # no irq figures measured
    # nginx-sendfile: 1.0, 0.9, 1.0 -> median 1.0; nginx-nosendfile: 0.9, 1.0, 8/9 -> 0.9.
    assert ratios["nginx-sendfile", "4KiB", 1].rps_vs_nginx == pytest.approx(1.0)
    assert ratios["nginx-nosendfile", "4KiB", 1].rps_vs_nginx == pytest.approx(0.9)


def _by_key(ratios: tuple[Ratios, ...]) -> dict[tuple[str, str, int], Ratios]:
    keyed = {(r.candidate, r.workload, r.workers): r for r in ratios}
    assert len(keyed) == len(ratios)
    return keyed


def test_ratios_are_medians_per_repetition_and_keep_workloads_apart() -> None:
    rows = [
        *_rep(0, zerocopy_auto=(100, 1.0), nginx_sendfile=(100, 1.0)),
        *_rep(1, zerocopy_auto=(110, 1.0), nginx_sendfile=(50, 1.0)),
        *_rep(2, zerocopy_auto=(1000, 1.0), nginx_sendfile=(500, 1.0)),
        _row(0, "zerocopy-auto", 30.0, workload="many-files"),
        _row(0, "nginx-sendfile", 100.0, workload="many-files"),
    ]
    ratios = _by_key(peers.ratios(rows))
    # Per repetition: 1.0, 2.2, 2.0 -> median 2.0, not the ratio of the medians (110 / 100).
    assert ratios["zerocopy-auto", "4KiB", 1].rps_vs_nginx == pytest.approx(2.0)
    assert ratios["zerocopy-auto", "many-files", 1].rps_vs_nginx == pytest.approx(0.3)


def test_ratios_compare_with_nginx_at_the_same_worker_count() -> None:
    rows = [
        _row(0, "zerocopy-auto", 100.0, 50.0),
        _row(0, "nginx-sendfile", 200.0, 20.0),
        _row(0, "zerocopy-auto", 150.0, 60.0, workers=2),
        _row(0, "nginx-sendfile", 500.0, 30.0, workers=2),
    ]
    ratios = _by_key(peers.ratios(rows))
    assert ratios["zerocopy-auto", "4KiB", 1].rps_vs_nginx == pytest.approx(0.5)
    assert ratios["zerocopy-auto", "4KiB", 2].rps_vs_nginx == pytest.approx(0.3)
    assert ratios["zerocopy-auto", "4KiB", 2].cpu_vs_nginx == pytest.approx(2.0)


def test_ratios_without_nginx_are_null() -> None:
    ratios = _by_key(peers.ratios(_rep(0, zerocopy_auto=(100, 1.0), aiohttp=(50, 2.0))))
    assert ratios["aiohttp", "4KiB", 1].rps_vs_nginx is None
    assert ratios["zerocopy-auto", "4KiB", 1].cpu_vs_nginx is None


def test_scaling_efficiency_is_paired_by_repetition() -> None:
    rows = [
        # Repetition 1 ran on a machine twice as busy: per repetition, 2 workers give 1.5x.
        _row(0, "zerocopy-auto", 100.0, 40.0),
        _row(0, "zerocopy-auto", 150.0, 44.0, workers=2),
        _row(1, "zerocopy-auto", 50.0, 80.0),
        _row(1, "zerocopy-auto", 75.0, 88.0, workers=2),
        _row(0, "aiohttp", 10.0, 100.0),  # one worker only: no scaling row
        _row(0, "nginx-sendfile", 100.0, 10.0, workers=2),  # no one-worker row to compare
    ]
    (item,) = scaling(rows)
    assert (item.server, item.workload, item.connections, item.workers) == (
        "zerocopy-auto",
        "4KiB",
        16,
        2,
    )
    assert item.rps_ratio == pytest.approx(1.5)
    assert item.efficiency == pytest.approx(0.75)
    assert item.cpu_ratio == pytest.approx(1.1)


def test_workers_auto_and_lists() -> None:
    assert auto_workers(1) == [1]
    assert auto_workers(2) == [1, 2]  # 2 - 1 = 1 again: also 2, sharing with wrk
    assert auto_workers(16) == [1, 15]
    assert parse_workers("2,1,2") == [1, 2]
    with pytest.raises(ValueError, match="positive"):
        parse_workers("0")


def test_multi_worker_servers_are_never_squeezed_onto_one_cpu() -> None:
    pinning = Pinning(0, 1, "")
    one = place_workers(1, pinning, [0, 1])
    assert (one.cpus, one.shares_with_load) == ((0,), False)
    shared = place_workers(2, pinning, [0, 1])
    assert (shared.cpus, shared.shares_with_load) == ((0, 1), True)
    assert "shared with wrk" in shared.note
    alone = place_workers(3, Pinning(0, 3, ""), range(8))
    assert (alone.cpus, alone.shares_with_load) == ((0, 1, 2, 4, 5, 6, 7), False)
    unpinned = place_workers(2, Pinning(None, None, "--no-pin"), [0, 1])
    assert unpinned.cpus is None


def test_taskset_takes_one_cpu_or_several() -> None:
    assert taskset_prefix(3) == ["taskset", "-c", "3"]
    assert taskset_prefix({2, 0}) == ["taskset", "-c", "0,2"]


# --- what the server's CPU did --------------------------------------------------------------


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


# --- candidates, the many-files workload, the rows ------------------------------------------


def test_candidate_names_are_the_published_ones() -> None:
    assert (
        tuple(peers.candidates())
        == PEER_CANDIDATES
        == (
            "zerocopy-auto",
            "zerocopy-sendfile",
            "zerocopy-splice",
            "zerocopy-readwrite",
            "zerocopy-auto-log",
            "nginx-sendfile",
            "nginx-nosendfile",
            "aiohttp",
            "uvicorn-starlette",
            "http.server",
        )
    )


def test_many_files_runs_for_the_default_and_both_nginx_configs_only() -> None:
    assert peers.MANY_FILES_CANDIDATES == ("zerocopy-auto", "nginx-sendfile", "nginx-nosendfile")
    workloads, checked = peers._workloads(Path(_tmp()), {"4KiB": 4096}, 120)
    many = workloads[-1]
    assert many.label == "many-files"
    assert many.script is not None
    assert many.script.name == "random_path.lua"
    assert many.script_args == ("120", "100")
    assert (many.info.files, many.info.size_min, many.info.size_max) == (120, 1024, 4096)
    assert checked[1].name == "many/00/0000.bin"
    assert checked[2].name == "many/01/0119.bin"


def _tmp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="zerocopy-test-")


def test_a_failing_peer_is_skipped_but_a_failing_zerocopy_is_fatal(tmp_path: Path) -> None:
    def broken(ss: ServerSet, root: Path, *more: object) -> RunningServer:
        raise VerificationError("GET /4KiB.bin: status 404 Not Found")

    def candidate(name: str) -> peers.Candidate:
        return peers.Candidate(
            name=name, settings="", missing=lambda: None, start=broken, start_workers=broken
        )

    class Load:  # what _start_all reads of a LoadRun
        args = argparse.Namespace(workers=[1, 2])

        def server_cpus(self, workers: int) -> None:
            return None

    load = cast("LoadRun", Load())
    skipped: dict[str, str] = {"uvicorn-starlette": "uvicorn not installed"}
    verification: dict[str, dict[str, str]] = {}
    with ServerSet(tmp_path, cpu=None) as ss:
        wanted = [candidate("aiohttp"), candidate("uvicorn-starlette"), candidate("nginx-sendfile")]
        assert peers._start_all(load, ss, wanted, [], skipped, verification) == {}
        assert skipped["aiohttp"].endswith("status 404 Not Found")
        assert skipped["uvicorn-starlette"] == "uvicorn not installed"
        # One that fails with one worker is not tried again with two.
        assert skipped["nginx-sendfile"].endswith("status 404 Not Found")
        assert "nginx-sendfile-w2" not in skipped
        assert verification == {}
        with pytest.raises(VerificationError):
            peers._start_all(load, ss, [candidate("zerocopy-auto")], [], skipped, verification)


def test_a_row_carries_every_figure_of_a_measurement() -> None:
    measurement = Measurement(parse_wrk(WRK_SLOW), server_cpu_s=1.5, involuntary_switches=7)
    job = Job(2, "splice", _server(), _workload(), 256, 2)
    record = row(job, measurement)
    assert (record.rep, record.server, record.workers, record.workload, record.connections) == (
        2,
        "splice",
        2,
        "1MiB",
        256,
    )
    figures = record.figures
    assert figures.p90_ms == pytest.approx(500.0)
    assert figures.socket_errors == SocketErrors(3, 2, 1, 17)
    assert figures.errors == 23
    assert figures.pinned_cpu_other_pct is None  # unpinned: no NaN in the JSON
    assert measurement.describe() == (
        "1,198 req/s, p50 90.12 ms, p99 1500.00 ms, 250.0 µs CPU/req ERRORS 23"
    )


def _server() -> RunningServer:
    return cast("RunningServer", None)  # a row never looks at the server


def _workload() -> Workload:
    from bench.harness.schema import WorkloadInfo

    return Workload(WorkloadInfo("1MiB", 1, 1 << 20, 1 << 20, "one file"), "/1MiB.bin")
