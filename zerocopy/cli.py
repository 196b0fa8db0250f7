"""The ``zerocopy`` command: ``zerocopy serve [DIR] --bind --port --strategy ...``."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import os
import signal
import sys
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from zerocopy import __version__, tune
from zerocopy.config_file import ConfigError, count, dump, load, positive, toml_types
from zerocopy.files import REVALIDATE_MODES
from zerocopy.http import CODING_SUFFIXES, Limits, field_value, parse_header_rule
from zerocopy.server import Server, ServerConfig, systemd
from zerocopy.server.auth import PBKDF2_ROUNDS, SCRYPT_LN, hash_password
from zerocopy.server.config import (
    default_max_connections,
    default_open_file_cache,
    raise_descriptor_limit,
)
from zerocopy.server.serve import check_tls_and_realm
from zerocopy.server.stopping import Stopper
from zerocopy.server.supervisor import Supervisor, SupervisorConfig
from zerocopy.transfer import STRATEGIES
from zerocopy.tune.sizes import parse_size

if TYPE_CHECKING:
    import socket
    from collections.abc import Sequence

    from _typeshed import DataclassInstance

__all__ = ["build_parser", "main"]

logger = logging.getLogger("zerocopy")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for switches and help texts that already state theirs."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.nargs == 0 or "default" in text or action.default is None:
            return text
        return super()._get_help_string(action)


@toml_types(int)
def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


@toml_types(int, str)
def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return count(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or 'auto', not {text!r}") from None


@toml_types(int, str)
def _size(text: str) -> int:
    """A byte count: ``65536``, ``64KiB``, ``32M`` (binary units); 0 allowed."""
    try:
        return parse_size(str(text), minimum=0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a size in bytes (e.g. 65536, 64KiB, 32MiB): {text}"
        ) from None


@toml_types(str)
def _codings(text: str) -> tuple[str, ...]:
    """``br,zstd,gzip``, or ``none``."""
    if str(text).strip().lower() in ("", "none", "off"):
        return ()
    codings = tuple(part.strip().lower() for part in str(text).split(","))
    for coding in codings:
        if coding not in CODING_SUFFIXES:
            known = ", ".join(CODING_SUFFIXES)
            raise argparse.ArgumentTypeError(f"unknown coding {coding!r} (known: {known}, none)")
    return codings


@toml_types(str)
def _header_rule(text: str) -> str:
    try:
        parse_header_rule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


@toml_types(str)
def _field_value(text: str) -> str:
    try:
        field_value(text, "value")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} holds CR, LF, NUL or another control character"
        ) from None
    return text


def resolve_workers(value: int | str) -> int:
    """``--workers``: a number, or ``auto`` for the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if value == "auto" else int(value)


@toml_types(int)
def _count_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _default(cls: type[DataclassInstance], name: str) -> Any:
    """The default of dataclass field ``name``: ``ServerConfig`` and ``Limits`` hold each
    default once, and the flags show them."""
    for spec in dataclasses.fields(cls):
        if spec.name == name:
            if spec.default is not dataclasses.MISSING:
                return spec.default
            if spec.default_factory is not dataclasses.MISSING:
                return spec.default_factory()
    raise LookupError(f"{cls.__name__}.{name} has no default")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, for ``main`` and for documentation tests."""
    parser = _Parser(
        prog="zerocopy",
        description="An HTTP/1.1 file server that streams with sendfile, splice or read/write.",
    )
    parser.add_argument("--version", action="version", version=f"zerocopy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve a directory over HTTP/1.1",
        description="Serve DIR over HTTP/1.1. Ctrl-C or SIGTERM stops gracefully; a second "
        "signal stops at once. With --workers N > 1 a supervisor runs N worker processes: "
        "SIGHUP reloads (new workers, then the old ones drain; --config is read again), "
        "SIGUSR1 reopens log files, and a worker that dies is restarted. Started by systemd "
        "socket activation (LISTEN_FDS), it serves on the sockets it was given; with "
        "NOTIFY_SOCKET set it reports READY=1, RELOADING=1 and STOPPING=1.",
        formatter_class=_Help,
    )
    serve.add_argument("dir", nargs="?", default=".", help="directory to serve")
    serve.add_argument(
        "--bind",
        default=_default(ServerConfig, "bind"),
        metavar="ADDR",
        help="address to listen on (0.0.0.0 or :: for all)",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=_default(ServerConfig, "port"),
        metavar="N",
        help="TCP port (0 picks a free one)",
    )
    serve.add_argument(
        "--strategy",
        choices=list(STRATEGIES),
        default=_default(ServerConfig, "strategy"),
        help="how file bodies are sent: sendfile, splice (file->pipe->socket), readwrite "
        "(pread+send), or auto (small cached files from memory, in one send with the head, "
        "up to --auto-threshold; everything else by sendfile); sendfile and splice fall back "
        "to readwrite where the file system cannot do them",
    )
    serve.add_argument(
        "--no-listing",
        dest="listing",
        action="store_false",
        help="answer 403 for directories without index.html instead of listing them",
    )
    serve.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="serve symlinks whose target stays inside DIR (default: refuse every symlink)",
    )
    secure = serve.add_argument_group("TLS and authentication")
    secure.add_argument(
        "--tls-cert",
        metavar="FILE",
        default=_default(ServerConfig, "tls_cert"),
        help="PEM certificate chain: serve HTTPS (TLS 1.2 and 1.3, ALPN http/1.1) instead of "
        "HTTP on --port; file bodies then go through read/write, to be encrypted",
    )
    secure.add_argument(
        "--tls-key",
        metavar="FILE",
        default=_default(ServerConfig, "tls_key"),
        help="PEM private key of --tls-cert",
    )
    secure.add_argument(
        "--auth-file",
        metavar="FILE",
        default=_default(ServerConfig, "auth_file"),
        help="require HTTP basic authentication: one user:hash per line, hashes from "
        "`zerocopy hash-password` (not the metrics port)",
    )
    secure.add_argument(
        "--auth-realm",
        default=_default(ServerConfig, "auth_realm"),
        metavar="TEXT",
        help="realm of the 401 challenge",
    )
    content = serve.add_argument_group("content")
    content.add_argument(
        "--precompressed",
        type=_codings,
        default=_default(ServerConfig, "precompressed"),
        metavar="LIST",
        help="serve x.js.br, x.js.zst or x.js.gz beside x.js to clients that accept that "
        "coding, in this order of preference (none: off; no compression on the fly)",
    )
    content.add_argument(
        "--dotfiles",
        choices=["deny", "allow"],
        default="allow" if _default(ServerConfig, "dotfiles") else "deny",
        help="names that start with a dot (.git/, .env): deny answers 404 and hides them "
        "from listings; /.well-known/ is served either way",
    )
    content.add_argument(
        "--not-found",
        metavar="PAGE",
        default=_default(ServerConfig, "not_found"),
        help="a file under DIR (/404.html) sent with status 404 for every missing path",
    )
    content.add_argument(
        "--spa",
        metavar="INDEX",
        default=_default(ServerConfig, "spa"),
        help="a file under DIR (/index.html) sent with 200 for a missing path whose last "
        "segment has no dot: the routes of a single-page application",
    )
    tar = serve.add_argument_group("directory downloads (GET /dir/?download=tar)")
    tar.add_argument(
        "--no-tar",
        dest="tar",
        action="store_false",
        help="do not offer listed directories as tar archives (?download=tar is then ignored)",
    )
    tar.add_argument(
        "--tar-max-files",
        type=count,
        metavar="N",
        default=_default(ServerConfig, "tar_max_files"),
        help="names one archive's walk may read (files, directories, names left out); 413 past it",
    )
    tar.add_argument(
        "--tar-max-bytes",
        type=_size,
        metavar="BYTES",
        default=_default(ServerConfig, "tar_max_bytes"),
        help="largest archive (e.g. 64GiB); 413 past it",
    )
    fields = serve.add_argument_group("response header fields")
    fields.add_argument(
        "--cache-control",
        type=_field_value,
        metavar="VALUE",
        default=_default(ServerConfig, "cache_control"),
        help="the default Cache-Control of file responses (e.g. 'no-cache')",
    )
    fields.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=_header_rule,
        metavar="'PATTERN: Name: value'",
        default=list(_default(ServerConfig, "headers")),
        help="add a field to files whose path (PATTERN starts with /) or name matches the "
        "glob; repeatable, the last match per field name wins (e.g. '/assets/*: "
        "Cache-Control: max-age=31536000, immutable')",
    )
    fields.add_argument(
        "--no-nosniff",
        dest="nosniff",
        action="store_false",
        help="do not send X-Content-Type-Options: nosniff (sent on every response by default)",
    )
    fields.add_argument(
        "--cors",
        type=_field_value,
        metavar="ORIGIN",
        default=_default(ServerConfig, "cors"),
        help="allow cross-origin requests from ORIGIN (or *): Access-Control-Allow-Origin on "
        "every response, and OPTIONS preflights answered with 204",
    )
    serve.add_argument(
        "--access-log",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH|-",
        help="write one line per response to PATH (-, or the flag alone: standard error): the "
        "Combined Log Format, then the request time in seconds, the strategy that sent the "
        "body and the body bytes sent; written from a thread, at least once a second; "
        "reopened on SIGUSR1 (default: off)",
    )
    serve.add_argument(
        "--access-log-format",
        choices=["combined", "json"],
        default=_default(ServerConfig, "access_log_format"),
        help="combined: one text line per response; json: one object per line, same fields",
    )
    serve.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="N",
        help="serve Prometheus metrics at /metrics and a health check at /-/health on this "
        "port (needs zerocopy[metrics]; off by default)",
    )
    serve.add_argument(
        "--metrics-bind",
        default=_default(ServerConfig, "metrics_bind"),
        metavar="ADDR",
        help="address of the metrics port (loopback by default, whatever --bind says)",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="logging threshold",
    )
    timeouts = serve.add_argument_group("timeouts (seconds)")
    timeouts.add_argument(
        "--head-timeout",
        type=positive,
        metavar="SECONDS",
        default=_default(ServerConfig, "head_timeout"),
        help="to receive a whole request head, counted from its first byte",
    )
    timeouts.add_argument(
        "--idle-timeout",
        type=positive,
        default=_default(ServerConfig, "idle_timeout"),
        metavar="SECONDS",
        help="keep-alive wait for the next request",
    )
    timeouts.add_argument(
        "--send-timeout",
        type=positive,
        metavar="SECONDS",
        default=_default(ServerConfig, "send_timeout"),
        help="without the client accepting a byte, before the connection is dropped",
    )
    timeouts.add_argument(
        "--shutdown-grace",
        type=positive,
        metavar="SECONDS",
        default=_default(ServerConfig, "shutdown_grace"),
        help="for in-flight responses to finish after SIGTERM/SIGINT; at its end the process "
        "exits, even if worker threads are still busy",
    )
    limits = serve.add_argument_group("limits")
    limits.add_argument(
        "--max-connections",
        type=count,
        metavar="N",
        default=_default(ServerConfig, "max_connections"),
        help="concurrent connections; past it, accept waits (default: from RLIMIT_NOFILE)",
    )
    limits.add_argument(
        "--offload-threads",
        type=_count_or_zero,
        default=_default(ServerConfig, "offload_threads"),
        metavar="N",
        help="worker threads for file reads that would block on the disk (0: read on the "
        "event loop, which then stalls every connection on a cold page cache)",
    )
    limits.add_argument(
        "--open-file-cache",
        type=_count_or_zero,
        default=_default(ServerConfig, "open_file_cache"),
        metavar="N",
        help="files kept open for reuse (0: off; default: a quarter of RLIMIT_NOFILE, at "
        "most 16384)",
    )
    limits.add_argument(
        "--open-file-cache-revalidate",
        choices=list(REVALIDATE_MODES),
        default=_default(ServerConfig, "open_file_cache_revalidate"),
        help="how a cached file is known unchanged: inotify (the kernel reports every "
        "change; one ioctl per hit) or always (stat and readlink on every hit, for network "
        "file systems whose changes inotify cannot see)",
    )
    limits.add_argument(
        "--memory-cache",
        type=_size,
        default=_default(ServerConfig, "memory_cache"),
        metavar="BYTES",
        help="bytes of small files the open-file cache keeps in memory, for auto to send "
        "them in one send (0: none)",
    )
    limits.add_argument(
        "--auto-threshold",
        type=_size,
        default=None,
        metavar="BYTES",
        help="largest file auto sends from memory; larger ones go by sendfile (default: "
        "what `zerocopy tune` measured on this host, else "
        f"{_default(ServerConfig, 'auto_threshold')})",
    )
    limits.add_argument(
        "--max-listing-entries",
        type=count,
        metavar="N",
        default=_default(ServerConfig, "max_listing_entries"),
        help="directory entries read for one listing; a directory holding more is listed in "
        "part, with a note saying so",
    )
    limits.add_argument(
        "--max-head-size",
        type=count,
        metavar="N",
        default=_default(Limits, "max_head_size"),
        help="bytes in a request head (431 past it)",
    )
    limits.add_argument(
        "--max-headers",
        type=count,
        metavar="N",
        default=_default(Limits, "max_header_count"),
        help="header fields in a request (431 past it)",
    )
    limits.add_argument(
        "--max-target-length",
        type=count,
        metavar="N",
        default=_default(Limits, "max_target_length"),
        help="bytes in a request-target (414 past it)",
    )
    limits.add_argument(
        "--max-ranges",
        type=count,
        metavar="N",
        default=_default(Limits, "max_ranges"),
        help="ranges in one Range header; past it the whole file is sent",
    )
    processes = serve.add_argument_group("processes")
    processes.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="worker processes (auto: one per CPU this process may use). 1 is a single "
        "process with no supervisor; more start a supervisor that restarts them, reloads on "
        "SIGHUP and sums their metrics",
    )
    processes.add_argument(
        "--cpu-affinity",
        action="store_true",
        help="pin worker i to the i-th CPU of the affinity mask (default: let the kernel "
        "schedule them)",
    )
    configuration = serve.add_argument_group("configuration")
    configuration.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from a TOML file whose keys are the long flag names (dir = "
        '"/srv", port = 8080, no-listing = true); flags on the command line override it, and '
        "SIGHUP reads it again",
    )
    configuration.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML (a valid --config file) and exit",
    )
    tune.add_parser(commands, _Help)
    hasher = commands.add_parser(
        "hash-password",
        help="print a password hash for --auth-file",
        description="Read a password (twice from a terminal, else one line of standard "
        "input) and print a salted hash for --auth-file. Passwords are never arguments.",
        formatter_class=_Help,
    )
    hasher.add_argument("--user", metavar="NAME", help="print NAME:hash, a whole line")
    hasher.add_argument(
        "--scheme", choices=["scrypt", "pbkdf2-sha256"], default="scrypt", help="hash function"
    )
    hasher.add_argument(
        "--cost",
        type=count,
        metavar="N",
        help=f"scrypt's log2(N) (default {SCRYPT_LN}) or PBKDF2's rounds (default {PBKDF2_ROUNDS})",
    )
    return parser


def _hash_password(args: argparse.Namespace) -> int:
    if args.user is not None and (":" in args.user or not args.user.isprintable()):
        return _fail("a user name cannot contain a colon or control characters")
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            return _fail("the passwords differ")
    else:
        password = sys.stdin.readline().removesuffix("\n")
    if not password:
        return _fail("empty password")
    try:
        hashed = hash_password(password, scheme=args.scheme, cost=args.cost)
    except ValueError as exc:
        return _fail(f"--cost: {exc}")
    print(hashed if args.user is None else f"{args.user}:{hashed}")
    return 0


def _url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"


def _serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["serve"]  # type: ignore[no-any-return]
    raise LookupError("no serve command")  # pragma: no cover


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line, with the ``--config`` file's values as defaults.

    Raises:
        ConfigError: The configuration file is unreadable or wrong.
        SystemExit: A usage error (argparse prints it, status 2), or --help.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    flag_threshold = getattr(args, "auto_threshold", None)
    if args.command == "serve" and args.config is not None:
        _serve_parser(parser).set_defaults(**load(args.config, _serve_parser(parser)))
        args = parser.parse_args(argv)
    if args.command == "serve":
        # Sized from the descriptor limit, once it is raised: print the values in effect.
        raise_descriptor_limit()
        if args.open_file_cache is None:
            args.open_file_cache = default_open_file_cache()
        if args.max_connections is None:
            args.max_connections = default_max_connections(args.strategy, args.open_file_cache)
        given_by = "--auto-threshold" if flag_threshold is not None else f"--config {args.config}"
        args.auto_threshold_choice = tune.resolve_auto_threshold(args.auto_threshold, given_by)
        args.auto_threshold = args.auto_threshold_choice.value
    return args


def _server_config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        root=args.dir,
        bind=args.bind,
        port=args.port,
        strategy=args.strategy,
        listing=args.listing,
        follow_symlinks=args.follow_symlinks,
        limits=Limits(
            max_target_length=args.max_target_length,
            max_header_count=args.max_headers,
            max_head_size=args.max_head_size,
            max_ranges=args.max_ranges,
        ),
        head_timeout=args.head_timeout,
        idle_timeout=args.idle_timeout,
        send_timeout=args.send_timeout,
        shutdown_grace=args.shutdown_grace,
        max_connections=args.max_connections,
        access_log=args.access_log,
        access_log_format=args.access_log_format,
        metrics_port=args.metrics_port,
        open_file_cache=args.open_file_cache,
        offload_threads=args.offload_threads,
        open_file_cache_revalidate=args.open_file_cache_revalidate,
        memory_cache=args.memory_cache,
        auto_threshold=args.auto_threshold,
        metrics_bind=args.metrics_bind,
        precompressed=tuple(args.precompressed),
        cache_control=args.cache_control,
        headers=tuple(args.headers),
        nosniff=args.nosniff,
        cors=args.cors,
        dotfiles=args.dotfiles == "allow",
        not_found=args.not_found,
        spa=args.spa,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        auth_file=args.auth_file,
        auth_realm=args.auth_realm,
        max_listing_entries=args.max_listing_entries,
        tar=args.tar,
        tar_max_files=args.tar_max_files,
        tar_max_bytes=args.tar_max_bytes,
    )


def _supervisor_config(args: argparse.Namespace) -> SupervisorConfig:
    return SupervisorConfig(
        server=_server_config(args),
        workers=resolve_workers(args.workers),
        cpu_affinity=args.cpu_affinity,
        log_level=args.log_level,
    )


def _announce(
    root: str,
    addresses: Sequence[tuple[str, int]],
    config: ServerConfig,
    metrics_port: int | None,
    extra: str = "",
    strategy: str | None = None,
) -> None:
    scheme = "http" if config.tls_cert is None else "https"
    urls = ", ".join(_url(host, port, scheme) for host, port in addresses)
    metrics = ""
    if metrics_port is not None:
        metrics = f"; metrics on {_url(config.metrics_bind, metrics_port)}metrics"
    print(
        f"zerocopy {__version__}: serving {root} on {urls} "
        f"(strategy {strategy or config.strategy}{extra}){metrics}",
        flush=True,
    )


async def _run(server: Server) -> None:
    """The single-process server: today's path, with no supervisor."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            # Announce only now: from here on, a signal means a graceful shutdown.
            _announce(
                server.root,
                server.addresses,
                server.config,
                server.metrics_port,
                strategy=server.strategy_name,
            )
            systemd.notify("READY=1")
            stopper = Stopper(server)

            async def watch_signals() -> None:
                async for signum in received:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGUSR1:
                        logger.info("SIGUSR1: reopening log files")
                        server.reopen_logs()
                        continue
                    if signum == signal.SIGHUP:
                        logger.warning(
                            "SIGHUP: a reload needs --workers 2 or more (a supervisor); ignored"
                        )
                        continue
                    if server.shutting_down:
                        logger.warning("%s again: stopping now", name)
                    else:
                        logger.info(
                            "%s: finishing in-flight responses (up to %g s); "
                            "send it again to stop now",
                            name,
                            server.config.shutdown_grace,
                        )
                        systemd.notify("STOPPING=1")
                    stopper.stop()

            nursery.start_soon(watch_signals)
            await stopper.wait_stopped()
            nursery.cancel_scope.cancel()


def _fail(message: str, status: int = 2) -> int:
    print(f"zerocopy: error: {message}", file=sys.stderr)
    return status


def _cannot_listen(config: ServerConfig, exc: OSError) -> int:
    ports = f"port {config.port}" + (
        f" or metrics port {config.metrics_port}" if config.metrics_port is not None else ""
    )
    return _fail(f"cannot listen on {config.bind} {ports}: {exc.strerror or exc}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = parse_args(argv)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.command == "hash-password":
        return _hash_password(args)
    if args.command == "tune":
        return tune.main(args)
    if args.command != "serve":
        build_parser().print_help(sys.stderr)
        return 2
    try:
        check_tls_and_realm(args.tls_cert, args.tls_key, args.auth_realm)
    except ValueError as exc:
        return _fail(str(exc))
    if args.print_config:
        print(dump(_serve_parser(build_parser()), args), end="")
        return 0
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        inherited = systemd.listen_fds()
    except ValueError as exc:
        return _fail(str(exc))
    if inherited:
        logger.info("serving on %d sockets from systemd; --bind and --port ignored", len(inherited))
    config = _server_config(args)
    workers = resolve_workers(args.workers)
    if workers == 1:
        return _main_single(config, args.cpu_affinity, inherited, args.auto_threshold_choice)
    return _main_supervised(_supervisor_config(args), argv, inherited, args.auto_threshold_choice)


def _log_threshold(threshold: tune.ThresholdChoice) -> None:
    """Which --auto-threshold is in effect and where it came from, once the port is bound."""
    logger.log(logging.WARNING if threshold.problem else logging.INFO, threshold.describe())


def _main_single(
    config: ServerConfig,
    pin: bool,
    inherited: list[socket.socket],
    threshold: tune.ThresholdChoice,
) -> int:
    if pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        server = Server(config, sockets=inherited)
    except (OSError, RuntimeError, ValueError) as exc:
        return _fail(str(exc))
    try:
        server.bind()
    except OSError as exc:
        return _cannot_listen(config, exc)
    _log_threshold(threshold)
    trio.run(_run, server)
    return 0


def _main_supervised(
    config: SupervisorConfig,
    argv: Sequence[str] | None,
    inherited: list[socket.socket],
    threshold: tune.ThresholdChoice,
) -> int:
    def reload() -> SupervisorConfig:
        # The same command line, with the --config file read again.
        try:
            return _supervisor_config(parse_args(argv))
        except SystemExit:
            raise ConfigError("the configuration no longer parses (see above)") from None

    try:
        supervisor = Supervisor(config, reload=reload, sockets=inherited)
    except (OSError, RuntimeError, ValueError) as exc:
        return _fail(str(exc))
    try:
        supervisor.bind()
    except OSError as exc:
        return _cannot_listen(config.server, exc)
    _log_threshold(threshold)

    root = os.path.realpath(config.server.root)
    source = ", sockets from systemd" if supervisor.inherited else ""

    def announce() -> None:
        _announce(
            root,
            supervisor.addresses,
            config.server,
            supervisor.metrics_port,
            f", {config.workers} workers{source}",
        )

    status = trio.run(partial(supervisor.run, on_ready=announce))
    if supervisor.failure:
        return _fail(supervisor.failure, status)
    return status
