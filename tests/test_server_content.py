"""What a file server is expected to add to the files: precompressed sidecars, the operator's
header fields, CORS, the dot-file policy, and the 404 and single-page-application pages.

Every test runs on the live server with every strategy (``auto`` included); sidecar bodies
are checked byte for byte against the sidecar file, and real clients (curl ``--compressed``)
check what a user sees.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, Response, open_fd_count
from zerocopy.cli import main
from zerocopy.server import Server

STRATEGIES = ["auto", "sendfile", "splice", "readwrite"]
APP = b"function app() { return 42; }\n" * 200


@pytest.fixture(params=STRATEGIES)
def any_strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "js").mkdir(parents=True)
    (root / "js" / "app.js").write_bytes(APP)
    (root / "js" / "app.js.gz").write_bytes(gzip.compress(APP, mtime=0))
    (root / "js" / "app.js.br").write_bytes(b"not really brotli, but the server does not care")
    (root / "js" / "plain.js").write_bytes(b"no sidecars\n")
    (root / "js" / "orphan.js.gz").write_bytes(gzip.compress(b"no original"))
    (root / "index.html").write_bytes(b"<h1>home</h1>\n")
    (root / "404.html").write_bytes(b"<h1>not here</h1>\n")
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[core]\n")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_bytes(b"Contact: mailto:x@example.com\n")
    return root


@pytest.fixture
async def make(
    nursery: trio.Nursery, site: Path, any_strategy: str
) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[Server] = []
    before = open_fd_count()

    async def start(**options: object) -> Server:
        server = await start_server(nursery, root=str(site), strategy=any_strategy, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"


async def _ask(
    server: Server, target: str, method: str = "GET", **headers: str
) -> tuple[Response, RawClient]:
    client = await RawClient.connect(server.port)
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    with trio.fail_after(10):
        response = await client.request(target, method, fields)
    return response, client


async def get(server: Server, target: str, method: str = "GET", **headers: str) -> Response:
    response, client = await _ask(server, target, method, **headers)
    await client.aclose()
    return response


# -- Precompressed sidecars ---------------------------------------------------------------


async def test_a_sidecar_is_served_to_clients_that_accept_it(make, site: Path) -> None:
    server = await make()
    gz = (site / "js" / "app.js.gz").read_bytes()
    plain = await get(server, "/js/app.js")
    assert plain.body == APP
    assert plain.header("Content-Encoding") is None
    assert plain.header("Vary") == "Accept-Encoding"  # it has sidecars, so it varies
    zipped = await get(server, "/js/app.js", Accept_Encoding="gzip")
    assert zipped.body == gz
    assert zipped.header("Content-Encoding") == "gzip"
    assert zipped.header("Vary") == "Accept-Encoding"
    # The original's type, the sidecar's length (static-web-server once cut it to the
    # original's), and a validator of its own.
    assert zipped.header("Content-Type") == plain.header("Content-Type")
    assert zipped.header("Content-Length") == str(len(gz)) != plain.header("Content-Length")
    assert zipped.header("ETag") != plain.header("ETag")
    assert gzip.decompress(zipped.body) == APP


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip, deflate, br, zstd", "br"),  # equal weights: the server's order
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("*", "br"),
        ("*;q=0, gzip;q=0.2", "gzip"),
        ("x-gzip", "gzip"),
        ("GZIP", "gzip"),
        ("deflate", None),
        ("identity;q=0", None),  # nothing acceptable: the original, not a 406
        ("br;q=0, gzip;q=0", None),
        ("", None),
        ("gzip;q=2", None),  # malformed weights are ignored, member by member
        ("gzip;q=0.0001", None),
        ("gzip;q=abc, br;q=0.5", "br"),
        ("," * 5000 + "gzip", None),  # only the first 64 members are read
        ("zstd;q=1, " * 2000 + "gzip", None),
    ],
)
async def test_accept_encoding_is_negotiated(make, site: Path, accept: str, coding: str | None):
    server = await make()
    response = await get(server, "/js/app.js", Accept_Encoding=accept)
    assert response.status == 200
    assert response.header("Content-Encoding") == coding
    expected = {None: APP, "gzip": (site / "js/app.js.gz").read_bytes()}.get(coding)
    if coding == "br":
        expected = (site / "js" / "app.js.br").read_bytes()
    assert response.body == expected


async def test_no_sidecar_no_vary_and_no_original_no_sidecar(make) -> None:
    server = await make()
    response = await get(server, "/js/plain.js", Accept_Encoding="gzip, br")
    assert response.header("Vary") is None
    assert response.header("Content-Encoding") is None
    # A sidecar without its original is not the original.
    assert (await get(server, "/js/orphan.js", Accept_Encoding="gzip")).status == 404


async def test_ranges_and_conditionals_apply_to_the_encoded_bytes(make, site: Path) -> None:
    server = await make()
    gz = (site / "js" / "app.js.gz").read_bytes()
    part = await get(server, "/js/app.js", Accept_Encoding="gzip", Range="bytes=0-9")
    assert part.status == 206
    assert part.body == gz[:10]
    assert part.header("Content-Range") == f"bytes 0-9/{len(gz)}"
    assert part.header("Content-Encoding") == "gzip"
    full = await get(server, "/js/app.js", Accept_Encoding="gzip")
    tag = full.header("ETag")
    assert tag is not None
    same = await get(server, "/js/app.js", Accept_Encoding="gzip", If_None_Match=tag)
    assert same.status == 304
    assert same.header("Vary") == "Accept-Encoding"
    # The gzip tag is not the identity representation's.
    other = await get(server, "/js/app.js", If_None_Match=tag)
    assert other.status == 200


async def test_sidecars_appearing_and_going_are_seen_at_once(make, site: Path) -> None:
    for revalidate in ("inotify", "always"):
        server = await make(open_file_cache_revalidate=revalidate)
        client = await RawClient.connect(server.port)
        for _ in range(10):
            for _ in range(2):  # the second from the fast path
                response = await client.request("/js/plain.js", headers={"Accept-Encoding": "gzip"})
                assert response.header("Content-Encoding") is None
            (site / "js" / "plain.js.gz").write_bytes(gzip.compress(b"no sidecars\n"))
            response = await client.request("/js/plain.js", headers={"Accept-Encoding": "gzip"})
            assert response.header("Content-Encoding") == "gzip"
            assert response.body == (site / "js" / "plain.js.gz").read_bytes()
            (site / "js" / "plain.js.gz").unlink()
            response = await client.request("/js/plain.js", headers={"Accept-Encoding": "gzip"})
            assert response.header("Content-Encoding") is None
            assert response.body == b"no sidecars\n"
        await client.aclose()


async def test_a_sidecar_served_twice_comes_from_the_cache_the_same(make) -> None:
    server = await make()
    first = await get(server, "/js/app.js", Accept_Encoding="br, gzip")
    hits = server.statistics().files.hits
    second = await get(server, "/js/app.js", Accept_Encoding="br, gzip")
    assert server.statistics().files.hits > hits
    assert [h for h in first.headers if h[0] != "Date"] == [
        h for h in second.headers if h[0] != "Date"
    ]
    assert first.body == second.body


async def test_a_sidecar_that_is_a_symlink_out_is_not_used(make, site: Path) -> None:
    outside = site.parent / "elsewhere.gz"
    outside.write_bytes(gzip.compress(b"outside the root"))
    (site / "js" / "plain.js.gz").symlink_to(outside)
    server = await make()
    response = await get(server, "/js/plain.js", Accept_Encoding="gzip")
    assert response.body == b"no sidecars\n"
    assert response.header("Content-Encoding") is None


async def test_sidecar_bytes_go_zero_copy(make, site: Path, any_strategy: str) -> None:
    big = os.urandom(200_000)
    (site / "big.bin").write_bytes(big)
    (site / "big.bin.gz").write_bytes(gzip.compress(big))
    server = await make()
    response = await get(server, "/big.bin", Accept_Encoding="gzip")
    assert response.body == (site / "big.bin.gz").read_bytes()
    transfer = server.statistics().transfer
    if any_strategy in ("sendfile", "splice", "auto"):
        assert transfer.bytes_zero_copy == len(response.body)
        assert transfer.bytes_copied_out < 2000  # the head only


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_compressed_sees_the_original(make, site: Path) -> None:
    (site / "js" / "app.js.br").unlink()  # not real brotli: curl would try to decode it
    server = await make()
    url = f"http://127.0.0.1:{server.port}/js/app.js"

    def fetch(*flags: str) -> bytes:
        result = subprocess.run(
            ["curl", "-sS", *flags, url], capture_output=True, timeout=30, check=True
        )
        return result.stdout

    decoded = await trio.to_thread.run_sync(fetch, "--compressed")
    assert hashlib.sha256(decoded).hexdigest() == hashlib.sha256(APP).hexdigest()
    raw = await trio.to_thread.run_sync(fetch, "-H", "Accept-Encoding: gzip")
    assert raw == (site / "js" / "app.js.gz").read_bytes()


# -- Header fields --------------------------------------------------------------------------


async def test_cache_control_and_rules_last_match_wins(make) -> None:
    server = await make(
        cache_control="no-cache",
        headers=(
            "/js/*: Cache-Control: public, max-age=31536000, immutable",
            "*.html: X-Frame-Options: DENY",
            "/js/plain.js: Cache-Control: max-age=60",
        ),
    )
    assert (await get(server, "/index.html")).header("Cache-Control") == "no-cache"
    assert (await get(server, "/index.html")).header("X-Frame-Options") == "DENY"
    assert (await get(server, "/")).header("X-Frame-Options") == "DENY"  # /index.html's
    app = await get(server, "/js/app.js")
    assert app.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert app.header("X-Frame-Options") is None
    assert (await get(server, "/js/plain.js")).header("Cache-Control") == "max-age=60"
    # The caching fields go with 304s too (RFC 9110 §15.4.5); not with errors.
    tag = app.header("ETag")
    assert tag is not None
    again = await get(server, "/js/app.js", If_None_Match=tag)
    assert again.status == 304
    assert again.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert (await get(server, "/missing")).header("Cache-Control") is None


async def test_nosniff_on_every_response_unless_turned_off(make) -> None:
    server = await make()
    for target in ("/index.html", "/missing", "/js", "/js/", "/%zz"):
        response = await get(server, target)
        assert response.header("X-Content-Type-Options") == "nosniff", target
    quiet = await make(nosniff=False)
    assert (await get(quiet, "/index.html")).header("X-Content-Type-Options") is None


async def test_cors(make) -> None:
    server = await make(cors="https://app.example")
    response = await get(server, "/js/app.js", Origin="https://app.example")
    assert response.header("Access-Control-Allow-Origin") == "https://app.example"
    assert "Content-Range" in (response.header("Access-Control-Expose-Headers") or "")
    preflight = await get(
        server,
        "/js/app.js",
        "OPTIONS",
        Origin="https://app.example",
        Access_Control_Request_Method="GET",
        Access_Control_Request_Headers="range",
    )
    assert preflight.status == 204
    assert preflight.body == b""
    assert "GET" in (preflight.header("Access-Control-Allow-Methods") or "")
    assert "Range" in (preflight.header("Access-Control-Allow-Headers") or "")
    assert preflight.header("Access-Control-Allow-Origin") == "https://app.example"
    # Without --cors, nothing changes: OPTIONS is not allowed.
    plain = await make()
    refused = await get(plain, "/js/app.js", "OPTIONS")
    assert refused.status == 405
    assert refused.header("Access-Control-Allow-Origin") is None


@pytest.mark.parametrize(
    "flags",
    [
        ["--header", "*.html: X-Evil: a\rb"],
        ["--header", "*.html: X-Evil: a\nSet-Cookie: x=1"],
        ["--header", "*.html: X-Evil: a\x00b"],
        ["--header", "*.html: Content-Length: 5"],
        ["--header", "*.html: Bad Name: 1"],
        ["--header", "no colon at all"],
        ["--cache-control", "max-age=1\r\nX-Evil: 1"],
        ["--cors", "*\nX-Evil: 1"],
        ["--precompressed", "br,lzma"],
        ["--not-found", "../outside.html"],
    ],
)
def test_header_values_that_could_split_a_response_are_refused_at_start(
    site: Path, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused by the flag's parser, or, for a page outside the root, when the server is
    # built; either way one line and status 2, before anything listens.
    try:
        code = main(["serve", str(site), "--port", "0", *flags])
    except SystemExit as exited:
        code = int(exited.code or 0)
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error
    assert error.count("\n") == 0, error  # one line


# -- Dot files ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/.env", "/.git/config", "/.git/", "/.git", "/js/.hidden"])
async def test_dot_files_look_missing_by_default(make, target: str) -> None:
    server = await make()
    hidden = await get(server, target)
    missing = await get(server, "/js/nothing-here")
    assert hidden.status == missing.status == 404
    assert hidden.body == missing.body
    assert [h[0] for h in hidden.headers] == [h[0] for h in missing.headers]


async def test_well_known_is_served_and_dot_files_are_hidden_from_listings(make) -> None:
    server = await make()
    assert (await get(server, "/.well-known/security.txt")).status == 200
    listing = await get(server, "/js/")
    assert b"app.js" in listing.body
    allowed = await make(dotfiles=True)
    assert (await get(allowed, "/.env")).body == b"SECRET=1\n"


async def test_dot_entries_hidden_in_a_listing(make, site: Path) -> None:
    (site / "index.html").unlink()
    server = await make()
    body = (await get(server, "/")).body
    assert b".env" not in body
    assert b".git" not in body.replace(b".well-known", b"")
    assert b".well-known" in body
    shown = await make(dotfiles=True)
    assert b".env" in (await get(shown, "/")).body


# -- 404 and single-page-application pages --------------------------------------------------


async def test_not_found_page(make, site: Path) -> None:
    server = await make(not_found="/404.html")
    response = await get(server, "/no/such/thing")
    assert response.status == 404
    assert response.body == (site / "404.html").read_bytes()
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert response.header("ETag") is None
    head = await get(server, "/no/such/thing", "HEAD")
    assert (head.status, head.body) == (404, b"")
    assert (await get(server, "/.env")).body == response.body  # looks missing: same page
    # Paths refused for security reasons are not dressed up as missing.
    (site / "link").symlink_to(site.parent)
    refused = await get(server, "/link/x")
    assert refused.status == 403
    assert refused.body != response.body
    assert (await get(server, "/%2e%2e/x")).status == 400


async def test_spa_routes_get_the_index(make, site: Path) -> None:
    server = await make(spa="/index.html")
    for route in ("/app/settings", "/app/settings/", "/users/42"):
        response = await get(server, route)
        assert (response.status, response.body) == (200, b"<h1>home</h1>\n"), route
    assert (await get(server, "/missing.png")).status == 404  # looks like a file
    assert (await get(server, "/.env")).status == 404  # has a dot
    assert (await get(server, "/js/app.js")).body == APP  # real files win


# -- REDbot, an HTTP linter nobody here wrote ------------------------------------------------

REDBOT = shutil.which("redbot", path=os.path.dirname(sys.executable))


@pytest.mark.skipif(REDBOT is None, reason="redbot (the test extra) is not installed")
async def test_redbot_finds_nothing_wrong_with_a_precompressed_file(make) -> None:
    # With a freshness lifetime set, REDbot's checks (negotiation, validators, ranges, the
    # length, caching) give no warning: a file with sidecars answers as a cache expects.
    server = await make(cache_control="max-age=60")
    url = f"http://127.0.0.1:{server.port}/js/app.js"

    def check() -> str:
        assert REDBOT is not None
        result = subprocess.run(
            [REDBOT, "-o", "har", url], capture_output=True, text=True, timeout=120, check=True
        )
        return result.stdout

    har = json.loads(await trio.to_thread.run_sync(check))
    notes = [note for entry in har["log"]["entries"] for note in entry.get("_red_messages", [])]
    assert any(note["note_id"] == "CONNEG_GZIP_GOOD" for note in notes), notes
    problems = [note for note in notes if note["level"] in ("WARN", "BAD")]
    assert problems == []
