"""The ``zerocopy`` command: ``zerocopy serve [DIR] --bind --port --strategy ...``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

import trio

from zerocopy import __version__
from zerocopy.files import MAX_LISTING_ENTRIES
from zerocopy.http import Limits
from zerocopy.server import (
    Server,
    ServerConfig,
    default_max_connections,
    default_open_file_cache,
)
from zerocopy.transfer import DEFAULT_THREADS, STRATEGIES

if TYPE_CHECKING:
    from collections.abc import Sequence

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


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


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
        "signal stops at once.",
        formatter_class=_Help,
    )
    serve.add_argument("dir", nargs="?", default=".", help="directory to serve")
    serve.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (0.0.0.0 or :: for all)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, metavar="N", help="TCP port (0 picks a free one)"
    )
    serve.add_argument(
        "--strategy",
        choices=list(STRATEGIES),
        default="auto",
        help="how file bodies are sent: sendfile, splice (file->pipe->socket), readwrite "
        "(pread+send), or auto (the one measured cheapest under load: sendfile); "
        "sendfile and splice fall back to readwrite where the file system cannot do them",
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
    serve.add_argument("--access-log", action="store_true", help="log every response to stderr")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="N",
        help="serve Prometheus metrics at /metrics on this port (needs zerocopy[metrics]; "
        "off by default)",
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
        type=_positive,
        metavar="SECONDS",
        default=10.0,
        help="to receive a whole request head, counted from its first byte",
    )
    timeouts.add_argument(
        "--idle-timeout",
        type=_positive,
        default=15.0,
        metavar="SECONDS",
        help="keep-alive wait for the next request",
    )
    timeouts.add_argument(
        "--send-timeout",
        type=_positive,
        metavar="SECONDS",
        default=30.0,
        help="without the client accepting a byte, before the connection is dropped",
    )
    timeouts.add_argument(
        "--shutdown-grace",
        type=_positive,
        metavar="SECONDS",
        default=10.0,
        help="for in-flight responses to finish after SIGTERM/SIGINT",
    )
    defaults = Limits()
    limits = serve.add_argument_group("limits")
    limits.add_argument(
        "--max-connections",
        type=_count,
        metavar="N",
        default=default_max_connections(),
        help="concurrent connections; past it, accept waits (default: from RLIMIT_NOFILE)",
    )
    limits.add_argument(
        "--offload-threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help="worker threads for file reads that would block on the disk (0: read on the "
        "event loop, which then stalls every connection on a cold page cache)",
    )
    limits.add_argument(
        "--open-file-cache",
        type=int,
        default=default_open_file_cache(),
        metavar="N",
        help="file descriptors kept open for reuse, revalidated by stat on every hit (0: off)",
    )
    limits.add_argument(
        "--max-head-size",
        type=_count,
        metavar="N",
        default=defaults.max_head_size,
        help="bytes in a request head (431 past it)",
    )
    limits.add_argument(
        "--max-headers",
        type=_count,
        metavar="N",
        default=defaults.max_header_count,
        help="header fields in a request (431 past it)",
    )
    limits.add_argument(
        "--max-target-length",
        type=_count,
        metavar="N",
        default=defaults.max_target_length,
        help="bytes in a request-target (414 past it)",
    )
    limits.add_argument(
        "--max-ranges",
        type=_count,
        metavar="N",
        default=defaults.max_ranges,
        help="ranges in one Range header; past it the whole file is sent",
    )
    limits.add_argument(
        "--max-listing-entries",
        type=_count,
        metavar="N",
        default=MAX_LISTING_ENTRIES,
        help="directory entries read for one listing; a directory holding more is listed in "
        "part, with a note saying so",
    )
    return parser


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def _run(server: Server) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # Announce only now: from here on, a signal means a graceful shutdown.
        urls = ", ".join(_url(host, port) for host, port in server.addresses)
        metrics = ""
        if server.metrics_port is not None:
            host = server.addresses[0][0]
            metrics = f"; metrics on {_url(host, server.metrics_port)}metrics"
        print(
            f"zerocopy {__version__}: serving {server.root} on {urls} "
            f"(strategy {server.config.strategy}){metrics}",
            flush=True,
        )
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    if server.shutting_down:
                        logger.warning("%s again: stopping now", signal.Signals(signum).name)
                    else:
                        logger.info(
                            "%s: finishing in-flight responses (up to %g s); "
                            "send it again to stop now",
                            signal.Signals(signum).name,
                            server.config.shutdown_grace,
                        )
                    server.shutdown()

            nursery.start_soon(watch_signals)
            await server.serve()
            nursery.cancel_scope.cancel()


def _fail(message: str) -> int:
    print(f"zerocopy: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        build_parser().print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = ServerConfig(
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
        metrics_port=args.metrics_port,
        open_file_cache=args.open_file_cache,
        offload_threads=args.offload_threads,
        max_listing_entries=args.max_listing_entries,
    )
    try:
        server = Server(config)
    except (OSError, RuntimeError) as exc:
        return _fail(str(exc))
    try:
        server.bind()
    except OSError as exc:
        ports = f"port {args.port}" + (
            f" or metrics port {args.metrics_port}" if args.metrics_port is not None else ""
        )
        return _fail(f"cannot listen on {args.bind} {ports}: {exc.strerror or exc}")
    trio.run(_run, server)
    return 0
