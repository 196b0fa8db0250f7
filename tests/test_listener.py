"""The accept loop: no accept error stops a server from accepting, except a closed listener."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from zerocopy.server.listener import RawListener, bind_siblings, bind_sockets

# trio's own list (src/trio/_highlevel_socket.py), read from the installed trio: the test fails
# if the listener's copy drifts from it.
TRIO_IGNORABLE: list[str] = list(
    getattr(trio._highlevel_socket, "_ignorable_accept_errno_names", ())
)


class ScriptedSocket:
    """A listening socket whose accept() fails with the given errnos, then returns a client."""

    def __init__(self, errnos: list[int]) -> None:
        self.errnos = list(errnos)
        self.closed = False
        self.server_side, self.client_side = socket.socketpair()
        self.accepts = 0

    def fileno(self) -> int:
        return -1 if self.closed else 1_000_000

    def accept(self) -> tuple[socket.socket, Any]:
        self.accepts += 1
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if self.errnos:
            code = self.errnos.pop(0)
            raise OSError(code, "scripted")
        return self.server_side, ("127.0.0.1", 1234)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def scripted() -> Iterator[list[ScriptedSocket]]:
    made: list[ScriptedSocket] = []
    yield made
    for fake in made:
        fake.server_side.close()
        fake.client_side.close()


def _listener(made: list[ScriptedSocket], errnos: list[int]) -> tuple[RawListener, ScriptedSocket]:
    fake = ScriptedSocket(errnos)
    made.append(fake)
    return RawListener(fake, trio.Semaphore(1)), fake  # type: ignore[arg-type]


def test_trio_still_names_its_ignorable_accept_errors() -> None:
    assert "ECONNABORTED" in TRIO_IGNORABLE, "trio moved its list: find it again"


@pytest.mark.parametrize("name", TRIO_IGNORABLE)
async def test_errors_of_one_connection_are_retried_at_once(
    scripted: list[ScriptedSocket], name: str, autojump_clock: trio.abc.Clock
) -> None:
    if not hasattr(errno, name):
        pytest.skip(f"errno.{name} does not exist on this platform")
    listener, fake = _listener(scripted, [getattr(errno, name)] * 3)
    start = trio.current_time()
    conn = await listener.accept()
    assert trio.current_time() == start  # no backoff for these
    assert fake.accepts == 4
    assert conn.peer == "127.0.0.1"


@pytest.mark.parametrize(
    "code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EINVAL, errno.EFAULT]
)
async def test_other_errors_back_off_log_and_retry(
    scripted: list[ScriptedSocket],
    code: int,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener, fake = _listener(scripted, [code] * 12)
    start = trio.current_time()
    with caplog.at_level(logging.WARNING, logger="zerocopy.server"):
        conn = await listener.accept()
    waited = trio.current_time() - start
    # 10, 20, 40 ... ms capped at 1 s: 12 failures wait 0.01 * (2**7 - 1) + 5 * 1 = 6.27 s.
    assert 6 < waited < 7
    assert fake.accepts == 13
    assert conn.peer == "127.0.0.1"
    # Logged once when the episode starts and once when it ends, not once per failure.
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[-1] == "accept: recovered"


async def test_serve_listeners_survives_every_error(
    scripted: list[ScriptedSocket], autojump_clock: trio.abc.Clock
) -> None:
    errnos = [getattr(errno, name) for name in TRIO_IGNORABLE if hasattr(errno, name)]
    errnos += [errno.EINVAL, errno.EMFILE, errno.EIO, 99999]
    listener, fake = _listener(scripted, errnos)
    handled = trio.Event()

    async def handler(conn: Any) -> None:
        conn.close()
        handled.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, [listener])
        await handled.wait()
        nursery.cancel_scope.cancel()
    assert fake.accepts >= len(errnos) + 1


async def test_a_closed_listener_ends_accept(scripted: list[ScriptedSocket]) -> None:
    listener, fake = _listener(scripted, [])
    fake.close()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()


async def test_slot_comes_back_when_accept_is_cancelled(
    scripted: list[ScriptedSocket], autojump_clock: trio.abc.Clock
) -> None:
    slots = trio.Semaphore(1)
    fake = ScriptedSocket([errno.EMFILE] * 100)
    scripted.append(fake)
    listener = RawListener(fake, slots)  # type: ignore[arg-type]
    with trio.move_on_after(5):
        await listener.accept()
    assert slots.value == 1


def test_reuse_port_siblings_share_the_port() -> None:
    first = bind_sockets("127.0.0.1", 0, reuse_port=True)
    second = bind_siblings(first)
    try:
        assert [s.getsockname() for s in first] == [s.getsockname() for s in second]
        assert second[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # Both accept: the kernel spreads clients over them.
        port = first[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        for sock in first + second:
            sock.setblocking(False)
        counts = []
        for sock in first + second:
            n = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            counts.append(n)
        assert sum(counts) == 64
        assert all(counts), counts
        for client in clients:
            client.close()
    finally:
        for sock in first + second:
            sock.close()
