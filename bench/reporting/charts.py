"""The report's charts, drawn with matplotlib's Agg backend (no display needed).

Each function takes plain numbers that :mod:`bench.reporting.suite` has already summarised
and writes one PNG. Colours are fixed per server so the three charts read together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, NullFormatter

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["COLOURS", "cpu_chart", "latency_chart", "syscalls_chart"]

COLOURS: Final = {
    "auto": "#9467bd",
    "sendfile": "#1f77b4",
    "splice": "#2ca02c",
    "readwrite": "#d62728",
    "nginx-sendfile": "#555555",
    "nginx-nosendfile": "#aaaaaa",
    "auto-tls": "#ff7f0e",
}
DPI: Final = 110


def _colour(strategy: str) -> str:
    return COLOURS.get(strategy, "#7f7f7f")


def _plain_log_ticks(ax: Any) -> None:
    """Label a log axis 0.5, 1, 2 rather than 5x10^-1."""
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    # Label the minor ticks (2, 3, 5, …) only when the axis spans less than a decade.
    ax.yaxis.set_minor_formatter(plain if low > 0 and high / low < 10 else NullFormatter())


def latency_chart(
    path: Path,
    cases: Sequence[str],
    latency: Mapping[str, Mapping[str, tuple[float, float, float]]],
) -> None:
    """Median time per request (with the 25th-75th percentile range) by case and strategy.

    Args:
        path: Where to write the PNG.
        cases: Case labels in display order (x axis).
        latency: ``{strategy: {case: (p25, median, p75)}}`` in seconds.
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    strategies = list(latency)
    spread = 0.15 / max(1, len(strategies))
    for i, strategy in enumerate(strategies):
        xs, medians, low, high = [], [], [], []
        for j, case in enumerate(cases):
            if case not in latency[strategy]:
                continue
            p25, median, p75 = latency[strategy][case]
            xs.append(j + (i - (len(strategies) - 1) / 2) * spread)
            medians.append(median * 1e3)
            low.append(max(0.0, (median - p25) * 1e3))
            high.append(max(0.0, (p75 - median) * 1e3))
        ax.errorbar(
            xs,
            medians,
            yerr=[low, high],
            color=_colour(strategy),
            marker="o",
            capsize=3,
            lw=1.2,
            label=strategy,
        )
    ax.set_xticks(range(len(cases)), list(cases))
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_ylabel("ms per request (median; bars: p25-p75)")
    ax.set_xlabel("file (page cache hot unless _cold)")
    ax.set_title("Latency to the last byte, one keep-alive connection (lower is better)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def cpu_chart(
    path: Path,
    cases: Sequence[str],
    cpu: Mapping[str, Mapping[str, tuple[float, float]]],
) -> None:
    """Server CPU seconds per GiB sent, user and sys stacked, one panel per case.

    Args:
        path: Where to write the PNG.
        cases: Case labels, one panel each.
        cpu: ``{strategy: {case: (user_s_per_gib, sys_s_per_gib)}}``.
    """
    columns = min(3, max(1, len(cases)))
    rows = (len(cases) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    strategies = list(cpu)
    for index, case in enumerate(cases):
        ax = axes[index // columns][index % columns]
        users = [cpu[s].get(case, (0.0, 0.0))[0] for s in strategies]
        systems = [cpu[s].get(case, (0.0, 0.0))[1] for s in strategies]
        colours = [_colour(s) for s in strategies]
        ax.bar(strategies, users, color=colours, alpha=0.55, label="user")
        ax.bar(strategies, systems, bottom=users, color=colours, hatch="//", label="sys")
        ax.set_title(case)
        ax.set_ylabel("CPU s per GiB")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for index in range(len(cases), rows * columns):
        axes[index // columns][index % columns].axis("off")
    handles = [
        Rectangle((0, 0), 1, 1, facecolor="#bbbbbb", alpha=0.55),
        Rectangle((0, 0), 1, 1, facecolor="#bbbbbb", hatch="//"),
    ]
    fig.legend(handles, ["user (light)", "sys (hatched)"], loc="upper left")
    fig.suptitle("Server CPU per GiB sent (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def syscalls_chart(
    path: Path,
    cases: Sequence[str],
    syscalls: Mapping[str, Mapping[str, float]],
    copies: Mapping[str, Mapping[str, tuple[float, float]]],
) -> None:
    """Syscalls per request, and bytes through user space per payload byte.

    Args:
        path: Where to write the PNG.
        cases: Case labels (x axis).
        syscalls: ``{strategy: {case: syscalls per request}}`` (the server's counters).
        copies: ``{strategy: {case: (bytes in, bytes out) per payload byte}}``.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    strategies = list(syscalls)
    width = 0.8 / max(1, len(strategies))
    for i, strategy in enumerate(strategies):
        offset = (i - (len(strategies) - 1) / 2) * width
        xs = [j + offset for j in range(len(cases))]
        left.bar(
            xs,
            [syscalls[strategy].get(case, 0.0) for case in cases],
            width,
            color=_colour(strategy),
            label=strategy,
        )
        ins = [copies[strategy].get(case, (0.0, 0.0))[0] for case in cases]
        outs = [copies[strategy].get(case, (0.0, 0.0))[1] for case in cases]
        right.bar(xs, ins, width, color=_colour(strategy), alpha=0.55, label=f"{strategy} in")
        right.bar(xs, outs, width, bottom=ins, color=_colour(strategy), hatch="//")
        for x, a, b in zip(xs, ins, outs, strict=True):
            # Label every bar, zero included: a zero is a measurement, not a missing bar.
            right.annotate(
                f"{a + b:.2g}",
                (x, a + b),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
            )
    left.set_xticks(range(len(cases)), list(cases))
    values = [v for per in syscalls.values() for v in per.values() if v > 0]
    if values and max(values) / min(values) > 20:
        left.set_yscale("log")
        left.set_ylim(bottom=1)
        _plain_log_ticks(left)
    left.set_ylabel("syscalls per request (server counters)")
    left.set_title("Transfer-path syscalls per request")
    left.legend()
    left.grid(axis="y", which="both", alpha=0.3)
    right.set_xticks(range(len(cases)), list(cases))
    right.set_ylabel("bytes through user space per payload byte")
    right.set_ylim(top=2.4)
    right.set_title("User-space copies: in (light) + out (hatched)")
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
