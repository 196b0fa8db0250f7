"""safe_text: any client-controlled or file-system string, made safe for one log line.

The oracle is independent of the implementation: the result holds no control, bidi control or
surrogate character, and the stdlib's ``unicode_escape`` codec reads it back as the input.
"""

from __future__ import annotations

import io
import logging
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.oracles import is_visible, unescape
from zerocopy.logtext import safe_text

CASES: list[tuple[str, str | bytes, str]] = [
    ("plain", "index.html", "index.html"),
    ("non-ASCII letters stay", "ünïcödé 日本語 😀", "ünïcödé 日本語 😀"),
    ("CR", "a\rb", "a\\rb"),
    ("LF forging a line", "x\n2026-01-01 ERROR forged", "x\\n2026-01-01 ERROR forged"),
    ("CRLF", "a\r\nb", "a\\r\\nb"),
    ("tab", "a\tb", "a\\tb"),
    ("ESC sequence", "\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
    ("NUL", "a\x00b", "a\\x00b"),
    ("DEL", "a\x7fb", "a\\x7fb"),
    ("C1: NEL and CSI", "a\x85b\x9bc", "a\\x85b\\x9bc"),
    ("U+202E, right-to-left override", "evil\u202etxt.exe", "evil\\u202etxt.exe"),
    ("bidi isolates", "\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
    ("bidi embeddings", "\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("bidi marks", "\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
    ("line and paragraph separators", "a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("a backslash is doubled, so escapes read one way", "a\\x0a", "a\\\\x0a"),
    ("bytes, UTF-8", "é\n".encode(), "é\\n"),
    ("bytes, not UTF-8: backslashreplace", b"a\xff\xc3(", "a\\xff\\xc3("),
    ("bytes, an encoded surrogate is not UTF-8", b"\xed\xb0\x80", "\\xed\\xb0\\x80"),
    ("fsdecode'd name: surrogateescape", b"n\xe9".decode("utf-8", "surrogateescape"), "n\\xe9"),
    ("lone surrogate", "a\ud800", "a\\ud800"),
]


@pytest.mark.parametrize(("value", "expected"), [pytest.param(v, e, id=i) for i, v, e in CASES])
def test_safe_text(value: str | bytes, expected: str) -> None:
    assert safe_text(value) == expected
    assert is_visible(expected)


def test_bytes_read_like_backslashreplace() -> None:
    data = b"ok \xff\xfe caf\xc3\xa9"
    assert safe_text(data) == data.decode("utf-8", "backslashreplace")


@given(st.text())
def test_any_text_is_one_safe_line_that_reads_back(value: str) -> None:
    escaped = safe_text(value)
    assert is_visible(escaped)
    if not any(unicodedata.category(c) == "Cs" for c in value):
        assert unescape(escaped) == value


@given(st.binary())
def test_any_bytes_are_one_safe_line(value: bytes) -> None:
    escaped = safe_text(value)
    assert is_visible(escaped)
    # Where the bytes are UTF-8, the result is that of the text.
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert escaped == safe_text(text)


def test_a_log_record_stays_one_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.logtext")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        name = "f\r\nERROR forged line\x1b[0m\u202e"
        logger.error("%s truncated while being sent", safe_text(name))
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["f\\r\\nERROR forged line\\x1b[0m\\u202e truncated while being sent"]
