"""Do the server's own counters agree with strace and bpftrace? Pure functions.

Each quantity is compared source by source, and a row is flagged when any two sources that
measured it differ by more than :data:`TOLERANCE` of the larger. Zero is a legitimate count:
two zeros agree.

What each source can see:

* the server counts, per kernel syscall name, calls that returned and calls that failed with
  EAGAIN, and the bytes its recv/preadv returned (in) and its send/sendmsg accepted (out);
* ``strace -c`` counts every call, failed ones included, so its figure is compared with the
  server's returned + EAGAIN;
* bpftrace counts returned calls and EAGAIN failures separately, and sums the byte counts
  of every read-side and write-side syscall, whatever the server thinks it called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from bench.prom import CounterDelta
    from bench.tracers import BpfCounts, StraceCounts

__all__ = ["SERVER_SYSCALLS", "TOLERANCE", "AgreementRow", "compare", "relative_difference"]

TOLERANCE: Final = 0.01
# The names the server's counters use (zerocopy/transfer/counters.py).
SERVER_SYSCALLS: Final = (
    "recvfrom",
    "sendto",
    "sendmsg",
    "preadv",
    "preadv2",
    "sendfile",
    "splice",
)


def relative_difference(a: int | float, b: int | float) -> float:
    """``|a - b|`` as a fraction of the larger magnitude; 0 when both are 0."""
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


@final
@dataclass(frozen=True, slots=True)
class AgreementRow:
    """One quantity as each source saw it (``None``: that source did not measure it)."""

    quantity: str
    server: int
    strace: int | None
    bpftrace: int | None

    @property
    def worst(self) -> float:
        """The largest relative difference between any two sources that measured it."""
        values = [v for v in (self.server, self.strace, self.bpftrace) if v is not None]
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
        values = [v for v in (self.server, self.strace, self.bpftrace) if v is not None]
        return max(values) - min(values)


def compare(
    server: CounterDelta, strace: StraceCounts | None, bpftrace: BpfCounts | None
) -> list[AgreementRow]:
    """Line up the three sources over one window.

    Syscall rows appear for every server syscall name that any source saw; byte rows always
    appear (bpftrace is the only outside source for bytes).
    """
    rows = []
    for name in SERVER_SYSCALLS:
        attempts = server.attempts(name)
        strace_calls = strace.calls.get(name, 0) if strace else None
        returned = bpftrace.returned.get(name, 0) if bpftrace else None
        eagain = bpftrace.eagain.get(name, 0) if bpftrace else None
        if not any((attempts, strace_calls, returned, eagain)):
            continue
        rows.append(
            AgreementRow(
                f"{name} calls (returned + EAGAIN)",
                attempts,
                strace_calls,
                None
                if bpftrace is None or eagain is None or returned is None
                else returned + eagain,
            )
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
    return rows
