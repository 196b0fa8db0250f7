"""``zerocopy tune``: its decisions on fakes (no timing), the tune file, the threshold's
precedence in ``zerocopy serve``, and one real bounded run checked only for its form."""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import Proc
from zerocopy.cli import _server_config, parse_args
from zerocopy.transfer import AUTO_THRESHOLD
from zerocopy.tune.measure import (
    CANDIDATES,
    MEMORY,
    SENDFILE,
    SizeFigures,
    Window,
    find_crossover,
    measure,
    order,
    process_cpu_seconds,
    summarise,
)
from zerocopy.tune.sizes import KiB
from zerocopy.tune.store import (
    KEY,
    TuneFile,
    read_tune_file,
    render_tune_file,
    resolve_auto_threshold,
    tune_path,
    write_tune_file,
)

ZEROCOPY = [sys.executable, "-m", "zerocopy"]


# -- the decisions, on fakes ------------------------------------------------------------------


def _figures(*pairs: tuple[int, float]) -> list[SizeFigures]:
    return [SizeFigures(size, 10.0, 10.0 * ratio, ratio, 3) for size, ratio in pairs]


def test_the_crossover_is_interpolated_on_a_log_scale_between_the_bracketing_sizes():
    # Memory wins by 20% at 16 KiB and loses by 20% at 64 KiB: halfway in log2, 32 KiB.
    crossover = find_crossover(_figures((4 * KiB, 1.5), (16 * KiB, 1.2), (64 * KiB, 0.8)))
    assert crossover.verdict == "between"
    assert crossover.threshold == 32 * KiB
    assert crossover.notes == ()
    # A quarter of the way (ratio 1.1 -> 0.7): 2^(4 + 0.25 * 2) KiB = 22.6 KiB, rounded down.
    crossover = find_crossover(_figures((16 * KiB, 1.1), (64 * KiB, 0.7)))
    assert crossover.threshold == 22 * KiB


def test_a_ratio_of_exactly_one_ends_the_memory_range():
    crossover = find_crossover(_figures((8 * KiB, 1.3), (16 * KiB, 1.0), (32 * KiB, 0.9)))
    assert crossover.threshold == 16 * KiB


def test_memory_cheaper_everywhere_gives_the_largest_size_measured():
    crossover = find_crossover(_figures((1 * KiB, 2.0), (256 * KiB, 1.01)))
    assert (crossover.verdict, crossover.threshold) == ("above", 256 * KiB)
    assert "every size" in crossover.notes[0]


def test_sendfile_cheaper_at_the_smallest_size_gives_zero():
    crossover = find_crossover(_figures((1 * KiB, 0.95), (4 * KiB, 0.9)))
    assert (crossover.verdict, crossover.threshold) == ("below", 0)


def test_memory_winning_again_later_is_named_as_noise_and_ignored():
    crossover = find_crossover(
        _figures((4 * KiB, 1.2), (8 * KiB, 0.8), (16 * KiB, 1.05), (32 * KiB, 0.7))
    )
    assert crossover.threshold >= 4 * KiB
    assert crossover.threshold < 8 * KiB
    assert len(crossover.notes) == 1
    assert "16KiB" in crossover.notes[0]


def test_nothing_measured_is_an_error():
    with pytest.raises(ValueError, match="nothing"):
        find_crossover([])


def test_the_order_alternates_across_sizes_and_rounds():
    assert order(0, 0) == CANDIDATES
    assert order(0, 1) == CANDIDATES[::-1]
    assert order(1, 0) == CANDIDATES[::-1]
    assert order(1, 1) == CANDIDATES


def _window(candidate: str, size: int, round_: int, requests: int, cpu_s: float) -> Window:
    return Window(candidate, size, round_, requests, cpu_s, 1.0)


def test_summarise_takes_medians_and_the_median_of_per_round_ratios():
    windows = [
        # Round 0 on a quiet machine, round 1 twice as slow for both, round 2 noisy for memory.
        _window(MEMORY, 4096, 0, 1000, 0.010),
        _window(SENDFILE, 4096, 0, 1000, 0.012),
        _window(MEMORY, 4096, 1, 1000, 0.020),
        _window(SENDFILE, 4096, 1, 1000, 0.024),
        _window(MEMORY, 4096, 2, 1000, 0.040),
        _window(SENDFILE, 4096, 2, 1000, 0.012),
    ]
    (figure,) = summarise(windows)
    assert figure.size == 4096
    assert figure.rounds == 3
    assert figure.memory_us == pytest.approx(20.0)
    assert figure.sendfile_us == pytest.approx(12.0)
    # Per-round ratios 1.2, 1.2, 0.3: the drift in round 1 cancels, round 2 is outvoted.
    assert figure.ratio == pytest.approx(1.2)


def test_summarise_skips_a_round_missing_a_candidate_or_its_requests():
    windows = [
        _window(MEMORY, 1024, 0, 1000, 0.010),
        _window(SENDFILE, 1024, 0, 0, 0.0),
        _window(MEMORY, 2048, 0, 1000, 0.010),
    ]
    assert summarise(windows) == []
    assert math.isnan(windows[1].cpu_per_request_us)


class _FakeServer:
    """CPU grows by what the fake load says each request costs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cpu = 0.0

    def cpu_seconds(self) -> float:
        return self.cpu


class _FakeLoad:
    """A cost model instead of a network: memory pays per byte, sendfile a fixed extra."""

    description = "fake"

    def __init__(self, servers: dict[str, _FakeServer], sizes: dict[str, int]) -> None:
        self.by_port = {server.port: name for name, server in servers.items()}
        self.servers = servers
        self.sizes = sizes
        self.calls: list[tuple[str, str]] = []

    def window(self, seconds: float) -> float:
        return seconds

    def run(self, port: int, path: str, seconds: float) -> int:
        name = self.by_port[port]
        size = self.sizes[path]
        self.calls.append((name, path))
        # Memory: 20 µs + 1 µs per KiB copied; sendfile: 30 µs whatever the size.
        cost = 20e-6 + size / KiB * 1e-6 if name == MEMORY else 30e-6
        requests = int(seconds * 10_000)
        self.servers[name].cpu += requests * cost
        return requests


def test_measure_alternates_and_finds_the_crossover_of_a_cost_model():
    servers = {MEMORY: _FakeServer(1), SENDFILE: _FakeServer(2)}
    sizes = {2**k * KiB: f"f{k}.bin" for k in range(7)}  # 1 KiB .. 64 KiB
    load = _FakeLoad(servers, {path: size for size, path in sizes.items()})
    ticks = itertools.count()
    seen: list[Window] = []
    windows = measure(
        servers,
        load,
        sizes,
        rounds=2,
        seconds=0.5,
        clock=lambda: float(next(ticks)),
        on_window=seen.append,
    )
    assert windows == seen
    assert len(windows) == 2 * 2 * len(sizes)
    # Each (round, size) step measures both, and the first of each pair alternates.
    firsts = [load.calls[i][0] for i in range(0, len(load.calls), 2)]
    assert firsts == [MEMORY, SENDFILE] * len(sizes)
    assert all(w.cpu_per_request_us > 0 and w.seconds == 1.0 for w in windows)
    crossover = find_crossover(summarise(windows))
    # The model's break-even is 10 KiB (20 + 10 = 30 µs): between the 8 and 16 KiB steps.
    assert crossover.verdict == "between"
    assert 8 * KiB <= crossover.threshold < 16 * KiB


def test_process_cpu_seconds_grows_with_work():
    before = process_cpu_seconds(os.getpid())
    sum(i * i for i in range(200_000))
    assert process_cpu_seconds(os.getpid()) > before


# -- the tune file -----------------------------------------------------------------------------


def test_the_tune_file_round_trips(tmp_path: Path):
    tune = TuneFile(
        48 * KiB,
        {
            "date": "2025-12-01T16:40:00+00:00",
            "host": 'odd "host"\\',
            "rounds": 3,
            "window-s": 1.0,
            "sizes": [1024.0, 2048.0],
        },
    )
    path = tmp_path / "deep" / "zerocopy" / "tune.toml"
    write_tune_file(path, tune)
    assert read_tune_file(path) == tune
    assert f"{KEY} = {48 * KiB}" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["tune.toml"]  # no temporary left
    # Rewriting replaces it whole.
    write_tune_file(path, TuneFile(0))
    assert read_tune_file(path) == TuneFile(0)
    assert "[measured]" not in render_tune_file(TuneFile(0))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("auto-threshold = ", "not TOML"),
        ('auto-threshold = "64KiB"', "no integer"),
        ("auto-threshold = true", "no integer"),
        ("auto-threshold = -1", "out of range"),
        ("other = 1", "no integer"),
        ("auto-threshold = 1\nmeasured = 3", "not a table"),
    ],
)
def test_a_broken_tune_file_is_refused_in_one_line(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "tune.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as caught:
        read_tune_file(path)
    assert "\n" not in str(caught.value)


def test_the_tune_file_lives_in_the_xdg_config_directory(tmp_path: Path):
    assert tune_path({"XDG_CONFIG_HOME": "/cfg", "HOME": "/h"}) == Path("/cfg/zerocopy/tune.toml")
    # A relative XDG_CONFIG_HOME is invalid by the specification, and ignored.
    assert tune_path({"XDG_CONFIG_HOME": "cfg", "HOME": "/h"}) == Path(
        "/h/.config/zerocopy/tune.toml"
    )
    assert tune_path({"HOME": "/h"}) == Path("/h/.config/zerocopy/tune.toml")


def test_precedence_given_then_tune_file_then_default(tmp_path: Path):
    path = tmp_path / "tune.toml"
    assert resolve_auto_threshold(None, "--auto-threshold", path=path).value == AUTO_THRESHOLD
    assert resolve_auto_threshold(None, "x", path=path).source == "built-in default"
    write_tune_file(path, TuneFile(12 * KiB, {"date": "D", "host": "H"}))
    choice = resolve_auto_threshold(None, "--auto-threshold", path=path)
    assert choice.value == 12 * KiB
    assert choice.source == f"tune file {path} (measured D on H)"
    assert "12KiB" in choice.describe()
    given = resolve_auto_threshold(4 * KiB, "--auto-threshold", path=path)
    assert (given.value, given.source) == (4 * KiB, "--auto-threshold")
    path.write_text("auto-threshold = nope")
    broken = resolve_auto_threshold(None, "--auto-threshold", path=path)
    assert (broken.value, broken.source) == (AUTO_THRESHOLD, "built-in default")
    assert broken.problem is not None
    assert str(path) in broken.problem


def test_serve_resolves_flag_config_tune_file_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    root = str(tmp_path)
    args = parse_args(["serve", root])
    assert args.auto_threshold == AUTO_THRESHOLD
    assert args.auto_threshold_choice.source == "built-in default"
    write_tune_file(tmp_path / "xdg" / "zerocopy" / "tune.toml", TuneFile(16 * KiB))
    args = parse_args(["serve", root])
    assert _server_config(args).auto_threshold == 16 * KiB
    assert args.auto_threshold_choice.source.startswith("tune file ")
    config = tmp_path / "zerocopy.toml"
    config.write_text('auto-threshold = "8KiB"\n')
    args = parse_args(["serve", root, "--config", str(config)])
    assert _server_config(args).auto_threshold == 8 * KiB
    assert args.auto_threshold_choice.source == f"--config {config}"
    args = parse_args(["serve", root, "--config", str(config), "--auto-threshold", "2KiB"])
    assert _server_config(args).auto_threshold == 2 * KiB
    assert args.auto_threshold_choice.source == "--auto-threshold"
    # 0 is a value (never from memory), not "unset".
    args = parse_args(["serve", root, "--auto-threshold", "0"])
    assert (args.auto_threshold, args.auto_threshold_choice.source) == (0, "--auto-threshold")


def test_serve_logs_its_threshold_and_where_it_came_from(procs, tmp_path: Path):
    write_tune_file(tmp_path / "xdg" / "zerocopy" / "tune.toml", TuneFile(24 * KiB))
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    process: Proc = procs("serve", str(tmp_path), "--port", "0", env=env)
    line = process.wait_for(r"auto-threshold .*", stream="stderr").group(0)
    assert "24KiB" in line
    assert str(tmp_path / "xdg" / "zerocopy" / "tune.toml") in line
    process.serving()
    process.signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0


# -- one real, bounded run ------------------------------------------------------------------------


def test_a_short_real_run_writes_a_well_formed_tune_file(tmp_path: Path):
    output = tmp_path / "tune.toml"
    result = subprocess.run(
        [
            *ZEROCOPY,
            "tune",
            str(tmp_path),
            *("--duration", "2", "--sizes", "4KiB,32KiB", "--rounds", "1"),
            *("--load", "client", "--connections", "4", "--output", str(output)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "zerocopy's own keep-alive client" in result.stdout
    tune = read_tune_file(output)
    assert 0 <= tune.threshold <= 32 * KiB
    assert tune.measured["sizes"] == [4096.0, 32768.0]
    for key in ("memory-cpu-us", "sendfile-cpu-us", "sendfile-vs-memory"):
        values = tune.measured[key]
        assert isinstance(values, list)
        assert len(values) == 2
        assert all(value > 0 for value in values)
    flag = "--auto-threshold " + (f"{tune.threshold // KiB}KiB" if tune.threshold else "0")
    assert flag in result.stdout
    # The scratch directory with the test files is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tune.toml"]
