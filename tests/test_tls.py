"""HTTPS: downloads through real TLS clients, the handshake's limits, hostile input on the TLS
port, close_notify, and the guarantee that no plaintext reaches a TLS socket by sendfile or
splice. Certificates come from trustme."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, open_fd_count, sha256_file
from tests.test_clients import _need, _run
from zerocopy.server import Server
from zerocopy.server.tls import TLSConfigError, load_context
from zerocopy.transfer import Counters, TLSChannel, TLSReadWrite, ktls_status
from zerocopy.transfer.errors import TransferError

ALL_STRATEGIES = ["auto", "sendfile", "splice", "readwrite"]


class Certs:
    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        issued = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert = directory / "cert.pem"
        self.key = directory / "key.pem"
        self.ca_file = directory / "ca.pem"
        issued.private_key_and_cert_chain_pem.write_to_path(str(self.cert))
        issued.private_key_pem.write_to_path(str(self.key))
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn is not None:
            context.set_alpn_protocols(alpn)
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=ALL_STRATEGIES)
def any_strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _start_tls(nursery: trio.Nursery, www: Path, certs: Certs, **options: Any) -> Server:
    return await start_server(
        nursery, root=str(www), tls_cert=str(certs.cert), tls_key=str(certs.key), **options
    )


@pytest.fixture
async def tls_server(
    nursery: trio.Nursery, www: Path, certs: Certs, any_strategy: str
) -> AsyncIterator[Server]:
    before = open_fd_count()
    server = await _start_tls(nursery, www, certs, strategy=any_strategy)
    yield server
    await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"


async def _tls_client(
    port: int, certs: Certs, alpn: list[str] | None = None
) -> tuple[RawClient, trio.SSLStream[trio.SocketStream]]:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    stream = trio.SSLStream(tcp, certs.client_context(alpn), server_hostname="localhost")
    await stream.do_handshake()
    return RawClient(stream), stream  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a server's statistics (they have no event to wait on); bound it with a scope."""
    while not condition():  # noqa: ASYNC110 - statistics have no event to wait on
        await trio.sleep(0.01)


# -- downloads with independent clients, every strategy -------------------------------------


def _stdlib_downloads(
    port: int, context: ssl.SSLContext, requests: list[tuple[str, dict[str, str]]]
) -> list[tuple[int, bytes]]:
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    results = []
    try:
        for target, headers in requests:  # one keep-alive connection for all of them
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            results.append((response.status, response.read()))
    finally:
        connection.close()
    return results


async def test_stdlib_client_downloads_and_ranges(
    tls_server: Server, www: Path, certs: Certs
) -> None:
    names = ["hello.txt", "4k.bin", "5m.bin", "empty.bin", "64k.bin", "1m.bin", "4k.bin"]
    requests: list[tuple[str, dict[str, str]]] = [("/" + name, {}) for name in names]
    requests += [
        ("/5m.bin", {"Range": "bytes=1000-2000999"}),
        ("/1m.bin", {"Range": "bytes=-10"}),
    ]
    results = await trio.to_thread.run_sync(
        _stdlib_downloads, tls_server.port, certs.client_context(), requests
    )
    for name, (status, body) in zip(names, results, strict=False):
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == sha256_file(www / name)
    five = (www / "5m.bin").read_bytes()
    assert results[len(names)] == (206, five[1000:2001000])
    assert results[len(names) + 1] == (206, (www / "1m.bin").read_bytes()[-10:])


async def test_a_listing_streams_over_tls(tls_server: Server, www: Path, certs: Certs) -> None:
    # A listing's body is sent after its head, chunk by chunk, through the TLS channel; the
    # stdlib client reads the chunked page and the next request on the same connection.
    requests: list[tuple[str, dict[str, str]]] = [("/list/", {}), ("/hello.txt", {})]
    results = await trio.to_thread.run_sync(
        _stdlib_downloads, tls_server.port, certs.client_context(), requests
    )
    (status, page), (_, hello) = results
    assert status == 200
    assert b"b.txt" in page
    assert page.rstrip().endswith(b"</html>")
    assert hello == (www / "hello.txt").read_bytes()


async def test_curl_wget_aria2c(
    tls_server: Server, www: Path, certs: Certs, tmp_path: Path
) -> None:
    url = f"https://localhost:{tls_server.port}/5m.bin"
    expected = sha256_file(www / "5m.bin")
    five = (www / "5m.bin").read_bytes()
    curl = _need("curl")
    out = tmp_path / "curl.bin"
    await _run(curl, "-sS", "--cacert", str(certs.ca_file), "-o", str(out), url)
    assert sha256_file(out) == expected
    part = tmp_path / "curl-range.bin"
    await _run(curl, "-sS", "--cacert", str(certs.ca_file), "-r", "7-70006", "-o", str(part), url)
    assert part.read_bytes() == five[7:70007]
    wget = _need("wget")
    await _run(wget, "-q", "--ca-certificate", str(certs.ca_file), "-O", str(tmp_path / "w"), url)
    assert sha256_file(tmp_path / "w") == expected
    # wget --continue asks for the rest with a Range.
    (tmp_path / "partial").write_bytes(five[:123457])
    await _run(
        wget,
        "-q",
        "-c",
        "--ca-certificate",
        str(certs.ca_file),
        "-O",
        str(tmp_path / "partial"),
        url,
    )
    assert sha256_file(tmp_path / "partial") == expected
    aria2c = _need("aria2c")
    await _run(
        aria2c, "-q", "-x4", "-s4", "-k1M", "--ca-certificate", str(certs.ca_file),
        "-d", str(tmp_path), "-o", "aria.bin", url,
    )  # fmt: skip
    assert sha256_file(tmp_path / "aria.bin") == expected


# -- no plaintext through zero-copy calls, by construction ----------------------------------


async def test_no_sendfile_or_splice_ever_touches_a_tls_socket(
    nursery: trio.Nursery, www: Path, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_sendfile, real_splice = os.sendfile, os.splice

    def sendfile(*args: Any) -> int:
        calls.append("sendfile")
        return real_sendfile(*args)

    def splice(*args: Any) -> int:
        calls.append("splice")
        return real_splice(*args)

    monkeypatch.setattr(os, "sendfile", sendfile)
    monkeypatch.setattr(os, "splice", splice)
    for name in ALL_STRATEGIES:
        server = await _start_tls(nursery, www, certs, strategy=name)
        assert server.strategy_name == "tls-readwrite"
        client, _ = await _tls_client(server.port, certs)
        for target in ("/5m.bin", "/4k.bin", "/4k.bin", "/1m.bin"):
            response = await client.request(target)
            assert response.status == 200
            assert response.sha256 == sha256_file(www / target[1:])
        response = await client.request("/5m.bin", headers={"Range": "bytes=0-9,5000-5009"})
        assert response.status == 206
        await client.aclose()
        stats = server.statistics().transfer
        await stop_server(server)
        # Every body byte went through user space, in and out; nothing by zero-copy.
        assert stats.bytes_zero_copy == 0
        assert "sendfile" not in stats.syscalls
        assert "splice" not in stats.syscalls
        assert stats.body_bytes >= 6 * (1 << 20) + 4096
        assert stats.bytes_copied_out >= stats.body_bytes
        assert stats.syscalls["ssl_write"] > 0
    assert calls == []
    # The control: the same monkeypatch sees a plain server's sendfile.
    plain = await start_server(nursery, root=str(www), strategy="sendfile")
    client = await RawClient.connect(plain.port)
    assert (await client.request("/1m.bin")).status == 200
    await client.aclose()
    await stop_server(plain)
    assert "sendfile" in calls


async def test_a_tls_channel_is_not_a_socket_and_hides_its_descriptor(certs: Certs) -> None:
    left, right = socket.socketpair()
    context = load_context(str(certs.cert), str(certs.key))
    wrapped = context.wrap_socket(left, server_side=True, do_handshake_on_connect=False)
    try:
        channel = TLSChannel(wrapped, Counters())
        assert not hasattr(channel, "fileno")
        assert not isinstance(channel, socket.socket)
        assert channel.ktls_send is False
        with pytest.raises(TransferError, match="plaintext"):
            channel.ktls_fd()
        with pytest.raises(TransferError, match="plaintext"):
            await channel.ktls_sendfile(0, 0, 1)
        from zerocopy.transfer import Offload

        counters = Counters()
        strategy = TLSReadWrite(counters, offload=Offload(counters, threads=0))
        from zerocopy.span import FileSpan

        with pytest.raises(TransferError, match="TLSChannel"):
            await strategy.send_span(right, FileSpan(0, 0, 1), prefix=b"x")
    finally:
        wrapped.close()
        right.close()
    assert right.fileno() == -1


# -- kTLS: detected honestly ----------------------------------------------------------------


def _kernel_has_tls() -> bool:
    if os.path.exists("/proc/net/tls_stat"):
        return True
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        with socket.create_connection(listener.getsockname()) as client:
            listener.accept()[0].close()
            try:
                client.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_ULP", 31), b"tls")
            except OSError:
                return False
            return True
    finally:
        listener.close()


def test_ktls_detection_reports_every_missing_piece() -> None:
    status = ktls_status()
    python = hasattr(ssl, "OP_ENABLE_KTLS")
    kernel = _kernel_has_tls()
    assert status.available == (python and kernel)
    assert ("OP_ENABLE_KTLS" in status.reason) == (not python)
    assert ("CONFIG_TLS" in status.reason) == (not kernel)


KTLS = ktls_status()


@pytest.mark.skipif(not KTLS.available, reason=f"kTLS unavailable here: {KTLS.reason}")
async def test_ktls_data_path(nursery: trio.Nursery, www: Path, certs: Certs) -> None:
    server = await _start_tls(nursery, www, certs, strategy="sendfile")  # pragma: no cover
    client, _ = await _tls_client(server.port, certs)  # pragma: no cover
    response = await client.request("/5m.bin")  # pragma: no cover
    assert response.sha256 == sha256_file(www / "5m.bin")  # pragma: no cover
    assert server.statistics().transfer.bytes_zero_copy > 0  # pragma: no cover
    await client.aclose()  # pragma: no cover
    await stop_server(server)  # pragma: no cover


# -- the context, and configuration errors --------------------------------------------------


def test_context_defaults(certs: Certs) -> None:
    context = load_context(str(certs.cert), str(certs.key))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & ssl.OP_NO_COMPRESSION


def test_bad_certificates_are_one_line_errors(certs: Certs, tmp_path: Path) -> None:
    other = Certs(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (str(tmp_path / "missing.pem"), str(certs.key), "No such file"),
        (str(garbage), str(certs.key), "not a PEM"),
        (str(certs.cert), str(garbage), "not a PEM"),
        (str(certs.cert), str(other.key), "does not match"),
        (str(certs.cert), None, "--tls-key"),
    ]
    for cert, key, message in cases:
        with pytest.raises(TLSConfigError, match=message) as info:
            load_context(cert, key)
        assert "\n" not in str(info.value)


# -- ALPN and protocol versions -------------------------------------------------------------


async def test_alpn_http11_and_an_h2_only_client(tls_server: Server, certs: Certs) -> None:
    client, stream = await _tls_client(tls_server.port, certs, alpn=["h2", "http/1.1"])
    assert stream.selected_alpn_protocol() == "http/1.1"
    assert (await client.request("/hello.txt")).body == b"hello, world\n"
    await client.aclose()
    # Only h2 offered: the handshake still succeeds, without ALPN, and HTTP/1.1 is served.
    with trio.fail_after(10):
        client, stream = await _tls_client(tls_server.port, certs, alpn=["h2"])
    assert stream.selected_alpn_protocol() is None
    assert (await client.request("/hello.txt")).status == 200
    await client.aclose()
    # And if it speaks HTTP/2 anyway, it gets 505 and a close, not a hang.
    client, stream = await _tls_client(tls_server.port, certs, alpn=["h2"])
    await client.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    with trio.fail_after(10):
        response = await client.read_response()
        assert response.status == 505
        assert await client.read_to_eof() == b""
    await client.aclose()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls_12_and_13_are_served(
    nursery: trio.Nursery, www: Path, certs: Certs, version: ssl.TLSVersion
) -> None:
    # Older versions are refused by the context's minimum_version (test_context_defaults);
    # this OpenSSL's client will not even offer them to test it on the wire.
    server = await _start_tls(nursery, www, certs)
    context = certs.client_context()
    context.minimum_version = context.maximum_version = version
    tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
    stream = trio.SSLStream(tcp, context, server_hostname="localhost")
    await stream.do_handshake()
    assert stream.version() == version.name.replace("_", ".")
    client = RawClient(stream)  # type: ignore[arg-type]
    assert (await client.request("/4k.bin")).sha256 == sha256_file(www / "4k.bin")
    await client.aclose()
    await stop_server(server)


# -- hostile input on the TLS port ----------------------------------------------------------


def _client_hello() -> bytes:
    """The first flight of a real TLS client, taken from a memory BIO."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="x")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="plain-http"),
        pytest.param(bytes(range(256)) * 8, id="garbage"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="truncated-hello-eof"),
    ],
)
async def test_non_tls_input_is_closed_quietly(
    tls_server: Server, certs: Certs, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="zerocopy")
    stream = await trio.open_tcp_stream("127.0.0.1", tls_server.port)
    await stream.send_all(data)
    if data.startswith(b"\x16"):
        await stream.send_eof()
    received = b""
    with trio.fail_after(10):
        try:
            while chunk := await stream.receive_some(65536):
                received += chunk
        except trio.BrokenResourceError:
            pass  # a reset is a close too
    await stream.aclose()
    assert b"HTTP/1." not in received  # no plaintext answer on the TLS port
    failures = [r for r in caplog.records if "handshake failed" in r.getMessage()]
    assert failures
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in failures)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # The server is unharmed.
    client, _ = await _tls_client(tls_server.port, certs)
    assert (await client.request("/hello.txt")).status == 200
    await client.aclose()


async def test_stalled_handshake_is_dropped_at_the_head_timeout(
    nursery: trio.Nursery, www: Path, certs: Certs, autojump_clock: trio.testing.MockClock
) -> None:
    server = await _start_tls(nursery, www, certs, head_timeout=5.0)
    hello = _client_hello()
    for sent in (b"", hello[:40]):  # nothing at all; half a ClientHello
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(sent)
        start = trio.current_time()
        with trio.fail_after(60):
            assert await stream.receive_some(65536) == b""
        assert 5.0 <= trio.current_time() - start < 6.0
        await stream.aclose()
    await stop_server(server)


async def test_a_thousand_stalled_handshakes_leave_the_service_available(
    nursery: trio.Nursery, www: Path, certs: Certs
) -> None:
    # 1,000 clients that send half a ClientHello and stall: a slowloris for TLS. Sized for a
    # 2-CPU machine to open them in about a second; each costs the server one idle task.
    server = await _start_tls(nursery, www, certs, head_timeout=60.0)
    hello = _client_hello()
    stalled = []
    try:
        for _ in range(1000):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(hello[:40])
            stalled.append(stream)
        with trio.fail_after(10):
            client, _ = await _tls_client(server.port, certs)
            for _ in range(3):
                assert (await client.request("/64k.bin")).status == 200
            await client.aclose()
        assert server.statistics().connections_open >= 1000
    finally:
        for stream in stalled:
            await stream.aclose()
    await stop_server(server)


async def test_reset_mid_download_is_quiet(
    tls_server: Server, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="zerocopy")
    client, stream = await _tls_client(tls_server.port, certs)
    await client.send(b"GET /5m.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(await stream.receive_some(65536)) > 0
    raw = stream.transport_stream.socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await stream.transport_stream.aclose()  # RST
    with trio.fail_after(10):
        await _until(lambda: not tls_server.statistics().connections_open)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    client, _ = await _tls_client(tls_server.port, certs)
    assert (await client.request("/hello.txt")).status == 200
    await client.aclose()


# -- closing --------------------------------------------------------------------------------


def _read_until_close(port: int, context: ssl.SSLContext) -> tuple[bytes, bytes]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    # suppress_ragged_eofs=False: a close without close_notify raises SSLEOFError.
    with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        return first, rest


async def test_shutdown_sends_close_notify_to_idle_connections(
    nursery: trio.Nursery, www: Path, certs: Certs
) -> None:
    server = await _start_tls(nursery, www, certs, shutdown_grace=5.0)
    async with trio.open_nursery() as clients:
        results: list[tuple[bytes, bytes]] = []

        async def client() -> None:
            results.append(
                await trio.to_thread.run_sync(
                    _read_until_close, server.port, certs.client_context()
                )
            )

        clients.start_soon(client)
        with trio.fail_after(10):
            await _until(lambda: server.statistics().responses.get(200, 0) >= 1)
        server.shutdown()
    first, rest = results[0]
    assert first.startswith(b"HTTP/1.1 200")
    assert rest == b""  # ended by close_notify: no SSLEOFError was raised
    with trio.fail_after(10):
        await server.wait_closed()


async def test_connection_close_sends_close_notify(tls_server: Server, certs: Certs) -> None:
    def fetch() -> bytes:
        raw = socket.create_connection(("127.0.0.1", tls_server.port), timeout=10)
        with certs.client_context().wrap_socket(
            raw, server_hostname="localhost", suppress_ragged_eofs=False
        ) as sock:
            sock.sendall(b"GET /4k.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    data = await trio.to_thread.run_sync(fetch)
    assert data.startswith(b"HTTP/1.1 200")
    assert len(data.partition(b"\r\n\r\n")[2]) == 4096


async def test_shutdown_does_not_wait_for_a_client_that_stopped_reading(
    nursery: trio.Nursery, www: Path, certs: Certs, autojump_clock: trio.testing.MockClock
) -> None:
    server = await _start_tls(nursery, www, certs, shutdown_grace=3.0, send_timeout=3600.0)
    client, stream = await _tls_client(server.port, certs)
    await client.send(b"GET /5m.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    await stream.receive_some(1024)  # then never read again
    await trio.sleep(1)
    start = trio.current_time()
    server.shutdown()
    with trio.fail_after(60):
        await server.wait_closed()
    assert trio.current_time() - start <= 3.0 + 0.5
    await client.aclose()
