"""The architecture's one-way dependencies, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_CHECK = """
import sys
import {module}
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {forbidden!r})
print(",".join(loaded))
"""


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # The HTTP core is sans-IO: no trio, no socket, no file layer.
        (
            "zerocopy.http",
            ("trio", "socket", "zerocopy.files", "zerocopy.transfer", "zerocopy.server"),
        ),
        # The file layer knows nothing of HTTP or trio.
        ("zerocopy.files", ("trio", "zerocopy.http", "zerocopy.transfer", "zerocopy.server")),
        # Transfer strategies do not depend on HTTP, files or the server.
        ("zerocopy.transfer", ("zerocopy.http", "zerocopy.files", "zerocopy.server")),
        # Log-safe text is a leaf that every layer may use: it depends on none of them.
        (
            "zerocopy.logtext",
            (
                "trio",
                "socket",
                "zerocopy.http",
                "zerocopy.files",
                "zerocopy.transfer",
                "zerocopy.server",
                "zerocopy.cli",
            ),
        ),
        # The server side, workers and supervisor included, never reaches up to the CLI.
        ("zerocopy.server", ("zerocopy.cli", "zerocopy.config_file")),
        ("zerocopy.server.supervisor", ("zerocopy.cli", "zerocopy.config_file")),
        ("zerocopy.server.worker", ("zerocopy.cli", "zerocopy.config_file")),
        # The configuration file belongs to the command line: argparse and tomllib only.
        ("zerocopy.config_file", ("trio", "zerocopy.server", "zerocopy.http", "zerocopy.files")),
    ],
)
def test_module_does_not_import(module: str, forbidden: tuple[str, ...]) -> None:
    tops = tuple(name for name in forbidden if "." not in name)
    subs = tuple(name for name in forbidden if "." in name)
    code = _CHECK.format(module=module, forbidden=tops) + (
        f"\nprint(','.join(sorted(n for n in sys.modules if n.startswith({subs!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == [], f"{module} pulled in: {result.stdout.split()}"


# Notes that live beside the repository, not in it. Written in two parts, so that this file
# does not match itself.
_OUTSIDE = tuple(a + b for a, b in (("DESIGN-", "NOTES"), ("STYLE", ".md"), ("STYLE", " §")))
_OUTSIDE += ("/wo" + "rk/", "../sha" + "red", "sha" + "red/")
_TEXT = {".py", ".md", ".toml", ".conf", ".lua", ".service", ".socket", ".cfg", ".txt", ""}


def test_no_comment_points_outside_the_repository() -> None:
    """A comment states the fact itself: nothing points at notes that are not in the repository."""
    root = Path(__file__).resolve().parent.parent
    listed = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, timeout=30, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in listed.stdout.splitlines():
        path = root / name
        if path.suffix not in _TEXT or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for marker in _OUTSIDE:
            assert marker not in text, f"{name} mentions {marker}"
