"""Shared fixtures: a document root with known files, and a live server on port 0."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import settings

from tests.helpers import open_fd_count, random_file
from zerocopy.server import Server, ServerConfig

# Real zerocopy processes: the `procs` fixture, with its process-group check.
pytest_plugins = ["tests.procs"]

# CI runs more examples; a developer's `make test` keeps them moderate. The profile decides for
# every property test (none sets its own max_examples). HYPOTHESIS_PROFILE names it (.ci/run
# sets "ci"); without it, CI=true selects "ci" and anything else "dev". An unknown name fails.
settings.register_profile("ci", max_examples=10_000, deadline=None)
settings.register_profile("dev", max_examples=300, deadline=None)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") else "dev"
)
settings.load_profile(HYPOTHESIS_PROFILE)


@pytest.fixture(autouse=True, scope="session")
def _no_tune_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`zerocopy serve` reads the threshold `zerocopy tune` measured from the user's config
    directory: no test may depend on what a developer measured on this machine."""
    previous = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    yield
    if previous is None:
        del os.environ["XDG_CONFIG_HOME"]
    else:
        os.environ["XDG_CONFIG_HOME"] = previous


def pytest_report_header() -> str:
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} ({settings().max_examples} examples)"


BARE_STRATEGIES = ["sendfile", "splice", "readwrite"]
"""The three transfer paths. Every test that moves bytes runs over each of them."""

SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "4k.bin": 4096,
    "64k.bin": 65536,
    "1m.bin": 1 << 20,
    "5m.bin": 5 * (1 << 20) + 7,
}


@pytest.fixture
def www(tmp_path: Path) -> Path:
    """A document root: files of several sizes, a text file, directories and odd names."""
    root = tmp_path / "www"
    root.mkdir()
    for name, size in SIZES.items():
        random_file(root / name, size)
    (root / "hello.txt").write_text("hello, world\n")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<h1>sub</h1>\n")
    (root / "list").mkdir()
    (root / "list" / "b.txt").write_text("b")
    (root / "list" / "a dir").mkdir()
    (root / "list" / '<img src=x onerror="alert(1)">.txt').write_text("x")
    (root / "spaced name %41.txt").write_text("spaced\n")
    (root / "ünï.txt").write_text("unicode\n")
    return root


@pytest.fixture(params=BARE_STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def start_server(nursery: trio.Nursery, **options: object) -> Server:
    config = ServerConfig(bind="127.0.0.1", port=0, **options)  # type: ignore[arg-type]
    server: Server = await nursery.start(Server(config).serve)
    return server


async def stop_server(server: Server) -> None:
    """Shut down at once (a second shutdown skips the grace period) and wait for the end."""
    server.shutdown()
    server.shutdown()
    with trio.fail_after(10):
        await server.wait_closed()


@pytest.fixture
async def server(nursery: trio.Nursery, www: Path, strategy: str) -> AsyncIterator[Server]:
    """A server on ``www`` with the test's strategy.

    Teardown is a leak check: once the server has stopped, the process holds no more file
    descriptors than before it started (connections, files, pipes and listeners all closed).
    Tests must close their own clients.
    """
    before = open_fd_count()
    server = await start_server(nursery, root=str(www), strategy=strategy)
    yield server
    await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"
