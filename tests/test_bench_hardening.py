"""The hardening stack (bench/hardening/): slowhttptest's CSV, the probe, the cold-cache
configurations, the listing case. No timing is checked; the probe runs against a real server
for a moment, and one short listing run against zerocopy and nginx (where installed)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from bench.hardening import listing
from bench.hardening.cases import COLD_SERVERS, parse_slowhttptest_csv
from bench.hardening.listing import (
    BIG_DIR,
    LISTING_CLIENTS,
    LISTING_SERVERS,
    fetch_command,
    listing_medians,
    parse_fetch_output,
)
from bench.hardening.probe import HOT, Probe, summarise
from bench.hardening.tar import TAR_STRATEGIES, run_tar, tar_medians
from bench.harness import files
from bench.harness.names import NGINX_AIO_THREADS, NGINX_SENDFILE
from bench.harness.nginx import nginx_binary
from bench.harness.procfs import group_pids
from bench.harness.schema import LatencySummary, ListingRun, Pinning, TarRun
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


# -- directory listings ----------------------------------------------------------------------------


def test_the_listing_case_runs_zerocopy_and_nginx_autoindex() -> None:
    assert list(LISTING_SERVERS) == ["zerocopy", "zerocopy-all-entries", "nginx-autoindex"]
    assert "autoindex on" in LISTING_SERVERS["nginx-autoindex"]
    assert LISTING_CLIENTS == 8
    command = fetch_command(8080, "/big/", 2.5)
    assert command[1].endswith("bench/data/clients/fetch_loop.py")
    assert command[2:5] == ["8080", "/big/", "2.5"]


def test_fetch_output_is_one_json_line() -> None:
    line = '{"listings": 3, "errors": 1, "page_bytes": 6000, "ended": 12.5}\n'
    assert parse_fetch_output("noise\n" + line) == (3, 1, 6000, 12.5)
    assert parse_fetch_output(line.replace("6000", "null"))[2] is None
    with pytest.raises(ValueError, match="fetch_loop"):
        parse_fetch_output("Traceback (most recent call last): ...")


def test_the_big_directory_is_made_once_and_kept(tmp_path: Path) -> None:
    big = tmp_path / "big"
    assert files.make_big_directory(big, 50) == 50
    names = sorted(p.name for p in big.iterdir())
    assert len(names) == 50
    assert names[0] == "entry-000000-" + "x" * files.BIG_DIR_NAME_WIDTH + ".dat"
    (big / names[0]).unlink()
    files.make_big_directory(big, 50)  # complete already: left alone
    assert len(list(big.iterdir())) == 49
    files.make_big_directory(big, 60)  # another size: made afresh
    assert len(list(big.iterdir())) == 60


def test_listing_medians_per_server() -> None:
    def run(rep: int, server: str, p99: float, page: int | None) -> ListingRun:
        probe = LatencySummary(10, 1.0, p99, p99 * 2)
        return ListingRun(rep, server, page, 2, 0.2, 0, probe, probe, 1000 * (rep + 1))

    medians = listing_medians(
        [run(0, "a", 10.0, 100), run(0, "b", 1.0, None), run(1, "a", 30.0, 300)]
    )
    assert list(medians) == ["a", "b"]
    assert (medians["a"].probe_p99_ms, medians["a"].page_bytes) == (20.0, 200.0)
    assert medians["a"].peak_rss_kib == 1500.0
    assert medians["b"].page_bytes is None


def test_one_short_listing_run_against_real_servers() -> None:
    servers = ["zerocopy", "zerocopy-all-entries"] + (["nginx-autoindex"] if nginx_binary() else [])
    # nginx's workers run unprivileged: the tree must be readable by anyone, as measure()'s is.
    with files.data_directory() as data:
        root = Path(data)
        files.make_big_directory(root / BIG_DIR, 300)
        files.write_files(data, {HOT: 4096})
        runs = [
            listing._one_run(name, root, 0, window=0.5, baseline_s=0.2, cpu=None, entries=300)
            for name in servers
        ]
    for name, run in zip(servers, runs, strict=True):
        assert run.server == name
        assert run.listings >= LISTING_CLIENTS  # each client completes at least one
        assert run.client_errors == 0
        assert run.page_bytes is not None
        assert run.page_bytes > 300 * len("entry-000000-")  # every name is on the page
        assert run.probe.requests > 0
        assert run.baseline.requests > 0
        assert run.peak_rss_kib > 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_tar_case_against_real_servers(tmp_path: Path) -> None:
    result = run_tar(tmp_path, quick=True, pinning=Pinning(None, None, "not pinned"))
    assert result.data_bytes == result.files * result.file_bytes
    assert {run.strategy for run in result.runs} == set(TAR_STRATEGIES)
    for run in result.runs:
        # curl received the archive (headers, padding, two end blocks) or every file whole.
        extra = run.received_bytes - result.data_bytes
        assert extra == (result.files + 1) * 512 + 1024 if run.download == "tar" else extra == 0
        assert run.cpu_s >= 0
        assert run.syscalls > 0
        if run.strategy == "readwrite":
            assert run.copied_bytes >= 2 * result.data_bytes
        else:  # the file data went by sendfile or splice: only heads and tar headers copied
            assert run.zero_copy_bytes == result.data_bytes
            assert run.copied_bytes < 0.01 * result.data_bytes
    assert set(result.medians) == set(TAR_STRATEGIES)


def test_tar_medians_pair_repetitions() -> None:
    runs = [
        TarRun(rep, "splice", download, 1, cpu, 1.0, copied, 0, 10)
        for rep, download, cpu, copied in (
            (0, "tar", 2.0, 4),
            (0, "single", 1.0, 2),
            (1, "tar", 1.0, 4),
            (1, "single", 2.0, 2),
        )
    ]
    median = tar_medians(runs, 1 << 30)["splice"]
    assert median.tar_over_single == pytest.approx(1.25)  # ratios 2.0 and 0.5
    assert median.tar_cpu_per_gib_s == median.single_cpu_per_gib_s == pytest.approx(1.5)
    assert median.tar_copied_per_byte == pytest.approx(4 / (1 << 30))
    assert median.tar_syscalls_per_gib == pytest.approx(10)
