"""The command line's TLS and authentication flags: one-line errors with exit status 2, the
start line under TLS, and ``zerocopy hash-password``."""

from __future__ import annotations

import re
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.bounded import readline_within, stop_within
from tests.test_cli import ZEROCOPY, _run_expecting_error
from tests.test_tls import Certs
from zerocopy.server import ServerConfig
from zerocopy.server.auth import PasswordHash
from zerocopy.server.serve import content_policy
from zerocopy.transfer import ktls_status


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def test_tls_and_auth_errors_are_one_line(tmp_path: Path, certs: Certs) -> None:
    other = Certs(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    plaintext = tmp_path / "users"
    plaintext.write_text("alice:secret\n")
    root = str(tmp_path)
    cases = [
        (["--tls-cert", str(certs.cert)], "go together"),
        (["--tls-key", str(certs.key)], "go together"),
        (["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(certs.key)], "nope.pem"),
        (["--tls-cert", str(garbage), "--tls-key", str(certs.key)], "not a PEM"),
        (["--tls-cert", str(certs.cert), "--tls-key", str(other.key)], "does not match"),
        (["--auth-file", str(plaintext)], "plaintext passwords are not accepted"),
        (["--auth-file", str(tmp_path / "missing")], "cannot read"),
    ]
    for args, message in cases:
        line = _run_expecting_error(root, "--port", "0", *args)
        assert message in line, (args, line)


def _hash(password: str, *args: str) -> str:
    result = subprocess.run(
        [*ZEROCOPY, "hash-password", "--cost", "4", *args],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_hash_password_prints_a_usable_hash() -> None:
    line = _hash("s3cret pass", "--user", "alice")
    user, _, encoded = line.partition(":")
    assert user == "alice"
    assert "s3cret" not in encoded
    assert PasswordHash.parse(encoded).verify(b"s3cret pass")
    pbkdf2 = _hash("x", "--scheme", "pbkdf2-sha256", "--cost", "1000")
    assert PasswordHash.parse(pbkdf2).verify(b"x")
    bad = subprocess.run(
        [*ZEROCOPY, "hash-password", "--user", "a:b"], input="x\n", capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "colon" in bad.stderr
    huge = subprocess.run(
        [*ZEROCOPY, "hash-password", "--cost", "40"], input="x\n", capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert huge.returncode == 2
    assert "out of bounds" in huge.stderr
    assert "Traceback" not in huge.stderr


def test_https_with_auth_end_to_end(tmp_path: Path, certs: Certs) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.txt").write_text("secure\n")
    users = tmp_path / "users"
    users.write_text(_hash("pw", "--user", "alice") + "\n")
    process = subprocess.Popen(
        [*ZEROCOPY, "serve", str(tmp_path / "www"), "--port", "0", "--tls-cert",
         str(certs.cert), "--tls-key", str(certs.key), "--auth-file", str(users),
         "--auth-realm", "Team files"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    line = readline_within(process)
    try:
        match = re.search(r"on https://127\.0\.0\.1:(\d+)/ \(strategy [\w-]+\)", line)
        assert match, line
        url = f"https://localhost:{match.group(1)}/f.txt"
        context = ssl.create_default_context(cafile=str(certs.ca_file))
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url, context=context, timeout=10)
        assert info.value.code == 401
        assert info.value.headers["WWW-Authenticate"] == (
            'Basic realm="Team files", charset="UTF-8"'
        )
        info.value.close()
        request = urllib.request.Request(url, headers={"Authorization": "Basic YWxpY2U6cHc="})
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert response.read() == b"secure\n"
    finally:
        code, stderr = stop_within(process)
    assert code == 0
    assert "Traceback" not in stderr
    # The one start line that names the path in effect, and no warning about auth without TLS.
    if not ktls_status().available:
        assert stderr.count("file bodies are encrypted in user space") == 1
        assert "kTLS unavailable" in stderr
    assert "without TLS" not in stderr


def test_every_configuration_path_refuses_a_bad_realm_or_a_lone_key() -> None:
    # content_policy runs at start, in each worker and on every reload (a --config file
    # re-read on SIGHUP), so a realm with CR LF never reaches the 401's header field.
    with pytest.raises(ValueError, match="--auth-realm"):
        content_policy(ServerConfig(root=".", auth_realm="x\r\nSet-Cookie: a=b"))
    with pytest.raises(ValueError, match="go together"):
        content_policy(ServerConfig(root=".", tls_key="key.pem"))
    content_policy(ServerConfig(root="."))  # the defaults pass
