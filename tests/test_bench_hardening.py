"""The pure parts of bench/hardening.py: parsing and rendering, no timing."""

from __future__ import annotations

import math

import pytest

from bench import hardening
from bench.plan import MiB

SLOWHTTPTEST_CSV = """Seconds,Closed,Pending,Connected,Service Available
0,0,1,0,50
1,0,0,50,50
2,3,0,47,0
3,0,0,50,50
"""


def test_slowhttptest_csv() -> None:
    summary = hardening.parse_slowhttptest_csv(SLOWHTTPTEST_CSV)
    assert summary == {"seconds": 4, "max_connected": 50, "service_available_fraction": 0.75}


def test_slowhttptest_csv_empty() -> None:
    assert math.isnan(hardening.parse_slowhttptest_csv("Seconds\n")["service_available_fraction"])


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0], 99, 1.0), ([float(i) for i in range(1, 101)], 50, 51.0), ([3.0, 1.0, 2.0], 100, 3.0)],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert hardening._percentile(values, q) == expected


def test_render_states_targets_and_verdicts() -> None:
    results = {
        "meta": {"kernel": "6.18"},
        "cold": {
            "downloads": 4,
            "file_size": 256 * MiB,
            "medians": {
                "offload": {
                    "p99_baseline_ms": 1.0,
                    "p99_cold_ms": 1.5,
                    "p99_ratio": 1.5,
                    "probe_requests": 4000,
                },
                "no-offload": {
                    "p99_baseline_ms": 1.0,
                    "p99_cold_ms": 9.0,
                    "p99_ratio": 9.0,
                    "probe_requests": 300,
                },
            },
        },
        "idle": {
            "connections": 5000,
            "still_open": 5000,
            "hold_seconds": 60.0,
            "rss_per_connection_kib": 40.0,
            "probe_while_held": {"p99_ms": 3.0},
        },
    }
    text = hardening.render(results)
    assert "| offload | 1.00 | 1.50 | 1.5x | 4000 | met |" in text
    assert "| no-offload | 1.00 | 9.00 | 9.0x | 300 | (reference) |" in text
    assert "| probe p99 while held | 3.00 ms | < 100 ms | met |" in text
    assert "| RSS per idle connection | 40.0 KiB | <= 32 KiB | not met |" in text
    assert "coordinated omission" in text
