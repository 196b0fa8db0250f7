"""Binding: IPv6, and a name that resolves to several addresses (as ``localhost`` does where
``/etc/hosts`` lists both ``127.0.0.1`` and ``::1``).

This machine's ``localhost`` may resolve to IPv4 alone, so the two-address case uses a name of
its own, ``dual.test``, answered by a fake resolver with both loopback addresses; every other
name goes to the real one. Tests need an IPv6 loopback and are skipped without one.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.conftest import stop_server
from tests.helpers import RawClient, open_fd_count
from zerocopy.server import Server, ServerConfig

if TYPE_CHECKING:
    from pathlib import Path


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1)")


async def serve(nursery: trio.Nursery, www: Path, bind: str, **options: Any) -> Server:
    config = ServerConfig(root=str(www), bind=bind, port=0, **options)
    server: Server = await nursery.start(Server(config).serve)
    return server


async def hello(host: str, port: int) -> bytes:
    client = await RawClient.connect(port, host=host)
    try:
        return (await client.request("/hello.txt")).body
    finally:
        await client.aclose()


def refused(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) != 0


async def test_ipv6_loopback(nursery: trio.Nursery, www: Path, tmp_path: Path) -> None:
    before = open_fd_count()
    log = tmp_path / "access.log"
    server = await serve(nursery, www, "::1", access_log=str(log))
    try:
        [(host, port)] = server.addresses
        assert host == "::1"
        assert await hello("::1", port) == b"hello, world\n"
    finally:
        await stop_server(server)
    # The client's address is logged as it is, without a port or brackets.
    assert log.read_text().startswith("::1 - - [")
    assert refused("::1", port)
    assert open_fd_count() <= before


async def test_the_ipv6_wildcard_is_ipv6_only(nursery: trio.Nursery, www: Path) -> None:
    # As nginx's `listen [::]:80` (ipv6only=on since 1.3.4): `::` serves IPv6 clients only,
    # so that `0.0.0.0` can be bound beside it on the same port; IPv4 clients are not
    # answered through IPv4-mapped addresses.
    server = await serve(nursery, www, "::")
    try:
        [(host, port)] = server.addresses
        assert host == "::"
        assert await hello("::1", port) == b"hello, world\n"
        assert refused("127.0.0.1", port)
    finally:
        await stop_server(server)


@pytest.fixture
def dual_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """``dual.test``: resolves to ``127.0.0.1`` and ``::1``, in that order."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "dual.test":
            return real(host, port, *args, **kwargs)
        return real("127.0.0.1", port, *args, **kwargs) + real("::1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return "dual.test"


async def test_a_name_with_two_addresses_is_served_on_both(
    nursery: trio.Nursery, www: Path, dual_name: str
) -> None:
    before = open_fd_count()
    server = await serve(nursery, www, dual_name)
    try:
        addresses = server.addresses
        assert [host for host, _ in addresses] == ["127.0.0.1", "::1"]
        for host, port in addresses:
            assert await hello(host, port) == b"hello, world\n"
        assert server.port == addresses[0][1]
        assert server.statistics().connections_accepted == 2
    finally:
        await stop_server(server)
    # Shutdown closed every listener, not only the first.
    for host, port in addresses:
        assert refused(host, port)
    assert open_fd_count() <= before


async def test_a_name_that_cannot_be_bound_whole_binds_nothing(www: Path, dual_name: str) -> None:
    # If the second address fails (here: the port is taken on ::1), the first listener is
    # closed again, and the error reaches the caller before anything is served.
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        if not refused("127.0.0.1", port):
            pytest.skip(f"127.0.0.1:{port} is in use by someone else")
        before = open_fd_count()
        server = Server(ServerConfig(root=str(www), bind=dual_name, port=port))
        with_server = open_fd_count()  # the server's own: the root, the inotify instance
        with pytest.raises(OSError, match="in use"):
            server.bind()
        assert open_fd_count() == with_server
        assert refused("127.0.0.1", port)
        # serve() binds the same way, fails the same way, and releases what the server held.
        with pytest.raises(OSError, match="in use"):
            await server.serve()
        assert open_fd_count() == before
