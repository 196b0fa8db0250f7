"""What investigations found, as the report states it: prose with the evidence measured.

Kept apart from the sections so that a finding is written once, with the commands and the
figures that support it, and shown in every report beside the run's own figures.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SPLICE_FINDING"]

SPLICE_FINDING: Final = (
    "**Why splice costs more CPU per GiB than sendfile (investigated on this machine, kernel "
    "6.18, 2 vCPUs).** Both end in the same kernel code: since 6.x, `sendfile` is a splice "
    "through a private 16-slot pipe, and both drain it with `splice_to_socket`, 16 pages per "
    "`tcp_sendmsg` with `MSG_SPLICE_PAGES`. The tracepoints agree: per GiB both make about "
    "33,000 `tcp:tcp_sendmsg_locked` calls and send about 16,500 data segments "
    "(`net:net_dev_xmit`). The three suspects, each measured as CPU per GiB against this "
    "server's own splice, in 60 alternated windows of 4 x 256 MiB (servers started with the "
    "constant patched; medians with bootstrap 95% intervals):",
    "",
    "| change | syscalls per 256 MiB | CPU per GiB vs splice today | vs sendfile |",
    "|---|---|---|---|",
    "| splice today: 1 MiB pipe, two `preadv2` probes per pipe-full | 512 probes, 256 fills, "
    "~260 drains | 1 | 1.08x [1.02-1.15] |",
    "| one probe per pipe-full | 256 probes | 1.00x [0.94-1.03] | 1.05x [1.03-1.08] |",
    "| 256 KiB pipe | 2,048 probes, 2,048 fills, ~2,060 drains | 1.01x [0.98-1.05] | "
    "1.12x [1.07-1.16] |",
    "| no probes at all (`--offload-threads 0`; 20 windows, interquartile range) | 0 probes | "
    "1.03x (0.98-1.14) | 1.17x (1.03-1.41) |",
    "| sendfile in 1 MiB chunks, as splice's pipe-fulls | 530 probes, 265 sendfile | "
    "0.87x [0.82-0.91] | 0.94x [0.89-1.00] |",
    "",
    "So it is neither the probes (halving them changes nothing measurable; their `preadv2` "
    "path is 0.5% of splice's samples) nor the pipe size nor the chunk size: at the same "
    "1 MiB chunk, sendfile is still 13% cheaper. It is something else, in the kernel's TCP "
    "send. In six alternated `perf record -e cpu-clock -g` recordings of each server (3 s of "
    "sequential 256 MiB GETs each; seconds of CPU per GiB, callees included, medians), splice "
    "used 0.338 against sendfile's 0.302. The Python loop is small for both, the fill is "
    "*cheaper* for splice (`filemap_splice_read` 0.021 against 0.041: one 1 MiB fill instead "
    "of sixteen 64 KiB ones), and the whole difference is in the send under the drain: "
    "`splice_to_socket` 0.254 against 0.210, of which the push and transmit "
    "(`__tcp_push_pending_frames` 0.099 against 0.081), the ACKs the sender processes itself "
    "when it releases the socket (`release_sock` 0.042 against 0.031), and softirq work billed "
    "where interrupts are re-enabled (`_raw_spin_unlock_irqrestore` self 0.086 against 0.068; "
    "on this virtual machine `cpu-clock` cannot sample inside a section with interrupts off). "
    "The same number of sends and segments per GiB costs the sender more when they come as a "
    "whole pipe-full pushed by one drain after a fill that sent nothing, than as sendfile's "
    "64 KiB fills and sends interleaved inside one call: more of TCP's per-segment work, ACKs "
    "included, lands on the sending side. That is the kernel's behaviour, not something "
    "`splice.py` controls: no change to its probes, pipe size or chunk size closes the gap, and "
    "`auto` already sends every span by sendfile. Measured against read/write in the same "
    "experiment, sendfile costs 0.80x [0.78-0.84] and splice 0.87x [0.82-0.91] CPU per GiB, "
    "not the 0.68x and 0.88x of one earlier run: on loopback zero-copy saves only the two "
    "copies (`_copy_to_iter` and `_copy_from_iter` are 19% of read/write's samples) and its "
    "Python per chunk, while the TCP work on both ends, which loopback puts on the server's "
    "CPU, is the same for every strategy.",
)
