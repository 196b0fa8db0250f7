"""Basic authentication: header parsing, password hashes, the auth file, and the server's
checks (before anything is opened, cached, constant-time for unknown users)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, sha256_file
from zerocopy.http import HTTPError, Request
from zerocopy.http.auth import challenge, parse_basic
from zerocopy.server import Server
from zerocopy.server import auth as auth_module
from zerocopy.server.auth import (
    CACHE_SECONDS,
    AuthFileError,
    PasswordHash,
    hash_password,
    load_auth_file,
)

# Cheap parameters: the tests check behaviour, not cost.
FAST_SCRYPT = 4
FAST_ROUNDS = 1000


def _request(*values: bytes) -> Request:
    headers = {b"host": b"x"}
    if values:
        headers[b"authorization"] = b", ".join(values)
    repeated = frozenset({b"authorization"}) if len(values) > 1 else frozenset()
    return Request("GET", b"/", "1.1", True, headers, repeated, False, True)


def _basic(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return b"Basic " + base64.b64encode(raw)


# -- the header, sans-IO --------------------------------------------------------------------

PARSE_CASES = [
    ((), None),
    ((b"Bearer abc",), None),
    ((b"Digest username=x",), None),
    ((_basic("alice:secret"),), ("alice", "secret")),
    ((b"basic " + base64.b64encode(b"alice:secret"),), ("alice", "secret")),
    ((_basic("alice:"),), ("alice", "")),
    ((_basic(":"),), ("", "")),
    ((_basic("us:er:pass"),), ("us", "er:pass")),  # a user-id cannot hold a colon
    ((_basic("jürgen:pässwörd"),), ("jürgen", "pässwörd")),
    ((_basic("nocolon"),), 400),
    ((b"Basic !!!not-base64!!!",), 400),
    ((b"Basic YWxpY2U6c2VjcmV",), 400),  # truncated: bad padding
    ((_basic(b"\xff\xfe:x"),), 400),  # not UTF-8
    ((b"Basic " + b"A" * 10 * 1024,), 400),  # 10 KiB
    ((_basic("a:b"), _basic("c:d")), 400),  # repeated
]


@pytest.mark.parametrize(("values", "expected"), PARSE_CASES)
def test_parse_basic(values: tuple[bytes, ...], expected: object) -> None:
    request = _request(*values)
    if isinstance(expected, int):
        with pytest.raises(HTTPError) as info:
            parse_basic(request)
        assert info.value.status_hint == expected
        assert not info.value.close
    else:
        assert parse_basic(request) == expected


def test_challenge_quotes_the_realm() -> None:
    error = challenge('my "files" \\ here')
    assert error.status_hint == 401
    assert not error.close
    assert error.headers == (
        (b"WWW-Authenticate", b'Basic realm="my \\"files\\" \\\\ here", charset="UTF-8"'),
    )


# -- hashes and the file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "cost", "prefix"),
    [("scrypt", FAST_SCRYPT, "$scrypt$ln=4,r=8,p=1$"), ("pbkdf2-sha256", FAST_ROUNDS, "$pbkdf2-")],
)
def test_hash_round_trip(scheme: str, cost: int, prefix: str) -> None:
    text = hash_password("correct horse", scheme=scheme, cost=cost)
    assert text.startswith(prefix)
    assert "correct horse" not in text
    hashed = PasswordHash.parse(text)
    assert hashed.verify(b"correct horse")
    assert not hashed.verify(b"correct horsE")
    assert not hashed.verify(b"")
    # Salted: the same password never gives the same text twice.
    assert hash_password("correct horse", scheme=scheme, cost=cost) != text
    dummy = hashed.like()
    assert (dummy.scheme, dummy.cost, len(dummy.salt), len(dummy.key)) == (
        hashed.scheme,
        hashed.cost,
        len(hashed.salt),
        len(hashed.key),
    )


@pytest.mark.parametrize(
    "text",
    [
        "secret",
        "$scrypt$ln=4,r=8$c2FsdA$a2V5",
        "$scrypt$ln=40,r=8,p=1$c2FsdA$a2V5",
        "$pbkdf2-sha256$10$c2FsdA$a2V5",
        "$md5$x$y$z",
        "$scrypt$ln=4,r=8,p=1$!!$a2V5",
    ],
)
def test_unusable_hashes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each has its own message
        PasswordHash.parse(text)


def _auth_file(path: Path, users: dict[str, str], scheme: str = "scrypt") -> Path:
    cost = FAST_SCRYPT if scheme == "scrypt" else FAST_ROUNDS
    lines = ["# users", ""]
    lines += [f"{user}:{hash_password(pw, scheme=scheme, cost=cost)}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_auth_file_errors_are_one_line(tmp_path: Path) -> None:
    good = hash_password("x", cost=FAST_SCRYPT)
    cases = {
        "plaintext": ("alice:secret\n", "plaintext passwords are not accepted"),
        "empty": ("# nobody\n\n", "no user:hash line"),
        "twice": (f"a:{good}\na:{good}\n", "appears twice"),
        "no-colon": ("alice\n", "expected user:hash"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(AuthFileError, match=message) as info:
            load_auth_file(str(path))
        assert "\n" not in str(info.value)
    with pytest.raises(AuthFileError, match="cannot read"):
        load_auth_file(str(tmp_path / "missing"))
    users = load_auth_file(str(_auth_file(tmp_path / "ok", {"a": "1", "b": "2"})))
    assert sorted(users) == ["a", "b"]


# -- the server -----------------------------------------------------------------------------


async def _auth_server(
    nursery: trio.Nursery, www: Path, tmp_path: Path, **options: object
) -> Server:
    path = _auth_file(tmp_path / "users", {"alice": "secret", "bob": "hunter2"})
    return await start_server(nursery, root=str(www), auth_file=str(path), **options)


def _header(text: str | bytes) -> dict[str, str]:
    return {"Authorization": _basic(text).decode("latin-1")}


async def test_requests_need_credentials(nursery: trio.Nursery, www: Path, tmp_path: Path) -> None:
    server = await _auth_server(nursery, www, tmp_path, auth_realm="Files")
    client = await RawClient.connect(server.port)
    for target, method in [
        ("/4k.bin", "GET"),
        ("/4k.bin", "HEAD"),
        ("/list/", "GET"),  # listings
        ("/sub", "GET"),  # redirects
        ("/missing", "GET"),  # and whether a file exists
        ("/4k.bin", "POST"),
    ]:
        response = await client.request(target, method)
        assert response.status == 401, (target, method)
        assert response.header("WWW-Authenticate") == 'Basic realm="Files", charset="UTF-8"'
        if method == "HEAD":
            assert response.body == b""
    # The connection stayed open through all of them; the right password opens everything.
    good = _header("alice:secret")
    response = await client.request("/4k.bin", headers=good)
    assert response.status == 200
    assert response.sha256 == sha256_file(www / "4k.bin")
    assert (await client.request("/list/", headers=good)).status == 200
    assert (await client.request("/sub", headers=good)).status == 301
    assert (await client.request("/missing", headers=good)).status == 404
    await client.aclose()
    await stop_server(server)


async def test_bad_credentials_get_401_or_400_never_500(
    nursery: trio.Nursery, www: Path, tmp_path: Path
) -> None:
    server = await _auth_server(nursery, www, tmp_path)
    cases: list[tuple[dict[str, str], int]] = [
        (_header("alice:wrong"), 401),
        (_header("alice:"), 401),  # empty password
        (_header(":secret"), 401),  # empty user
        (_header("mallory:secret"), 401),  # unknown user
        (_header("ali:ce:secret"), 401),  # a user with a colon
        (_header("alice:secret "), 401),
        ({"Authorization": "Basic !!!"}, 400),  # invalid base64
        ({"Authorization": "Basic " + "QUFB" * 2560}, 400),  # 10 KiB
        ({"Authorization": "Bearer token"}, 401),
        (_header("nocolon"), 400),
    ]
    client = await RawClient.connect(server.port)
    for headers, status in cases:
        response = await client.request("/4k.bin", headers=headers)
        assert response.status == status, headers
    # Repeated Authorization headers.
    await client.send(
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + _basic("alice:secret")
        + b"\r\nAuthorization: "
        + _basic("alice:secret")
        + b"\r\n\r\n"
    )
    assert (await client.read_response()).status == 400
    assert (await client.request("/4k.bin", headers=_header("bob:hunter2"))).status == 200
    await client.aclose()
    assert 500 not in server.statistics().responses
    await stop_server(server)


async def test_verdicts_are_cached_and_the_fast_path_still_checks(
    nursery: trio.Nursery,
    www: Path,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = await _auth_server(nursery, www, tmp_path, idle_timeout=3600.0)
    authenticator = server._state.auth
    assert authenticator is not None
    client = await RawClient.connect(server.port)
    good = _header("alice:secret")
    for _ in range(5):  # the first resolves the file; the rest take the fast path
        assert (await client.request("/4k.bin", headers=good)).status == 200
    assert authenticator.checks == 1
    # The fast path answers only from a good verdict: wrong or missing credentials on the
    # same keep-alive connection, for the same cached file, are refused.
    assert (await client.request("/4k.bin")).status == 401
    assert (await client.request("/4k.bin", headers=_header("alice:nope"))).status == 401
    assert (await client.request("/4k.bin", headers=_header("alice:nope"))).status == 401
    assert authenticator.checks == 2  # the bad verdict is cached too
    await trio.sleep(CACHE_SECONDS + 1)
    assert (await client.request("/4k.bin", headers=good)).status == 200
    assert authenticator.checks == 3  # expired, checked again
    await client.aclose()
    await stop_server(server)


async def test_unknown_users_cost_the_same_hash(
    nursery: trio.Nursery, www: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # darkhttpd CVE-2024-23771: no shortcut for a user who does not exist. Every check,
    # whoever it names, derives one key with the same parameters.
    derived: list[tuple[str, tuple[int, ...], int]] = []
    real = PasswordHash.derive

    def derive(self: PasswordHash, password: bytes, salt: bytes | None = None) -> bytes:
        derived.append((self.scheme, self.cost, len(self.key)))
        return real(self, password, salt)

    server = await _auth_server(nursery, www, tmp_path)
    monkeypatch.setattr(PasswordHash, "derive", derive)
    client = await RawClient.connect(server.port)
    for credentials in ("alice:wrong", "nobody:wrong", "alice:secret", "nobody:secret"):
        await client.request("/4k.bin", headers=_header(credentials))
    await client.aclose()
    await stop_server(server)
    assert len(derived) == 4
    assert len(set(derived)) == 1


async def test_too_many_queued_checks_get_503(
    nursery: trio.Nursery, www: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_module, "MAX_WAITING", 0)
    server = await _auth_server(nursery, www, tmp_path)
    client = await RawClient.connect(server.port)
    response = await client.request("/4k.bin", headers=_header("alice:secret"))
    assert response.status == 503
    assert response.header("Retry-After") == "1"
    await client.aclose()
    await stop_server(server)


async def test_warning_once_without_tls(
    nursery: trio.Nursery, www: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zerocopy")
    server = await _auth_server(nursery, www, tmp_path)
    await stop_server(server)
    warnings = [r for r in caplog.records if "without TLS" in r.getMessage()]
    assert len(warnings) == 1


async def test_metrics_port_is_not_behind_auth(
    nursery: trio.Nursery, www: Path, tmp_path: Path
) -> None:
    pytest.importorskip("prometheus_client")
    server = await _auth_server(nursery, www, tmp_path, metrics_port=0)
    assert server.metrics_port is not None
    client = await RawClient.connect(server.metrics_port)
    response = await client.request("/metrics")
    assert response.status == 200  # documented: the metrics port has no authentication
    await client.aclose()
    await stop_server(server)
