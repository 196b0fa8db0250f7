"""Resource exhaustion, in a subprocess whose RLIMIT_NOFILE is low enough to run out."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.bounded import readline_within, stop_within

LIMIT = 64


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def _get(port: int, target: str = "/f.txt") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_accept_backs_off_on_emfile_and_recovers(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("ok\n")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zerocopy",
            "serve",
            str(tmp_path),
            "--port",
            "0",
            "--max-connections",
            "1000",
            "--idle-timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_fds,
    )
    try:
        port = int(readline_within(server).split("127.0.0.1:")[1].split("/")[0])
        assert _get(port).endswith(b"ok\n")
        # Hold more idle keep-alive connections than the server has descriptors.
        clients = []
        for _ in range(LIMIT + 20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /f.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            clients.append(sock)
        answered = unanswered = 0
        for sock in clients:  # connections are accepted in order: stop at the first few stuck
            sock.settimeout(0.3)
            try:
                answered += bool(sock.recv(1000))
            except TimeoutError:
                unanswered += 1
                if unanswered == 3:
                    break
        assert 0 < answered < len(clients)  # the server filled up, and did not crash
        for sock in clients:
            sock.close()
        deadline = time.monotonic() + 20
        while True:  # it recovers once descriptors come back
            try:
                if _get(port).endswith(b"ok\n"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not recover"
        assert server.poll() is None
    finally:
        _, stderr = stop_within(server, signal.SIGTERM)
    assert "pausing accept" in stderr
    assert "Traceback" not in stderr
