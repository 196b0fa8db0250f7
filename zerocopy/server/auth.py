"""Basic authentication: password hashes, the ``--auth-file``, and checking each request.

Theory of operation:

* **Hashes, never passwords.** The file holds one ``user:hash`` per line (``#`` comments and
  blank lines are skipped). A hash is salted scrypt or PBKDF2-SHA256 from :mod:`hashlib`, in
  passlib's text formats, so hashes made elsewhere work too::

      $scrypt$ln=15,r=8,p=1$<salt, base64>$<key, base64>
      $pbkdf2-sha256$<rounds>$<salt, ab64>$<key, ab64>

  ``zerocopy hash-password`` prints one (scrypt, ``ln=15``: 32 MiB and about 0.1 s here). A
  line whose hash is not one of these, plaintext included, stops the server at start.
* **Constant time, whether or not the user exists** (darkhttpd CVE-2024-23771 answered
  faster for a wrong user). An unknown user's password is checked against a dummy hash with
  the parameters of the file's first entry, and every derived key is compared with
  :func:`hmac.compare_digest`. Keep every entry on the same parameters, as
  ``hash-password`` does, so that no user's hash costs a different time.
* **Off the event loop, bounded.** A hash takes tens of milliseconds of CPU by design; it runs
  in a worker thread, at most :data:`HASH_THREADS` at a time. Past :data:`MAX_WAITING`
  requests queued for a thread, a request gets 503 with ``Retry-After`` at once: a flood of
  guesses cannot queue without bound.
* **Cached for a short time.** Each verdict, good or bad, is kept for :data:`CACHE_SECONDS`
  under the exact ``Authorization`` value, so that the requests that follow on a keep-alive
  connection (or a browser's next page) cost one dict look-up, not another hash, and a
  client that repeats a wrong password does not cost a hash each time either. At most
  :data:`CACHE_ENTRIES` verdicts are kept, oldest out first. Changing the file needs a
  restart, which also empties the cache.
* **Before anything is opened.** The connection checks credentials before it looks a request
  up, in the fast path's map or on disk, so that files, listings and whatever is served later
  are all behind the same check. The metrics port is not: it is a separate listener, which
  the CLI binds to localhost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.http import HTTPError
from zerocopy.http.auth import challenge, parse_basic
from zerocopy.logtext import safe_text

if TYPE_CHECKING:
    from zerocopy.http import Request

__all__ = [
    "CACHE_ENTRIES",
    "CACHE_SECONDS",
    "AuthFileError",
    "Authenticator",
    "PasswordHash",
    "hash_password",
    "load_auth_file",
]

logger = logging.getLogger("zerocopy.server")

SCRYPT_LN: Final = 15
"""log2 of scrypt's N for new hashes. OWASP's minimum is N=2**17 with r=8 (128 MiB); 2**15
(32 MiB, about 0.1 s per check here) keeps two concurrent checks within a small server's
memory. Raise it with ``hash-password --cost``."""
PBKDF2_ROUNDS: Final = 600_000
"""OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256."""
HASH_THREADS: Final = 2
"""Concurrent hash checks: one per core of a small server; the rest queue."""
MAX_WAITING: Final = 64
"""Checks that may queue for a thread before requests get 503."""
CACHE_SECONDS: Final = 60.0
"""How long a verdict is reused for the same Authorization value."""
CACHE_ENTRIES: Final = 4096
"""Verdicts kept at most."""
_SALT_BYTES: Final = 16


class AuthFileError(RuntimeError):
    """The auth file cannot be used; the message is one line for the CLI."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _ab64(data: bytes) -> str:
    """passlib's "adapted base64": ``.`` for ``+``, no padding."""
    return _b64(data).replace("+", ".")


def _unab64(text: str) -> bytes:
    return _unb64(text.replace(".", "+"))


@final
@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A parsed password hash.

    Attributes:
        scheme: ``scrypt`` or ``pbkdf2-sha256``.
        cost: scrypt's (log2 N, r, p), or PBKDF2's (rounds,).
        salt: The salt.
        key: The derived key to compare with.
    """

    scheme: str
    cost: tuple[int, ...]
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Parse a hash in one of the formats of the module docstring.

        Raises:
            ValueError: Not such a hash, or parameters out of bounds.
        """
        parts = text.split("$")
        if len(parts) != 5 or parts[0]:
            raise ValueError("not a $scrypt$ or $pbkdf2-sha256$ hash")
        _, scheme, params, salt, key = parts
        try:
            if scheme == "scrypt":
                fields = dict(item.split("=", 1) for item in params.split(","))
                cost: tuple[int, ...] = (int(fields["ln"]), int(fields["r"]), int(fields["p"]))
                ln, r, p = cost
                if not (1 <= ln <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
                    raise ValueError("scrypt parameters out of bounds")
                return cls(scheme, cost, _unb64(salt), _unb64(key))
            if scheme == "pbkdf2-sha256":
                rounds = int(params)
                if not 1000 <= rounds <= 100_000_000:
                    raise ValueError("PBKDF2 rounds out of bounds")
                return cls(scheme, (rounds,), _unab64(salt), _unab64(key))
        except (KeyError, binascii.Error) as exc:
            raise ValueError(f"malformed {scheme} hash") from exc
        raise ValueError(f"unknown hash scheme {scheme!r} (scrypt or pbkdf2-sha256)")

    def derive(self, password: bytes, salt: bytes | None = None) -> bytes:
        """The key this hash's parameters derive from ``password`` (and ``salt``)."""
        salt = self.salt if salt is None else salt
        if self.scheme == "scrypt":
            ln, r, p = self.cost
            n = 1 << ln
            return hashlib.scrypt(
                password, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n * p, dklen=len(self.key)
            )
        return hashlib.pbkdf2_hmac("sha256", password, salt, self.cost[0], len(self.key))

    def verify(self, password: bytes) -> bool:
        """Whether ``password`` matches, compared in constant time."""
        return hmac.compare_digest(self.derive(password), self.key)

    def like(self) -> PasswordHash:
        """A hash with the same parameters, of a random password nobody knows (the dummy)."""
        return PasswordHash(
            self.scheme, self.cost, os.urandom(len(self.salt)), os.urandom(len(self.key))
        )


def hash_password(password: str, *, scheme: str = "scrypt", cost: int | None = None) -> str:
    """A new salted hash of ``password``, in the auth file's format.

    Args:
        password: The password (UTF-8 encoded before hashing).
        scheme: ``scrypt`` or ``pbkdf2-sha256``.
        cost: scrypt's log2 N (default :data:`SCRYPT_LN`), or PBKDF2's rounds (default
            :data:`PBKDF2_ROUNDS`).

    Raises:
        ValueError: An unknown scheme, or a cost out of the bounds the server accepts.
    """
    salt = os.urandom(_SALT_BYTES)
    secret = password.encode("utf-8")
    if scheme == "scrypt":
        ln = SCRYPT_LN if cost is None else cost
        text = f"$scrypt$ln={ln},r=8,p=1${_b64(salt)}${_b64(bytes(32))}"
    elif scheme == "pbkdf2-sha256":
        rounds = PBKDF2_ROUNDS if cost is None else cost
        text = f"$pbkdf2-sha256${rounds}${_ab64(salt)}${_ab64(bytes(32))}"
    else:
        raise ValueError(f"unknown hash scheme {scheme!r}")
    # Parsed back, so that a hash is only printed with parameters the server accepts.
    template = PasswordHash.parse(text)
    key = template.derive(secret)
    head = text.rsplit("$", 1)[0]
    return f"{head}${_b64(key) if scheme == 'scrypt' else _ab64(key)}"


def load_auth_file(path: str) -> dict[str, PasswordHash]:
    """Read ``user:hash`` lines.

    Raises:
        AuthFileError: Unreadable, empty, or a line that is not ``user:hash`` with a hash
            this module knows (one line naming the file and the line number).
    """
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise AuthFileError(f"cannot read --auth-file {path}: {reason or exc}") from exc
    users: dict[str, PasswordHash] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        user, colon, encoded = text.partition(":")
        where = f"--auth-file {path} line {number}"
        if not colon or not user:
            raise AuthFileError(f"{where}: expected user:hash")
        if user in users:
            raise AuthFileError(f"{where}: user {user!r} appears twice")
        try:
            users[user] = PasswordHash.parse(encoded)
        except ValueError as exc:
            raise AuthFileError(
                f"{where}: {exc}; plaintext passwords are not accepted "
                "(make a hash with `zerocopy hash-password`)"
            ) from exc
    if not users:
        raise AuthFileError(f"--auth-file {path} has no user:hash line")
    return users


def _check(hashed: PasswordHash, password: bytes) -> bool:
    """The work of one check, in a worker thread."""
    return hashed.verify(password)


@final
class Authenticator:
    """Checks each request's basic credentials; see the module docstring.

    Args:
        users: User name to hash.
        realm: The realm of the 401 challenge.
        cache_seconds: How long a verdict is reused.
    """

    def __init__(
        self, users: dict[str, PasswordHash], realm: str, *, cache_seconds: float = CACHE_SECONDS
    ) -> None:
        self._users = users
        self._dummy = next(iter(users.values())).like()
        self._challenge = challenge(realm)
        self._busy = HTTPError(
            503, "too many password checks queued", close=False, headers=((b"Retry-After", b"1"),)
        )
        self._cache_seconds = cache_seconds
        self._verdicts: OrderedDict[bytes, tuple[bool, float]] = OrderedDict()
        self._limiter = trio.CapacityLimiter(HASH_THREADS)
        self._waiting = 0
        self.checks = 0
        """Hashes computed since start (cache misses)."""

    def known_good(self, request: Request) -> bool:
        """Whether the request's credentials were verified good within the cache time.

        The fast path: one dict look-up; never blocks, never checkpoints.
        """
        value = request.headers.get(b"authorization")
        if value is None:
            return False
        verdict = self._verdicts.get(value)
        return verdict is not None and verdict[0] and verdict[1] > trio.current_time()

    async def check(self, request: Request) -> HTTPError | None:
        """``None`` if the request may be served, else the error to answer with: 401 with the
        challenge, 400 for malformed credentials, 503 when too many checks are queued.

        Checkpoints: when it hashes (in a worker thread), else not.
        """
        try:
            credentials = parse_basic(request)
        except HTTPError as exc:
            return exc
        if credentials is None:
            return self._challenge
        value = request.headers[b"authorization"]
        now = trio.current_time()
        verdict = self._verdicts.get(value)
        if verdict is not None and verdict[1] > now:
            good = verdict[0]
        else:
            if self._waiting >= MAX_WAITING:
                return self._busy
            user, password = credentials
            hashed = self._users.get(user, self._dummy)
            self._waiting += 1
            try:
                good = await trio.to_thread.run_sync(
                    _check, hashed, password.encode("utf-8"), limiter=self._limiter
                )
            finally:
                self._waiting -= 1
            # The dummy never matches; a user who is not in the file is refused whatever
            # the hash said, without a shorter path for it.
            good = good and user in self._users
            self.checks += 1
            self._remember(value, good)
            if not good:
                logger.info("authentication failed for user %s", safe_text(user))
        return None if good else self._challenge

    def _remember(self, value: bytes, good: bool) -> None:
        verdicts = self._verdicts
        verdicts[value] = (good, trio.current_time() + self._cache_seconds)
        verdicts.move_to_end(value)
        while len(verdicts) > CACHE_ENTRIES:
            verdicts.popitem(last=False)
