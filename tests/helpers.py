"""Test helpers: a minimal HTTP/1.1 response reader for raw-socket tests, and file builders.

The reader is deliberately independent of zerocopy's code: it parses what is on the wire,
so that a bug in the server's framing shows up as a wrong response here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import trio


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"repeated header {name}: {values}"
        return values[0] if values else None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class RawClient:
    """A keep-alive connection that sends raw bytes and parses responses off the wire."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self.eof = False

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawClient:
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            self.eof = True
            return False
        self._buffer += chunk
        return True

    async def _read_until(self, marker: bytes) -> bytes:
        while (index := self._buffer.find(marker)) < 0:
            if not await self._fill():
                raise EOFError(f"connection closed before {marker!r}; have {bytes(self._buffer)!r}")
        data = bytes(self._buffer[: index + len(marker)])
        del self._buffer[: index + len(marker)]
        return data

    async def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not await self._fill():
                raise EOFError(f"connection closed with {len(self._buffer)} of {count} bytes")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def read_response(self, *, head_only: bool = False) -> Response:
        head = (await self._read_until(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")[:-2]
        version, status, reason = [*lines[0].split(" ", 2), ""][:3]
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name, f"bad header line {line!r}"
            assert name == name.strip(), f"bad header line {line!r}"
            headers.append((name, value.strip()))
        response = Response(int(status), reason, headers)
        length = response.header("Content-Length")
        code = response.status
        if head_only or code == 304 or 100 <= code < 200 or code == 204:
            return response
        if (response.header("Transfer-Encoding") or "").lower() == "chunked":
            response.body = await self._read_chunked()
        elif length is None:
            # No framing: body runs to EOF.
            while await self._fill():
                pass
            response.body = bytes(self._buffer)
            self._buffer.clear()
        else:
            response.body = await self._read_exactly(int(length))
        return response

    async def _read_chunked(self) -> bytes:
        """A chunked body (RFC 9112 §7.1), strictly: hex sizes, CRLF after each chunk, no
        extensions or trailers expected."""
        body = bytearray()
        while True:
            line = (await self._read_until(b"\r\n"))[:-2]
            assert line, "empty chunk-size line"
            assert all(c in b"0123456789abcdefABCDEF" for c in line), line
            size = int(line, 16)
            if size == 0:
                assert await self._read_exactly(2) == b"\r\n", "trailers or a bad last chunk"
                return bytes(body)
            body += await self._read_exactly(size)
            assert await self._read_exactly(2) == b"\r\n", "chunk not followed by CRLF"

    async def request(
        self, target: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Response:
        lines = [f"{method} {target} HTTP/1.1", "Host: test"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return await self.read_response(head_only=method == "HEAD")

    async def read_to_eof(self) -> bytes:
        """Everything until the server closes (fails the test if it never does)."""
        with trio.fail_after(10):
            while await self._fill():
                pass
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))
