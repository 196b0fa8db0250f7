"""The tar case: server CPU per GiB of a directory downloaded as one tar archive
(``GET /d/?download=tar``) against the same files downloaded one by one.

A tar archive is the directory's files with a 512-byte header before each and padding after:
the server sends the headers and padding as bytes and the file data as spans, through the
strategy, so with sendfile and splice the data should cost what single files cost, and no
byte of it should pass through user space. The case measures both claims:

- a directory of ``files`` files (64 of 16 MiB: 1 GiB; quick: 8 of 1 MiB), read once so the
  page cache holds it; one zerocopy server per strategy, pinned to the server CPU;
- per repetition, in alternating order, the directory once as ``?download=tar`` (one curl)
  and once as every file by a plain GET (one curl, one keep-alive connection); the server's
  CPU (user + sys clock ticks of its process group, exited threads included: the archive's
  directory walk runs in worker threads) and its counters around each;
- reported: CPU seconds per GiB of file data for each, the per-repetition ratio tar / single
  files, the bytes each copied through user space per byte of file data, and the
  transfer-path syscalls per GiB (the server's counters).

curl is a client nobody here wrote; the download is checked for its length (the archive's
Content-Length, the files' sizes) and discarded.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Final

from bench.harness import files, metrics, procfs
from bench.harness.schema import TarMedian, TarResult, TarRun
from bench.harness.servers import running_server, taskset_prefix
from bench.harness.sizes import MiB
from bench.harness.stats import median_or_none, paired_ratio

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from bench.harness.schema import Pinning

__all__ = ["DIRECTORY", "TAR_STRATEGIES", "curl_command", "run_tar", "tar_medians"]

DIRECTORY: Final = "d"
TAR_STRATEGIES: Final = ("sendfile", "splice", "readwrite")
DOWNLOADS: Final = ("tar", "single")
CURL_TIMEOUT_S: Final = 300.0


def curl_command(urls: Sequence[str], cpu: int | None) -> list[str]:
    """One curl for every URL in turn (one keep-alive connection), printing each body's size."""
    argv = [*taskset_prefix(cpu), "curl", "--silent", "--show-error", "--fail"]
    for url in urls:
        argv += ["--output", "/dev/null", "--write-out", "%{size_download}\\n", url]
    return argv


def _download(urls: Sequence[str], cpu: int | None) -> int:
    """Fetch ``urls``; the bytes received in all.

    Raises:
        RuntimeError: curl failed (a status of 400 or more, a reset, a timeout).
    """
    completed = subprocess.run(
        curl_command(urls, cpu),
        capture_output=True,
        text=True,
        timeout=CURL_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"curl failed ({completed.returncode}): {completed.stderr.strip()}")
    return sum(int(line) for line in completed.stdout.split())


def tar_medians(runs: Sequence[TarRun], data_bytes: int) -> dict[str, TarMedian]:
    """Per strategy: medians over repetitions of CPU per GiB, and of the paired ratio."""
    gib = data_bytes / (1 << 30)
    result = {}
    for strategy in dict.fromkeys(run.strategy for run in runs):
        per: dict[str, dict[int, float | None]] = {name: {} for name in DOWNLOADS}
        copied: dict[str, list[float]] = {name: [] for name in DOWNLOADS}
        calls: dict[str, list[float]] = {name: [] for name in DOWNLOADS}
        for run in runs:
            if run.strategy == strategy:
                per[run.download][run.rep] = run.cpu_s / gib
                copied[run.download].append(run.copied_bytes / data_bytes)
                calls[run.download].append(run.syscalls / gib)
        result[strategy] = TarMedian(
            tar_cpu_per_gib_s=median_or_none(per["tar"].values()),
            single_cpu_per_gib_s=median_or_none(per["single"].values()),
            tar_over_single=paired_ratio(per["tar"], per["single"]),
            tar_copied_per_byte=median_or_none(copied["tar"]),
            single_copied_per_byte=median_or_none(copied["single"]),
            tar_syscalls_per_gib=median_or_none(calls["tar"]),
            single_syscalls_per_gib=median_or_none(calls["single"]),
        )
    return result


def run_tar(root: Path, *, quick: bool, pinning: Pinning) -> TarResult:
    """Measure the case on every strategy of :data:`TAR_STRATEGIES`.

    ``root`` is the case's document root; the server goes on ``pinning``'s server CPU and curl
    on its client CPU.

    Raises:
        RuntimeError: curl is not installed, or a download failed or came back short.
    """
    if shutil.which("curl") is None:
        raise RuntimeError("curl is not installed (apt-get install curl)")
    count, size = (8, 1 * MiB) if quick else (64, 16 * MiB)
    reps = 2 if quick else 10
    top = root / DIRECTORY
    top.mkdir(parents=True, exist_ok=True)
    names = [f"f{index:03d}.bin" for index in range(count)]
    for name in names:
        path = top / name
        if not (path.exists() and path.stat().st_size == size):
            files.write_file(path, size)
    for stale in top.iterdir():
        if stale.name not in names:
            stale.unlink()
    data_bytes = count * size
    runs: list[TarRun] = []
    for strategy in TAR_STRATEGIES:
        with running_server(root, strategy, cpu=pinning.server_cpu) as server:
            if server.metrics_port is None:
                raise RuntimeError(f"the {strategy} server announced no metrics port")
            urls = {
                "tar": [f"http://127.0.0.1:{server.port}/{DIRECTORY}/?download=tar"],
                "single": [f"http://127.0.0.1:{server.port}/{DIRECTORY}/{n}" for n in names],
            }
            for download in DOWNLOADS:  # warm: the page cache, the open-file cache
                _download(urls[download], pinning.client_cpu)
            for rep in range(reps):
                order = DOWNLOADS if rep % 2 == 0 else DOWNLOADS[::-1]
                for download in order:
                    scraped = metrics.scrape(server.metrics_port)
                    before = procfs.sample_group(server.pid)
                    started = time.monotonic()
                    received = _download(urls[download], pinning.client_cpu)
                    wall = time.monotonic() - started
                    used = procfs.sample_group(server.pid) - before
                    delta = metrics.counter_delta(scraped, metrics.scrape(server.metrics_port))
                    if received < data_bytes:
                        raise RuntimeError(f"{download}: {received} bytes, fewer than the data")
                    runs.append(
                        TarRun(
                            rep=rep,
                            strategy=strategy,
                            download=download,
                            received_bytes=received,
                            cpu_s=used.ticks_s,
                            wall_s=wall,
                            copied_bytes=delta.copy_in + delta.copy_out,
                            zero_copy_bytes=delta.zero_copy,
                            syscalls=sum(delta.syscalls.values()) + sum(delta.eagain.values()),
                        )
                    )
        medians = tar_medians(runs, data_bytes)[strategy]
        print(
            f"tar {strategy:9}: {medians.tar_cpu_per_gib_s or 0:.3f} s CPU per GiB as tar, "
            f"{medians.single_cpu_per_gib_s or 0:.3f} as single files "
            f"(tar / single {medians.tar_over_single or 0:.2f}); bytes through user space per "
            f"data byte {medians.tar_copied_per_byte or 0:.4f} and "
            f"{medians.single_copied_per_byte or 0:.4f}",
            flush=True,
        )
    return TarResult(
        files=count,
        file_bytes=size,
        data_bytes=data_bytes,
        repetitions=reps,
        runs=tuple(runs),
        medians=tar_medians(runs, data_bytes),
    )
