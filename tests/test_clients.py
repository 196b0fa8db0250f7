"""Independent peers: the stdlib's http.client, curl, wget and aria2c download from the server.

None of these clients shares code with zerocopy, so they check its framing and semantics the
way users will. Each download is compared byte for byte (SHA-256) with the file.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from tests.helpers import sha256_file
from zerocopy.server import Server


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(
            f"{tool} is not installed (apt-get install {'aria2' if tool == 'aria2c' else tool})"
        )
    return path


async def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        result = await trio.run_process(
            list(argv), cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, (argv, result.stderr.decode(errors="replace"))
    return result


def _stdlib_downloads(port: int, names: list[str]) -> list[tuple[int, bytes, dict[str, str]]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    results = []
    try:
        for name in names:  # one keep-alive connection for all of them
            connection.request("GET", "/" + name)
            response = connection.getresponse()
            results.append((response.status, response.read(), dict(response.getheaders())))
    finally:
        connection.close()
    return results


async def test_stdlib_http_client(server: Server, www: Path) -> None:
    names = ["hello.txt", "4k.bin", "5m.bin", "empty.bin", "64k.bin"]
    results = await trio.to_thread.run_sync(_stdlib_downloads, server.port, names)
    for name, (status, body, headers) in zip(names, results, strict=True):
        assert status == 200
        assert int(headers["Content-Length"]) == len(body)
        assert (www / name).read_bytes() == body


def _stdlib_range(port: int) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/1m.bin", headers={"Range": "bytes=1000-1999"})
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Range") or ""
    finally:
        connection.close()


async def test_stdlib_range(server: Server, www: Path) -> None:
    status, body, content_range = await trio.to_thread.run_sync(_stdlib_range, server.port)
    assert status == 206
    assert content_range == f"bytes 1000-1999/{1 << 20}"
    assert body == (www / "1m.bin").read_bytes()[1000:2000]


async def test_curl_download_and_range(server: Server, www: Path, tmp_path: Path) -> None:
    curl = _need("curl")
    out = tmp_path / "out.bin"
    await _run(curl, "-sS", "--fail", "-o", str(out), f"http://127.0.0.1:{server.port}/5m.bin")
    assert sha256_file(out) == sha256_file(www / "5m.bin")
    part = tmp_path / "part.bin"
    await _run(
        curl,
        "-sS",
        "--fail",
        "-r",
        "100-4195",
        "-o",
        str(part),
        f"http://127.0.0.1:{server.port}/1m.bin",
    )
    assert part.read_bytes() == (www / "1m.bin").read_bytes()[100:4196]


async def test_curl_resume(server: Server, www: Path, tmp_path: Path) -> None:
    curl = _need("curl")
    source = (www / "5m.bin").read_bytes()
    out = tmp_path / "resume.bin"
    out.write_bytes(source[:1234567])  # an interrupted download
    await _run(
        curl, "-sS", "--fail", "-C", "-", "-o", str(out), f"http://127.0.0.1:{server.port}/5m.bin"
    )
    assert sha256_file(out) == sha256_file(www / "5m.bin")


async def test_curl_path_as_is_traversal_is_refused(server: Server) -> None:
    curl = _need("curl")
    result = await trio.run_process(
        [
            curl,
            "-s",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{server.port}/../../../../etc/passwd",
        ],
        capture_stdout=True,
        check=False,
    )
    assert result.stdout == b"400"


async def test_curl_keep_alive_many_urls(server: Server, www: Path, tmp_path: Path) -> None:
    curl = _need("curl")
    names = ["hello.txt", "4k.bin", "64k.bin", "1m.bin"]
    argv = [curl, "-sS", "--fail"]
    for name in names:
        argv += ["-o", str(tmp_path / name), f"http://127.0.0.1:{server.port}/{name}"]
    before = server.statistics().connections_accepted
    await _run(*argv)
    for name in names:
        assert sha256_file(tmp_path / name) == sha256_file(www / name)
    assert server.statistics().connections_accepted - before == 1  # curl reused the connection


async def test_wget_continue(server: Server, www: Path, tmp_path: Path) -> None:
    wget = _need("wget")
    out = tmp_path / "5m.bin"
    out.write_bytes((www / "5m.bin").read_bytes()[:777777])
    await _run(wget, "-q", "-c", f"http://127.0.0.1:{server.port}/5m.bin", cwd=tmp_path)
    assert sha256_file(out) == sha256_file(www / "5m.bin")


async def test_aria2c_segmented_download(server: Server, www: Path, tmp_path: Path) -> None:
    aria2c = _need("aria2c")
    await _run(
        aria2c,
        "-q",
        "-x4",
        "-s4",
        "-k1M",
        "--allow-overwrite=true",
        "--file-allocation=none",
        "-d",
        str(tmp_path),
        "-o",
        "got.bin",
        f"http://127.0.0.1:{server.port}/5m.bin",
    )
    assert sha256_file(tmp_path / "got.bin") == sha256_file(www / "5m.bin")
