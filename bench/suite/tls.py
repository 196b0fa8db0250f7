"""TLS in the suite: a test certificate, the client's context, and full handshakes per second.

The TLS server is zerocopy's default strategy with ``--tls-cert/--tls-key``. Without kTLS (this
project's kernel has no ``CONFIG_TLS``) every body byte goes through user space to be
encrypted, so the CPU phase measures it beside the plain server on the same files, in the same
rotation: server CPU per request and per GiB, and the bytes through user space per payload
byte from its own counters.

Handshakes are made by ``openssl s_time -new -tls1_3``: a C client that does one full TLS 1.3
handshake per connection (``-new``: no session resumption), then closes, for a fixed time;
two of them run on the client CPU so that the server is never waiting for a client. The
server's own counter of accepted connections gives the handshakes it completed, and its CPU
time over the window the cost of one; ``1 / (CPU per handshake)`` is what one worker would
sustain at 100 % of a CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from bench.harness import metrics, procfs
from bench.harness.schema import HandshakeRun

if TYPE_CHECKING:
    from pathlib import Path

    from bench.harness.servers import ServerInfo

__all__ = [
    "HANDSHAKE_CLIENTS",
    "Certificate",
    "client_context",
    "handshake_command",
    "handshake_tool",
    "make_certificate",
    "measure_handshakes",
]

HANDSHAKE_CLIENTS: Final = 2
"""openssl s_time processes at once: one would leave the server idle while it waits for the
client's half of each handshake."""


@final
@dataclass(frozen=True, slots=True)
class Certificate:
    """A server certificate and key for ``localhost`` and ``127.0.0.1``, and its CA."""

    cert: Path
    key: Path
    ca: Path
    description: str


def make_certificate(directory: Path) -> Certificate | None:
    """Issue a test certificate with trustme into ``directory``; ``None`` without trustme."""
    if importlib.util.find_spec("trustme") is None:
        return None
    trustme = importlib.import_module("trustme")
    authority = trustme.CA()
    issued = authority.issue_cert("localhost", "127.0.0.1")
    cert, key, ca = (directory / name for name in ("cert.pem", "key.pem", "ca.pem"))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    kind = "ECDSA" if b"EC PRIVATE KEY" in key.read_bytes() else "RSA"
    return Certificate(cert, key, ca, f"trustme: an {kind} leaf for localhost, signed by a test CA")


def client_context(ca: Path) -> ssl.SSLContext:
    """What the harness's client verifies the server with (TLS 1.2 and 1.3, as the server)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def handshake_tool() -> str | None:
    """openssl's path, or ``None``."""
    return shutil.which("openssl")


def handshake_command(openssl: str, port: int, ca: Path, seconds: int) -> list[str]:
    """One ``s_time`` client: full TLS 1.3 handshakes, no resumption, for ``seconds``."""
    return [
        openssl,
        "s_time",
        "-connect",
        f"127.0.0.1:{port}",
        "-new",
        "-tls1_3",
        "-time",
        str(seconds),
        "-CAfile",
        str(ca),
    ]


def measure_handshakes(
    openssl: str, server: ServerInfo, ca: Path, *, rep: int, seconds: int
) -> HandshakeRun:
    """One window of :data:`HANDSHAKE_CLIENTS` ``s_time`` clients against ``server``.

    The clients inherit this process's CPU affinity (the client CPU). The metrics are
    scraped outside the /proc readings, so the scrapes are not billed.

    Raises:
        RuntimeError: The server has no metrics port, or a client failed.

    Resource handling: every client is waited for, and killed if it overruns its time.
    """
    if server.metrics_port is None:
        raise RuntimeError("the TLS server announced no metrics port")
    command = handshake_command(openssl, server.port, ca, seconds)
    before_counters = metrics.scrape(server.metrics_port)
    before = procfs.sample_group(server.pid)
    started = time.monotonic()
    clients = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(HANDSHAKE_CLIENTS)
    ]
    failures = []
    for client in clients:
        try:
            _, stderr = client.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            client.kill()
            _, stderr = client.communicate()
        if client.returncode != 0:
            failures.append(stderr.decode(errors="replace").strip()[-200:])
    elapsed = time.monotonic() - started
    used = procfs.sample_group(server.pid) - before
    delta = metrics.counter_delta(before_counters, metrics.scrape(server.metrics_port))
    if failures:
        raise RuntimeError(f"openssl s_time failed: {failures[0]}")
    return HandshakeRun(
        rep=rep,
        clients=HANDSHAKE_CLIENTS,
        seconds=elapsed,
        handshakes=delta.connections,
        server_cpu_s=used.cpu_s,
    )


def version(openssl: str) -> str:
    """``OpenSSL 3.0.19``, from ``openssl version``."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [openssl, "version"], capture_output=True, text=True, timeout=10, check=False
        )
        # "OpenSSL 3.0.19 27 Jan 2026 (Library: ...)": the name and the version.
        return " ".join(done.stdout.split()[:2]) or "openssl"
    return "openssl"
