"""``zerocopy serve --workers N``: real processes, real signals, real clients.

Every process runs in its own session and the ``procs`` fixture checks at teardown that its
process group is empty. The loads are bounded: a few client threads for a few seconds.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import random_file
from tests.procs import (
    Proc,
    get,
    keep_alive,
    open_fds_under,
    server_pid_of,
    sha256,
)

Start = Callable[..., Proc]


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    random_file(root / "4k.bin", 4096)
    (root / "dir").mkdir()
    (root / "dir" / "a.txt").write_text("a")
    return root


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


class Load:
    """Client threads that request a file until stopped, and count what failed.

    ``fresh`` threads open a connection per request (``Connection: close``), ``kept`` threads
    reuse one keep-alive connection (http.client reconnects after ``Connection: close``).

    A keep-alive client does what RFC 9112 §9.3.1 lets it and what urllib3, curl and browsers
    do: a request on a *reused* connection that the server closed before any byte of the
    response is sent again, once, on a new connection. HTTP/1.1 has no way for a server to
    close an idle keep-alive connection without racing a request the client is sending; such
    retries are counted in ``retried``. Anything else, and any error on a fresh connection,
    is a failure.
    """

    def __init__(self, port: int, path: str, *, fresh: int = 3, kept: int = 3) -> None:
        self.port = port
        self.path = path
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.retried = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._fresh) for _ in range(fresh)]
        self.threads += [threading.Thread(target=self._kept) for _ in range(kept)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _count(self, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.ok += 1
            else:
                self.failures.append(failure)

    def _fresh(self) -> None:
        while not self.stop.is_set():
            try:
                status, _ = get(self.port, self.path)
                self._count(None if status == 200 else f"status {status}")
            except (OSError, http.client.HTTPException) as exc:
                self._count(f"fresh: {exc!r}")

    def _kept(self) -> None:
        conn = keep_alive(self.port)
        reused = False
        while not self.stop.is_set():
            for attempt in (1, 2):
                try:
                    conn.request("GET", self.path)
                    response = conn.getresponse()
                    response.read()
                except (
                    http.client.RemoteDisconnected,
                    ConnectionResetError,
                    BrokenPipeError,
                ) as exc:
                    conn.close()
                    if reused and attempt == 1:
                        reused = False
                        with self.lock:
                            self.retried += 1
                        continue
                    self._count(f"keep-alive: {exc!r}")
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    self._count(f"keep-alive: {exc!r}")
                else:
                    self._count(None if response.status == 200 else f"status {response.status}")
                    reused = not response.will_close
                break
        conn.close()

    def wait_requests(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        start = self.ok
        while self.ok < start + count:
            assert time.monotonic() < deadline, f"load stalled at {self.ok}: {self.failures[:5]}"
            time.sleep(0.01)


def _wait_samples(
    port: int, ready: Callable[[dict[tuple[str, tuple[tuple[str, str], ...]], float]], bool]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape until ``ready`` holds: a worker counts a response just after its last byte has
    gone, so a client can have it a moment before the counter does."""
    deadline = time.monotonic() + 10
    while not ready(samples := _samples(port)):
        assert time.monotonic() < deadline, samples
        time.sleep(0.05)
    return samples


def _start(procs: Start, www: Path, *flags: str) -> tuple[Proc, int, int | None, list[int]]:
    proc = procs("serve", str(www), "--port", "0", "--workers", "2", *flags)
    port, metrics = proc.serving()
    workers = proc.wait_children(2)
    return proc, port, metrics, workers


def _stop(proc: Proc, signum: int = signal.SIGTERM) -> int:
    proc.signal(signum)
    return proc.wait(timeout=30)


def test_two_workers_share_fifty_connections(procs: Start, www: Path) -> None:
    proc, port, metrics, _workers = _start(procs, www, "--metrics-port", "0")
    assert metrics is not None
    assert "2 workers" in "".join(proc.stdout)
    barrier = threading.Barrier(50)
    errors: list[str] = []

    def client() -> None:
        conn = keep_alive(port)
        try:
            conn.connect()
            barrier.wait(timeout=20)  # all 50 connections open at once
            for _ in range(4):
                conn.request("GET", "/4k.bin")
                response = conn.getresponse()
                if response.status != 200 or len(response.read()) != 4096:
                    errors.append(f"status {response.status}")
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    ok = ("zerocopy_responses_total", (("status", "200"),))
    samples = _wait_samples(metrics, lambda samples: samples.get(ok) == 200)
    per_worker = {
        worker: samples[
            ("zerocopy_worker_responses_total", (("status", "200"), ("worker", worker)))
        ]
        for worker in ("0", "1")
    }
    assert all(count > 0 for count in per_worker.values()), per_worker
    assert sum(per_worker.values()) == samples[("zerocopy_responses_total", (("status", "200"),))]
    assert sum(per_worker.values()) == 200
    assert samples[("zerocopy_worker_connections_accepted_total", (("worker", "0"),))] > 0
    assert samples[("zerocopy_supervisor_workers", ())] == 2
    assert _stop(proc) == 0


def test_kill_9_of_a_worker(procs: Start, www: Path) -> None:
    proc, port, metrics, workers = _start(procs, www, "--metrics-port", "0")
    assert metrics is not None
    # Keep-alive connections, each found on the worker that holds its server end.
    conns = []
    for _ in range(24):
        conn = keep_alive(port)
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello\n"
        conns.append(conn)
    owners = [server_pid_of(conn.sock, port, workers) for conn in conns]
    victim = workers[0]
    survivors = [conn for conn, owner in zip(conns, owners, strict=True) if owner == workers[1]]
    assert all(owner in workers for owner in owners), owners
    assert survivors, "every connection landed on one worker"
    with Load(port, "/4k.bin", fresh=2, kept=0) as load:
        load.wait_requests(20)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replacement = proc.wait_children(2, timeout=5, exclude={victim})
        respawned = time.monotonic() - killed
        new_pid = next(iter(set(replacement) - {workers[1]}))
        proc.wait_for(rf"worker \d started \(pid {new_pid}\)")
        accepting = time.monotonic() - killed
        load.wait_requests(50)
    assert respawned < 1.0, f"new worker after {respawned:.2f} s"
    assert workers[1] in replacement
    # Clients on the other worker see no error; the fresh-connection load only loses what
    # was in flight on the killed worker.
    for conn in survivors:
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello\n"
    assert len(load.failures) <= 2, load.failures
    for conn in conns:
        conn.close()
    samples = _samples(metrics)
    assert samples[("zerocopy_supervisor_restarts_total", ())] == 1
    assert _stop(proc) == 0
    print(f"kill -9: new process after {respawned:.3f} s, accepting after {accepting:.3f} s")


def test_sighup_reload_loses_no_request(procs: Start, www: Path) -> None:
    proc, port, metrics, workers = _start(procs, www, "--metrics-port", "0")
    assert metrics is not None
    generations = [workers]
    with Load(port, "/4k.bin", fresh=3, kept=3) as load:
        for _ in range(3):
            load.wait_requests(100)
            proc.signal(signal.SIGHUP)
            proc.wait_for("reload: new workers accept")
            new = proc.wait_children(2, exclude=set(generations[-1]))
            generations.append(new)
        load.wait_requests(100)
    assert load.failures == [], load.failures[:10]
    assert load.ok > 400
    # Idle keep-alive connections get time to send one more request before they close, so
    # no request already sent is lost: not even the retry RFC 9112 §9.3.1 allows is needed.
    assert load.retried == 0
    # Every reload replaced both workers.
    pids = [pid for generation in generations for pid in generation]
    assert len(set(pids)) == len(pids) == 8
    # Counters never go backwards: the sum keeps what replaced workers served.
    ok = ("zerocopy_responses_total", (("status", "200"),))
    samples = _wait_samples(metrics, lambda samples: samples.get(ok, 0) >= load.ok)
    assert samples[("zerocopy_supervisor_reloads_total", ())] == 3
    assert _stop(proc) == 0


def test_sigterm_finishes_downloads_and_every_process_exits_0(procs: Start, www: Path) -> None:
    big = random_file(www / "big.bin", 32 << 20)
    digest = sha256(big.read_bytes())
    proc, port, _, workers = _start(procs, www, "--shutdown-grace", "30")
    downloads = []
    for _ in range(4):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(1).startswith(b"H")  # the response has started
        downloads.append(sock)
    proc.signal(signal.SIGTERM)
    proc.wait_for("SIGTERM: stopping 2 workers gracefully")
    time.sleep(0.5)
    # No new connections once the workers have stopped accepting ...
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # ... but the downloads in flight run to the end, byte for byte.
    for sock in downloads:
        data = bytearray(b"H")
        while chunk := sock.recv(1 << 20):
            data += chunk
            time.sleep(0.001)
        sock.close()
        # The whole body, then the close (the loop above ends at end of file).
        assert sha256(bytes(data).partition(b"\r\n\r\n")[2]) == digest
    assert proc.wait(timeout=30) == 0
    stderr = "".join(proc.stderr)
    for pid in workers:
        assert f"(pid {pid}) stopped with exit status 0" in stderr, stderr
    assert "Traceback" not in stderr


def test_second_signal_stops_at_once(procs: Start, www: Path) -> None:
    random_file(www / "big.bin", 32 << 20)
    proc, port, _, _ = _start(procs, www, "--shutdown-grace", "60")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.settimeout(10)
    assert sock.recv(1) == b"H"
    proc.signal(signal.SIGINT)
    proc.wait_for("SIGINT: stopping")
    start = time.monotonic()
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - start < 3
    assert "Traceback" not in "".join(proc.stderr)
    sock.close()


def test_crash_loop_ends_with_a_clear_error(procs: Start, www: Path, tmp_path: Path) -> None:
    proc, _port, _, workers = _start(procs, www)
    # The root vanishes: every new worker fails to start.
    www.rename(tmp_path / "gone")
    start = time.monotonic()
    os.kill(workers[0], signal.SIGKILL)
    code = proc.wait(timeout=30)
    elapsed = time.monotonic() - start
    assert code == 1
    stderr = "".join(proc.stderr)
    last = stderr.strip().splitlines()[-1]
    assert re.match(r"zerocopy: error: worker \d exited 6 times within 10 s", last), last
    assert "crash loop" in last
    assert "does not exist" in stderr  # the reason each start failed
    # Restarts backed off instead of spinning: 6 exits, then the end.
    assert stderr.count("cannot start") == 5
    assert 1.5 < elapsed < 15, elapsed


def test_first_workers_that_cannot_start_end_the_supervisor(
    procs: Start, www: Path, tmp_path: Path
) -> None:
    # A document root the supervisor can see but the workers cannot resolve does not exist
    # outside a race; a port the supervisor can bind but a worker cannot is the same. The
    # simplest start failure to provoke is a root that is gone before the workers start,
    # which the supervisor checks first: one line, status 2.
    proc = procs("serve", str(tmp_path / "missing"), "--port", "0", "--workers", "2")
    assert proc.wait(timeout=20) == 2
    lines = "".join(proc.stderr).strip().splitlines()
    assert len(lines) == 1
    assert "does not exist" in lines[0]


def test_reload_reads_the_config_file_again(procs: Start, www: Path, tmp_path: Path) -> None:
    config = tmp_path / "zerocopy.toml"
    config.write_text(f'dir = "{www}"\nport = 0\nworkers = 2\n')
    proc = procs("serve", "--config", str(config))
    port, _ = proc.serving()
    workers = proc.wait_children(2)
    assert get(port, "/dir/")[0] == 200
    config.write_text(f'dir = "{www}"\nport = 0\nworkers = 2\nno-listing = true\n')
    proc.signal(signal.SIGHUP)
    proc.wait_for("reload: new workers accept")
    proc.wait_children(2, exclude=set(workers))
    assert get(port, "/dir/")[0] == 403
    # A broken file on reload: logged, and the running workers go on.
    config.write_text("no-listing = 3\n")
    proc.signal(signal.SIGHUP)
    match = proc.wait_for("reload: .*")
    assert "no-listing" in match.group(0)
    assert "the running workers go on" in match.group(0)
    assert get(port, "/hello.txt") == (200, b"hello\n")
    assert _stop(proc) == 0


def test_sigusr1_reaches_every_worker(procs: Start, www: Path) -> None:
    proc, port, _, workers = _start(procs, www)
    proc.signal(signal.SIGUSR1)
    seen = {
        proc.wait_for(r"\[worker (\d)\]: SIGUSR1: reopening log files").group(1) for _ in range(2)
    }
    assert seen == {"0", "1"}
    assert proc.children() == workers  # nobody died of it
    assert get(port, "/hello.txt") == (200, b"hello\n")
    assert _stop(proc) == 0


def test_health_and_no_root_file_held_by_the_supervisor(procs: Start, www: Path) -> None:
    random_file(www / "big.bin", 32 << 20)
    proc, port, metrics, workers = _start(
        procs, www, "--metrics-port", "0", "--shutdown-grace", "30"
    )
    assert metrics is not None
    assert get(metrics, "/-/health") == (200, b"ok\n")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.settimeout(10)
    assert sock.recv(1) == b"H"
    # Workers hold the file they are sending; the supervisor holds nothing under the root.
    assert any(open_fds_under(pid, www) for pid in workers)
    assert open_fds_under(proc.pid, www) == []
    proc.signal(signal.SIGTERM)
    proc.wait_for("SIGTERM: stopping")
    assert get(metrics, "/-/health")[0] == 503
    sock.close()
    assert proc.wait(timeout=30) == 0


def test_cpu_affinity_pins_each_worker(procs: Start, www: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    proc, _, _, workers = _start(procs, www, "--cpu-affinity")
    pinned = sorted(next(iter(os.sched_getaffinity(pid))) for pid in workers)
    assert all(len(os.sched_getaffinity(pid)) == 1 for pid in workers)
    assert pinned == sorted(cpus[i % len(cpus)] for i in range(2))
    assert _stop(proc) == 0


def test_workers_stop_when_the_supervisor_is_killed(procs: Start, www: Path) -> None:
    proc, port, _, workers = _start(procs, www)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    # Orphaned workers see their control socket close and shut down by themselves.
    deadline = time.monotonic() + 15
    while any(os.path.exists(f"/proc/{pid}") for pid in workers):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        time.sleep(0.05)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
