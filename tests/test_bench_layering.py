"""The benchmarks' layering: one harness, four stacks that import it and not each other.

* Every module of a stack (``bench.suite``, ``bench.loadtest``, ``bench.hardening``,
  ``bench.reporting``) imports, of ``bench``, only ``bench.harness`` and its own stack. The
  command-line fronts (``bench/*.py`` and ``bench/hardening/__main__.py``) compose stacks.
* The harness imports nothing of the stacks.
* ``bench.reporting`` is pure: none of its modules, nor any ``bench`` module they import,
  starts a process or imports ``subprocess``, and importing it loads none of the harness's
  process code (servers, nginx, the client, /proc).
* Data files live in a directory no module shadows, and no comment points outside the
  repository.

Checked on the source (imports read with ``ast``) and in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
STACKS = ("suite", "loadtest", "hardening", "reporting")
PROCESS_MODULES = (
    "bench.harness.servers",
    "bench.harness.nginx",
    "bench.harness.client",
    "bench.harness.procfs",
    "bench.harness.machine",
    "bench.harness.metrics",
    "bench.harness.files",
)
PROCESS_CALLS = {"system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "spawnv"}


def _module_name(path: Path) -> str:
    relative = path.relative_to(BENCH.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in BENCH.rglob("*.py") if "data" not in path.parts}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _bench_imports(path: Path) -> set[str]:
    modules = _modules()
    return {name for name in _imports(path) if name in modules}


def _is_front(name: str) -> bool:
    return name.count(".") == 1 or name.endswith(".__main__")


@pytest.mark.parametrize("stack", STACKS)
def test_a_stack_imports_the_harness_and_itself_only(stack: str):
    modules = _modules()
    checked = 0
    for name, path in modules.items():
        if not name.startswith(f"bench.{stack}") or (_is_front(name) and name != f"bench.{stack}"):
            continue
        checked += 1
        for imported in _bench_imports(path):
            assert imported.startswith(("bench.harness", f"bench.{stack}")), (
                f"{name} imports {imported}: stacks import bench.harness, not each other"
            )
    assert checked >= 2


def test_the_harness_imports_no_stack():
    for name, path in _modules().items():
        if name.startswith("bench.harness"):
            for imported in _bench_imports(path):
                assert imported.startswith("bench.harness"), f"{name} imports {imported}"


def _reachable(start: str) -> set[str]:
    modules = _modules()
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_bench_imports(modules[name]))
    return seen


def _starts_processes(path: Path) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            problems += [f"imports {n}" for n in names if n.split(".")[0] == "subprocess"]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in PROCESS_CALLS
        ):
            problems.append(f"calls os.{node.attr}")
    return problems


def test_reporting_is_pure():
    modules = _modules()
    reporting = [name for name in modules if name.startswith("bench.reporting")]
    reached = set().union(*(_reachable(name) for name in reporting))
    assert not reached & set(PROCESS_MODULES), sorted(reached & set(PROCESS_MODULES))
    for name in sorted(reached):
        assert _starts_processes(modules[name]) == [], name
    # And in a fresh interpreter: importing all of it loads none of the process code.
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in sorted(reporting))
        + "print(' '.join(sorted(n for n in sys.modules if n.startswith('bench.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=BENCH.parent,
    )
    loaded = set(result.stdout.split())
    assert "bench.reporting.report" in loaded
    assert not loaded & set(PROCESS_MODULES)
    assert not {name for name in loaded if name.startswith(("bench.suite", "bench.loadtest"))}


def test_the_checker_finds_what_it_looks_for(tmp_path: Path):
    # The rules above would pass vacuously if the detectors saw nothing: they must see these.
    sample = tmp_path / "sample.py"
    sample.write_text("import subprocess\nimport os\nos.system('true')\n")
    assert _starts_processes(sample) == ["imports subprocess", "calls os.system"]
    assert "bench.harness.servers" in _reachable("bench.suite.run")
    assert "bench.harness.servers" in _bench_imports(BENCH / "suite" / "run.py")


def test_data_lives_where_no_module_shadows_it():
    assert not (BENCH / "data" / "__init__.py").exists()
    assert not (BENCH / "data.py").exists()
    assert (BENCH / "data" / "peers" / "nginx.conf").is_file()
    for directory in (path for path in BENCH.rglob("*") if path.is_dir()):
        assert not directory.with_suffix(".py").exists(), f"{directory.name}.py shadows it"
