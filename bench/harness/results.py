"""Where results go, and the one way they are written and read.

Every benchmark writes into ``bench/results/`` (git-ignored; ``bench/results/quick/`` for the
quick suite). Files are written atomically (a reader never sees half a file), and NaN and the
infinities become ``null``, which JSON can spell. They are read back through the records of
:mod:`bench.harness.schema`, so a file whose layout drifted fails loudly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from bench.harness.schema import SchemaError, dump, load

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BENCH_DIR",
    "DATA_DIR",
    "REPO_ROOT",
    "RESULTS_DIR",
    "clean_floats",
    "read_record",
    "write_json",
    "write_record",
]

T = TypeVar("T")

BENCH_DIR: Final = Path(__file__).resolve().parent.parent
REPO_ROOT: Final = BENCH_DIR.parent
DATA_DIR: Final = BENCH_DIR / "data"
"""Files the benchmarks use but do not import: peer apps, nginx.conf, wrk scripts."""
RESULTS_DIR: Final = BENCH_DIR / "results"


def clean_floats(value: Any) -> Any:
    """NaN and the infinities become ``None``, in nested dicts, lists and tuples too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: clean_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean_floats(item) for item in value]
    return value


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically, with NaN as ``null``; 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clean_floats(dict(document)), indent=1, allow_nan=False) + "\n")
    tmp.chmod(0o644)
    tmp.replace(path)


def write_record(path: Path, record: Any) -> None:
    """:func:`write_json` of a :mod:`bench.harness.schema` record."""
    write_json(path, dump(record))


def read_record(path: Path, cls: type[T]) -> T:
    """Read ``path`` as a ``cls`` record.

    Raises:
        FileNotFoundError: No such file.
        SchemaError: Not JSON, or not the layout of ``cls`` (the message names the file and
            the path inside it).
    """
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise SchemaError(f"{path.name}: not JSON: {exc}") from exc
    try:
        return load(cls, data)
    except SchemaError as exc:
        raise SchemaError(f"{path.name}: {exc}") from exc
