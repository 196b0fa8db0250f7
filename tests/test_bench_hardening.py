"""The hardening stack (bench/hardening/): slowhttptest's CSV, the probe, the cold-cache
configurations. No timing is checked; the probe runs against a real server for a moment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.hardening.cases import COLD_SERVERS, parse_slowhttptest_csv
from bench.hardening.probe import HOT, Probe, summarise
from bench.harness import files
from bench.harness.names import NGINX_AIO_THREADS, NGINX_SENDFILE
from bench.harness.procfs import group_pids
from bench.harness.servers import running_server

SLOWHTTPTEST_CSV = """Seconds,Closed,Pending,Connected,Service Available
0,0,1,0,50
1,0,0,50,50
2,3,0,47,0
3,0,0,50,50
"""


def test_slowhttptest_csv() -> None:
    assert parse_slowhttptest_csv(SLOWHTTPTEST_CSV) == (4, 50, 0.75)
    assert parse_slowhttptest_csv("Seconds\n") == (0, 0, None)


def test_probe_summary_in_milliseconds() -> None:
    summary = summarise([0.001 * i for i in range(1, 101)])
    assert summary.requests == 100
    assert summary.p50_ms == pytest.approx(51.0)
    assert summary.p99_ms == pytest.approx(99.0)
    assert summary.max_ms == pytest.approx(100.0)
    empty = summarise([])
    assert (empty.requests, empty.p50_ms, empty.p99_ms, empty.max_ms) == (0, None, None, None)


def test_cold_cache_runs_zerocopy_both_ways_and_nginx_both_ways() -> None:
    assert list(COLD_SERVERS) == [
        "zerocopy-offload",
        "zerocopy-no-offload",
        NGINX_AIO_THREADS,
        NGINX_SENDFILE,
    ]
    assert "aio threads" in COLD_SERVERS[NGINX_AIO_THREADS]
    assert "aio off" in COLD_SERVERS[NGINX_SENDFILE]


def test_the_probe_times_requests_and_stops_with_its_block(tmp_path: Path) -> None:
    files.write_files(str(tmp_path), {HOT: 4096})
    with running_server(tmp_path, "auto") as server:
        with Probe(server.port) as probe:
            deadline = time.monotonic() + 10
            while len(probe.latencies) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
        count = len(probe.latencies)
        time.sleep(0.05)
        assert len(probe.latencies) == count  # stopped
        assert count >= 5
        assert probe.errors == 0
        assert probe.summary.p99_ms is not None
    assert group_pids(server.pid) == []


def test_a_probe_without_a_server_counts_errors() -> None:
    with Probe(1) as probe:
        deadline = time.monotonic() + 10
        while probe.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert probe.errors > 0
    assert probe.latencies == []
