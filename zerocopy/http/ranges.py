"""Byte ranges (RFC 9110 §14): parse a Range header and decide what to send.

The result of :func:`plan_ranges` is one of:

* ``None``: ignore the header and send the whole file with 200. That is the answer to an
  unknown unit, invalid syntax, too many ranges, and the abuse patterns below.
* an empty tuple: nothing is satisfiable, answer 416 with ``Content-Range: bytes */size``.
* one or more :class:`ByteRange`, in the order the client asked for them.

An empty file has no byte to cut a range from. RFC 9110 §14.1.1 calls a non-zero suffix
(``bytes=-1``) satisfiable even then, but the range it selects is empty, and no
Content-Range can write an empty range (``bytes 0--1/0`` is not one). So a spec that would
begin at byte 0 of an empty file (``0-``, ``0-5``, ``-1``, ``-0``) makes the server ignore the
header, which §14.2 allows, and send the whole empty file with 200, as nginx does (its
``ngx_http_range_parse`` declines an empty range that starts at 0). A spec that begins past
the end (``1-``, ``5-10``) is unsatisfiable as on any file: 416 with ``Content-Range:
bytes */0`` (§15.5.17), again as nginx answers.

Abuse guards, from nginx's ``range.t`` and the Apache Killer (CVE-2011-3192): more than
``max_ranges`` ranges, overlapping ranges, or ranges adding up to more than the file all get
the whole file rather than a response that repeats it. Integers are parsed as Python ints, and
digit strings longer than any 64-bit value are clamped before parsing, so huge numbers neither
overflow nor cost quadratic time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final, final

__all__ = ["ByteRange", "plan_ranges"]

_HUGE: Final = 1 << 64
_MAX_DIGITS: Final = 20


@final
@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` of a file, both inclusive (as Content-Range writes them)."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start + 1


def _number(digits: bytes) -> int | None:
    if not digits.isdigit():  # bytes.isdigit() is ASCII-only: no "²" or "٣".
        return None
    significant = digits.lstrip(b"0")  # "000…0001" is 1, however many zeros lead it.
    return _HUGE if len(significant) > _MAX_DIGITS else int(significant or b"0")


def plan_ranges(header: bytes, size: int, *, max_ranges: int) -> tuple[ByteRange, ...] | None:
    """Decide which ranges of a ``size``-byte file to send; see the module docstring."""
    unit, equals, spec = header.partition(b"=")
    if not equals or unit.strip(b" \t").lower() != b"bytes":
        return None
    # RFC 9110 §5.6.1: empty list elements are allowed and ignored, so they do not count
    # against max_ranges.
    parts = [part for part in (raw.strip(b" \t") for raw in spec.split(b",")) if part]
    if not parts or len(parts) > max_ranges:
        return None
    ranges: list[ByteRange] = []
    for part in parts:
        first, dash, last = part.partition(b"-")
        if not dash:
            return None
        if first:
            start = _number(first)
            end = _number(last) if last else _HUGE
            if start is None or end is None or end < start:
                return None
            if start >= size:
                if start == 0:
                    return None  # An empty file; see the module docstring.
                continue  # Unsatisfiable, but other ranges may still be served.
            ranges.append(ByteRange(start, min(end, size - 1)))
        else:
            suffix = _number(last)
            if suffix is None:
                return None
            if size == 0:
                return None  # An empty file; see the module docstring.
            if suffix == 0:
                continue
            ranges.append(ByteRange(max(size - suffix, 0), size - 1))
    if len(ranges) > 1:
        ordered = sorted(ranges, key=lambda r: r.start)
        # Ranges that do not overlap cannot add up to more than the file, so this one check
        # covers both guards.
        if any(b.start <= a.end for a, b in itertools.pairwise(ordered)):
            return None
    return tuple(ranges)
