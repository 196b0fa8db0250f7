"""Running under systemd: socket activation and sd_notify, with systemd's own tool and a
unix datagram socket standing in for the service manager."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.procs import Proc, free_port, get
from zerocopy.server import systemd

Start = Callable[..., Proc]
ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    return root


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_socket_activation(procs: Start, www: Path, workers: str) -> None:
    assert ACTIVATE is not None
    port = free_port()
    proc = procs(
        argv=[
            ACTIVATE,
            "-l",
            f"127.0.0.1:{port}",
            sys.executable,
            "-m",
            "zerocopy",
            "serve",
            str(www),
            "--port",
            "1",  # ignored: the socket comes from systemd
            "--workers",
            workers,
        ]
    )
    proc.wait_for(f"Listening on 127.0.0.1:{port}")
    # The first connection makes the tool exec zerocopy, which serves it on the socket.
    for _ in range(6):
        assert get(port, "/hello.txt") == (200, b"hello\n")
    line = proc.wait_for(r"serving .* on http://127\.0\.0\.1:(\d+)/", stream="stdout")
    assert int(line.group(1)) == port
    proc.wait_for("serving on 1 sockets from systemd")
    if workers == "2":
        assert "sockets from systemd" in line.string
        kids = proc.wait_children(2)
        # Both workers serve on the one inherited socket.
        inode = os.readlink(f"/proc/{proc.pid}/fd/3")
        for pid in kids:
            assert inode in _fd_targets(pid)
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def _fd_targets(pid: int) -> set[str]:
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # a connection closed meanwhile
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets


class Notifications:
    """A unix datagram socket that plays systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(20)

    def next(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    listener = Notifications(tmp_path / "notify")
    yield listener
    listener.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sd_notify_ready_reloading_stopping(
    procs: Start, www: Path, notifications: Notifications, workers: str
) -> None:
    env = {**os.environ, "NOTIFY_SOCKET": str(notifications.path)}
    proc = procs("serve", str(www), "--port", "0", "--workers", workers, env=env)
    assert notifications.next()["READY"] == "1"
    port, _ = proc.serving()
    assert get(port, "/hello.txt")[0] == 200  # ready means accepting
    if workers == "2":
        proc.signal(signal.SIGHUP)
        reloading = notifications.next()
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert notifications.next()["READY"] == "1"
        proc.wait_for("reload: new workers accept")
    proc.signal(signal.SIGTERM)
    assert notifications.next()["STOPPING"] == "1"
    assert proc.wait(timeout=30) == 0


def test_notify_abstract_socket_and_failures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"zerocopy-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1", "STATUS=up")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/socket")
    assert not systemd.notify("READY=1")  # logged, never raised
    assert "sd_notify READY=1" in caplog.text
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.notify("READY=1")


def test_listen_fds_is_for_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert systemd.listen_fds() == []
    assert "LISTEN_FDS" not in os.environ  # not passed on to children either
    monkeypatch.setenv("LISTEN_PID", "x")
    monkeypatch.setenv("LISTEN_FDS", "1")
    with pytest.raises(ValueError, match="malformed"):
        systemd.listen_fds()
    assert systemd.listen_fds() == []  # nothing set
