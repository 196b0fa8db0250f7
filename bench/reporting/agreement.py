"""Do the server's own counters agree with strace and bpftrace? Pure functions.

Each quantity is compared source by source, and a row disagrees when any two sources that
measured it differ by more than :data:`TOLERANCE` of the larger. Zero is a legitimate count:
two zeros agree.

What each source can see:

* the server counts, per kernel syscall name, its transfer-path calls that returned and those
  that failed with EAGAIN, and the bytes its recv/preadv returned (in) and its send/sendmsg
  accepted (out);
* ``strace -f -c`` counts every call of the whole process, failed ones included, so a
  transfer-path figure is compared with the server's returned + EAGAIN;
* bpftrace counts every call of the whole process too, returned and EAGAIN apart, and sums
  the byte counts of every read-side and write-side syscall, whatever the server thinks it
  called.

So the transfer path has three sources; the whole process's total has two (strace and
bpftrace). A disagreement can be *explained* (:func:`assess`): a known naming difference, or a
known byte the server does not count. ``bench.check`` fails on any disagreement that is not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.harness.schema import BpfCounts, CounterDelta, CountWindow, StraceCounts

__all__ = [
    "ALIAS_NOTE",
    "PROBE_NOTE",
    "SERVER_SYSCALLS",
    "TOLERANCE",
    "WHOLE_PROCESS",
    "AgreementRow",
    "assess",
    "compare",
    "relative_difference",
    "unexplained",
]

TOLERANCE: Final = 0.01
SERVER_SYSCALLS: Final = (
    "recvfrom",
    "sendto",
    "sendmsg",
    "preadv",
    "preadv2",
    "sendfile",
    "splice",
)
"""The names the server's counters use: the kernel's names for the calls it makes."""
WHOLE_PROCESS: Final = "all syscalls of the process"
ALIAS_NOTE: Final = (
    "`preadv` and `preadv2` agree as a pair: the server counts CPython's `os.preadv` as "
    "`preadv`, but CPython 3.11 issues the `preadv2` syscall (flags 0) where the C library "
    "has it. The counter's name is wrong, not its count."
)
PROBE_NOTE: Final = (
    "the kernel → user gap equals the number of `preadv2` calls that returned: the server's "
    "1-byte `RWF_NOWAIT` page-cache probes copy a byte each into user space, and its "
    '`zerocopy_user_copy_bytes_total{direction="in"}` leaves them out'
)


def relative_difference(a: int | float, b: int | float) -> float:
    """``|a - b|`` as a fraction of the larger magnitude; 0 when both are 0."""
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


@final
@dataclass(frozen=True, slots=True)
class AgreementRow:
    """One quantity as each source saw it (``None``: that source did not measure it).

    ``note`` explains a disagreement that is understood; ``None`` where there is none.
    """

    quantity: str
    server: int | None
    strace: int | None
    bpftrace: int | None
    note: str | None = None

    def _values(self) -> list[int]:
        return [v for v in (self.server, self.strace, self.bpftrace) if v is not None]

    @property
    def worst(self) -> float:
        """The largest relative difference between any two sources that measured it."""
        values = self._values()
        return max(
            (relative_difference(a, b) for i, a in enumerate(values) for b in values[i + 1 :]),
            default=0.0,
        )

    @property
    def agree(self) -> bool:
        return self.worst <= TOLERANCE

    @property
    def spread(self) -> int:
        """Largest minus smallest figure among the sources that measured it."""
        values = self._values()
        return max(values) - min(values) if values else 0


def compare(
    server: CounterDelta, strace: StraceCounts | None, bpftrace: BpfCounts | None
) -> list[AgreementRow]:
    """Line up the sources over one window.

    Syscall rows appear for every server syscall name that any source saw; byte rows always
    appear (bpftrace is the only outside source for bytes); the whole-process row appears when
    both outside tracers ran.
    """
    rows = []
    for name in SERVER_SYSCALLS:
        attempts = server.attempts(name)
        strace_calls = strace.calls.get(name, 0) if strace else None
        returned = bpftrace.returned.get(name, 0) if bpftrace else None
        eagain = bpftrace.eagain.get(name, 0) if bpftrace else None
        if not any((attempts, strace_calls, returned, eagain)):
            continue
        outside = None if returned is None or eagain is None else returned + eagain
        rows.append(
            AgreementRow(f"{name} calls (returned + EAGAIN)", attempts, strace_calls, outside)
        )
        if server.eagain.get(name, 0) or eagain:
            rows.append(AgreementRow(f"{name} EAGAIN", server.eagain.get(name, 0), None, eagain))
    rows.append(
        AgreementRow(
            "bytes kernel → user", server.copy_in, None, bpftrace.copy_in if bpftrace else None
        )
    )
    rows.append(
        AgreementRow(
            "bytes user → kernel", server.copy_out, None, bpftrace.copy_out if bpftrace else None
        )
    )
    if strace is not None and bpftrace is not None:
        rows.append(AgreementRow(WHOLE_PROCESS, None, strace.total, bpftrace.total))
    return rows


def _alias_explains(rows: Sequence[AgreementRow]) -> set[str]:
    """Rows whose disagreement vanishes when ``preadv`` and ``preadv2`` are read as one."""
    by_name = {row.quantity.split(" ", 1)[0]: row for row in rows if " calls " in row.quantity}
    first, second = by_name.get("preadv"), by_name.get("preadv2")
    if first is None or second is None or (first.agree and second.agree):
        return set()
    server = (first.server or 0) + (second.server or 0)
    outside = [
        x + y
        for x, y in ((first.strace, second.strace), (first.bpftrace, second.bpftrace))
        if x is not None and y is not None
    ]
    if outside and all(relative_difference(server, value) <= TOLERANCE for value in outside):
        return {first.quantity, second.quantity}
    return set()


def _probe_explains(window: CountWindow) -> bool:
    """Whether a kernel → user byte gap equals the window's returned ``preadv2`` calls."""
    bpf, server = window.bpftrace, window.server
    if bpf is None:
        return False
    gap = bpf.copy_in - server.copy_in
    probes = server.syscalls.get("preadv2", 0)
    return 0 < gap == probes and server.zero_copy > 0


def assess(window: CountWindow) -> list[AgreementRow]:
    """:func:`compare` for one traced window, each understood disagreement with its note."""
    rows = compare(window.server, window.strace, window.bpftrace)
    aliased = _alias_explains(rows)
    probe = _probe_explains(window)
    assessed = []
    for row in rows:
        if not row.agree and row.quantity in aliased:
            row = replace(row, note=ALIAS_NOTE)
        elif not row.agree and probe and row.quantity == "bytes kernel → user":
            row = replace(row, note=PROBE_NOTE)
        assessed.append(row)
    return assessed


def unexplained(rows: Sequence[AgreementRow]) -> list[AgreementRow]:
    """The rows that disagree with no note to explain them."""
    return [row for row in rows if not row.agree and row.note is None]
