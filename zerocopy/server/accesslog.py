"""The access log: one line per response, written off the event loop.

``--access-log PATH`` (``-``: standard error) writes, for every response, the Combined Log
Format that every log tool reads (``%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"``),
then three fields of its own: the request time, the strategy and the body bytes sent::

    127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /f.bin HTTP/1.1" 200 4096 "-" \
        "curl/8.5.0" 0.000213 sendfile 4096

(one line; broken here only to fit).

* ``%b`` and the last field are the body bytes the kernel accepted, as nginx's
  ``$body_bytes_sent``: a response cut short (the client left, a send timed out, the file
  shrank, the shutdown grace ran out) logs what went out, not what Content-Length promised.
  The Combined part keeps its meaning for the tools that read only it; the last field repeats
  it so that the three fields after the Combined ones read alone.
* the request time, in seconds with microseconds (nginx's ``$request_time``): from the
  request's first byte when the server waited for it (from accept, for a connection's first
  request); for a request that was already waiting when the previous response ended, from
  that end (when the server took it up); to the last byte the kernel accepted.
* the strategy that sent the body: ``sendfile``, ``splice``, ``readwrite`` (configured, or the
  fallback where zero-copy cannot), ``memory`` (``auto``'s small cached files), or ``-`` when
  no file byte was sent (errors, listings, redirects, HEAD, 304, empty files).
* the time is local time, like nginx's ``$time_local``, formatted once per second.

``--access-log-format json`` writes one object per line with the same fields, named after
nginx's variables: ``time_iso8601``, ``remote_addr``, ``remote_user``, ``request``, ``status``,
``body_bytes_sent``, ``http_referer``, ``http_user_agent``, ``request_time``, ``strategy``;
``null`` where the text line has ``-``.

Every string a client chose (the request-target, Referer, User-Agent) goes through
:func:`zerocopy.logtext.safe_text`, so that a line stays one line and holds no terminal
control. In the text format ``"`` inside a quoted field is then written ``\\x22``, as nginx
escapes it; in JSON it is ``\\"``. Referer and User-Agent are kept by the request parser only
when the log is on (``RequestParser(log_fields=True)``), and never take a request off the
fast path.

Theory of operation:

* **Recording** happens on the event loop and is cheap: a string is formatted and appended to
  a list. No ``logging`` (its records, locks and handlers cost several times more), no
  ``strftime`` per request, no syscall.
* **Writing** is done by :meth:`AccessLog.run`, a task of the server: at least once a second,
  or as soon as :data:`FLUSH_BYTES` are pending, it takes the pending lines and writes them in
  a worker thread (``trio.to_thread``, with a limiter of its own so that busy listings cannot
  delay it), with one ``write`` for the whole batch. One batch is in flight at a time, so lines
  stay in order. On shutdown, what is left is written before :meth:`Server.serve` returns.
* **A disk that cannot keep up.** While a write is slow, lines keep coming. Past
  :data:`MAX_PENDING` characters pending, new lines are dropped and counted
  (``zerocopy_access_log_lines{result="dropped"}``), and the error log says so once per flush.
  The alternative, backpressure, would make a slow log disk a slow file server: nginx, which
  writes its log synchronously, stalls its worker in that case. A server should keep serving
  and say what it could not log; memory stays bounded at about twice :data:`MAX_PENDING` (the
  batch being written and the next one). Write errors (ENOSPC, EIO) are counted under
  ``failed`` and logged once per episode.
* **Several processes, one file.** The file is opened with ``O_APPEND``, and each batch is one
  ``write``: Linux appends a write to a regular file as a whole, so workers' lines never mix
  within a line. On a pipe (``-`` under systemd, or ``| tee``) only writes of up to
  ``PIPE_BUF`` bytes are atomic, so batches go out in pieces of whole lines within that size.
* **Reopening** (SIGUSR1, logrotate's convention; :meth:`reopen`): the pending lines go to
  the old file, then the path is opened again, in the writer thread. If the new open fails,
  the old file is kept, and the error is logged, as nginx does.
* **Bytes that really went out.** A response sent whole sent its planned body: a strategy
  sends exactly the span, or raises. A response cut short (the client left, a send timed out,
  the file shrank, the shutdown grace ran out) is the last on its connection, and the kernel
  says how much it accepted on that socket in all (``tcpi_bytes_acked`` plus ``SIOCOUTQ``);
  the whole responses before it, and its head, are subtracted (:class:`Clerk`). This costs two
  syscalls per response cut short and nothing per response sent whole. The transfer counters
  could not do it: they are process-wide, and a response that waits for its socket lets other
  connections send meanwhile; counting per task instead, with a trio instrument called at
  every task step, was measured to cost more than the whole log may (10% of the 4 KiB rate).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import socket
import stat
import struct
import termios
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import trio

from zerocopy.logtext import safe_text
from zerocopy.span import FileSpan

if TYPE_CHECKING:
    from collections.abc import Callable

    from zerocopy.http import Request, ResponsePlan
    from zerocopy.transfer import Counters, TransferStrategy

__all__ = [
    "FLUSH_BYTES",
    "FLUSH_INTERVAL",
    "FORMATS",
    "MAX_PENDING",
    "AccessLog",
    "AccessLogStatistics",
    "Clerk",
    "accepted_by_kernel",
]

logger = logging.getLogger("zerocopy.access")

FORMATS: Final = ("combined", "json")
"""``--access-log-format`` values."""
FLUSH_INTERVAL: Final = 1.0
"""Seconds a line may wait before it is written (nginx's ``access_log ... flush=1s``
example): ``tail -f`` stays live, and a busy server still writes in large batches."""
FLUSH_BYTES: Final = 1024 * 1024
"""Pending characters that start a write before the second is over: about 8,000 lines, so
that the round trip to the writer thread (a few hundred microseconds of the event loop's
time, in GIL hand-overs, under load) is shared by many lines; under 8,000 responses per second
the one-second flush comes first. nginx's own log buffer is usually given 32k to 64k, for a
write with no thread behind it."""
MAX_PENDING: Final = 8 * 1024 * 1024
"""Characters that may wait for a slow disk before lines are dropped: two to three seconds
of lines at 25,000 responses per second. With the batch being written, about 20 MB of memory
at worst (a line is a string object of about 180 bytes)."""
_MEMO_MAX: Final = 4096
"""Escaped strings remembered (targets, Referers and User-Agents repeat); emptied when full."""
_MEMO_LONGEST: Final = 256
"""Only strings up to this length are remembered, which bounds the memo to about 2 MiB."""

_MONTHS: Final = (
    *("Jan", "Feb", "Mar", "Apr", "May", "Jun"),
    *("Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
)
"""English month names, whatever the locale (``%b`` of strftime follows ``LC_TIME``)."""
_TCP_INFO_SIZE: Final = 128
"""``struct tcp_info`` up to ``tcpi_bytes_acked`` (Linux 4.1), the field read here."""
_BYTES_ACKED: Final = 120
"""Offset of ``tcpi_bytes_acked``: the struct only ever grows at its end."""


@final
@dataclass(frozen=True, slots=True)
class AccessLogStatistics:
    """What the access log did.

    Attributes:
        lines: Lines written.
        dropped: Lines not written because :data:`MAX_PENDING` characters were pending.
        failed: Lines lost to a write error.
        reopens: Successful reopens (SIGUSR1).
    """

    lines: int = 0
    dropped: int = 0
    failed: int = 0
    reopens: int = 0


def accepted_by_kernel(sock: socket.socket) -> int | None:
    """Bytes the kernel has accepted on a TCP socket since it was connected, or ``None`` when
    it cannot say (not TCP, or a kernel older than 4.1).

    ``tcpi_bytes_acked`` (the peer acknowledged them) plus ``SIOCOUTQ`` (sent but not yet
    acknowledged, or not yet sent): ``write_seq`` less the first sequence number. Both stay
    readable after a reset, which is when they are needed.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4))
    except OSError:
        return None
    if len(info) < _TCP_INFO_SIZE:
        return None
    acked: int = struct.unpack_from("=Q", info, _BYTES_ACKED)[0]
    unacked: int = struct.unpack("=i", queued)[0]
    return acked + unacked


@final
class _Stamps:
    """The log's time strings, formatted at most once per second (like ``DateCache``).

    The second is tracked on trio's clock, which the clerk reads anyway, so a response costs
    no wall-clock read; the wall clock is read once per second, to format.
    """

    __slots__ = ("clf", "iso", "since", "until")

    def __init__(self) -> None:
        self.since = self.until = 0.0
        """The second the strings are for, as ``trio.current_time()`` values."""
        self.clf = ""
        self.iso = ""

    def update(self, now: float, wall: float | None = None) -> None:
        """Format the second of ``wall`` (default: ``time.time()``), which is ``now`` on
        trio's clock."""
        wall = time.time() if wall is None else wall
        second = int(wall)
        self.since = now - (wall - second)
        self.until = self.since + 1.0
        t = time.localtime(second)
        offset = t.tm_gmtoff or 0
        sign = "-" if offset < 0 else "+"
        hours, minutes = divmod(abs(offset) // 60, 60)
        self.clf = (
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{hours:02d}{minutes:02d}"
        )
        self.iso = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{sign}{hours:02d}:{minutes:02d}"
        )


_STATUS: Final = {status: str(status) for status in range(100, 600)}
"""Status codes as text: a look-up costs less than formatting the number."""


def _text_field(value: str | bytes) -> str:
    """A client's string, safe inside a quoted field of the text format."""
    return safe_text(value).replace('"', "\\x22")


def _json_field(value: str | bytes) -> str:
    """A client's string as a JSON string literal. After ``safe_text`` no control character
    or lone surrogate is left, so only the backslash and the quote need escaping."""
    return '"' + safe_text(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@final
class _Outcome:
    """What a batch write did, handed back from the writer thread."""

    __slots__ = ("error", "failed", "reopen_error", "reopened", "written")

    def __init__(self) -> None:
        self.written = 0
        self.failed = 0
        self.error: OSError | None = None
        self.reopened = False
        self.reopen_error: OSError | None = None


def _open(path: str) -> int:
    """Open ``path`` for appending, creating it ``0644`` (as nginx does).

    Raises:
        OSError: With a message that names the access log.
    """
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EISDIR:
            hint = " (to log to standard error with DIR after the flag, write --access-log -)"
        error = OSError(f"cannot open access log {path}: {exc.strerror}{hint}")
        error.errno = exc.errno
        raise error from None


def _atomic_size(fd: int) -> int | None:
    """The largest write that cannot mix with other writers' (None: any, a regular file)."""
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    return None if regular else select.PIPE_BUF


def _write_all(fd: int, data: bytes, atomic: int | None) -> None:
    """Write ``data``, in pieces of whole lines of at most ``atomic`` bytes when it is set.

    Raises:
        OSError: From ``write``.
    """
    view = memoryview(data)
    start, size = 0, len(data)
    while start < size:
        end = size
        if atomic is not None and size - start > atomic:
            cut = data.rfind(b"\n", start, start + atomic)
            if cut < 0:  # One line longer than the atomic size: it goes out whole.
                cut = data.find(b"\n", start)
            end = size if cut < 0 else cut + 1
        start += os.write(fd, view[start:end])


@final
class AccessLog:
    """The access log of one server process; see the module docstring.

    Args:
        path: The file, or ``-`` for standard error (borrowed, never closed).
        log_format: ``combined`` or ``json``.
        counters: The server's transfer counters (for responses cut short on sockets the
            kernel cannot count for).
        strategy: The server's transfer strategy, asked which way each body went.

    Raises:
        OSError: The file cannot be opened (the message names it).
        ValueError: Unknown format.

    Resource handling: the file is opened here and closed by :meth:`close` (or at the end of
    :meth:`run`).
    """

    def __init__(
        self, path: str, *, log_format: str, counters: Counters, strategy: TransferStrategy
    ) -> None:
        if log_format not in FORMATS:
            raise ValueError(f"unknown access log format {log_format!r}")
        self.path = path
        self._json = log_format == "json"
        self._absent = "null" if self._json else "-"
        """What a field that is not there is written as."""
        self._fd = 2 if path == "-" else _open(path)
        self._atomic = _atomic_size(self._fd)
        self.counters = counters
        self.way: Callable[[FileSpan], str] = strategy.way
        """The name of the strategy that sends a span (just after a send: that sent it)."""
        self._stamps = _Stamps()
        self._memo: dict[str | bytes, str] = {}
        self._pending: list[str] = []
        self._pending_size = 0
        self._wake = trio.Event()
        self._reopen = False
        self._writing = False
        self._limiter = trio.CapacityLimiter(1)
        self._lines = 0
        self._dropped = 0
        self._reported_dropped = 0
        self._failed = 0
        self._failing = False
        self._reopens = 0

    # -- on the event loop, per response ---------------------------------------------------

    def clerk(self, peer: str, sock: socket.socket | None) -> Clerk:
        """A recorder for the responses sent on ``sock`` (borrowed). ``None`` for a socket
        whose kernel count is not of the responses' bytes (TLS: it counts ciphertext); a
        response cut short there is counted from the process-wide counters."""
        return Clerk(self, peer, sock)

    def _escape(self, value: str | bytes) -> str:
        """``value`` escaped for a field; remembered in ``_memo`` when it is short."""
        escaped = _json_field(value) if self._json else _text_field(value)
        if len(value) <= _MEMO_LONGEST:
            memo = self._memo
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[value] = escaped
        return escaped

    # -- control -----------------------------------------------------------------------------

    def reopen(self) -> None:
        """Ask for the file to be reopened (SIGUSR1): the writer does it at once, after
        writing what is pending to the old file. Never blocks."""
        if self.path != "-":
            self._reopen = True
            self._wake.set()

    def statistics(self) -> AccessLogStatistics:
        """Return a snapshot of the counts."""
        return AccessLogStatistics(
            lines=self._lines,
            dropped=self._dropped,
            failed=self._failed,
            reopens=self._reopens,
        )

    # -- the writer --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write pending lines until cancelled, then write what is left and close the file.

        Cancel it after the connections have ended: their last lines are written then.

        Checkpoints: yes; the final write is shielded from the cancellation that ends it.
        """
        task_status.started()
        try:
            while True:
                with trio.move_on_after(FLUSH_INTERVAL):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self._write_pending()
        finally:
            with trio.CancelScope(shield=True):
                await self._write_pending()
            self.close()

    async def _write_pending(self) -> None:
        reopen, self._reopen = self._reopen, False
        if not self._pending and not reopen:
            self._report_drops()
            return
        lines, self._pending, self._pending_size = self._pending, [], 0
        # Joined here, in C and without the GIL changing hands, so that the thread holds the
        # GIL only to start and to finish: the write itself releases it.
        data = "".join(lines).encode("utf-8", "backslashreplace")
        count = len(lines)
        del lines  # only the joined copy waits for the disk
        self._writing = True
        # A thread cannot be abandoned, so cancelling this wait would not stop the write:
        # shielding it only keeps the count of what was written.
        with trio.CancelScope(shield=True):
            outcome = await trio.to_thread.run_sync(
                self._write_batch, data, count, reopen, limiter=self._limiter
            )
        self._writing = False
        self._account(outcome)

    def _write_batch(self, data: bytes, lines: int, reopen: bool) -> _Outcome:
        """In the writer thread: write ``data`` (``lines`` lines), then reopen if asked.
        Never raises."""
        outcome = _Outcome()
        if data:
            try:
                _write_all(self._fd, data, self._atomic)
            except OSError as exc:
                outcome.failed = lines
                outcome.error = exc
            else:
                outcome.written = lines
        if reopen:
            try:
                fd = _open(self.path)
            except OSError as exc:
                outcome.reopen_error = exc
            else:
                old, self._fd = self._fd, fd
                self._atomic = _atomic_size(fd)
                os.close(old)
                outcome.reopened = True
        return outcome

    def _account(self, outcome: _Outcome) -> None:
        self._lines += outcome.written
        self._failed += outcome.failed
        if outcome.error is not None:
            if not self._failing:
                logger.error(
                    "access log %s: write failed: %s; lines are lost until it works again",
                    safe_text(self.path),
                    outcome.error.strerror or outcome.error,
                )
            self._failing = True
        elif outcome.written and self._failing:
            self._failing = False
            logger.warning("access log %s: writing again", safe_text(self.path))
        if outcome.reopened:
            self._reopens += 1
            logger.info("access log reopened: %s", safe_text(self.path))
        elif outcome.reopen_error is not None:
            logger.error("%s; still writing to the file opened before", outcome.reopen_error)
        self._report_drops()

    def _report_drops(self) -> None:
        if self._dropped != self._reported_dropped:
            logger.warning(
                "access log %s: %d lines dropped: the disk did not keep up (%d characters "
                "were pending)",
                safe_text(self.path),
                self._dropped - self._reported_dropped,
                MAX_PENDING,
            )
            self._reported_dropped = self._dropped

    def write_now(self) -> None:
        """Write what is pending from the calling thread, unless a batch is being written.

        For a process about to end without unwinding (see ``stopping.py``): the lines would
        otherwise be lost. A disk that hangs would hang this call too.
        """
        if self._writing or self._fd < 0 or not self._pending:
            return
        lines, self._pending, self._pending_size = self._pending, [], 0
        data = "".join(lines).encode("utf-8", "backslashreplace")
        self._account(self._write_batch(data, len(lines), False))

    def close(self) -> None:
        """Close the file (not standard error). Idempotent; lines still pending are lost."""
        fd, self._fd = self._fd, -1
        if fd > 2:
            os.close(fd)


@final
class Clerk:
    """Records the responses of one connection; made by :meth:`AccessLog.clerk`.

    A response that went out whole sent its planned body, by the transfer layer's contract
    (a strategy sends exactly the span, or raises). Only a response cut short needs counting,
    and it is the last on its connection, which then closes: the clerk keeps the length of
    every whole response so far, and asks the kernel how much the socket accepted in all.
    The difference, less the head, is the body that went out. Sockets the kernel cannot count
    for (a Unix socket) fall back to the transfer counters' growth since the previous
    response ended, which other connections' sends made meanwhile can inflate; it is capped
    by the planned length.
    """

    __slots__ = (
        "_clock",
        "_head",
        "_last",
        "_log",
        "_mark",
        "_peer",
        "_prefix",
        "_previous",
        "_sock",
        "_span",
    )

    def __init__(self, log: AccessLog, peer: str, sock: socket.socket | None) -> None:
        self._log = log
        self._peer = peer
        self._prefix = '{"time_iso8601":"' if log._json else f"{peer} - - ["
        tcp = sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        self._sock = sock if tcp else None
        self._previous = 0
        # trio's clock, called directly: trio.current_time() reaches it through two more
        # calls, and this runs once per response.
        self._clock = trio.lowlevel.current_clock()
        self._last = self._clock.current_time()
        """When the previous response ended (at first: the connection's start)."""
        counters = log.counters
        self._mark = counters.bytes_copied_out + counters.bytes_zero_copy
        self._head = 0
        self._span: FileSpan | None = None

    def cached(self, head: int, body: FileSpan | None) -> None:
        """The fast path's 200 is about to be sent: its head's length and its body (``None``
        for none: HEAD, or an empty file)."""
        self._head = head
        self._span = body

    def record(
        self,
        request: Request | None,
        plan: ResponsePlan | None,
        whole: bool,
        started: float | None,
        streamed: int | None = None,
    ) -> None:
        """The response has ended, sent whole or cut short: queue its line (or count it as
        dropped). Never blocks; never raises for any request (its strings are escaped).

        Args:
            request: The request, or ``None`` for an error answered before one was parsed.
            plan: What was sent; ``None`` for the fast path's 200 (see :meth:`cached`).
            whole: Whether it was sent in full; if not, the connection is about to close.
            started: When the request's first byte arrived (``trio.current_time()``), if the
                server waited for it; ``None`` for a request that was already waiting, whose
                time starts when the previous response ended.
            streamed: For a body sent after its plan (a listing, a tar archive): its bytes
                when it was sent whole; -1 when it was cut short (its length is then what
                the kernel accepted).

        One function on purpose: it runs once per response, and a Python call costs about as
        much as formatting a field.
        """
        now = self._clock.current_time()
        if plan is None:
            status, head, span = 200, self._head, self._span
            planned = 0 if span is None else span.count
        else:
            status, head, planned = plan.status, len(plan.head), plan.body_length
            span = next((part for part in plan.body if isinstance(part, FileSpan)), None)
            if streamed is not None:
                planned = streamed if streamed >= 0 else 1 << 62
        if whole:
            sent = planned
            self._previous += head + planned
        else:
            sent = max(0, min(planned, self._accepted() - head))
        elapsed = now - (self._last if started is None else started)
        self._last = now
        log = self._log
        if self._sock is None:
            counters = log.counters
            self._mark = counters.bytes_copied_out + counters.bytes_zero_copy
        if log._pending_size > MAX_PENDING:
            log._dropped += 1
            return
        way = log.way(span) if span is not None and span.count else None
        stamps = log._stamps
        if not stamps.since <= now < stamps.until:  # a new second, or the clock was set back
            stamps.update(now)
        memo = log._memo
        text = str(sent)
        referer = agent = target = log._absent
        if request is not None:
            target = memo.get(request.target) or log._escape(request.target)
            headers = request.headers
            if len(headers) > (b"host" in headers):  # more than Host
                if (value := headers.get(b"referer")) is not None:
                    referer = memo.get(value) or log._escape(value)
                if (value := headers.get(b"user-agent")) is not None:
                    agent = memo.get(value) or log._escape(value)
        if log._json:
            quoted = "null" if way is None else f'"{way}"'
            request_line = (
                "null"
                if request is None
                else f'"{request.method} {target[1:-1]} HTTP/{request.version}"'
            )
            line = (
                f'{self._prefix}{stamps.iso}","remote_addr":"{self._peer}",'
                f'"remote_user":null,"request":{request_line},"status":{_STATUS[status]},'
                f'"body_bytes_sent":{text},"http_referer":{referer},'
                f'"http_user_agent":{agent},"request_time":{elapsed:.6f},"strategy":{quoted}}}\n'
            )
        elif request is None:
            line = (
                f'{self._prefix}{stamps.clf}] "-" {_STATUS[status]} {text} "-" "-" '
                f"{elapsed:.6f} {way or '-'} {text}\n"
            )
        else:
            line = (
                f'{self._prefix}{stamps.clf}] "{request.method} {target} '
                f'HTTP/{request.version}" {_STATUS[status]} {text} "{referer}" "{agent}" '
                f"{elapsed:.6f} {way or '-'} {text}\n"
            )
        log._pending.append(line)
        log._pending_size += len(line)
        if log._pending_size >= FLUSH_BYTES and not log._wake.is_set():
            log._wake.set()

    def _accepted(self) -> int:
        """Bytes of the current response that went out, its head included."""
        if self._sock is not None:
            total = accepted_by_kernel(self._sock)
            if total is not None:
                return total - self._previous
        counters = self._log.counters
        return counters.bytes_copied_out + counters.bytes_zero_copy - self._mark
