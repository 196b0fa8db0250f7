"""The access log (``--access-log``): what each line says, read back by parsers nobody here
wrote, and the bytes it reports for responses that went whole, in parallel, or cut short.

The Combined part of each line is parsed with Fluent Bit's ``nginx`` parser, copied verbatim
from its documented ``conf/parsers.conf`` (the same expression as Fluentd's documented
``nginx`` parser, https://docs.fluentd.org/parser/nginx, without its optional tail); only the
named-group syntax is translated to Python's. JSON lines are read with :mod:`json`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, random_file
from zerocopy.http import Request, ResponsePlan
from zerocopy.logtext import safe_text
from zerocopy.server import Server, accesslog
from zerocopy.server.accesslog import AccessLog
from zerocopy.server.metrics import render_metrics
from zerocopy.span import FileSpan
from zerocopy.transfer import Counters, make_strategy

MiB = 1 << 20

FLUENT_BIT_NGINX = (
    r"^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "
    r'"(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)'
    r'(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")'
)
COMBINED = re.compile(FLUENT_BIT_NGINX.replace("(?<", "(?P<"))
OURS = re.compile(r" (?P<request_time>\d+\.\d{6}) (?P<strategy>[a-z]+|-) (?P<sent>\d+)")
JSON_KEYS = {
    "time_iso8601",
    "remote_addr",
    "remote_user",
    "request",
    "status",
    "body_bytes_sent",
    "http_referer",
    "http_user_agent",
    "request_time",
    "strategy",
}


UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""What ``safe_text`` escapes, but the backslash: no log line may hold one of these."""


def parse_combined(line: str) -> dict[str, str]:
    """The fields of one text line: Fluent Bit's, then the three that follow them."""
    match = COMBINED.match(line)
    assert match is not None, f"not a Combined line: {line!r}"
    tail = OURS.fullmatch(line, match.end())
    assert tail is not None, f"bad fields after the Combined ones: {line[match.end() :]!r}"
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    fields.update(tail.groupdict())
    when = datetime.datetime.strptime(fields["time"], "%d/%b/%Y:%H:%M:%S %z")
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - when).total_seconds()) < 120, fields["time"]
    assert fields["size"] == fields["sent"]  # %b is the bytes sent too, as nginx's
    return fields


def read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data.endswith(b"\n") or not data
    return data.decode("utf-8").splitlines()


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (something outside trio's view: a file, a counter) until true."""
    with trio.fail_after(10):
        while True:
            if condition():
                return
            await trio.sleep(0.01)


async def start_logged(nursery: trio.Nursery, www: Path, log: Path, **options: object) -> Server:
    return await start_server(nursery, root=str(www), access_log=str(log), **options)


# -- one connection, every kind of response -------------------------------------------------

# (method, target, extra headers, expected status, whether a file span carries the body)
REQUESTS: list[tuple[str, str, dict[str, str], int, bool]] = [
    ("GET", "/4k.bin", {}, 200, True),
    ("GET", "/4k.bin", {"User-Agent": "curl/8.5.0"}, 200, True),  # now the fast path
    ("HEAD", "/4k.bin", {}, 200, False),
    (
        "GET",
        "/5m.bin",
        {"Referer": "http://example.test/", "User-Agent": "Mozilla/5.0 (X11)"},
        200,
        True,
    ),
    ("GET", "/missing.bin", {}, 404, False),
    ("GET", "/list/", {}, 200, False),
    ("GET", "/sub", {}, 301, False),
    ("GET", "/64k.bin", {"Range": "bytes=0-99"}, 206, True),
    ("GET", "/64k.bin", {"Range": "bytes=0-9,100-199"}, 206, True),
    ("GET", "/empty.bin", {}, 200, False),
    ("GET", "/4k.bin", {"If-None-Match": "*"}, 304, False),
]


def expected_strategy(strategy: str, target: str, headers: dict[str, str]) -> str:
    if strategy != "auto":
        return strategy
    # auto sends whole small cached files from memory, and everything else by sendfile.
    whole_small = target in ("/4k.bin",) and "Range" not in headers
    return "memory" if whole_small else "sendfile"


@pytest.mark.parametrize("strategy", ["sendfile", "splice", "readwrite", "auto"])
@pytest.mark.parametrize("log_format", ["combined", "json"])
async def test_each_response_is_one_line_with_what_was_sent(
    nursery: trio.Nursery, www: Path, tmp_path: Path, strategy: str, log_format: str
) -> None:
    log = tmp_path / "access.log"
    server = await start_logged(nursery, www, log, strategy=strategy, access_log_format=log_format)
    client = await RawClient.connect(server.port)
    received = []
    for method, target, headers, status, _ in REQUESTS:
        response = await client.request(target, method, headers)
        assert response.status == status, (target, response.status)
        received.append(len(response.body))
    await client.aclose()
    await stop_server(server)
    lines = read_lines(log)
    assert len(lines) == len(REQUESTS)
    for line, (method, target, headers, status, span), sent in zip(
        lines, REQUESTS, received, strict=True
    ):
        way = expected_strategy(strategy, target, headers) if span else None
        if log_format == "json":
            fields = json.loads(line)
            assert set(fields) == JSON_KEYS
            assert fields["request"] == f"{method} {target} HTTP/1.1"
            assert (fields["status"], fields["body_bytes_sent"]) == (status, sent)
            assert fields["strategy"] == way
            assert fields["remote_addr"] == "127.0.0.1"
            assert fields["remote_user"] is None
            assert fields["http_referer"] == headers.get("Referer")
            assert fields["http_user_agent"] == headers.get("User-Agent")
            assert 0 <= fields["request_time"] < 10
            datetime.datetime.fromisoformat(fields["time_iso8601"])
        else:
            fields = parse_combined(line)
            assert fields["remote"] == "127.0.0.1"
            assert (fields["host"], fields["user"]) == ("-", "-")
            assert (fields["method"], fields["path"]) == (method, target)
            assert (int(fields["code"]), int(fields["sent"])) == (status, sent)
            assert fields["strategy"] == (way or "-")
            assert fields["referer"] == headers.get("Referer", "-")
            assert fields["agent"] == headers.get("User-Agent", "-")
            assert 0 <= float(fields["request_time"]) < 10


async def test_an_unparsable_request_is_logged_without_a_request_line(
    nursery: trio.Nursery, www: Path, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = await start_logged(nursery, www, log)
    client = await RawClient.connect(server.port)
    await client.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    response = await client.read_response()
    assert response.status == 400
    await client.aclose()
    await stop_server(server)
    [line] = read_lines(log)
    fields = parse_combined(line)
    assert (fields["method"], fields["code"]) == ("-", "400")
    assert int(fields["sent"]) == len(response.body)


async def test_request_time_counts_from_the_first_byte(
    nursery: trio.Nursery, www: Path, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    log = tmp_path / "access.log"
    server = await start_logged(nursery, www, log, access_log_format="json")
    client = await RawClient.connect(server.port)
    assert (await client.request("/hello.txt")).status == 200  # a first, quick one
    await client.send(b"GET /hello.txt HTTP/1.1\r\n")
    await trio.sleep(3)  # virtual seconds: the head trickles in
    await client.send(b"Host: t\r\n\r\n")
    assert (await client.read_response()).status == 200
    await client.aclose()
    # Not stop_server: its fail_after would expire in virtual time while the log's last
    # write waits for its thread.
    server.shutdown()
    server.shutdown()
    await server.wait_closed()
    quick, slow = (json.loads(line)["request_time"] for line in read_lines(log))
    assert quick < 1
    assert 3 <= slow < 4


# -- the bytes that really went out ----------------------------------------------------------


async def test_parallel_downloads_each_log_their_own_bytes(
    nursery: trio.Nursery, www: Path, tmp_path: Path
) -> None:
    """Sixteen 5 MiB downloads interleave chunk by chunk, beside small responses: each line
    holds its own response's bytes, not what others sent meanwhile."""
    log = tmp_path / "access.log"
    server = await start_logged(nursery, www, log, strategy="auto")
    size = (www / "5m.bin").stat().st_size

    async def download(target: str, times: int) -> None:
        client = await RawClient.connect(server.port)
        for _ in range(times):
            assert (await client.request(target)).status == 200
        await client.aclose()

    async with trio.open_nursery() as clients:
        for _ in range(16):
            clients.start_soon(download, "/5m.bin", 2)
        for _ in range(4):
            clients.start_soon(download, "/4k.bin", 20)
    await stop_server(server)
    sent: dict[tuple[str, str], list[int]] = {}
    for line in read_lines(log):
        fields = parse_combined(line)
        sent.setdefault((fields["path"], fields["strategy"]), []).append(int(fields["sent"]))
    assert sent == {("/5m.bin", "sendfile"): [size] * 32, ("/4k.bin", "memory"): [4096] * 80}


def _small_receive_buffer() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    return sock


async def _receive(sock: socket.socket, size: int = 1 << 16) -> bytes:
    while True:
        try:
            return sock.recv(size)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
        except ConnectionResetError:
            return b""


async def _start_download(port: int, target: str) -> tuple[socket.socket, bytearray, int]:
    """A client that asked for ``target`` and has read the head, and no more."""
    sock = _small_receive_buffer()
    try:
        sock.connect(("127.0.0.1", port))
    except BlockingIOError:
        await trio.lowlevel.wait_writable(sock)
    sock.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    received = bytearray()
    while b"\r\n\r\n" not in received:
        received += await _receive(sock)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return sock, bytearray(body), length


@pytest.mark.parametrize("strategy", ["sendfile", "splice", "readwrite"])
async def test_a_truncated_file_logs_the_bytes_sent_not_the_length(
    nursery: trio.Nursery, www: Path, tmp_path: Path, strategy: str
) -> None:
    """64 MiB promised; the file shrinks to 32 MiB while the client has read next to nothing
    (the socket buffers hold a few MiB at most), so exactly 32 MiB go out, and are logged."""
    log = tmp_path / "access.log"
    path = random_file(www / "shrinking.bin", 64 * MiB)
    server = await start_logged(nursery, www, log, strategy=strategy)
    sock, body, length = await _start_download(server.port, "/shrinking.bin")
    assert length == 64 * MiB
    os.truncate(path, 32 * MiB)
    with trio.fail_after(20):
        while chunk := await _receive(sock):
            body += chunk
    sock.close()
    await stop_server(server)
    assert len(body) == 32 * MiB
    [line] = read_lines(log)
    fields = parse_combined(line)
    assert (fields["code"], fields["strategy"]) == ("200", strategy)
    assert int(fields["sent"]) == 32 * MiB


async def test_a_client_that_leaves_mid_body_logs_what_went_out(
    nursery: trio.Nursery, www: Path, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    random_file(www / "big.bin", 64 * MiB)
    server = await start_logged(nursery, www, log, strategy="sendfile")
    sock, body, length = await _start_download(server.port, "/big.bin")
    while len(body) < MiB:
        body += await _receive(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset: the server's next send fails
    await until(lambda: not server.statistics().connections_open)
    await stop_server(server)
    [line] = read_lines(log)
    sent = int(parse_combined(line)["sent"])
    # At least what the client read; less than promised: what the kernel took before the
    # reset (the client's read plus the socket buffers), not the Content-Length.
    assert len(body) <= sent < length
    assert sent < len(body) + 16 * MiB


# -- hostile strings ---------------------------------------------------------------------------

HOSTILE = [
    b"/a\rb",
    b"/a\nb",
    b"/a\r\nForged: line",
    b"/\x1b[31mred",
    "/\u202eevil".encode(),
    b'/quote"d',
    b"/back\\slash\\x0a",
    b"/\xff\xfe",
    "/\u2028sep\u0085nel".encode(),
]


@pytest.mark.parametrize("log_format", ["combined", "json"])
async def test_hostile_strings_stay_on_one_line(tmp_path: Path, log_format: str) -> None:
    """Straight through :meth:`Clerk.record`, with strings no parser stopped (an HTTP/1.0
    request without Host, which the parser would accept)."""
    path = tmp_path / "access.log"
    counters = Counters()
    strategy = make_strategy("auto", counters)
    log = AccessLog(str(path), log_format=log_format, counters=counters, strategy=strategy)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        clerk = log.clerk("127.0.0.1", ours)
        for hostile in HOSTILE:
            request = Request(
                method="GET",
                target=hostile,
                version="1.0",
                keep_alive=False,
                headers={b"referer": hostile, b"user-agent": b'a "quoted"\x1b agent' + hostile},
            )
            clerk.record(request, ResponsePlan(404, b"head", (b"not found",)), True, None)
    log.write_now()
    log.close()
    lines = read_lines(path)
    assert len(lines) == len(HOSTILE)
    for line, hostile in zip(lines, HOSTILE, strict=True):
        assert not UNSAFE.search(line), line  # no control, no bidi, no line separator
        if log_format == "json":
            fields = json.loads(line)
            assert fields["request"] == f"GET {safe_text(hostile)} HTTP/1.0"
            assert fields["http_referer"] == safe_text(hostile)
        else:
            fields = parse_combined(line)
            assert fields["path"] == safe_text(hostile).replace('"', "\\x22")
            assert fields["referer"] == safe_text(hostile).replace('"', "\\x22")
            assert fields["agent"].startswith("a \\x22quoted\\x22\\x1b agent")


async def test_hostile_bytes_on_the_wire_give_one_line_per_response(
    nursery: trio.Nursery, www: Path, tmp_path: Path
) -> None:
    """Whatever the parser makes of them (a 400 for some), one response, one line."""
    log = tmp_path / "access.log"
    server = await start_logged(nursery, www, log)
    statuses = []
    for hostile in HOSTILE:
        client = await RawClient.connect(server.port)
        await client.send(
            b"GET " + hostile + b" HTTP/1.1\r\nHost: t\r\nUser-Agent: x\x1by\xe2\x80\xae\r\n"
            b"Connection: close\r\n\r\n"
        )
        statuses.append((await client.read_response()).status)
        await client.aclose()
    await stop_server(server)
    lines = read_lines(log)
    assert len(lines) == len(HOSTILE)
    for line, status in zip(lines, statuses, strict=True):
        assert not UNSAFE.search(line), line
        assert int(parse_combined(line)["code"]) == status


# -- a disk that does not keep up, and reopening -----------------------------------------------


async def test_a_stalled_log_drops_lines_and_counts_them(
    nursery: trio.Nursery, www: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log is a pipe nobody reads: its writer thread blocks, the server keeps serving,
    memory stays bounded, and the lines it could not keep are counted."""
    monkeypatch.setattr(accesslog, "MAX_PENDING", 32 * 1024)
    reader, writer = os.pipe()
    try:
        server = await start_server(
            nursery, root=str(www), access_log=f"/proc/self/fd/{writer}", strategy="auto"
        )
        client = await RawClient.connect(server.port)
        with trio.fail_after(20):
            while server.statistics().access_log.dropped < 100:
                assert (await client.request("/hello.txt")).status == 200
        stats = server.statistics()
        samples = {
            (sample.name, tuple(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(render_metrics(stats).decode())
            for sample in family.samples
        }
        dropped = ("zerocopy_access_log_lines_total", (("result", "dropped"),))
        assert samples[dropped] == stats.access_log.dropped
        await client.aclose()
        # Unblock the writer: read everything, until the server has stopped and closed it.
        os.set_blocking(reader, False)
        logged = bytearray()

        async def drain() -> None:
            while True:
                try:
                    chunk = os.read(reader, 1 << 16)
                except BlockingIOError:
                    await trio.sleep(0.01)
                    continue
                if not chunk:
                    return
                logged.extend(chunk)

        async with trio.open_nursery() as draining:
            draining.start_soon(drain)
            os.close(writer)
            writer = -1
            await stop_server(server)
        final = server.statistics().access_log
        responses = sum(server.statistics().responses.values())
        assert final.lines + final.dropped == responses
        assert logged.count(b"\n") == final.lines
    finally:
        os.close(reader)
        if writer >= 0:
            os.close(writer)


async def test_reopen_writes_to_a_new_file_after_a_rename(
    nursery: trio.Nursery, www: Path, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = await start_logged(nursery, www, log)
    client = await RawClient.connect(server.port)
    for _ in range(3):
        assert (await client.request("/hello.txt")).status == 200
    log.rename(tmp_path / "access.log.1")
    server.reopen_logs()
    await until(log.exists)
    for _ in range(2):
        assert (await client.request("/4k.bin")).status == 200
    await client.aclose()
    await stop_server(server)
    old = [parse_combined(line)["path"] for line in read_lines(tmp_path / "access.log.1")]
    new = [parse_combined(line)["path"] for line in read_lines(log)]
    assert (old, new) == (["/hello.txt"] * 3, ["/4k.bin"] * 2)
    assert server.statistics().access_log.reopens == 1


def test_an_unopenable_log_is_a_clear_error(tmp_path: Path) -> None:
    counters = Counters()
    strategy = make_strategy("auto", counters)
    with pytest.raises(OSError, match=r"cannot open access log .*: Is a directory"):
        AccessLog(str(tmp_path), log_format="combined", counters=counters, strategy=strategy)


async def test_where_the_kernel_cannot_count_the_transfer_counters_do(tmp_path: Path) -> None:
    """A Unix socket has no TCP counters: a response cut short there is counted by the
    transfer counters' growth since it began (exact with no other connection sending)."""
    path = tmp_path / "access.log"
    counters = Counters()
    strategy = make_strategy("sendfile", counters)
    log = AccessLog(str(path), log_format="combined", counters=counters, strategy=strategy)
    body = random_file(tmp_path / "f.bin", 1000)
    ours, theirs = socket.socketpair()
    with ours, theirs, body.open("rb") as file:
        request = Request(method="GET", target=b"/f.bin", version="1.1", keep_alive=True)
        plan = ResponsePlan(200, b"H" * 100, (FileSpan(file.fileno(), 0, 1000),))
        clerk = log.clerk("unix", ours)
        counters.bytes_copied_out += 100  # the head
        counters.bytes_zero_copy += 400  # then 400 bytes of the body, and a failure
        clerk.record(request, plan, False, None)
        clerk.record(request, plan, True, None)
    log.write_now()
    log.close()
    first, second = (parse_combined(line) for line in read_lines(path))
    assert (first["sent"], first["strategy"]) == ("400", "sendfile")
    assert second["sent"] == "1000"


@pytest.mark.parametrize(
    ("zone", "clf", "iso"),
    [
        ("IST-5:30", "09/Sep/2001:07:16:40 +0530", "2001-09-09T07:16:40+05:30"),
        ("EST5", "08/Sep/2001:20:46:40 -0500", "2001-09-08T20:46:40-05:00"),
        ("UTC0", "09/Sep/2001:01:46:40 +0000", "2001-09-09T01:46:40+00:00"),
    ],
)
def test_times_are_local_with_their_offset(
    monkeypatch: pytest.MonkeyPatch, zone: str, clf: str, iso: str
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        stamps = accesslog._Stamps()
        stamps.update(10.0, 1_000_000_000.5)  # trio's clock at 10.0: 2001-09-09 01:46:40.5 UTC
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (stamps.clf, stamps.iso) == (clf, iso)
    assert (stamps.since, stamps.until) == (9.5, 10.5)  # that second, on trio's clock


async def test_write_errors_are_counted_and_said_once(
    nursery: trio.Nursery, www: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/dev/full fails every write with ENOSPC: the server serves on, counts the lost lines,
    and says so once, not once per batch."""
    server = await start_server(nursery, root=str(www), access_log="/dev/full")
    client = await RawClient.connect(server.port)
    for batch in range(1, 4):
        for _ in range(5):
            assert (await client.request("/hello.txt")).status == 200
        server.reopen_logs()  # wakes the writer: it writes what is pending, then reopens
        expected = 5 * batch
        await until(lambda: server.statistics().access_log.failed == expected)  # noqa: B023
    await client.aclose()
    await stop_server(server)
    stats = server.statistics().access_log
    assert (stats.lines, stats.failed) == (0, 15)
    errors = [r.getMessage() for r in caplog.records if r.name == "zerocopy.access"]
    assert len([m for m in errors if "write failed" in m]) == 1, errors
